#include "civicbus/storage/database.hpp"

namespace civicbus::storage {

Result<std::optional<std::int64_t>> Database::query_int(std::string_view sql,
                                                        std::initializer_list<Value> params) {
  // A NULL in the first column (MAX() over no rows) reads as "no value", like no row at all.
  std::optional<std::int64_t> value;
  Status status = query(sql, params, [&](const Row& row) {
    value = row.get_optional_int(0);
    return false;
  });
  if (!status.ok()) return status;
  return value;
}

}  // namespace civicbus::storage

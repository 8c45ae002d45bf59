// `{field}` templates filled from a record: MQTT topics ("city/permits/{status}") and email
// subjects and bodies.
#pragma once

#include <string>
#include <string_view>

#include "civicbus/connect/connector.hpp"

namespace civicbus::connect::detail {

// Fills each `{field}` of `tmpl` with the record's value as text (null as empty). False with
// `missing` naming the first field the batch has no column for or, with `require_value`, whose
// value is null or empty. A brace that does not enclose a name stays as written.
bool fill_template(std::string_view tmpl, const RecordBatch& batch, const Record& record,
                   bool require_value, std::string& out, std::string& missing);

}  // namespace civicbus::connect::detail

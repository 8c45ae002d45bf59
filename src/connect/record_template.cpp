#include "record_template.hpp"

#include "rest_client.hpp"

namespace civicbus::connect::detail {

bool fill_template(std::string_view tmpl, const RecordBatch& batch, const Record& record,
                   bool require_value, std::string& out, std::string& missing) {
  out.clear();
  std::size_t i = 0;
  while (i < tmpl.size()) {
    std::size_t open = tmpl.find('{', i);
    if (open == std::string_view::npos) {
      out.append(tmpl.substr(i));
      break;
    }
    std::size_t close = tmpl.find_first_of("{}", open + 1);
    if (close == std::string_view::npos || tmpl[close] == '{' || close == open + 1) {
      out.append(tmpl.substr(i, open + 1 - i));
      i = open + 1;
      continue;
    }
    out.append(tmpl.substr(i, open - i));
    std::string_view name = tmpl.substr(open + 1, close - open - 1);
    int column = batch.column_index(name);
    const Json* v = column < 0 ? nullptr : &RecordBatch::value(record, column);
    std::string text = v == nullptr || v->is_null() ? std::string() : scalar_text(*v);
    if (column < 0 || (require_value && text.empty())) {
      missing = std::string(name);
      return false;
    }
    out += text;
    i = close + 1;
  }
  return true;
}

}  // namespace civicbus::connect::detail

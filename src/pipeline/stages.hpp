// The built-in stages of pipelines: types (conversions, dates, enums), map_codes (lookup
// tables), validate (JSON Schema per record). Each resolves its columns once per column list,
// so the per-record work is index lookups and the conversion itself.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "civicbus/pipeline/pipeline.hpp"

namespace civicbus::pipeline::detail {

Result<std::unique_ptr<Stage>> make_builtin_stage(const StageOptions& options);

// Parses `text` with a strftime-like `format` (%Y %y %m %d %H %M %S %b %%, other characters
// literal) into days since 1970-01-01 and seconds of the day. False when it does not match or
// names an impossible date or time.
bool parse_date_time(std::string_view text, std::string_view format, std::int64_t& days,
                     std::int64_t& seconds);

}  // namespace civicbus::pipeline::detail

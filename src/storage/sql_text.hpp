// Text helpers the SQL adapters share.
#pragma once

#include <string>
#include <string_view>

namespace civicbus::storage::detail {

// The failing SQL as one line of at most ~80 characters (a UTF-8 sequence is never cut), so
// error messages stay readable when the statement is a multi-line script.
std::string sql_snippet(std::string_view sql);

}  // namespace civicbus::storage::detail

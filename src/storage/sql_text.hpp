// What the SQL adapters share: error-message snippets of SQL and a scope guard.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace civicbus::storage::detail {

// The failing SQL as one line of at most ~80 characters (a UTF-8 sequence is never cut), so
// error messages stay readable when the statement is a multi-line script.
std::string sql_snippet(std::string_view sql);

// Runs `f` when it goes out of scope unless dismissed (a transaction's rollback on every early
// return).
template <typename F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ~ScopeExit() {
    if (armed_) f_();
  }
  void dismiss() { armed_ = false; }

 private:
  F f_;
  bool armed_ = true;
};

}  // namespace civicbus::storage::detail

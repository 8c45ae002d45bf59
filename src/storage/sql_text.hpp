// What the SQL adapters share: error-message snippets of SQL, a scope guard and the nesting
// rules of transaction().
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "civicbus/core/status.hpp"

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

// transaction() as both adapters give it: a call inside another joins it; the first failure
// of a nested body rolls the outermost transaction back even when the outer body returns ok
// (it can no longer commit atomically); a body that returns an error or throws rolls back; a
// failed COMMIT rolls back what is left. The adapter supplies the statements and holds its
// connection's lock around run().
class TransactionNesting {
 public:
  struct Steps {
    std::function<Status()> begin;
    // After a body that returned ok, before COMMIT; an error rolls back instead (PostgreSQL:
    // a statement failed inside and the body carried on). May be empty.
    std::function<Status()> check;
    std::function<Status()> commit;
    std::function<Status()> rollback_if_open;
  };

  bool active() const { return depth_ > 0; }
  Status run(const std::function<Status()>& body, const Steps& steps);

 private:
  int depth_ = 0;
  std::optional<Status> nested_failure_;
};

}  // namespace civicbus::storage::detail

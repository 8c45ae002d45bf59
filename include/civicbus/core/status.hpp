// Status and Result<T>: how every civicbus call that can fail on input, I/O or a peer says so.
// Exceptions never cross the public API. A Status carries a code a program can branch on
// and a message a person can act on ("topic 'permit.issued' has no active schema version;
// register one or publish to a topic without schema").
#pragma once

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "civicbus/export.hpp"

namespace civicbus {

enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,     // the caller's input is wrong; retrying the same call fails again
  kNotFound = 2,            // a named thing (topic, group, event, key) does not exist
  kAlreadyExists = 3,       // creating something that exists with different settings
  kFailedPrecondition = 4,  // the system is not in a state where the call can run
  kPermissionDenied = 5,    // the caller is known but not allowed
  kUnauthenticated = 6,     // the caller could not be identified
  kResourceExhausted = 7,   // a limit was hit (size, rate, queue)
  kUnavailable = 8,         // a peer or resource is down; retrying later may succeed
  kDeadlineExceeded = 9,    // a timeout expired
  kAborted = 10,            // a concurrent change won; retry the whole operation
  kCancelled = 11,          // the caller or shutdown cancelled the operation
  kDataLoss = 12,           // stored data is corrupt or unreadable
  kIoError = 13,            // the operating system refused a read or write
  kInternal = 14,           // a bug: an invariant did not hold
  kOutOfRange = 15,         // an offset, index or time is outside what exists
};

// The stable, lower-case name of a code ("invalid_argument"), used in logs, JSON errors and
// the Python bindings' exception attributes.
CIVICBUS_EXPORT std::string_view error_code_name(ErrorCode code);

class [[nodiscard]] CIVICBUS_EXPORT Status {
 public:
  Status() = default;  // ok
  Status(ErrorCode code, std::string message);

  static Status ok_status() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  ErrorCode code() const { return rep_ ? rep_->code : ErrorCode::kOk; }
  // Empty for an ok status.
  const std::string& message() const;
  // "invalid_argument: event has no 'type' attribute", or "ok".
  std::string to_string() const;

  // Returns a copy whose message is prefixed with `context` and ": ".
  Status with_context(std::string_view context) const;

  // Marks a status as deliberately ignored.
  void ignore_error() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct Rep {
    ErrorCode code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;  // null when ok; shared so copies are cheap
};

CIVICBUS_EXPORT Status invalid_argument(std::string message);
CIVICBUS_EXPORT Status not_found(std::string message);
CIVICBUS_EXPORT Status already_exists(std::string message);
CIVICBUS_EXPORT Status failed_precondition(std::string message);
CIVICBUS_EXPORT Status permission_denied(std::string message);
CIVICBUS_EXPORT Status unauthenticated(std::string message);
CIVICBUS_EXPORT Status resource_exhausted(std::string message);
CIVICBUS_EXPORT Status unavailable(std::string message);
CIVICBUS_EXPORT Status deadline_exceeded(std::string message);
CIVICBUS_EXPORT Status aborted(std::string message);
CIVICBUS_EXPORT Status cancelled(std::string message);
CIVICBUS_EXPORT Status data_loss(std::string message);
CIVICBUS_EXPORT Status io_error(std::string message);
CIVICBUS_EXPORT Status internal_error(std::string message);
CIVICBUS_EXPORT Status out_of_range(std::string message);

// Result<T> holds a T or a non-ok Status. Reading the value of an error result is a bug
// (asserted in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::in_place_index<1>, std::move(status)) {  // NOLINT
    assert(!std::get<1>(v_).ok() && "Result constructed from an ok Status");
  }

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  // By value, not T&&: `for (auto& x : f().value())` would otherwise iterate a destroyed
  // temporary (a reference does not extend the life of the Result it points into).
  T value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T value_or(T fallback) const& { return ok() ? std::get<0>(v_) : std::move(fallback); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace civicbus

#define CIVICBUS_CONCAT_INNER_(a, b) a##b
#define CIVICBUS_CONCAT_(a, b) CIVICBUS_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define CIVICBUS_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::civicbus::Status civicbus_status_ = (expr);        \
    if (!civicbus_status_.ok()) return civicbus_status_; \
  } while (false)

// `CIVICBUS_ASSIGN_OR_RETURN(auto x, make_x());` declares x from a Result, or returns its error.
#define CIVICBUS_ASSIGN_OR_RETURN(lhs, expr) \
  CIVICBUS_ASSIGN_OR_RETURN_IMPL_(CIVICBUS_CONCAT_(civicbus_result_, __LINE__), lhs, expr)
#define CIVICBUS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()

#include "civicbus/core/status.hpp"

namespace civicbus {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kFailedPrecondition: return "failed_precondition";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDeadlineExceeded: return "deadline_exceeded";
    case ErrorCode::kAborted: return "aborted";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kDataLoss: return "data_loss";
    case ErrorCode::kIoError: return "io_error";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kOutOfRange: return "out_of_range";
  }
  return "unknown";
}

Status::Status(ErrorCode code, std::string message) {
  if (code != ErrorCode::kOk) rep_ = std::make_shared<const Rep>(Rep{code, std::move(message)});
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  std::string out(error_code_name(rep_->code));
  out += ": ";
  out += rep_->message;
  return out;
}

Status Status::with_context(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  message += ": ";
  message += rep_->message;
  return Status(rep_->code, std::move(message));
}

Status invalid_argument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
Status not_found(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
Status already_exists(std::string m) { return {ErrorCode::kAlreadyExists, std::move(m)}; }
Status failed_precondition(std::string m) { return {ErrorCode::kFailedPrecondition, std::move(m)}; }
Status permission_denied(std::string m) { return {ErrorCode::kPermissionDenied, std::move(m)}; }
Status unauthenticated(std::string m) { return {ErrorCode::kUnauthenticated, std::move(m)}; }
Status resource_exhausted(std::string m) { return {ErrorCode::kResourceExhausted, std::move(m)}; }
Status unavailable(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
Status deadline_exceeded(std::string m) { return {ErrorCode::kDeadlineExceeded, std::move(m)}; }
Status aborted(std::string m) { return {ErrorCode::kAborted, std::move(m)}; }
Status cancelled(std::string m) { return {ErrorCode::kCancelled, std::move(m)}; }
Status data_loss(std::string m) { return {ErrorCode::kDataLoss, std::move(m)}; }
Status io_error(std::string m) { return {ErrorCode::kIoError, std::move(m)}; }
Status internal_error(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }
Status out_of_range(std::string m) { return {ErrorCode::kOutOfRange, std::move(m)}; }

}  // namespace civicbus

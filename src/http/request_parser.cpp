#include "http/request_parser.hpp"

#include <llhttp.h>

#include <cstdint>
#include <vector>

namespace civicbus::http::detail {

namespace {

std::string error_text(const llhttp_t* p) {
  const char* reason = llhttp_get_error_reason(p);
  return reason != nullptr ? reason : llhttp_errno_name(llhttp_get_errno(p));
}

// request-line = method SP request-target SP HTTP-version, single spaces, nothing else
// (llhttp accepts repeated spaces).
bool valid_request_line(std::string_view line) {
  const std::size_t a = line.find(' ');
  if (a == std::string_view::npos || a == 0) return false;
  const std::size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos || b == a + 1) return false;
  const std::string_view version = line.substr(b + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.') return false;
  return version[5] >= '0' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9';
}

}  // namespace

struct RequestParser::Llhttp {
  llhttp_t parser;
  llhttp_settings_t settings;
};

// The C callbacks; each finds its RequestParser through llhttp_t::data.
struct LlhttpCallbacks {
  static RequestParser& self(llhttp_t* p) { return *static_cast<RequestParser*>(p->data); }

  static int on_url(llhttp_t* p, const char* at, std::size_t n) {
    self(p).request_.target.append(at, n);
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    RequestParser& s = self(p);
    if (!s.headers_done_) s.field_.add_name(at, n);  // trailers are ignored
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    RequestParser& s = self(p);
    if (!s.headers_done_) s.field_.add_value(at, n);
    return 0;
  }
  static int on_header_value_complete(llhttp_t* p) {
    RequestParser& s = self(p);
    if (!s.headers_done_) {
      // One allocation for the fields of a usual message instead of growing 1, 2, 4, 8.
      if (s.request_.headers.empty()) s.request_.headers.reserve(12);
      s.request_.headers.add_copy(s.field_.name(), trim_ows(s.field_.value()));
    }
    s.field_.clear();
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) { return self(p).on_headers_complete(); }
  static int on_body(llhttp_t* p, const char* at, std::size_t n) {
    RequestParser& s = self(p);
    if (s.request_.body.size() + n > s.limits_.max_body_bytes) {
      s.error_status_ = 413;
      s.error_reason_ = "request body is larger than the limit of " +
                        std::to_string(s.limits_.max_body_bytes) + " bytes";
      return HPE_USER;
    }
    s.request_.body.append(at, n);
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    RequestParser& s = self(p);
    s.message_done_ = true;
    s.keep_alive_ = llhttp_should_keep_alive(p) != 0 && !llhttp_get_upgrade(p);
    return HPE_PAUSED;
  }
};

RequestParser::RequestParser(RequestLimits limits)
    : limits_(limits),
      llhttp_(std::make_unique<Llhttp>()),
      head_(Peer::kRequest, limits.max_header_count, limits.max_header_bytes, &valid_request_line),
      chunks_(Peer::kRequest, limits.max_header_bytes) {
  llhttp_settings_init(&llhttp_->settings);
  llhttp_->settings.on_url = &LlhttpCallbacks::on_url;
  llhttp_->settings.on_header_field = &LlhttpCallbacks::on_header_field;
  llhttp_->settings.on_header_value = &LlhttpCallbacks::on_header_value;
  llhttp_->settings.on_header_value_complete = &LlhttpCallbacks::on_header_value_complete;
  llhttp_->settings.on_headers_complete = &LlhttpCallbacks::on_headers_complete;
  llhttp_->settings.on_body = &LlhttpCallbacks::on_body;
  llhttp_->settings.on_message_complete = &LlhttpCallbacks::on_message_complete;
  llhttp_init(&llhttp_->parser, HTTP_REQUEST, &llhttp_->settings);
  llhttp_->parser.data = this;
  // Every lenient flag stays off (llhttp_init's default); said here so nobody turns one on.
  llhttp_set_lenient_headers(&llhttp_->parser, 0);
  llhttp_set_lenient_chunked_length(&llhttp_->parser, 0);
  llhttp_set_lenient_keep_alive(&llhttp_->parser, 0);
  llhttp_set_lenient_transfer_encoding(&llhttp_->parser, 0);
}

RequestParser::~RequestParser() = default;

bool RequestParser::in_header() const {
  return phase_ == Phase::kHead && head_.bytes() > 0;
}
bool RequestParser::in_body() const {
  return phase_ == Phase::kBody;
}

RequestParser::Step RequestParser::fail(int status, std::string reason, std::size_t consumed) {
  phase_ = Phase::kClosed;
  if (error_status_ == 0) {
    error_status_ = status;
    error_reason_ = std::move(reason);
  }
  return {Event::kError, consumed};
}

void RequestParser::reset_message() {
  head_.reset();
  clear_for_reuse(request_);
  field_.clear();
  headers_done_ = false;
  message_done_ = false;
  chunked_ = false;
  chunks_.reset();
  expect_continue_ = false;
}

// The scanners are shared with ResponseParser; here their findings become statuses.
std::size_t RequestParser::scanned(const FramingFindings& scanner, std::size_t n) {
  if (scanner.error() != FramingError::kNone) {
    scan_error_status_ = scanner.error() == FramingError::kLimitExceeded ? 431 : 400;
    scan_error_reason_ = scanner.reason();
  }
  return n;
}

int RequestParser::on_headers_complete() {
  llhttp_t* p = &llhttp_->parser;
  headers_done_ = true;
  auto reject = [&](int status, std::string reason) {
    error_status_ = status;
    error_reason_ = std::move(reason);
    return -1;
  };
  if (llhttp_get_http_major(p) != 1) return reject(505, "only HTTP/1.0 and HTTP/1.1 are served");
  request_.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
  request_.version_minor = llhttp_get_http_minor(p);
  const std::size_t q = request_.target.find('?');
  // Assigned in place: the strings keep the room an earlier request on the connection gave them.
  request_.path.assign(request_.target, 0, q);
  if (q == std::string::npos) {
    request_.query.clear();
  } else {
    request_.query.assign(request_.target, q + 1);
  }

  const HttpHeaders& headers = request_.headers;
  const std::size_t hosts = headers.count("Host");
  if (hosts > 1) return reject(400, "request has more than one Host field");
  if (hosts == 0 && request_.version_minor >= 1)
    return reject(400, "HTTP/1.1 request without Host");

  // Counted in place: most requests have neither field, and a vector each would cost more
  // than the check.
  std::size_t lengths = 0;
  std::string_view length;
  headers.for_each("Content-Length", [&](std::string_view v) {
    ++lengths;
    length = v;
  });
  const bool encoded = headers.contains("Transfer-Encoding");
  if (lengths > 0 && encoded) {
    return reject(400, "request has both Content-Length and Transfer-Encoding");
  }
  std::uint64_t content_length = 0;
  if (lengths > 1) return reject(400, "request has more than one Content-Length field");
  if (lengths == 1 && !parse_content_length(length, content_length)) {
    return reject(400, "invalid Content-Length");
  }
  if (encoded) {
    if (request_.version_minor == 0) return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
    // The codings of every field, in order; the last must be chunked, and only the last.
    const std::vector<std::string_view> codings =
        split_codings(headers.get_all("Transfer-Encoding"));
    bool other = false;
    for (std::size_t i = 0; i < codings.size(); ++i) {
      const std::string_view coding = codings[i];
      if (coding.empty()) return reject(400, "empty element in Transfer-Encoding");
      for (char c : coding) {
        if (!is_tchar(c)) return reject(400, "invalid Transfer-Encoding");
      }
      const bool chunked = equals_ignore_case(coding, "chunked");
      if (chunked != (i + 1 == codings.size())) {
        return reject(400, "Transfer-Encoding must end with chunked, once");
      }
      if (!chunked) other = true;
    }
    if (other) return reject(501, "only the chunked transfer coding is supported");
  }
  if (const auto expect = headers.get("Expect")) {
    if (headers.count("Expect") > 1 || !equals_ignore_case(*expect, "100-continue")) {
      return reject(417, "only 'Expect: 100-continue' is supported");
    }
    expect_continue_ = request_.version_minor >= 1;
  }
  chunked_ = encoded;
  if (content_length > limits_.max_body_bytes) {
    return reject(413, "request body is larger than the limit of " +
                           std::to_string(limits_.max_body_bytes) + " bytes");
  }
  return 0;
}

RequestParser::Step RequestParser::feed(std::string_view data) {
  llhttp_t* p = &llhttp_->parser;
  switch (phase_) {
    case Phase::kClosed:
      return fail(400, "data after the last request of the connection", 0);
    case Phase::kHead: {
      if (message_done_) reset_message();  // take_request() was not called: drop the request
      const std::size_t n = scanned(head_, head_.scan(data));
      // llhttp sees what was scanned (up to the error, if any) so that its own finding about
      // the same bytes, e.g. an invalid method, is reported rather than ours.
      const llhttp_errno_t err = llhttp_execute(p, data.data(), n);
      field_.keep();  // a field split across reads: its first part leaves `data`
      if (err == HPE_PAUSED && message_done_) {
        llhttp_resume(p);
        phase_ = keep_alive_ ? Phase::kHead : Phase::kClosed;
        return {Event::kMessageComplete, n};
      }
      if (err != HPE_OK) {
        return fail(400, "malformed request: " + error_text(p), n);
      }
      if (scan_error_status_ != 0) return fail(scan_error_status_, scan_error_reason_, n);
      if (head_.done()) {
        if (!headers_done_) return fail(400, "malformed request header section", n);
        phase_ = Phase::kBody;
        return {Event::kHeadersComplete, n};
      }
      return {Event::kNeedMore, n};
    }
    case Phase::kBody: {
      // As in the head: llhttp sees what was scanned, so that where the input is split does
      // not change which finding is reported.
      if (chunked_) data = data.substr(0, scanned(chunks_, chunks_.scan(data)));
      const llhttp_errno_t err = llhttp_execute(p, data.data(), data.size());
      if (err == HPE_OK) {
        if (scan_error_status_ != 0)
          return fail(scan_error_status_, scan_error_reason_, data.size());
        return {Event::kNeedMore, data.size()};
      }
      const std::size_t consumed =
          llhttp_get_error_pos(p) != nullptr
              ? static_cast<std::size_t>(llhttp_get_error_pos(p) - data.data())
              : data.size();
      if (err == HPE_PAUSED && message_done_) {
        llhttp_resume(p);
        phase_ = keep_alive_ ? Phase::kHead : Phase::kClosed;
        return {Event::kMessageComplete, consumed};
      }
      return fail(400, "malformed request body: " + error_text(p), consumed);
    }
  }
  return fail(500, "unreachable", 0);
}

HttpRequest RequestParser::take_request() {
  HttpRequest out = std::move(request_);
  const bool keep = keep_alive_;
  const Phase phase = phase_;
  reset_message();
  keep_alive_ = keep;
  phase_ = phase;
  return out;
}

}  // namespace civicbus::http::detail

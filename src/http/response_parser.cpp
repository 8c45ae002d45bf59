#include "http/response_parser.hpp"

#include <llhttp.h>

#include <vector>

namespace civicbus::http::detail {

namespace {

// status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ]; the SP before an empty reason is
// often left out, which we accept.
bool valid_status_line(std::string_view line) {
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[6] != '.' || line[8] != ' ') {
    return false;
  }
  if (line[5] < '0' || line[5] > '9' || line[7] < '0' || line[7] > '9') return false;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return false;
  }
  return line.size() == 12 || line[12] == ' ';
}

std::string error_text(const llhttp_t* p) {
  const char* reason = llhttp_get_error_reason(p);
  return reason != nullptr ? reason : llhttp_errno_name(llhttp_get_errno(p));
}

}  // namespace

struct ResponseParser::Llhttp {
  llhttp_t parser;
  llhttp_settings_t settings;
};

struct ResponseCallbacks {
  static ResponseParser& self(llhttp_t* p) { return *static_cast<ResponseParser*>(p->data); }

  static int on_status(llhttp_t* p, const char* at, std::size_t n) {
    self(p).response_.reason.append(at, n);
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    ResponseParser& s = self(p);
    if (!s.headers_done_) s.field_.add_name(at, n);
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    ResponseParser& s = self(p);
    if (!s.headers_done_) s.field_.add_value(at, n);
    return 0;
  }
  static int on_header_value_complete(llhttp_t* p) {
    ResponseParser& s = self(p);
    if (!s.headers_done_) {
      const std::string_view name = s.field_.name();
      const std::string_view value = trim_ows(s.field_.value());
      if (name.size() == 14 && same_name(name, "Content-Length")) {
        ++s.content_lengths_;
        s.content_length_.assign(value);
      } else if (name.size() == 17 && same_name(name, "Transfer-Encoding")) {
        if (s.encoded_) s.transfer_encoding_ += ", ";
        s.transfer_encoding_ += value;
        s.encoded_ = true;
      }
      if (s.sink_ != nullptr) {
        s.sink_->field(name, value);
      } else {
        // One allocation for the fields of a usual message instead of growing 1, 2, 4, 8.
        if (s.response_.headers.empty()) s.response_.headers.reserve(12);
        s.response_.headers.add_copy(name, value);
      }
    }
    s.field_.clear();
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) { return self(p).on_headers_complete(); }
  static int on_body(llhttp_t* p, const char* at, std::size_t n) {
    ResponseParser& s = self(p);
    if (s.response_.body.size() + n > s.limits_.max_body_bytes) {
      s.error_ = resource_exhausted("response body is larger than the limit of " +
                                    std::to_string(s.limits_.max_body_bytes) + " bytes");
      return HPE_USER;
    }
    s.response_.body.append(at, n);
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    ResponseParser& s = self(p);
    s.message_done_ = true;
    s.keep_alive_ = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
  }
};

ResponseParser::ResponseParser(ResponseLimits limits, bool head_request)
    : limits_(limits),
      head_request_(head_request),
      llhttp_(std::make_unique<Llhttp>()),
      head_(Peer::kResponse, limits.max_header_count, limits.max_header_bytes, &valid_status_line),
      chunks_(Peer::kResponse, limits.max_header_bytes) {
  llhttp_settings_init(&llhttp_->settings);
  llhttp_->settings.on_status = &ResponseCallbacks::on_status;
  llhttp_->settings.on_header_field = &ResponseCallbacks::on_header_field;
  llhttp_->settings.on_header_value = &ResponseCallbacks::on_header_value;
  llhttp_->settings.on_header_value_complete = &ResponseCallbacks::on_header_value_complete;
  llhttp_->settings.on_headers_complete = &ResponseCallbacks::on_headers_complete;
  llhttp_->settings.on_body = &ResponseCallbacks::on_body;
  llhttp_->settings.on_message_complete = &ResponseCallbacks::on_message_complete;
  llhttp_init(&llhttp_->parser, HTTP_RESPONSE, &llhttp_->settings);
  llhttp_->parser.data = this;
  llhttp_set_lenient_headers(&llhttp_->parser, 0);
  llhttp_set_lenient_chunked_length(&llhttp_->parser, 0);
  llhttp_set_lenient_keep_alive(&llhttp_->parser, 0);
  llhttp_set_lenient_transfer_encoding(&llhttp_->parser, 0);
}

ResponseParser::~ResponseParser() = default;

void ResponseParser::reset(bool head_request) {
  head_request_ = head_request;
  llhttp_init(&llhttp_->parser, HTTP_RESPONSE, &llhttp_->settings);
  llhttp_->parser.data = this;
  llhttp_set_lenient_headers(&llhttp_->parser, 0);
  llhttp_set_lenient_chunked_length(&llhttp_->parser, 0);
  llhttp_set_lenient_keep_alive(&llhttp_->parser, 0);
  llhttp_set_lenient_transfer_encoding(&llhttp_->parser, 0);
  sink_ = nullptr;
  reset_head();
  started_ = false;
  closed_ = false;
  scan_error_ = Status();
  chunked_ = false;
  chunks_.reset();
  keep_alive_ = false;
  error_ = Status();
}

void ResponseParser::set_sink(FieldSink* sink) {
  sink_ = sink;
  if (sink_ != nullptr) sink_->restart();
}

ResponseParser::Step ResponseParser::fail(Status status, std::size_t consumed) {
  closed_ = true;
  if (error_.ok()) error_ = std::move(status);
  return {Event::kError, consumed};
}

void ResponseParser::reset_head() {
  head_.reset();
  // Cleared in place: the next response is parsed into the room this one took.
  clear_for_reuse(response_);
  if (sink_ != nullptr) sink_->restart();
  field_.clear();
  content_lengths_ = 0;
  encoded_ = false;
  transfer_encoding_.clear();
  headers_done_ = false;
  message_done_ = false;
  interim_ = false;
  in_body_ = false;
}

// The scanners are shared with RequestParser; here their findings become a Status.
std::size_t ResponseParser::scanned(const FramingFindings& scanner, std::size_t n) {
  if (scanner.error() != FramingError::kNone) {
    scan_error_ = scanner.error() == FramingError::kLimitExceeded
                      ? resource_exhausted(scanner.reason())
                      : data_loss(scanner.reason());
  }
  return n;
}

int ResponseParser::on_headers_complete() {
  llhttp_t* p = &llhttp_->parser;
  headers_done_ = true;
  auto reject = [&](std::string reason) {
    error_ = data_loss(std::move(reason));
    return -1;
  };
  if (llhttp_get_http_major(p) != 1) return reject("response is not HTTP/1.x");
  const int status = llhttp_get_status_code(p);
  response_.status = status;
  if (status < 100 || status > 599)
    return reject("response status " + std::to_string(status) + " is out of range");
  if (status == 101) return reject("unexpected 101 Switching Protocols (no upgrade was asked)");
  interim_ = status < 200;

  const std::size_t lengths = content_lengths_;
  const std::string_view length = content_length_;
  const bool encoded = encoded_;
  const bool no_body = interim_ || status == 204 || status == 304 || head_request_;
  if (lengths > 0 && encoded) {
    return reject("response has both Content-Length and Transfer-Encoding");
  }
  if (lengths > 1) return reject("response has more than one Content-Length field");
  std::uint64_t content_length = 0;
  if (lengths == 1 && !parse_content_length(length, content_length)) {
    return reject("invalid Content-Length in the response");
  }
  if (encoded && !no_body) {
    if (llhttp_get_http_minor(p) == 0) return reject("Transfer-Encoding in an HTTP/1.0 response");
    const std::vector<std::string_view> codings = split_codings({transfer_encoding_});
    if (codings.size() != 1 || !equals_ignore_case(codings[0], "chunked")) {
      for (std::string_view coding : codings) {
        if (coding.empty()) return reject("empty element in Transfer-Encoding");
        for (char c : coding) {
          if (!is_tchar(c)) return reject("invalid Transfer-Encoding in the response");
        }
      }
      return reject("only the chunked transfer coding is supported in responses");
    }
    chunked_ = true;
  }
  if (no_body) return 1;  // llhttp: skip the body
  if (content_length > limits_.max_body_bytes) {
    error_ = resource_exhausted("response body of " + std::to_string(content_length) +
                                " bytes is larger than the limit of " +
                                std::to_string(limits_.max_body_bytes) + " bytes");
    return -1;
  }
  return 0;
}

ResponseParser::Step ResponseParser::feed(std::string_view data) {
  std::size_t total = 0;
  while (true) {
    const Step step = feed_one(data.substr(total));
    total += step.consumed;
    if (step.event == Event::kMessageComplete && interim_) {
      // A 1xx interim response: forget it and parse the final one.
      reset_head();
      if (total == data.size()) return {Event::kNeedMore, total};
      continue;
    }
    // The head scanner stops at the end of the header section; the body is the next step.
    if (step.event == Event::kNeedMore && step.consumed > 0 && total < data.size()) continue;
    return {step.event, total};
  }
}

ResponseParser::Step ResponseParser::feed_one(std::string_view data) {
  llhttp_t* p = &llhttp_->parser;
  if (closed_) return fail(data_loss("data after the end of the response"), 0);
  if (!data.empty()) started_ = true;
  if (!in_body_) {
    const std::size_t n = scanned(head_, head_.scan(data));
    const llhttp_errno_t err = llhttp_execute(p, data.data(), n);
    field_.keep();  // a field split across reads: its first part leaves `data`
    if (err == HPE_PAUSED && message_done_) {
      llhttp_resume(p);
      if (!interim_) closed_ = true;
      const std::size_t consumed =
          llhttp_get_error_pos(p) != nullptr
              ? static_cast<std::size_t>(llhttp_get_error_pos(p) - data.data())
              : n;
      return {Event::kMessageComplete, consumed};
    }
    if (err != HPE_OK) {
      if (!error_.ok()) return fail(error_, n);
      return fail(data_loss("malformed response: " + error_text(p)), n);
    }
    if (!scan_error_.ok()) return fail(scan_error_, n);
    if (head_.done()) {
      if (!headers_done_) return fail(data_loss("malformed response header section"), n);
      in_body_ = true;
    }
    return {Event::kNeedMore, n};
  }
  if (chunked_) data = data.substr(0, scanned(chunks_, chunks_.scan(data)));
  const llhttp_errno_t err = llhttp_execute(p, data.data(), data.size());
  if (err == HPE_OK) {
    if (!scan_error_.ok()) return fail(scan_error_, data.size());
    return {Event::kNeedMore, data.size()};
  }
  const std::size_t consumed = llhttp_get_error_pos(p) != nullptr
                                   ? static_cast<std::size_t>(llhttp_get_error_pos(p) - data.data())
                                   : data.size();
  if (err == HPE_PAUSED && message_done_) {
    llhttp_resume(p);
    closed_ = true;
    return {Event::kMessageComplete, consumed};
  }
  if (!error_.ok()) return fail(error_, consumed);
  return fail(data_loss("malformed response body: " + error_text(p)), consumed);
}

ResponseParser::Step ResponseParser::finish() {
  if (closed_) return fail(data_loss("connection closed after the response"), 0);
  if (!started_) return fail(unavailable("connection closed before any response byte"), 0);
  if (in_body_ && !chunked_) {
    const llhttp_errno_t err = llhttp_finish(&llhttp_->parser);
    if ((err == HPE_OK || err == HPE_PAUSED) && message_done_) {
      closed_ = true;
      keep_alive_ = false;
      return {Event::kMessageComplete, 0};
    }
  }
  return fail(data_loss("connection closed before the response was complete"), 0);
}

}  // namespace civicbus::http::detail

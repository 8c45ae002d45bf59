// llhttp is compiled twice on x86-64 (baseline and SSE4.2, cmake/CivicbusDependencies.cmake)
// and the faster build is picked at run time. Both must read every message alike: the same
// callbacks with the same spans, the same result and the same error position, above all where
// the SSE4.2 build's 16-byte scans of header names, values and URLs meet a byte they refuse.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#if defined(CIVICBUS_LLHTTP_TWO_BUILDS)
#include <llhttp.h>

extern "C" int civicbus_llhttp_execute_baseline(llhttp__internal_t* state, const char* p,
                                                const char* endp);
extern "C" int civicbus_llhttp_sse42__execute(llhttp__internal_t* state, const char* p,
                                              const char* endp);

namespace {

using Execute = int (*)(llhttp__internal_t*, const char*, const char*);

// What a build reported: every callback with its span, then the result and where it stopped.
struct Transcript {
  std::string events;
  int result = 0;
  long error_offset = -1;
  bool operator==(const Transcript&) const = default;
};

Transcript& of(llhttp_t* p) {
  return *static_cast<Transcript*>(p->data);
}

int span(llhttp_t* p, const char* kind, const char* at, std::size_t n) {
  of(p).events.append(kind).append("[").append(at, n).append("]");
  return 0;
}

int event(llhttp_t* p, const char* kind) {
  of(p).events.append(kind).append(";");
  return 0;
}

Transcript run(Execute execute, llhttp_type_t type, std::string_view input) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_url = [](llhttp_t* p, const char* at, std::size_t n) {
    return span(p, "url", at, n);
  };
  settings.on_status = [](llhttp_t* p, const char* at, std::size_t n) {
    return span(p, "status", at, n);
  };
  settings.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) {
    return span(p, "name", at, n);
  };
  settings.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) {
    return span(p, "value", at, n);
  };
  settings.on_body = [](llhttp_t* p, const char* at, std::size_t n) {
    return span(p, "body", at, n);
  };
  settings.on_headers_complete = [](llhttp_t* p) { return event(p, "head"); };
  settings.on_message_complete = [](llhttp_t* p) { return event(p, "done"); };
  llhttp_t parser;
  llhttp_init(&parser, type, &settings);
  Transcript out;
  parser.data = &out;
  out.result = execute(&parser, input.data(), input.data() + input.size());
  if (out.result != HPE_OK) {
    const char* pos = llhttp_get_error_pos(&parser);
    out.error_offset = pos == nullptr ? -2 : static_cast<long>(pos - input.data());
  }
  return out;
}

void check_same(llhttp_type_t type, const std::string& input) {
  const Transcript baseline = run(&civicbus_llhttp_execute_baseline, type, input);
  const Transcript sse42 = run(&civicbus_llhttp_sse42__execute, type, input);
  INFO("input: " << input);
  CHECK((!baseline.events.empty() || baseline.result != HPE_OK));
  CHECK(baseline.events == sse42.events);
  CHECK(baseline.result == sse42.result);
  CHECK(baseline.error_offset == sse42.error_offset);
}

// Bytes each scan has to tell apart: allowed ones of each class and refused ones.
const std::vector<char> kProbes = {'a',    '~',  ' ',    '\t',   '"',  ':',  '/', '\x7f',
                                   '\x01', '\0', '\x80', '\xff', '\r', '\n', '{', '%'};

}  // namespace

TEST_CASE("llhttp's baseline and SSE4.2 builds read every header value alike") {
  int cases = 0;
  for (std::size_t length = 0; length <= 40; ++length) {
    for (std::size_t at = 0; at <= length; ++at) {
      for (char probe : kProbes) {
        std::string value(length, 'v');
        if (at < length) value[at] = probe;
        const std::string request =
            "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + value + "\r\nContent-Length: 2\r\n\r\nok";
        const std::string response =
            "HTTP/1.1 200 OK\r\nX-Long: " + value + "\r\nContent-Length: 2\r\n\r\nok";
        check_same(HTTP_REQUEST, request);
        check_same(HTTP_RESPONSE, response);
        cases += 2;
      }
    }
  }
  CHECK(cases > 10'000);
}

TEST_CASE("llhttp's baseline and SSE4.2 builds read every header name and URL alike") {
  for (std::size_t length = 1; length <= 40; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      for (char probe : kProbes) {
        std::string token(length, 'n');
        token[at] = probe;
        check_same(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n" + token + ": v\r\n\r\n");
        check_same(HTTP_RESPONSE, "HTTP/1.1 204 No Content\r\n" + token + ": v\r\n\r\n");
        check_same(HTTP_REQUEST, "GET /" + token + "?q=" + token + " HTTP/1.1\r\nHost: a\r\n\r\n");
        check_same(HTTP_REQUEST, token + " / HTTP/1.1\r\nHost: a\r\n\r\n");
      }
    }
  }
}

TEST_CASE("llhttp's baseline and SSE4.2 builds agree on chunked bodies and pipelined messages") {
  check_same(HTTP_REQUEST,
             "POST /permits HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-Field: x\r\n\r\n"
             "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  check_same(HTTP_RESPONSE,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nZ\r\n");
  check_same(HTTP_REQUEST,
             "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
}
#endif

#include "civicbus/http/server.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/raw_client.hpp"

namespace civicbus::http {
namespace {

using civicbus::testing::RawClient;
using civicbus::testing::RawResponse;
using civicbus::testing::ReadEnd;
using namespace std::chrono_literals;

// A server whose handler echoes the request: body as the body, the rest in X- fields.
struct EchoServer {
  explicit EchoServer(HttpServerOptions options = {}) {
    options.bind_address = "127.0.0.1";
    options.port = 0;
    server = std::make_unique<HttpServer>(options, [this](const HttpRequest& request) {
      calls.fetch_add(1);
      if (request.path == "/throw") throw std::runtime_error("handler failed");
      HttpResponse response;
      response.headers.add("X-Method", request.method);
      response.headers.add("X-Path", request.path);
      response.headers.add("X-Query", request.query);
      response.headers.add("X-Fields", std::to_string(request.headers.size()));
      response.headers.add("X-Trailer-Seen",
                           request.headers.contains("Trailer-Field") ? "yes" : "no");
      // A handler cannot frame the response itself; this is dropped.
      response.headers.add("Content-Length", "999");
      response.body = request.method == "HEAD" ? "head body" : request.body;
      return response;
    });
    auto started = server->start();
    REQUIRE(started.ok());
    port = *started;
    REQUIRE(port != 0);
    REQUIRE(port == server->port());
  }
  std::unique_ptr<HttpServer> server;
  std::uint16_t port = 0;
  std::atomic<int> calls{0};
};

// Sends `request`, expects one `status` response and then an orderly close, and that the
// handler never ran.
void expect_rejected(const std::string& request, int status = 400) {
  EchoServer s;
  RawClient client(s.port);
  client.send(request);
  const auto response = client.read_response();
  REQUIRE(response.has_value());
  CHECK(response->status == status);
  CHECK(response->header("Connection") == "close");
  CHECK(client.next_read() == ReadEnd::kClosed);
  CHECK(s.calls.load() == 0);
}

TEST_CASE("http server: GET answered with Content-Length, Date and Server") {
  EchoServer s;
  RawClient client(s.port);
  client.send("GET /permits?page=2 HTTP/1.1\r\nHost: city.example\r\n\r\n");
  const auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->header("Content-Length") == "0");
  CHECK(r->header("Server") == "civicbus");
  CHECK(r->header("Date").size() == 29);  // "Tue, 01 Dec 2026 14:30:00 GMT"
  CHECK(r->header("Date").ends_with(" GMT"));
  CHECK(r->header("X-Method") == "GET");
  CHECK(r->header("X-Path") == "/permits");
  CHECK(r->header("X-Query") == "page=2");
  CHECK(r->header("Connection").empty());
}

TEST_CASE(
    "http server: a handler's field that could split the response is dropped, the rest kept") {
  // Each bad byte in a name or a value, with good fields around it; and a response with only
  // good fields (the server checks them together, and one by one when that finds a bad one).
  struct Bad {
    std::string name;
    std::string value;
  };
  const std::vector<Bad> bads = {{"X-Evil", "a\r\nSet-Cookie: stolen=1"},
                                 {"X-Evil", "bare\rcr"},
                                 {"X-Evil", "bare\nlf"},
                                 {"X-Evil", std::string("nul\0byte", 8)},
                                 {"X-Evil\r\nSet-Cookie", "stolen=1"},
                                 {std::string("X-\0Evil", 7), "v"}};
  for (std::size_t i = 0; i <= bads.size(); ++i) {
    CAPTURE(i);
    HttpServerOptions options;
    options.bind_address = "127.0.0.1";
    options.port = 0;
    HttpServer server(options, [&](const HttpRequest&) {
      HttpResponse response;
      response.headers.add("X-Before", "kept");
      if (i < bads.size()) response.headers.add(bads[i].name, bads[i].value);
      response.headers.add("Date", "Tue, 01 Dec 2026 14:30:00 GMT");
      response.headers.add("X-After", "also kept");
      response.body = "ok";
      return response;
    });
    auto port = server.start();
    REQUIRE(port.ok());
    RawClient client(*port);
    client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
    CHECK(r->header("X-Before") == "kept");
    CHECK(r->header("X-After") == "also kept");
    CHECK(r->header("Date") == "Tue, 01 Dec 2026 14:30:00 GMT");  // the handler's, once
    CHECK(r->head.find("Date:") == r->head.rfind("Date:"));
    CHECK(r->header("Server") == "civicbus");
    CHECK(r->header("Content-Length") == "2");
    CHECK(r->body == "ok");
    CHECK(r->head.find("Evil") == std::string::npos);
    CHECK(r->head.find("stolen") == std::string::npos);
  }
}

TEST_CASE("http server: keep-alive serves two requests on one connection") {
  EchoServer s;
  RawClient client(s.port);
  client.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  auto first = client.read_response();
  REQUIRE(first.has_value());
  CHECK(first->status == 200);
  CHECK(first->body == "hello");
  client.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  auto second = client.read_response();
  REQUIRE(second.has_value());
  CHECK(second->header("X-Path") == "/b");
  CHECK(s.calls.load() == 2);
}

TEST_CASE("http server: a request on a kept-alive connection carries nothing of the one before") {
  // The parser's request is reused in place from one request to the next (emptied, keeping its
  // room): nothing of the first, longer one may show in the second, shorter one.
  EchoServer s;
  RawClient client(s.port);
  client.send(
      "POST /first/path/that/is/long?query=one HTTP/1.1\r\nHost: x\r\n"
      "X-A-Field-With-A-Long-Name: a value long enough to live on the heap\r\nX-B: b\r\n"
      "Content-Length: 5\r\n\r\nhello"
      "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  auto first = client.read_response();
  REQUIRE(first.has_value());
  CHECK(first->header("X-Fields") == "4");
  CHECK(first->header("X-Query") == "query=one");
  CHECK(first->body == "hello");
  auto second = client.read_response();
  REQUIRE(second.has_value());
  CHECK(second->header("X-Method") == "GET");
  CHECK(second->header("X-Path") == "/b");
  CHECK(second->header("X-Query") == "");
  CHECK(second->header("X-Fields") == "1");
  CHECK(second->body.empty());
}

TEST_CASE("http server: Connection: close is honoured") {
  EchoServer s;
  RawClient client(s.port);
  client.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->header("Connection") == "close");
  CHECK(client.next_read() == ReadEnd::kClosed);
}

TEST_CASE("http server: HTTP/1.0 closes unless keep-alive is asked for") {
  EchoServer s;
  {
    RawClient client(s.port);
    client.send("GET /old HTTP/1.0\r\n\r\n");
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
    CHECK(client.next_read() == ReadEnd::kClosed);
  }
  {
    RawClient client(s.port);
    client.send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->header("Connection") == "keep-alive");
    client.send("GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto again = client.read_response();
    REQUIRE(again.has_value());
    CHECK(again->header("X-Path") == "/again");
  }
}

TEST_CASE("http server: three pipelined requests in one write are answered in order") {
  EchoServer s;
  RawClient client(s.port);
  client.send(
      "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      "POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n");
  for (const char* path : {"/1", "/2", "/3"}) {
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->header("X-Path") == path);
  }
  CHECK(s.calls.load() == 3);
}

TEST_CASE("http server: pipelined answers come in batches of max_pipelined_requests") {
  HttpServerOptions options;
  options.max_pipelined_requests = 2;
  EchoServer s(options);
  RawClient client(s.port);
  std::string requests;
  for (int i = 0; i < 5; ++i)
    requests += "GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  client.send(requests);
  for (int i = 0; i < 5; ++i) {
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->header("X-Path") == "/" + std::to_string(i));
  }
}

TEST_CASE("http server: chunked request body is decoded and trailers ignored") {
  EchoServer s;
  RawClient client(s.port);
  client.send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer-Field: x\r\n\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == "hello world");
  CHECK(r->header("X-Trailer-Seen") == "no");
}

TEST_CASE("http server: Expect 100-continue gets 100 before the body is sent") {
  EchoServer s;
  RawClient client(s.port);
  client.send("PUT /doc HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  auto interim = client.read_response();
  REQUIRE(interim.has_value());
  CHECK(interim->status == 100);
  CHECK(s.calls.load() == 0);
  client.send("data");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == "data");
}

TEST_CASE("http server: Expect 100-continue with a body over the limit gets 413, not 100") {
  HttpServerOptions options;
  options.max_body_bytes = 10;
  EchoServer s(options);
  RawClient client(s.port);
  client.send("PUT /doc HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 413);
  CHECK(client.next_read() == ReadEnd::kClosed);
  CHECK(s.calls.load() == 0);
}

TEST_CASE("http server: an Expect other than 100-continue gets 417") {
  expect_rejected("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\nx", 417);
}

TEST_CASE("http server: HEAD gets Content-Length and no body") {
  EchoServer s;
  RawClient client(s.port);
  client.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  auto head = client.read_response(/*head_request=*/true);
  REQUIRE(head.has_value());
  CHECK(head->status == 200);
  CHECK(head->header("Content-Length") == "9");
  auto next = client.read_response();
  REQUIRE(next.has_value());
  CHECK(next->header("X-Path") == "/next");
}

TEST_CASE("http server: a handler that throws gives 500") {
  EchoServer s;
  RawClient client(s.port);
  client.send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 500);
}

// Request smuggling and framing (RFC 9112): 400, close, the handler never runs.

TEST_CASE("http framing: CL.TE (Content-Length then Transfer-Encoding) is rejected") {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nG");
}

TEST_CASE("http framing: TE.CL (Transfer-Encoding then Content-Length) is rejected") {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
      "5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n");
}

TEST_CASE("http framing: duplicate Content-Length, even equal, is rejected") {
  SUBCASE("equal") {
    expect_rejected(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
  }
  SUBCASE("different") {
    expect_rejected(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
  }
  SUBCASE("as a list") {
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello");
  }
}

TEST_CASE("http framing: invalid Content-Length is rejected") {
  for (const char* value : {"+5", "-5", "5 5", "0x5", "5a", "", "99999999999999999999999"}) {
    const std::string shown = value;
    CAPTURE(shown);
    expect_rejected(std::string("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ") + value +
                    "\r\n\r\nhello");
  }
}

TEST_CASE("http framing: obfuscated Transfer-Encoding is rejected") {
  for (const char* te :
       {"Transfer-Encoding: chunked, identity\r\n", "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: identity\r\n", "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding: \x0b"
        "chunked\r\n",
        "Transfer-Encoding: chunked\x0b\r\n", "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding:\r\n chunked\r\n", " Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: \"chunked\"\r\n"}) {
    const std::string shown = te;
    CAPTURE(shown);
    expect_rejected(std::string("POST / HTTP/1.1\r\nHost: x\r\n") + te + "\r\n0\r\n\r\n");
  }
}

TEST_CASE("http framing: Transfer-Encoding in HTTP/1.0 is rejected") {
  expect_rejected("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
}

TEST_CASE("http framing: a coding other than chunked gets 501") {
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                  501);
}

TEST_CASE("http framing: bare LF line endings are rejected") {
  expect_rejected("GET / HTTP/1.1\nHost: x\n\n");
  expect_rejected("GET / HTTP/1.1\r\nHost: x\n\r\n");
}

TEST_CASE("http framing: bare CR is rejected") {
  expect_rejected("GET / HTTP/1.1\rHost: x\r\n\r\n");
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n");
}

TEST_CASE("http framing: obs-fold is rejected") {
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n continued\r\n\r\n");
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n");
}

TEST_CASE("http framing: whitespace between field name and colon is rejected") {
  expect_rejected("GET / HTTP/1.1\r\nHost : x\r\n\r\n");
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nContent-Length\t: 0\r\n\r\n");
}

TEST_CASE("http framing: invalid chunk sizes are rejected") {
  const std::string head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const char* body :
       {"zz\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", "5\r\nhelloXX0\r\n\r\n", "5\nhello\n0\n\n",
        "5\r\nhello\n0\r\n\r\n", " 5\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n"}) {
    std::string shown;
    for (char c : std::string(body))
      shown += c == '\r' ? std::string("\\r") : c == '\n' ? std::string("\\n") : std::string(1, c);
    CAPTURE(shown);
    expect_rejected(head + body);
  }
}

TEST_CASE("http framing: garbage method, target or version is rejected") {
  for (const char* line :
       {"G@T / HTTP/1.1", "GET /a b HTTP/1.1", "GET /\x01 HTTP/1.1", "GET / HTTP/1.1 extra",
        "GET / HTTX/1.1", "GET  / HTTP/1.1", "\x16\x03\x01\x02\x00"}) {
    const std::string shown = line;
    CAPTURE(shown);
    expect_rejected(std::string(line) + "\r\nHost: x\r\n\r\n");
  }
}

TEST_CASE("http framing: missing or repeated Host is rejected") {
  expect_rejected("GET / HTTP/1.1\r\n\r\n");
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
}

TEST_CASE("http framing: a smuggled second request after a rejected one is not served") {
  EchoServer s;
  RawClient client(s.port);
  client.send(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n"
      "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 400);
  CHECK(client.next_read() == ReadEnd::kClosed);
  CHECK(s.calls.load() == 0);
}

// Limits and timeouts.

TEST_CASE("http limits: more than max_header_count fields gets 431") {
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 100; ++i) request += "X-" + std::to_string(i) + ": v\r\n";
  expect_rejected(request + "\r\n", 431);
}

TEST_CASE("http limits: a header section over max_header_bytes gets 431") {
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(17 * 1024, 'a') + "\r\n\r\n",
                  431);
}

TEST_CASE("http limits: a request at the header limits is served") {
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 99; ++i) request += "X-" + std::to_string(i) + ": v\r\n";
  EchoServer s;
  RawClient client(s.port);
  client.send(request + "\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
}

TEST_CASE("http limits: a body over max_body_bytes gets 413") {
  HttpServerOptions options;
  options.max_body_bytes = 8;
  SUBCASE("declared by Content-Length") {
    EchoServer s(options);
    RawClient client(s.port);
    client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n123456789");
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 413);
    CHECK(client.next_read() == ReadEnd::kClosed);
    CHECK(s.calls.load() == 0);
  }
  SUBCASE("found while decoding chunks") {
    EchoServer s(options);
    RawClient client(s.port);
    client.send(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n");
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 413);
    CHECK(client.next_read() == ReadEnd::kClosed);
    CHECK(s.calls.load() == 0);
  }
}

TEST_CASE("http timeouts: a client trickling its header (slowloris) gets 408") {
  HttpServerOptions options;
  options.header_timeout = 200ms;
  EchoServer s(options);
  RawClient client(s.port);
  const auto start = std::chrono::steady_clock::now();
  client.send("GET / HTTP/1.1\r\n");
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(50ms);
    if (!client.send("X-" + std::to_string(i) + ": y\r\n")) break;
  }
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 408);
  CHECK(client.next_read() == ReadEnd::kClosed);
  CHECK(std::chrono::steady_clock::now() - start < 1500ms);
  CHECK(s.calls.load() == 0);
}

TEST_CASE("http timeouts: a connection that sends nothing gets 408 after header_timeout") {
  HttpServerOptions options;
  options.header_timeout = 200ms;
  EchoServer s(options);
  RawClient client(s.port);
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 408);
  CHECK(client.next_read() == ReadEnd::kClosed);
}

TEST_CASE("http timeouts: a body not completed within body_timeout gets 408") {
  HttpServerOptions options;
  options.body_timeout = 200ms;
  EchoServer s(options);
  RawClient client(s.port);
  client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 408);
  CHECK(client.next_read() == ReadEnd::kClosed);
  CHECK(s.calls.load() == 0);
}

TEST_CASE("http timeouts: an idle keep-alive connection is closed after idle_timeout") {
  HttpServerOptions options;
  options.idle_timeout = 200ms;
  EchoServer s(options);
  RawClient client(s.port);
  client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  const auto start = std::chrono::steady_clock::now();
  CHECK(client.next_read() == ReadEnd::kClosed);  // no 408: nothing was asked
  CHECK(std::chrono::steady_clock::now() - start < 1500ms);
}

TEST_CASE("http server: concurrent clients on two threads") {
  HttpServerOptions options;
  options.threads = 2;
  EchoServer s(options);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      RawClient client(s.port);
      for (int i = 0; i < 20; ++i) {
        const std::string body = std::to_string(c) + ":" + std::to_string(i);
        client.send("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body);
        auto r = client.read_response();
        if (r && r->status == 200 && r->body == body) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(ok.load() == 80);
  CHECK(s.calls.load() == 80);
}

TEST_CASE("http server: stop() closes open connections and the listener") {
  EchoServer s;
  RawClient client(s.port);
  client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(client.read_response().has_value());
  const std::uint16_t port = s.port;
  s.server->stop();
  CHECK(client.next_read() == ReadEnd::kClosed);
  CHECK(s.server->port() == 0);
  CHECK_THROWS(RawClient(port));
  s.server->stop();  // idempotent
}

TEST_CASE("http server: start() refuses bad options") {
  HttpServerOptions options;
  options.bind_address = "not an address";
  HttpServer bad_address(options, [](const HttpRequest&) { return HttpResponse(); });
  auto r = bad_address.start();
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kInvalidArgument);

  HttpServer no_handler(HttpServerOptions{}, HttpHandler());
  CHECK(no_handler.start().status().code() == ErrorCode::kInvalidArgument);

  HttpServerOptions zero;
  zero.max_pipelined_requests = 0;
  HttpServer bad_limits(zero, [](const HttpRequest&) { return HttpResponse(); });
  CHECK(bad_limits.start().status().code() == ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace civicbus::http

namespace civicbus::http {
namespace {

using civicbus::testing::RawClient;
using namespace std::chrono_literals;

std::string get_request(const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n";
}

TEST_CASE("http server async: a responder sent from another thread answers the request") {
  HttpServerOptions options;
  options.threads = 2;
  std::mutex mu;
  std::vector<std::thread> helpers;
  std::atomic<int> max_worker{-1};
  HttpServer server(options, [&](HttpRequest request, HttpResponder responder) {
    const int worker = static_cast<int>(responder.worker());
    if (worker > max_worker.load()) max_worker = worker;
    std::lock_guard lock(mu);
    helpers.emplace_back(
        [request = std::move(request), responder = std::move(responder)]() mutable {
          std::this_thread::sleep_for(5ms);
          responder.send(HttpResponse::text(200, request.path + " from " + request.remote_address));
        });
  });
  REQUIRE(server.start().ok());
  {
    RawClient a(server.port());
    RawClient b(server.port());
    for (int i = 0; i < 3; ++i) {
      a.send(get_request("/a" + std::to_string(i)));
      b.send(get_request("/b" + std::to_string(i)));
      const auto ra = a.read_response();
      const auto rb = b.read_response();
      REQUIRE(ra.has_value());
      REQUIRE(rb.has_value());
      CHECK(ra->body == "/a" + std::to_string(i) + " from 127.0.0.1");
      CHECK(rb->body == "/b" + std::to_string(i) + " from 127.0.0.1");
    }
  }
  // Two connections went to the two workers in turn.
  CHECK(max_worker.load() == 1);
  server.stop();
  std::lock_guard lock(mu);
  for (auto& t : helpers) t.join();
}

TEST_CASE("http server async: pipelined requests keep their order when answered out of order") {
  std::mutex mu;
  std::vector<HttpResponder> held;
  std::vector<std::string> paths;
  HttpServer server({}, [&](HttpRequest request, HttpResponder responder) {
    if (request.path == "/now") return responder.send(HttpResponse::text(200, "now"));
    std::lock_guard lock(mu);
    paths.push_back(request.path);
    held.push_back(std::move(responder));
  });
  REQUIRE(server.start().ok());
  RawClient client(server.port());
  client.send(get_request("/later") + get_request("/now"));
  // The second request is not read before the first is answered.
  std::this_thread::sleep_for(50ms);
  {
    std::lock_guard lock(mu);
    REQUIRE(held.size() == 1);
    held[0].send(HttpResponse::text(202, "later"));
  }
  const auto first = client.read_response();
  const auto second = client.read_response();
  REQUIRE(first.has_value());
  REQUIRE(second.has_value());
  CHECK(first->status == 202);
  CHECK(first->body == "later");
  CHECK(second->body == "now");
}

TEST_CASE("http server async: a dropped responder or a throwing handler gives 500") {
  HttpServer server({}, [&](HttpRequest request, HttpResponder responder) {
    if (request.path == "/throw") throw std::runtime_error("handler failed");
    if (request.path == "/twice") {
      responder.send(HttpResponse::text(200, "first"));
      responder.send(HttpResponse::text(200, "second"));  // dropped
      return;
    }
    // /drop: the responder goes out of scope unsent.
  });
  REQUIRE(server.start().ok());
  RawClient client(server.port());
  client.send(get_request("/drop"));
  auto r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 500);
  client.send(get_request("/throw"));
  r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 500);
  client.send(get_request("/twice"));
  r = client.read_response();
  REQUIRE(r.has_value());
  CHECK(r->body == "first");
}

TEST_CASE("http server async: stop() while a handler holds a responder, which is sent later") {
  std::mutex mu;
  std::optional<HttpResponder> held;
  auto server =
      std::make_unique<HttpServer>(HttpServerOptions{}, [&](HttpRequest, HttpResponder responder) {
        std::lock_guard lock(mu);
        held = std::move(responder);
      });
  REQUIRE(server->start().ok());
  RawClient client(server->port());
  client.send(get_request("/wait"));
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(5ms);
    std::lock_guard lock(mu);
    if (held) break;
  }
  server->stop();
  CHECK(client.next_read() != civicbus::testing::ReadEnd::kData);
  // The connection is gone: sending drops the response without touching it.
  std::lock_guard lock(mu);
  REQUIRE(held.has_value());
  held->send(HttpResponse::text(200, "too late"));
  held.reset();
  server.reset();
}

}  // namespace
}  // namespace civicbus::http

#include "civicbus/http/client.hpp"
#include "support/test_pki.hpp"

namespace civicbus::http {
namespace {

TEST_CASE("http server and client over TLS: requests, peer certificates and certificate reload") {
  const auto& pki = civicbus::testing::pki();
  HttpServerOptions options;
  TlsServerOptions tls;
  tls.default_certificate = {pki.server, pki.server_key};
  tls.client_ca_file = pki.ca;
  tls.client_auth = TlsClientAuth::kOptional;
  options.tls = tls;
  HttpServer server(options, [](const HttpRequest& r) {
    std::string who = r.peer_certificate ? r.peer_certificate->common_name : "anonymous";
    return HttpResponse::text(200, std::string(r.tls ? "tls " : "plain ") + who + " " + r.body);
  });
  auto port = server.start();
  REQUIRE(port.ok());
  const std::string address = "127.0.0.1:" + std::to_string(*port);

  HttpClientOptions co;
  co.tls = TlsClientOptions{};
  co.tls->ca_file = pki.ca;
  auto client = std::move(HttpClient::create(co)).value();
  HttpRequest post;
  post.method = "POST";
  post.target = "/x";
  post.body = std::string(100'000, 'b');  // several TLS records
  auto r = client->send(address, post);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->body == "tls anonymous " + post.body);
  // Keep-alive: the second request reuses the TLS connection.
  post.body = "again";
  r = client->send(address, post);
  REQUIRE(r.ok());
  CHECK(r->body == "tls anonymous again");

  // Mutual TLS: the server sees the client's certificate.
  HttpClientOptions mtls = co;
  mtls.tls->client_cert_file = pki.client;
  mtls.tls->client_key_file = pki.client_key;
  auto with_cert = std::move(HttpClient::create(mtls)).value();
  r = with_cert->send(address, post);
  REQUIRE(r.ok());
  CHECK(r->body == "tls permit-service again");

  // A client that does not trust the server's CA fails with a clear, non-retried error.
  HttpClientOptions untrusting;
  untrusting.tls = TlsClientOptions{};
  untrusting.tls->ca_file = pki.untrusted;
  auto doubter = std::move(HttpClient::create(untrusting)).value();
  r = doubter->send(address, post);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kUnauthenticated);
  CHECK(r.status().message().find("certificate") != std::string::npos);

  // Reload to another certificate: new connections see it.
  tls.default_certificate = {pki.server2, pki.server2_key};
  REQUIRE(server.reload_tls(tls).ok());
  auto fresh = std::move(HttpClient::create(co)).value();
  r = fresh->send(address, post);
  REQUIRE(r.ok());
  // A bad key file keeps the current certificates.
  tls.default_certificate = {pki.server, pki.server2_key};
  CHECK_FALSE(server.reload_tls(tls).ok());
  r = std::move(HttpClient::create(co)).value()->send(address, post);
  CHECK(r.ok());
  // Plain HTTP to a TLS port is refused, not served.
  auto plain = std::move(HttpClient::create({})).value();
  r = plain->send(address, post);
  CHECK_FALSE(r.ok());
}

}  // namespace
}  // namespace civicbus::http

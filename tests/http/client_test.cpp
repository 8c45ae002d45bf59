#include "civicbus/http/client.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/http/server.hpp"
#include "http/raw_server.hpp"

namespace civicbus::http {
namespace {

using civicbus::testing::RawConnection;
using civicbus::testing::RawServer;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

std::unique_ptr<HttpClient> make_client(HttpClientOptions options = {}) {
  auto client = HttpClient::create(options);
  REQUIRE(client.ok());
  return std::move(client).value();
}

HttpRequest request(std::string method, std::string target, std::string body = {}) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  return r;
}

// Answers every request on the connection with `response`, keeping it open.
RawServer::Script serve_all(std::string response) {
  return [response](RawConnection& c, int) {
    while (c.read_request()) {
      if (!c.send(response)) return;
    }
  };
}

long elapsed_ms(SteadyClock::time_point since) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - since).count());
}

TEST_CASE("http client: requests to HttpServer, blocking and asynchronous") {
  HttpServer server({}, [](const HttpRequest& r) {
    HttpResponse response = HttpResponse::text(201, r.body);
    response.headers.add("X-Method", r.method);
    response.headers.add("X-Target", r.target);
    response.headers.add("X-Host", std::string(r.headers.get("Host").value_or("")));
    response.headers.add("X-Length", std::string(r.headers.get("Content-Length").value_or("-")));
    return response;
  });
  const auto port = server.start();
  REQUIRE(port.ok());
  const std::string upstream = "127.0.0.1:" + std::to_string(*port);
  auto client = make_client();

  HttpRequest post = request("POST", "/permits?x=1", "{\"id\":7}");
  post.headers.add("Content-Length", "999");  // replaced by the client
  post.headers.add("Connection", "close");    // replaced by the client
  auto r = client->send(upstream, post);
  REQUIRE(r.ok());
  CHECK(r->status == 201);
  CHECK(r->body == "{\"id\":7}");
  CHECK(r->headers.get("X-Method") == "POST");
  CHECK(r->headers.get("X-Target") == "/permits?x=1");
  CHECK(r->headers.get("X-Host") == upstream);
  CHECK(r->headers.get("X-Length") == "8");
  CHECK(r->headers.get("Server") == "civicbus");

  auto head = client->send(upstream, request("HEAD", "/h"));
  REQUIRE(head.ok());
  CHECK(head->body.empty());
  CHECK(head->headers.get("X-Length") == "-");

  std::promise<Result<HttpResponse>> promise;
  client->send_async(upstream, request("GET", ""),
                     [&](Result<HttpResponse> result) { promise.set_value(std::move(result)); });
  auto async = promise.get_future().get();
  REQUIRE(async.ok());
  CHECK(async->headers.get("X-Target") == "/");

  // A name goes through the resolver; Host carries it as given.
  auto named = client->send("localhost:" + std::to_string(*port), request("GET", "/n"));
  REQUIRE(named.ok());
  CHECK(named->headers.get("X-Host") == "localhost:" + std::to_string(*port));

  // The blocking form from a callback would wait for its own thread.
  std::promise<Status> nested;
  client->send_async(upstream, request("GET", "/"), [&](Result<HttpResponse>) {
    nested.set_value(client->send(upstream, request("GET", "/")).status());
  });
  CHECK(nested.get_future().get().code() == ErrorCode::kFailedPrecondition);
}

TEST_CASE("http client: keep-alive connections are reused") {
  RawServer server(serve_all(std::string(kOk)));
  auto client = make_client();
  for (int i = 0; i < 5; ++i) {
    auto r = client->send(server.address(), request("GET", "/"));
    REQUIRE(r.ok());
    CHECK(r->body == "ok");
  }
  CHECK(server.accepted() == 1);
}

TEST_CASE("http client: idle connections older than their lifetime are not reused") {
  RawServer server(serve_all(std::string(kOk)));
  HttpClientOptions options;
  options.idle_connection_lifetime = 20ms;
  auto client = make_client(options);
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  CHECK(server.accepted() == 1);
  std::this_thread::sleep_for(40ms);
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  CHECK(server.accepted() == 2);
}

TEST_CASE("http client: a response with Connection: close is not pooled") {
  RawServer server(
      serve_all("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"));
  auto client = make_client();
  for (int i = 0; i < 3; ++i) REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  CHECK(server.accepted() == 3);
}

TEST_CASE("http client: connections per upstream are limited and further requests wait") {
  std::atomic<int> busy{0};
  std::atomic<int> max_busy{0};
  RawServer server([&](RawConnection& c, int) {
    while (c.read_request()) {
      const int now = ++busy;
      int seen = max_busy.load();
      while (now > seen && !max_busy.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(60ms);
      --busy;
      if (!c.send(kOk)) return;
    }
  });
  HttpClientOptions options;
  options.max_connections_per_upstream = 2;
  auto client = make_client(options);
  std::vector<std::promise<Result<HttpResponse>>> promises(6);
  for (auto& p : promises) {
    client->send_async(server.address(), request("GET", "/"),
                       [&p](Result<HttpResponse> r) { p.set_value(std::move(r)); });
  }
  for (auto& p : promises) CHECK(p.get_future().get().ok());
  CHECK(server.accepted() == 2);
  CHECK(max_busy.load() == 2);
}

TEST_CASE("http client: waiting for a busy pool times out") {
  RawServer server([](RawConnection& c, int) {
    if (c.read_request()) c.wait_closed();  // never answers
  });
  HttpClientOptions options;
  options.max_connections_per_upstream = 1;
  options.request_timeout = 150ms;
  auto client = make_client(options);
  std::promise<Result<HttpResponse>> first;
  client->send_async(server.address(), request("GET", "/"),
                     [&](Result<HttpResponse> r) { first.set_value(std::move(r)); });
  auto second = client->send(server.address(), request("GET", "/"));
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == ErrorCode::kDeadlineExceeded);
  CHECK(first.get_future().get().status().code() == ErrorCode::kDeadlineExceeded);
}

TEST_CASE("http client: an idle connection the server closed is replaced") {
  RawServer server([](RawConnection& c, int) {
    if (c.read_request()) c.send(kOk);  // then closes, the response said keep-alive
  });
  auto client = make_client();
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  std::this_thread::sleep_for(30ms);  // the FIN arrives
  auto r = client->send(server.address(), request("POST", "/", "x"));
  REQUIRE(r.ok());  // detected before writing, so even a POST goes on a new connection
  CHECK(server.accepted() == 2);
}

// The first connection answers one request, reads the next one and closes without answering:
// the race in which a pooled connection is closed as the request is written.
RawServer::Script close_on_second_request() {
  return [](RawConnection& c, int index) {
    if (index == 0) {
      if (c.read_request()) c.send(kOk);
      c.read_request();
      return;
    }
    while (c.read_request()) {
      if (!c.send(kOk)) return;
    }
  };
}

TEST_CASE("http client: idempotent request retried at once when a reused connection closes") {
  RawServer server(close_on_second_request());
  HttpClientOptions options;
  options.max_retries = 0;  // the stale-connection retry is not a counted retry
  auto client = make_client(options);
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  auto r = client->send(server.address(), request("PUT", "/", "x"));
  REQUIRE(r.ok());
  CHECK(r->body == "ok");
  CHECK(server.accepted() == 2);
}

TEST_CASE("http client: POST is not retried once sent") {
  RawServer server(close_on_second_request());
  auto client = make_client();
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  auto r = client->send(server.address(), request("POST", "/", "payment"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kUnavailable);
  CHECK(r.status().message().find(server.address()) != std::string::npos);
  CHECK(r.status().message().find("not retried") != std::string::npos);
  CHECK(server.accepted() == 1);
}

TEST_CASE("http client: a fresh connection closed without a response") {
  std::atomic<int> requests{0};
  RawServer server([&](RawConnection& c, int) {
    if (c.read_request()) ++requests;
  });
  HttpClientOptions options;
  options.retry_initial_backoff = 5ms;
  options.retry_max_backoff = 5ms;
  auto client = make_client(options);
  SUBCASE("GET is retried") {
    auto r = client->send(server.address(), request("GET", "/"));
    CHECK(r.status().code() == ErrorCode::kUnavailable);
    CHECK(requests.load() == 3);
  }
  SUBCASE("PATCH is not") {
    auto r = client->send(server.address(), request("PATCH", "/", "x"));
    CHECK(r.status().code() == ErrorCode::kUnavailable);
    CHECK(requests.load() == 1);
  }
}

TEST_CASE("http client: 503 then 200 is retried for GET, not for POST") {
  std::atomic<int> requests{0};
  RawServer server([&](RawConnection& c, int) {
    while (c.read_request()) {
      const bool first = requests.fetch_add(1) % 2 == 0;
      if (!c.send(first ? "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
                        : kOk)) {
        return;
      }
    }
  });
  HttpClientOptions options;
  options.retry_initial_backoff = 10ms;
  auto client = make_client(options);
  auto get = client->send(server.address(), request("GET", "/"));
  REQUIRE(get.ok());
  CHECK(get->status == 200);
  CHECK(requests.load() == 2);
  auto post = client->send(server.address(), request("POST", "/", "x"));
  REQUIRE(post.ok());
  CHECK(post->status == 503);
  CHECK(post->body == "busy");
  CHECK(requests.load() == 3);
  CHECK(server.accepted() == 1);
}

TEST_CASE("http client: retries are counted and backoff is bounded") {
  std::atomic<int> requests{0};
  RawServer server([&](RawConnection& c, int) {
    while (c.read_request()) {
      ++requests;
      if (!c.send("HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n")) return;
    }
  });
  HttpClientOptions options;
  options.max_retries = 3;
  options.retry_initial_backoff = 20ms;
  options.retry_max_backoff = 40ms;
  auto client = make_client(options);
  const auto start = SteadyClock::now();
  auto r = client->send(server.address(), request("DELETE", "/permits/7"));
  const long ms = elapsed_ms(start);
  REQUIRE(r.ok());
  CHECK(r->status == 504);  // the last answer is returned
  CHECK(requests.load() == 4);
  CHECK(ms >= 20 + 40 + 40);  // 20, then 40 twice (capped, not 80)
  CHECK(ms < 400);
}

TEST_CASE("http client: connection refused is retried, then kUnavailable naming the upstream") {
  std::uint16_t port;
  {
    RawServer closed([](RawConnection&, int) {});
    port = closed.port();
  }
  HttpClientOptions options;
  options.retry_initial_backoff = 10ms;
  auto client = make_client(options);
  const auto start = SteadyClock::now();
  auto r = client->send("127.0.0.1:" + std::to_string(port), request("POST", "/", "x"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kUnavailable);
  CHECK(r.status().message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(r.status().message().find("3 attempts") != std::string::npos);
  CHECK(elapsed_ms(start) >= 10 + 20);
}

TEST_CASE("http client: a slow server hits request_timeout") {
  RawServer server([](RawConnection& c, int) {
    if (c.read_request()) {
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nslo");
      c.wait_closed();
    }
  });
  HttpClientOptions options;
  options.request_timeout = 200ms;
  auto client = make_client(options);
  const auto start = SteadyClock::now();
  auto r = client->send(server.address(), request("GET", "/slow"));
  const long ms = elapsed_ms(start);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kDeadlineExceeded);
  CHECK(r.status().message().find(server.address()) != std::string::npos);
  CHECK(ms >= 190);
  CHECK(ms < 600);
  CHECK(server.accepted() == 1);  // timeouts are not retried
}

TEST_CASE("http client: response framing") {
  RawServer server([](RawConnection& c, int) {
    while (auto req = c.read_request()) {
      const std::string& q = *req;
      if (q.starts_with("GET /close ")) {
        c.send("HTTP/1.1 200 OK\r\n\r\nuntil the end");
        return;
      }
      if (q.starts_with("GET /chunked ")) {
        c.send(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
      } else if (q.starts_with("HEAD ")) {
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
      } else if (q.starts_with("GET /204 ")) {
        c.send("HTTP/1.1 204 No Content\r\n\r\n");
      } else if (q.starts_with("GET /interim ")) {
        c.send("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
        std::this_thread::sleep_for(5ms);
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      } else {
        c.send(kOk);
      }
    }
  });
  auto client = make_client();
  auto chunked = client->send(server.address(), request("GET", "/chunked"));
  REQUIRE(chunked.ok());
  CHECK(chunked->body == "hello world");
  auto head = client->send(server.address(), request("HEAD", "/"));
  REQUIRE(head.ok());
  CHECK(head->body.empty());
  auto no_content = client->send(server.address(), request("GET", "/204"));
  REQUIRE(no_content.ok());
  CHECK(no_content->status == 204);
  auto interim = client->send(server.address(), request("GET", "/interim"));
  REQUIRE(interim.ok());
  CHECK(interim->status == 200);
  CHECK(interim->body == "ok");
  CHECK_FALSE(interim->headers.contains("Link"));
  CHECK(server.accepted() == 1);  // all of that on one kept-alive connection
  auto close = client->send(server.address(), request("GET", "/close"));
  REQUIRE(close.ok());
  CHECK(close->body == "until the end");
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  CHECK(server.accepted() == 2);  // a close-delimited body ends its connection
}

TEST_CASE("http client: malformed responses are refused") {
  const std::vector<std::string> responses = {
      // llhttp 8.1 does not check the CRLF after chunk data; our scanner does.
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nX: y\r\n folded\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
      "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  // then closed
  };
  RawServer server([&](RawConnection& c, int index) {
    const auto i = static_cast<std::size_t>(index);
    // After them: a response followed by bytes nobody asked for, then a good one.
    if (c.read_request())
      c.send(i < responses.size()    ? responses[i]
             : i == responses.size() ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"
                                     : std::string(kOk));
    if (i == responses.size()) c.wait_closed();
  });
  auto client = make_client();
  for (std::size_t i = 0; i < responses.size(); ++i) {
    CAPTURE(responses[i]);
    auto r = client->send(server.address(), request("POST", "/", "x"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kDataLoss);
    CHECK(r.status().message().find("malformed response") != std::string::npos);
  }
  CHECK(server.accepted() == static_cast<int>(responses.size()));
  // The response is whole; the extra bytes only cost the connection its place in the pool.
  auto extra = client->send(server.address(), request("GET", "/"));
  REQUIRE(extra.ok());
  CHECK(extra->body == "ok");
  REQUIRE(client->send(server.address(), request("GET", "/")).ok());
  CHECK(server.accepted() == static_cast<int>(responses.size()) + 2);
}

TEST_CASE("http client: response limits") {
  RawServer server([](RawConnection& c, int index) {
    if (!c.read_request()) return;
    if (index == 0)
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
    if (index == 1) {
      c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + std::string(64, 'x') +
             "\r\n40\r\n" + std::string(64, 'x') + "\r\n0\r\n\r\n");
    }
    if (index == 2) c.send("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n");
  });
  HttpClientOptions options;
  options.max_response_body_bytes = 99;
  options.max_response_header_count = 3;
  auto client = make_client(options);
  for (int i = 0; i < 3; ++i) {
    auto r = client->send(server.address(), request("GET", "/"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kResourceExhausted);
  }
}

TEST_CASE("http client: invalid input") {
  CHECK_FALSE(Upstream::parse("no-port").ok());
  CHECK_FALSE(Upstream::parse("host:0").ok());
  CHECK_FALSE(Upstream::parse("host:70000").ok());
  CHECK_FALSE(Upstream::parse("a b:80").ok());
  auto v6 = Upstream::parse("[::1]:8080");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->to_string() == "[::1]:8080");
  HttpClientOptions bad;
  bad.max_connections_per_upstream = 0;
  CHECK(HttpClient::create(bad).status().code() == ErrorCode::kInvalidArgument);

  auto client = make_client();
  CHECK(client->send("nohost", request("GET", "/")).status().code() == ErrorCode::kInvalidArgument);
  CHECK(client->send("127.0.0.1:9", request("GET", "/a b")).status().code() ==
        ErrorCode::kInvalidArgument);
  HttpRequest split = request("GET", "/");
  split.headers.add("X-Evil", "a\r\nInjected: 1");
  CHECK(client->send("127.0.0.1:9", split).status().code() == ErrorCode::kInvalidArgument);
  CHECK(client->send("127.0.0.1:9", request("GE T", "/")).status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("http client: destroying the client cancels requests in flight") {
  RawServer server([](RawConnection& c, int) {
    if (c.read_request()) c.wait_closed();
  });
  std::promise<Result<HttpResponse>> promise;
  {
    auto client = make_client();
    client->send_async(server.address(), request("GET", "/"),
                       [&](Result<HttpResponse> r) { promise.set_value(std::move(r)); });
    std::this_thread::sleep_for(30ms);
  }
  CHECK(promise.get_future().get().status().code() == ErrorCode::kCancelled);
}

}  // namespace
}  // namespace civicbus::http

// The TLS layer over real loopback sockets: our client against our server, and each against
// the OpenSSL command-line tools. Certificates are made at test time with the openssl CLI.
#include "http/tls.hpp"

#include <doctest/doctest.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/mbedtls_compat.hpp"
#include "support/test_pki.hpp"
#include "support/test_support.hpp"

namespace civicbus::http {
namespace {

using asio::ip::tcp;
using detail::TlsClientContext;
using detail::TlsServerContext;
using detail::TlsServerContextHolder;
using detail::TlsStream;
using namespace std::chrono_literals;
namespace ct = civicbus::testing;

using ct::pki;
using ct::Pki;

std::shared_ptr<const TlsServerContext> server_context(const TlsServerOptions& options) {
  auto context = TlsServerContext::create(options);
  INFO(context.status().to_string());
  REQUIRE(context.ok());
  return *context;
}

TlsServerOptions server_options(const std::string& cert, const std::string& key) {
  TlsServerOptions options;
  options.default_certificate = {cert, key};
  return options;
}

std::shared_ptr<const TlsClientContext> client_context(TlsClientOptions options = {}) {
  if (options.ca_file.empty()) options.ca_file = pki().ca;
  auto context = TlsClientContext::create(options);
  INFO(context.status().to_string());
  REQUIRE(context.ok());
  return *context;
}

void rethrow(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
}

// ---- a loopback harness: our server side ----

// What one accepted connection saw.
struct Served {
  Status handshake = Status(ErrorCode::kInternal, "handshake not finished");
  bool finished = false;
  std::optional<PeerCertificate> peer;
  std::string version, cipher_suite, server_name, received;
};

// Accepts on 127.0.0.1:0; each connection takes the context `source` returns at accept time,
// handshakes and echoes what it reads until the peer closes. Single-threaded.
class Harness {
 public:
  explicit Harness(std::function<std::shared_ptr<const TlsServerContext>()> source)
      : source_(std::move(source)),
        acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port = acceptor_.local_endpoint().port();
  }

  asio::io_context io;
  std::uint16_t port = 0;
  std::vector<std::shared_ptr<Served>> served;

  // Runs `body` beside the accept loop until it returns (bounded).
  void run(std::function<asio::awaitable<void>()> body) {
    asio::co_spawn(io, accept_loop(), [](std::exception_ptr e) { rethrow(e); });
    bool done = false;
    asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
      done = true;
      asio::error_code ignored;
      acceptor_.close(ignored);
      io.stop();
      rethrow(e);
    });
    io.run_for(60s);
    REQUIRE(done);
  }

  // Waits until `n` connections have finished their server side (bounded).
  asio::awaitable<void> wait_served(std::size_t n) {
    asio::steady_timer timer(io);
    for (int i = 0; i < 1000; ++i) {
      std::size_t finished = 0;
      for (const auto& s : served) finished += s->finished ? 1 : 0;
      if (served.size() >= n && finished >= n) co_return;
      timer.expires_after(5ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    FAIL("the server side did not finish");
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      asio::error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      auto result = std::make_shared<Served>();
      served.push_back(result);
      asio::co_spawn(io, serve(std::move(socket), source_(), result),
                     [](std::exception_ptr e) { rethrow(e); });
    }
  }

  static asio::awaitable<void> serve(tcp::socket socket,
                                     std::shared_ptr<const TlsServerContext> context,
                                     std::shared_ptr<Served> out) {
    auto created = TlsStream::server(socket, std::move(context));
    REQUIRE(created.ok());
    TlsStream& stream = **created;
    const Status status = co_await stream.handshake();
    out->handshake = status;
    out->server_name = stream.server_name();
    if (!status.ok()) {
      out->finished = true;
      co_return;
    }
    out->peer = stream.peer_certificate();
    out->version = stream.version();
    out->cipher_suite = stream.cipher_suite();
    std::array<char, 4096> buffer;
    for (;;) {
      asio::error_code ec;
      const std::size_t n = co_await stream.read_some(asio::buffer(buffer), ec);
      if (ec) break;
      out->received.append(buffer.data(), n);
      co_await stream.write_all(asio::buffer(buffer.data(), n), ec);
      if (ec) break;
    }
    co_await stream.shutdown();
    out->finished = true;
  }

  std::function<std::shared_ptr<const TlsServerContext>()> source_;
  tcp::acceptor acceptor_;
};

// ---- our client side ----

struct TestClient {
  explicit TestClient(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::unique_ptr<TlsStream> stream;
  Status handshake = Status(ErrorCode::kInternal, "not connected");

  // (No default arguments or temporaries with destructors in co_await expressions: GCC 12
  // mishandles some of them.)
  asio::awaitable<Status> connect(std::uint16_t port,
                                  std::shared_ptr<const TlsClientContext> context,
                                  const char* host = "localhost") {
    co_await socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                  asio::use_awaitable);
    auto created = TlsStream::client(socket, std::move(context), host);
    REQUIRE(created.ok());
    stream = std::move(created).value();
    handshake = co_await stream->handshake();
    co_return handshake;
  }

  // Writes `message` and reads back as many bytes; on an error returns "error: ...".
  asio::awaitable<std::string> echo(std::string_view text) {
    const std::string message(text);
    asio::error_code ec;
    co_await stream->write_all(asio::buffer(message), ec);
    if (ec) co_return "error: " + ec.message();
    std::string got;
    std::array<char, 4096> buffer;
    while (got.size() < message.size()) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buffer), ec);
      if (ec) co_return "error: " + ec.message();
      got.append(buffer.data(), n);
    }
    co_return got;
  }

  asio::awaitable<void> close() {
    if (stream) co_await stream->shutdown();
    asio::error_code ignored;
    socket.close(ignored);
  }
};

// ---- tests ----

TEST_CASE("tls options are validated once") {
  TlsServerOptions server;
  CHECK(server.validate().code() == ErrorCode::kInvalidArgument);
  server.default_certificate = {"cert.pem", "key.pem"};
  CHECK(server.validate().ok());
  server.sni_certificates.push_back({"*.*.example.org", "a.pem", "a.key"});
  CHECK(server.validate().message().find("*.*.example.org") != std::string::npos);
  server.sni_certificates = {{"*.example.org", "a.pem", "a.key"}, {"api.example.org", "b", "c"}};
  CHECK(server.validate().ok());
  server.client_auth = TlsClientAuth::kRequired;
  CHECK(server.validate().message().find("client_ca_file") != std::string::npos);
  server.client_ca_file = "ca.pem";
  CHECK(server.validate().ok());
  server.min_version = TlsVersion::kTls13;
  CHECK(server.validate().ok() == mbedtls_compat::kHasTls13);

  TlsClientOptions client;
  CHECK(client.validate().ok());
  client.client_cert_file = "c.pem";
  CHECK(client.validate().code() == ErrorCode::kInvalidArgument);
  client.client_key_file = "c.key";
  CHECK(client.validate().ok());

  // Missing files fail at creation, naming the file.
  auto missing =
      TlsServerContext::create(server_options("/nonexistent/cert.pem", pki().server_key));
  REQUIRE(!missing.ok());
  CHECK(missing.status().message().find("/nonexistent/cert.pem") != std::string::npos);
  // A key that belongs to another certificate.
  auto mismatched = TlsServerContext::create(server_options(pki().server, pki().api_key));
  REQUIRE(!mismatched.ok());
  CHECK(mismatched.status().message().find("does not belong") != std::string::npos);
}

TEST_CASE("tls echo between our client and our server over loopback") {
  auto context = server_context(server_options(pki().server, pki().server_key));
  Harness h([&] { return context; });
  std::string echoed, version, suite;
  std::optional<PeerCertificate> server_cert;
  h.run([&]() -> asio::awaitable<void> {
    TestClient c(h.io);
    auto context1 = client_context();
    const Status s = co_await c.connect(h.port, context1);
    INFO(s.to_string());
    REQUIRE(s.ok());
    version = c.stream->version();
    suite = c.stream->cipher_suite();
    server_cert = c.stream->peer_certificate();
    // More than one TLS record each way.
    std::string big(100000, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    echoed = co_await c.echo("hello over tls");
    const std::string big_echo = co_await c.echo(big);
    CHECK(big_echo == big);
    co_await c.close();
    co_await h.wait_served(1);
  });
  CHECK(echoed == "hello over tls");
  CHECK((version == "TLSv1.2" || version == "TLSv1.3"));
  if (!mbedtls_compat::kHasTls13) CHECK(version == "TLSv1.2");
  CHECK(suite.find("GCM") != std::string::npos);
  REQUIRE(server_cert.has_value());
  CHECK(server_cert->common_name == "localhost");
  CHECK(server_cert->sha256_fingerprint == pki().fingerprint(pki().server));
  REQUIRE(h.served.size() == 1);
  CHECK(h.served[0]->handshake.ok());
  CHECK(h.served[0]->server_name == "localhost");
  CHECK(!h.served[0]->peer.has_value());  // no client certificate asked for
  CHECK(h.served[0]->received.size() == 100000 + 14);
}

TEST_CASE("tls client checks an IP address against the certificate's IP SANs") {
  auto good = server_context(server_options(pki().server, pki().server_key));
  auto no_ip = server_context(server_options(pki().api, pki().api_key));
  std::shared_ptr<const TlsServerContext> current = good;
  Harness h([&] { return current; });
  Status with_ip, without_ip;
  h.run([&]() -> asio::awaitable<void> {
    TestClient a(h.io);
    auto context2 = client_context();
    with_ip = co_await a.connect(h.port, context2, "127.0.0.1");
    if (with_ip.ok()) {
      const std::string got = co_await a.echo("ip");
      CHECK(got == "ip");
    }
    co_await a.close();
    current = no_ip;
    TestClient b(h.io);
    auto context3 = client_context();
    without_ip = co_await b.connect(h.port, context3, "127.0.0.1");
    co_await b.close();
    co_await h.wait_served(2);
  });
  INFO(with_ip.to_string());
  CHECK(with_ip.ok());
  CHECK(h.served.at(0)->server_name.empty());  // an IP address is not sent as SNI
  CHECK(without_ip.code() == ErrorCode::kUnauthenticated);
  CHECK(without_ip.message().find("host name mismatch: the certificate is not for '127.0.0.1'") !=
        std::string::npos);
}

TEST_CASE("tls SNI picks the certificate for the name the client asks for") {
  TlsServerOptions options = server_options(pki().server, pki().server_key);
  options.sni_certificates = {{"*.wild.test", pki().api, pki().api_key},
                              {"API.example.test", pki().api, pki().api_key}};
  auto context = server_context(options);
  Harness h([&] { return context; });
  std::vector<std::optional<PeerCertificate>> seen;
  std::vector<std::string> suites;
  h.run([&]() -> asio::awaitable<void> {
    for (const char* host : {"api.example.test", "x.wild.test", "localhost"}) {
      TestClient c(h.io);
      auto context4 = client_context();
      const Status s = co_await c.connect(h.port, context4, host);
      INFO(host << ": " << s.to_string());
      CHECK(s.ok());
      seen.push_back(s.ok() ? c.stream->peer_certificate() : std::nullopt);
      suites.emplace_back(s.ok() ? c.stream->cipher_suite() : "");
      co_await c.close();
    }
    co_await h.wait_served(3);
  });
  REQUIRE(seen.size() == 3);
  REQUIRE(seen[0].has_value());
  CHECK(seen[0]->common_name == "api.example.test");
  CHECK(seen[0]->dns_names == std::vector<std::string>{"api.example.test", "*.wild.test"});
  if (!mbedtls_compat::kHasTls13) CHECK(suites[0].find("ECDHE-RSA") != std::string::npos);
  REQUIRE(seen[1].has_value());
  CHECK(seen[1]->common_name == "api.example.test");
  REQUIRE(seen[2].has_value());
  CHECK(seen[2]->common_name == "localhost");
  if (!mbedtls_compat::kHasTls13) CHECK(suites[2].find("ECDHE-ECDSA") != std::string::npos);
  CHECK(h.served.at(0)->server_name == "api.example.test");
  CHECK(h.served.at(1)->server_name == "x.wild.test");
  CHECK(context->certificate_fingerprint("API.EXAMPLE.TEST") == pki().fingerprint(pki().api));
  CHECK(context->certificate_fingerprint("a.b.wild.test") == pki().fingerprint(pki().server));
}

TEST_CASE("tls mutual authentication required rejects a client without a certificate") {
  TlsServerOptions options = server_options(pki().server, pki().server_key);
  options.client_auth = TlsClientAuth::kRequired;
  options.client_ca_file = pki().ca;
  auto context = server_context(options);
  Harness h([&] { return context; });
  Status anonymous, untrusted, good;
  std::string anonymous_echo;
  h.run([&]() -> asio::awaitable<void> {
    {
      TestClient c(h.io);
      auto context5 = client_context();
      anonymous = co_await c.connect(h.port, context5);
      // TLS 1.3 finishes the client's handshake before the server has judged its certificate;
      // the rejection then shows on the first read.
      if (anonymous.ok()) anonymous_echo = co_await c.echo("let me in");
      co_await c.close();
    }
    co_await h.wait_served(1);
    {
      TlsClientOptions o;
      o.client_cert_file = pki().untrusted;
      o.client_key_file = pki().untrusted_key;
      TestClient c(h.io);
      auto context6 = client_context(o);
      untrusted = co_await c.connect(h.port, context6);
      if (untrusted.ok()) (void)co_await c.echo("let me in");
      co_await c.close();
    }
    co_await h.wait_served(2);
    {
      TlsClientOptions o;
      o.client_cert_file = pki().client;
      o.client_key_file = pki().client_key;
      TestClient c(h.io);
      auto context7 = client_context(o);
      good = co_await c.connect(h.port, context7);
      if (good.ok()) {
        const std::string got = co_await c.echo("permit 42");
        CHECK(got == "permit 42");
      }
      co_await c.close();
    }
    co_await h.wait_served(3);
  });
  CHECK((!anonymous.ok() || anonymous_echo.starts_with("error")));
  INFO(h.served.at(0)->handshake.to_string());
  CHECK(!h.served.at(0)->handshake.ok());
  CHECK(h.served.at(0)->handshake.message().find("TLS handshake with 127.0.0.1:") == 0);
  CHECK(h.served.at(0)->handshake.message().find("certificate") != std::string::npos);

  INFO(h.served.at(1)->handshake.to_string());
  CHECK(h.served.at(1)->handshake.code() == ErrorCode::kUnauthenticated);
  CHECK(h.served.at(1)->handshake.message().find(
            "client certificate verify failed (not trusted)") != std::string::npos);

  INFO(good.to_string());
  REQUIRE(good.ok());
  const Served& served = *h.served.at(2);
  REQUIRE(served.handshake.ok());
  REQUIRE(served.peer.has_value());
  const PeerCertificate& peer = *served.peer;
  CHECK(peer.common_name == "permit-service");
  CHECK(peer.subject.find("O=City of Example") != std::string::npos);
  CHECK(peer.subject.find("CN=permit-service") != std::string::npos);
  CHECK(peer.issuer.find("CN=civicbus test CA") != std::string::npos);
  CHECK(peer.uris == std::vector<std::string>{"spiffe://civicbus.test/consumer/permits"});
  CHECK(peer.dns_names == std::vector<std::string>{"permits.internal"});
  CHECK(peer.ip_addresses.empty());
  CHECK(peer.serial == "2001");
  CHECK(peer.sha256_fingerprint == pki().fingerprint(pki().client));
  CHECK(served.received == "permit 42");
}

TEST_CASE("tls mutual authentication optional accepts a client without a certificate") {
  TlsServerOptions options = server_options(pki().server, pki().server_key);
  options.client_auth = TlsClientAuth::kOptional;
  options.client_ca_file = pki().ca;
  auto context = server_context(options);
  Harness h([&] { return context; });
  Status anonymous, with_cert;
  h.run([&]() -> asio::awaitable<void> {
    TestClient a(h.io);
    auto context8 = client_context();
    anonymous = co_await a.connect(h.port, context8);
    if (anonymous.ok()) {
      const std::string got = co_await a.echo("hi");
      CHECK(got == "hi");
    }
    co_await a.close();
    TlsClientOptions o;
    o.client_cert_file = pki().client;
    o.client_key_file = pki().client_key;
    TestClient b(h.io);
    auto context9 = client_context(o);
    with_cert = co_await b.connect(h.port, context9);
    if (with_cert.ok()) {
      const std::string got = co_await b.echo("hi");
      CHECK(got == "hi");
    }
    co_await b.close();
    co_await h.wait_served(2);
  });
  CHECK(anonymous.ok());
  CHECK(with_cert.ok());
  CHECK(!h.served.at(0)->peer.has_value());
  REQUIRE(h.served.at(1)->peer.has_value());
  CHECK(h.served.at(1)->peer->common_name == "permit-service");
}

TEST_CASE("tls client rejects an untrusted server certificate with a clear message") {
  auto context = server_context(server_options(pki().untrusted, pki().untrusted_key));
  Harness h([&] { return context; });
  Status status;
  h.run([&]() -> asio::awaitable<void> {
    TestClient c(h.io);
    auto context10 = client_context();
    status = co_await c.connect(h.port, context10);
    co_await c.close();
    co_await h.wait_served(1);
  });
  INFO(status.to_string());
  CHECK(status.code() == ErrorCode::kUnauthenticated);
  CHECK(status.message().find("TLS handshake with 127.0.0.1:") == 0);
  CHECK(status.message().find("failed: certificate verify failed (not trusted)") !=
        std::string::npos);
  CHECK(!h.served.at(0)->handshake.ok());

  // verify_peer off accepts it (and still reports the certificate).
  Harness h2([&] { return context; });
  Status lax;
  std::optional<PeerCertificate> cert;
  h2.run([&]() -> asio::awaitable<void> {
    TlsClientOptions o;
    o.verify_peer = false;
    TestClient c(h2.io);
    auto context11 = client_context(o);
    lax = co_await c.connect(h2.port, context11);
    if (lax.ok()) cert = c.stream->peer_certificate();
    co_await c.close();
  });
  CHECK(lax.ok());
  REQUIRE(cert.has_value());
  CHECK(cert->serial == "3001");
}

TEST_CASE("tls client rejects a certificate for another host name") {
  auto context = server_context(server_options(pki().server, pki().server_key));
  Harness h([&] { return context; });
  Status status;
  h.run([&]() -> asio::awaitable<void> {
    TlsClientOptions o;
    o.server_name = "wrong.example.test";
    TestClient c(h.io);
    auto context12 = client_context(o);
    status = co_await c.connect(h.port, context12, "localhost");
    co_await c.close();
    co_await h.wait_served(1);
  });
  INFO(status.to_string());
  CHECK(status.code() == ErrorCode::kUnauthenticated);
  CHECK(status.message().find(
            "certificate verify failed (host name mismatch: the certificate is not for "
            "'wrong.example.test')") != std::string::npos);
  CHECK(h.served.at(0)->server_name == "wrong.example.test");
}

TEST_CASE("tls reload switches the certificate for new connections only") {
  ct::TempDir live;
  const std::string cert = live.file("server.pem");
  const std::string key = live.file("server.key");
  std::filesystem::copy_file(pki().server, cert);
  std::filesystem::copy_file(pki().server_key, key);
  auto created = TlsServerContextHolder::create(server_options(cert, key));
  REQUIRE(created.ok());
  TlsServerContextHolder& holder = **created;
  Harness h([&] { return holder.current(); });

  const std::string first = pki().fingerprint(pki().server);
  const std::string second = pki().fingerprint(pki().server2);
  std::vector<std::string> fingerprints;
  std::string old_echo_after_reload, old_echo_after_bad_reload;
  Status reload_ok, reload_bad;
  h.run([&]() -> asio::awaitable<void> {
    TestClient a(h.io);
    auto context13 = client_context();
    const Status a_ok = co_await a.connect(h.port, context13);
    REQUIRE(a_ok.ok());
    const std::string before = co_await a.echo("before");
    CHECK(before == "before");
    fingerprints.push_back(a.stream->peer_certificate()->sha256_fingerprint);

    std::filesystem::copy_file(pki().server2, cert,
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(pki().server2_key, key,
                               std::filesystem::copy_options::overwrite_existing);
    reload_ok = holder.reload();

    TestClient b(h.io);
    auto context14 = client_context();
    const Status b_ok = co_await b.connect(h.port, context14);
    REQUIRE(b_ok.ok());
    fingerprints.push_back(b.stream->peer_certificate()->sha256_fingerprint);
    const std::string fresh = co_await b.echo("new");
    CHECK(fresh == "new");
    old_echo_after_reload = co_await a.echo("still here");

    ct::write_file(key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    reload_bad = holder.reload();

    TestClient c(h.io);
    auto context15 = client_context();
    const Status c_ok = co_await c.connect(h.port, context15);
    REQUIRE(c_ok.ok());
    fingerprints.push_back(c.stream->peer_certificate()->sha256_fingerprint);
    old_echo_after_bad_reload = co_await a.echo("and here");

    co_await a.close();
    co_await b.close();
    co_await c.close();
    co_await h.wait_served(3);
  });
  INFO(reload_ok.to_string());
  CHECK(reload_ok.ok());
  REQUIRE(fingerprints.size() == 3);
  CHECK(fingerprints[0] == first);
  CHECK(fingerprints[1] == second);
  CHECK(fingerprints[2] == second);
  CHECK(old_echo_after_reload == "still here");
  CHECK(old_echo_after_bad_reload == "and here");
  CHECK(!reload_bad.ok());
  CHECK(reload_bad.message().find("still serving the previous certificates") != std::string::npos);
  CHECK(reload_bad.message().find(key) != std::string::npos);
  CHECK(holder.generation() == 1);
}

// ---- interoperability with OpenSSL ----

std::optional<ct::ChildProcess> start_s_server(const ct::TempDir& dir, std::uint16_t port,
                                               const std::vector<std::string>& extra) {
  const std::string log = dir.file("s_server-" + std::to_string(port) + ".log");
  std::vector<std::string> argv{
      "openssl", "s_server", "-accept",  "127.0.0.1:" + std::to_string(port),
      "-www",    "-tls1_2",  "-naccept", "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto child = ct::ChildProcess::start(argv, log);
  if (!child) return std::nullopt;
  if (!ct::wait_until([&] { return ct::read_file(log).find("ACCEPT") != std::string::npos; })) {
    FAIL("openssl s_server did not start: " << ct::read_file(log));
  }
  return child;
}

struct SServerRun {
  Status handshake;
  std::string version, suite, page;
  std::optional<PeerCertificate> peer;
};

SServerRun talk_to_s_server(std::uint16_t port, std::shared_ptr<const TlsClientContext> context) {
  asio::io_context io;
  SServerRun out;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        TestClient c(io);
        out.handshake = co_await c.connect(port, context, "localhost");
        if (!out.handshake.ok()) co_return;
        out.version = c.stream->version();
        out.suite = c.stream->cipher_suite();
        out.peer = c.stream->peer_certificate();
        asio::error_code ec;
        const std::string request = "GET / HTTP/1.0\r\n\r\n";
        co_await c.stream->write_all(asio::buffer(request), ec);
        REQUIRE(!ec);
        std::array<char, 4096> buffer;
        for (;;) {
          const std::size_t n = co_await c.stream->read_some(asio::buffer(buffer), ec);
          if (ec) break;
          out.page.append(buffer.data(), n);
        }
        co_await c.close();
      },
      [](std::exception_ptr e) { rethrow(e); });
  io.run_for(30s);
  return out;
}

TEST_CASE("tls our client against openssl s_server negotiates TLS 1.2 with ECDHE and GCM") {
  ct::TempDir dir;
  {  // ECDSA certificate
    const auto port = static_cast<std::uint16_t>(ct::free_loopback_port());
    auto server = start_s_server(dir, port, {"-cert", pki().server, "-key", pki().server_key});
    REQUIRE(server.has_value());
    const SServerRun run = talk_to_s_server(port, client_context());
    INFO(run.handshake.to_string());
    REQUIRE(run.handshake.ok());
    CHECK(run.version == "TLSv1.2");
    CHECK(run.suite.starts_with("TLS-ECDHE-ECDSA-WITH-AES-"));
    CHECK(run.suite.find("GCM") != std::string::npos);
    CHECK(run.page.starts_with("HTTP/1.0 200 ok"));
    CHECK(run.page.find("TLSv1.2") != std::string::npos);
    CHECK(run.peer->common_name == "localhost");
  }
  {  // RSA certificate, and OpenSSL asks for and checks our client certificate
    const auto port = static_cast<std::uint16_t>(ct::free_loopback_port());
    auto server = start_s_server(dir, port,
                                 {"-cert", pki().server2, "-key", pki().server2_key, "-Verify", "1",
                                  "-CAfile", pki().ca, "-verify_return_error"});
    REQUIRE(server.has_value());
    TlsClientOptions o;
    o.client_cert_file = pki().client;
    o.client_key_file = pki().client_key;
    const SServerRun run = talk_to_s_server(port, client_context(o));
    INFO(run.handshake.to_string());
    REQUIRE(run.handshake.ok());
    CHECK(run.version == "TLSv1.2");
    CHECK(run.suite.starts_with("TLS-ECDHE-RSA-WITH-AES-"));
    CHECK(run.suite.find("GCM") != std::string::npos);
    CHECK(run.page.starts_with("HTTP/1.0 200 ok"));
    CHECK(run.page.find("permit-service") != std::string::npos);  // s_server shows the peer
  }
}

TEST_CASE(
    "tls openssl s_client against our server negotiates TLS 1.2 with ECDHE over X25519 and GCM") {
  TlsServerOptions options = server_options(pki().server, pki().server_key);
  options.client_auth = TlsClientAuth::kOptional;
  options.client_ca_file = pki().ca;
  auto context = server_context(options);
  Harness h([&] { return context; });
  // The server runs on its own thread; s_client is a blocking child process.
  std::atomic<bool> client_done{false};
  ct::RunResult result{-1, ""};
  std::exception_ptr server_error;
  std::thread runner([&] {
    try {
      h.run([&]() -> asio::awaitable<void> {
        asio::steady_timer timer(h.io);
        while (!client_done.load()) {
          timer.expires_after(10ms);
          co_await timer.async_wait(asio::use_awaitable);
        }
        co_await h.wait_served(1);
      });
    } catch (...) {
      server_error = std::current_exception();
    }
  });
  result = ct::run_command(
      {"timeout", "30", "openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(h.port),
       "-servername", "localhost", "-CAfile", pki().ca, "-verify_return_error", "-tls1_2", "-brief",
       "-cert", pki().client, "-key", pki().client_key,
       // P-521 first: the server picks by its own order (X25519 first), not the client's.
       "-groups", "P-521:P-384:X25519:P-256"},
      "hello from openssl\n");
  client_done = true;
  runner.join();
  rethrow(server_error);
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(result.output.find("Protocol version: TLSv1.2") != std::string::npos);
  CHECK(result.output.find("Ciphersuite: ECDHE-ECDSA-AES") != std::string::npos);
  CHECK(result.output.find("GCM") != std::string::npos);
  CHECK(result.output.find("Verification: OK") != std::string::npos);
  CHECK(result.output.find("Temp Key: X25519") != std::string::npos);
  REQUIRE(h.served.size() == 1);
  const Served& served = *h.served[0];
  INFO(served.handshake.to_string());
  CHECK(served.handshake.ok());
  CHECK(served.version == "TLSv1.2");
  CHECK(served.cipher_suite.find("GCM") != std::string::npos);
  CHECK(served.server_name == "localhost");
  REQUIRE(served.peer.has_value());
  CHECK(served.peer->common_name == "permit-service");
  CHECK(served.received == "hello from openssl\n");
}

}  // namespace
}  // namespace civicbus::http

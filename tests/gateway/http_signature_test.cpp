#include "gateway/http_signature.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "civicbus/core/crypto.hpp"

namespace civicbus::gateway {
namespace {

using std::chrono::seconds;

// RFC 9421 Appendix B.1.5: the shared secret "test-shared-secret", base64.
constexpr std::string_view kRfcSharedSecretB64 =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

std::string rfc_secret() {
  auto key = crypto::base64_decode(kRfcSharedSecretB64);
  REQUIRE(key.ok());
  return *key;
}

// RFC 9421 Appendix B.2, test-request.
http::HttpRequest rfc_test_request() {
  http::HttpRequest r;
  r.method = "POST";
  r.target = "/foo?param=Value&Pet=dog";
  r.path = "/foo";
  r.query = "param=Value&Pet=dog";
  r.headers.add("Host", "example.com");
  r.headers.add("Date", "Tue, 20 Apr 2021 02:07:55 GMT");
  r.headers.add("Content-Type", "application/json");
  r.headers.add("Content-Digest",
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyeal"
                "dVLvRwEmTHWXvJwew==:");
  r.headers.add("Content-Length", "18");
  r.body = "{\"hello\": \"world\"}";
  return r;
}

HmacKeyLookup keys_of(std::map<std::string, std::string> keys) {
  return [keys = std::move(keys)](std::string_view id) -> std::optional<std::string> {
    auto it = keys.find(std::string(id));
    if (it == keys.end()) return std::nullopt;
    return it->second;
  };
}

constexpr std::int64_t kNow = 1'700'000'000;  // ManualClock's default start

http::HttpRequest sample_request() {
  http::HttpRequest r;
  r.method = "POST";
  r.target = "/permits?page=2";
  r.path = "/permits";
  r.query = "page=2";
  r.headers.add("Host", "api.example.org");
  r.headers.add("Content-Type", "application/json");
  r.body = R"({"permit":"P-1"})";
  return r;
}

HttpSignatureSignOptions sign_options() {
  HttpSignatureSignOptions o;
  o.keyid = "client-a";
  o.key = "0123456789abcdef0123456789abcdef";
  o.created = kNow;
  return o;
}

void require_rejected(const Result<VerifiedHttpSignature>& r, std::string_view needle) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kUnauthenticated);
  INFO(r.status().message());
  CHECK(r.status().message().find(needle) != std::string::npos);
}

struct Fixture {
  ManualClock clock;
  HttpSignatureVerifier verifier{keys_of({{"client-a", "0123456789abcdef0123456789abcdef"}}),
                                 clock};
};

TEST_CASE("http signature: RFC 9421 B.2.5 hmac-sha256 example") {
  auto request = rfc_test_request();
  request.headers.add(
      "Signature-Input",
      R"(sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret")");
  request.headers.add("Signature", "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:");

  auto params = parse_signature_params(
      R"(("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret")");
  REQUIRE(params.ok());
  auto base = http_signature_base(request, *params);
  REQUIRE(base.ok());
  CHECK(*base ==
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n"
        "\"@authority\": example.com\n"
        "\"content-type\": application/json\n"
        "\"@signature-params\": (\"date\" \"@authority\" \"content-type\")"
        ";created=1618884473;keyid=\"test-shared-secret\"");

  // The example covers neither @method nor the target nor content-digest: relax coverage.
  ManualClock clock(SystemTime{seconds{1618884473 + 10}});
  HttpSignatureVerifierOptions options;
  options.require_method = false;
  options.require_target = false;
  options.require_content_digest_with_body = false;
  HttpSignatureVerifier verifier(keys_of({{"test-shared-secret", rfc_secret()}}), clock, options);
  auto verified = verifier.verify(request);
  REQUIRE_MESSAGE(verified.ok(), verified.status().to_string());
  CHECK(verified->label == "sig-b25");
  CHECK(verified->keyid == "test-shared-secret");
  // The body is present, so its sha-512 Content-Digest was checked too.
  auto tampered = request;
  tampered.body = "{\"hello\": \"world!\"}";
  require_rejected(verifier.verify(tampered), "Content-Digest sha-512 does not match");

  // Re-signing with our signer gives the RFC's bytes.
  auto resigned = rfc_test_request();
  HttpSignatureSignOptions o;
  o.label = "sig-b25";
  o.components = {"date", "@authority", "content-type"};
  o.keyid = "test-shared-secret";
  o.key = rfc_secret();
  o.created = 1618884473;
  REQUIRE(sign_http_request(resigned, o).ok());
  CHECK(*resigned.headers.get("Signature") ==
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:");
  CHECK(*resigned.headers.get("Signature-Input") == *request.headers.get("Signature-Input"));

  // The default policy refuses the example: @method is not covered.
  HttpSignatureVerifier strict(keys_of({{"test-shared-secret", rfc_secret()}}), clock);
  require_rejected(strict.verify(request), "\"@method\" is not covered");
}

TEST_CASE("http signature: round trip with default components") {
  Fixture f;
  auto request = sample_request();
  REQUIRE(sign_http_request(request, sign_options()).ok());
  CHECK(*request.headers.get("Content-Digest") == content_digest_sha256(request.body));
  auto verified = f.verifier.verify(request);
  REQUIRE_MESSAGE(verified.ok(), verified.status().to_string());
  CHECK(verified->keyid == "client-a");
  CHECK(verified->params.created == kNow);
  CHECK(f.verifier.replay_cache_size() == 1);
}

TEST_CASE("http signature: round trip with @path + @authority, nonce, alg, expires, tag") {
  Fixture f;
  auto request = sample_request();
  auto o = sign_options();
  o.components = {"@method", "@authority", "@path", "@query", "content-type", "content-digest"};
  o.nonce = "n-1";
  o.include_alg = true;
  o.expires = kNow + 60;
  o.tag = "civicbus";
  REQUIRE(sign_http_request(request, o).ok());
  auto verified = f.verifier.verify(request);
  REQUIRE_MESSAGE(verified.ok(), verified.status().to_string());
  CHECK(verified->params.nonce == "n-1");

  // Same nonce, a fresh signature (different created): still a replay.
  auto again = sample_request();
  o.created = kNow + 1;
  REQUIRE(sign_http_request(again, o).ok());
  require_rejected(f.verifier.verify(again), "replay");
}

TEST_CASE("http signature: tampered request is a bad signature") {
  Fixture f;
  auto o = sign_options();
  o.components = {"@method", "@target-uri", "content-type", "content-digest"};
  SUBCASE("header") {
    auto request = sample_request();
    REQUIRE(sign_http_request(request, o).ok());
    request.headers.set("Content-Type", "text/plain");
    require_rejected(f.verifier.verify(request), "bad signature");
  }
  SUBCASE("method") {
    auto request = sample_request();
    REQUIRE(sign_http_request(request, o).ok());
    request.method = "PUT";
    require_rejected(f.verifier.verify(request), "bad signature");
  }
  SUBCASE("query") {
    auto request = sample_request();
    REQUIRE(sign_http_request(request, o).ok());
    request.target = "/permits?page=3";
    request.query = "page=3";
    require_rejected(f.verifier.verify(request), "bad signature");
  }
  SUBCASE("wrong key") {
    auto request = sample_request();
    o.key = "another-secret-another-secret-xx";
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(f.verifier.verify(request), "bad signature");
  }
}

TEST_CASE("http signature: unknown keyid and foreign alg") {
  Fixture f;
  auto request = sample_request();
  auto o = sign_options();
  o.keyid = "nobody";
  REQUIRE(sign_http_request(request, o).ok());
  require_rejected(f.verifier.verify(request), "unknown keyid 'nobody'");

  auto rsa = sample_request();
  REQUIRE(sign_http_request(rsa, sign_options()).ok());
  std::string input(*rsa.headers.get("Signature-Input"));
  rsa.headers.set("Signature-Input", input + ";alg=\"rsa-pss-sha512\"");
  require_rejected(f.verifier.verify(rsa), "rsa-pss-sha512");
}

TEST_CASE("http signature: stale, future, missing created and expired") {
  Fixture f;
  auto o = sign_options();
  SUBCASE("stale") {
    auto request = sample_request();
    o.created = kNow - 301;
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(f.verifier.verify(request), "stale");
  }
  SUBCASE("within the window") {
    auto request = sample_request();
    o.created = kNow - 300;
    REQUIRE(sign_http_request(request, o).ok());
    CHECK(f.verifier.verify(request).ok());
  }
  SUBCASE("future") {
    auto request = sample_request();
    o.created = kNow + 301;
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(f.verifier.verify(request), "future");
  }
  SUBCASE("no created") {
    auto request = sample_request();
    o.created.reset();
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(f.verifier.verify(request), "no 'created'");
  }
  SUBCASE("expired") {
    auto request = sample_request();
    o.expires = kNow + 10;
    REQUIRE(sign_http_request(request, o).ok());
    CHECK(f.verifier.verify(request).ok());
    f.clock.advance(seconds{10});
    auto later = sample_request();
    o.nonce = "other";  // not a replay, just late
    REQUIRE(sign_http_request(later, o).ok());
    require_rejected(f.verifier.verify(later), "expired");
  }
}

TEST_CASE("http signature: replay cache") {
  Fixture f;
  auto request = sample_request();
  REQUIRE(sign_http_request(request, sign_options()).ok());
  REQUIRE(f.verifier.verify(request).ok());
  require_rejected(f.verifier.verify(request), "replay");

  // After the window the entry is gone; the signature is then stale anyway.
  f.clock.advance(seconds{601});
  require_rejected(f.verifier.verify(request), "stale");
  auto fresh = sample_request();
  auto o = sign_options();
  o.created = kNow + 601;
  REQUIRE(sign_http_request(fresh, o).ok());
  REQUIRE(f.verifier.verify(fresh).ok());
  CHECK(f.verifier.replay_cache_size() == 1);
}

TEST_CASE("http signature: concurrent replays, exactly one accepted") {
  Fixture f;
  auto request = sample_request();
  REQUIRE(sign_http_request(request, sign_options()).ok());
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (f.verifier.verify(request).ok()) ++accepted;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(accepted.load() == 1);
}

TEST_CASE("http signature: replay cache is bounded") {
  ManualClock clock;
  HttpSignatureVerifierOptions options;
  options.replay_cache_capacity = 4;
  HttpSignatureVerifier verifier(keys_of({{"client-a", "0123456789abcdef0123456789abcdef"}}), clock,
                                 options);
  for (int i = 0; i < 10; ++i) {
    auto request = sample_request();
    auto o = sign_options();
    o.nonce = "n" + std::to_string(i);
    REQUIRE(sign_http_request(request, o).ok());
    REQUIRE(verifier.verify(request).ok());
  }
  CHECK(verifier.replay_cache_size() == 4);
}

TEST_CASE("http signature: content digest") {
  Fixture f;
  SUBCASE("body changed after signing") {
    auto request = sample_request();
    REQUIRE(sign_http_request(request, sign_options()).ok());
    request.body = R"({"permit":"P-2"})";
    require_rejected(f.verifier.verify(request), "Content-Digest sha-256 does not match");
  }
  SUBCASE("signed wrong digest") {
    auto request = sample_request();
    request.headers.set("Content-Digest", content_digest_sha256("something else"));
    REQUIRE(sign_http_request(request, sign_options()).ok());
    require_rejected(f.verifier.verify(request), "does not match the body");
  }
  SUBCASE("only an unknown algorithm") {
    auto request = sample_request();
    request.headers.set("Content-Digest", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:");
    REQUIRE(sign_http_request(request, sign_options()).ok());
    require_rejected(f.verifier.verify(request), "no sha-256 or sha-512");
  }
  SUBCASE("body not covered") {
    auto request = sample_request();
    auto o = sign_options();
    o.components = {"@method", "@target-uri"};
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(f.verifier.verify(request), "\"content-digest\" is not covered");
  }
}

TEST_CASE("http signature: missing covered component") {
  Fixture f;
  auto o = sign_options();
  SUBCASE("policy: target not covered") {
    auto request = sample_request();
    o.components = {"@method", "content-digest"};
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(f.verifier.verify(request), "target is not covered");
  }
  SUBCASE("policy: extra required component") {
    HttpSignatureVerifierOptions options;
    options.required_components = {"content-type"};
    HttpSignatureVerifier verifier(keys_of({{"client-a", o.key}}), f.clock, options);
    auto request = sample_request();
    REQUIRE(sign_http_request(request, o).ok());
    require_rejected(verifier.verify(request), "\"content-type\" is not covered");
  }
  SUBCASE("covered header absent from the request") {
    auto request = sample_request();
    o.components = {"@method", "@target-uri", "content-digest", "x-tenant"};
    request.headers.add("X-Tenant", "t1");
    REQUIRE(sign_http_request(request, o).ok());
    request.headers.remove("x-tenant");
    require_rejected(f.verifier.verify(request), "\"x-tenant\" is missing");
  }
  SUBCASE("signer refuses a missing component") {
    auto request = sample_request();
    o.components = {"@method", "x-absent"};
    CHECK(sign_http_request(request, o).code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("http signature: header values are trimmed and repeated fields joined") {
  Fixture f;
  auto request = sample_request();
  request.headers.add("X-List", " a ");
  request.headers.add("X-List", "b");
  auto params = parse_signature_params(R"(("x-list");created=1)");
  REQUIRE(params.ok());
  auto base = http_signature_base(request, *params);
  REQUIRE(base.ok());
  CHECK(*base == "\"x-list\": a, b\n\"@signature-params\": (\"x-list\");created=1");
}

TEST_CASE("http signature: malformed structured fields") {
  Fixture f;
  auto signed_request = [] {
    auto request = sample_request();
    REQUIRE(sign_http_request(request, sign_options()).ok());
    return request;
  };
  auto with_input = [&](std::string value) {
    auto request = signed_request();
    request.headers.set("Signature-Input", std::move(value));
    return request;
  };
  auto with_signature = [&](std::string value) {
    auto request = signed_request();
    request.headers.set("Signature", std::move(value));
    return request;
  };
  const std::string ok_list =
      R"(("@method" "@target-uri" "content-digest");created=1700000000;keyid="client-a")";

  require_rejected(f.verifier.verify(with_input("sig1=" + ok_list + ",")), "trailing ','");
  require_rejected(f.verifier.verify(with_input("Sig1=" + ok_list)), "lower-case letter");
  require_rejected(f.verifier.verify(with_input("sig1=(\"@method\" \"@target-uri\"")),
                   "unterminated inner list");
  require_rejected(f.verifier.verify(with_input("sig1=(\"@method\"\"@path\");created=1")),
                   "expected ' ' or ')'");
  require_rejected(f.verifier.verify(with_input("sig1=(@method);created=1")),
                   "unexpected character '@'");
  require_rejected(f.verifier.verify(with_input("sig1=(method);created=1")), "must be strings");
  require_rejected(f.verifier.verify(with_input("sig1=(\"@Method\");created=1")), "not lower case");
  require_rejected(f.verifier.verify(with_input("sig1=(\"@method\" \"@method\");created=1")),
                   "covered twice");
  require_rejected(
      f.verifier.verify(with_input(R"(sig1=("@method");created="1700000000";keyid="client-a")")),
      "'created' must be an integer");
  require_rejected(f.verifier.verify(with_input(R"(sig1=("@method");created=1.5)")), "decimals");
  require_rejected(f.verifier.verify(with_input(R"(sig1=("@method");keyid="a";keyid="b")")),
                   "duplicate parameter 'keyid'");
  require_rejected(f.verifier.verify(with_input(R"(sig1=("@method");created=1;foo=1)")),
                   "unknown signature parameter 'foo'");
  require_rejected(f.verifier.verify(with_input(R"(sig1=("content-type";sf);created=1)")),
                   "component parameters");
  require_rejected(f.verifier.verify(with_input("sig1=\"not a list\"")), "not an inner list");
  require_rejected(f.verifier.verify(with_input("sig2=" + ok_list)),
                   "Signature has no member labelled 'sig2'");
  require_rejected(f.verifier.verify(with_input("sig1=" + ok_list + ", sig1=" + ok_list)),
                   "duplicate dictionary key");

  require_rejected(f.verifier.verify(with_signature("sig1=:not*base64:")),
                   "invalid character in a byte sequence");
  require_rejected(f.verifier.verify(with_signature("sig1=:AAAA")), "unterminated byte sequence");
  require_rejected(f.verifier.verify(with_signature("sig1=\"AAAA\"")), "not a byte sequence");
  require_rejected(f.verifier.verify(with_signature("sig1=:AAAA:")), "bad signature");

  auto no_input = signed_request();
  no_input.headers.remove("Signature-Input");
  require_rejected(f.verifier.verify(no_input), "no Signature-Input");
  auto no_signature = signed_request();
  no_signature.headers.remove("Signature");
  require_rejected(f.verifier.verify(no_signature), "no Signature header");
}

TEST_CASE("http signature: several labels, the configured one is verified") {
  ManualClock clock;
  HttpSignatureVerifierOptions options;
  options.label = "proxy";
  HttpSignatureVerifier verifier(keys_of({{"client-a", "0123456789abcdef0123456789abcdef"}}), clock,
                                 options);
  auto request = sample_request();
  auto o = sign_options();
  o.label = "proxy";
  REQUIRE(sign_http_request(request, o).ok());
  std::string input(*request.headers.get("Signature-Input"));
  std::string sig(*request.headers.get("Signature"));
  request.headers.set("Signature-Input", R"(other=("@method");created=1;keyid="x", )" + input);
  request.headers.set("Signature", "other=:AAAA:, " + sig);
  auto verified = verifier.verify(request);
  REQUIRE_MESSAGE(verified.ok(), verified.status().to_string());
  CHECK(verified->label == "proxy");
}

}  // namespace
}  // namespace civicbus::gateway

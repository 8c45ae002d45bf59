#include "fleet/device_ca.hpp"

#include <doctest/doctest.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <set>
#include <thread>

#include "core/mbedtls_compat.hpp"
#include "support/test_support.hpp"

namespace civicbus::fleet {
namespace {

using testing::TempDir;

const std::string kMasterKey(32, 'k');

std::unique_ptr<storage::Database> open_db(const std::string& path) {
  auto db = storage::open_sqlite({.path = path, .synchronous = storage::Synchronous::kNormal});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(*db);
}

// Certificates are checked against the real time by mbedTLS and openssl, so the manual
// clock starts now.
ManualClock clock_at_now() {
  return ManualClock(std::chrono::system_clock::now());
}

struct Crt {
  mbedtls_x509_crt crt;
  explicit Crt(const std::string& pem) {
    mbedtls_x509_crt_init(&crt);
    REQUIRE(mbedtls_x509_crt_parse(&crt, reinterpret_cast<const unsigned char*>(pem.c_str()),
                                   pem.size() + 1) == 0);
  }
  ~Crt() { mbedtls_x509_crt_free(&crt); }
};

// mbedtls_x509_crt_verify flags (0 = verified).
std::uint32_t mbedtls_verify(const std::string& ca_pem, const std::string& cert_pem) {
  Crt ca(ca_pem), cert(cert_pem);
  std::uint32_t flags = 0;
  const int rc =
      mbedtls_x509_crt_verify(&cert.crt, &ca.crt, nullptr, nullptr, &flags, nullptr, nullptr);
  return rc == 0 ? 0 : (flags != 0 ? flags : 0xFFFFFFFFu);
}

bool key_matches(const std::string& cert_pem, const std::string& key_pem) {
  Crt cert(cert_pem);
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  SeededRandom rnd(1);
  auto rng = [](void* r, unsigned char* out, std::size_t n) {
    static_cast<RandomSource*>(r)->fill(out, n);
    return 0;
  };
  bool ok =
      mbedtls_compat::pk_parse_key(&pk, reinterpret_cast<const unsigned char*>(key_pem.c_str()),
                                   key_pem.size() + 1, rng, &rnd) == 0 &&
      mbedtls_compat::pk_check_pair(&cert.crt.pk, &pk, rng, &rnd) == 0;
  mbedtls_pk_free(&pk);
  return ok;
}

TEST_CASE("device_ca: issued certificate verifies with mbedTLS and openssl, key matches") {
  TempDir dir;
  auto db = open_db(dir.file("fleet.db"));
  SecureRandom random;
  ManualClock clock = clock_at_now();
  auto ca = DeviceCa::open(*db, kMasterKey, random, clock, {.organization = "City of Test"});
  REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
  auto cert = (*ca)->issue("wm-000123");
  REQUIRE_MESSAGE(cert.ok(), cert.status().to_string());

  CHECK(cert->certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
  CHECK(cert->private_key_pem.find("PRIVATE KEY") != std::string::npos);
  CHECK(cert->serial_hex.size() == 32);
  CHECK(cert->fingerprint_sha256.size() == 64);
  CHECK(cert->not_after - cert->not_before == 1825LL * 86'400'000);
  CHECK(mbedtls_verify((*ca)->ca_certificate_pem(), cert->certificate_pem) == 0);
  CHECK(key_matches(cert->certificate_pem, cert->private_key_pem));

  Crt parsed(cert->certificate_pem);
  char subject[256];
  REQUIRE(mbedtls_x509_dn_gets(subject, sizeof subject, &parsed.crt.subject) > 0);
  CHECK(std::string(subject) == "CN=wm-000123, O=City of Test");
  CHECK(mbedtls_x509_crt_check_extended_key_usage(&parsed.crt, MBEDTLS_OID_CLIENT_AUTH,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) == 0);
  CHECK(mbedtls_x509_crt_check_key_usage(&parsed.crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) == 0);
  Crt ca_parsed((*ca)->ca_certificate_pem());
  CHECK(mbedtls_x509_crt_check_key_usage(&ca_parsed.crt, MBEDTLS_X509_KU_KEY_CERT_SIGN) == 0);

  // The same with the openssl CLI.
  auto openssl = testing::find_program("openssl");
  REQUIRE(openssl);
  testing::write_file(dir.file("ca.pem"), (*ca)->ca_certificate_pem());
  testing::write_file(dir.file("dev.pem"), cert->certificate_pem);
  testing::write_file(dir.file("dev.key"), cert->private_key_pem);
  auto verified = testing::run_command({*openssl, "verify", "-purpose", "sslclient", "-CAfile",
                                        dir.file("ca.pem"), dir.file("dev.pem")});
  CHECK_MESSAGE(verified.exit_code == 0, verified.output);
  CHECK(verified.output.find("OK") != std::string::npos);
  auto text =
      testing::run_command({*openssl, "x509", "-in", dir.file("dev.pem"), "-noout", "-text"});
  CHECK(text.output.find("URI:urn:civicbus:device:wm-000123") != std::string::npos);
  CHECK(text.output.find("TLS Web Client Authentication") != std::string::npos);
  CHECK(text.output.find("X509v3 Authority Key Identifier") != std::string::npos);
  testing::write_file(dir.file("ca-text.pem"), (*ca)->ca_certificate_pem());
  auto ca_text =
      testing::run_command({*openssl, "x509", "-in", dir.file("ca-text.pem"), "-noout", "-text"});
  CHECK(ca_text.output.find("CA:TRUE") != std::string::npos);
  CHECK(ca_text.output.find("Certificate Sign, CRL Sign") != std::string::npos);
  CHECK(ca_text.output.find("X509v3 Subject Key Identifier") != std::string::npos);
  auto key_pub = testing::run_command({*openssl, "pkey", "-in", dir.file("dev.key"), "-pubout"});
  auto cert_pub =
      testing::run_command({*openssl, "x509", "-in", dir.file("dev.pem"), "-noout", "-pubkey"});
  CHECK(key_pub.exit_code == 0);
  CHECK(key_pub.output == cert_pub.output);

  // Recorded, without the key.
  auto certs = (*ca)->certificates_of("wm-000123");
  REQUIRE(certs.ok());
  REQUIRE(certs->size() == 1);
  CHECK((*certs)[0].serial_hex == cert->serial_hex);
  CHECK((*certs)[0].fingerprint_sha256 == cert->fingerprint_sha256);
  CHECK((*certs)[0].certificate_pem == cert->certificate_pem);
  CHECK_FALSE((*certs)[0].revoked());
}

TEST_CASE("device_ca: reopen with the same master key, wrong key fails, no private key on disk") {
  TempDir dir;
  const std::string path = dir.file("fleet.db");
  SecureRandom random;
  ManualClock clock = clock_at_now();
  std::string ca_pem, first_serial;
  {
    auto db = open_db(path);
    auto ca =
        DeviceCa::open(*db, kMasterKey, random, clock, {.organization = "Water, Sewer = Services"});
    REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
    ca_pem = (*ca)->ca_certificate_pem();
    auto c = (*ca)->issue("dev-1");
    REQUIRE(c.ok());
    first_serial = c->serial_hex;
  }
  {
    auto db = open_db(path);
    auto ca = DeviceCa::open(*db, kMasterKey, random, clock);
    REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
    CHECK((*ca)->ca_certificate_pem() == ca_pem);
    auto c = (*ca)->issue("dev-2");
    REQUIRE_MESSAGE(c.ok(), c.status().to_string());
    CHECK(mbedtls_verify(ca_pem, c->certificate_pem) == 0);
    CHECK(c->serial_hex != first_serial);
  }
  {
    auto db = open_db(path);
    auto ca = DeviceCa::open(*db, std::string(32, 'x'), random, clock);
    REQUIRE_FALSE(ca.ok());
    CHECK(ca.status().code() == ErrorCode::kFailedPrecondition);
    CHECK(ca.status().message().find("master key does not match") != std::string::npos);
    auto short_key = DeviceCa::open(*db, std::string_view("short"), random, clock);
    CHECK(short_key.status().code() == ErrorCode::kInvalidArgument);
  }
  // Every byte of the database files: no PEM private key, no "PRIVATE KEY" anywhere.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    const std::string bytes = testing::read_file(entry.path().string());
    CHECK_MESSAGE(bytes.find("PRIVATE KEY") == std::string::npos, entry.path().string());
  }
  CHECK(testing::read_file(path).find("BEGIN CERTIFICATE") != std::string::npos);
}

TEST_CASE("device_ca: revocation by serial and by device, revocation list") {
  TempDir dir;
  auto db = open_db(dir.file("fleet.db"));
  SeededRandom random(42);
  ManualClock clock = clock_at_now();
  auto ca = DeviceCa::open(*db, kMasterKey, random, clock);
  REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
  auto a1 = (*ca)->issue("a");
  auto a2 = (*ca)->issue("a");
  auto b = (*ca)->issue("b");
  REQUIRE((a1.ok() && a2.ok() && b.ok()));

  CHECK(*(*ca)->is_revoked(b->serial_hex) == false);
  clock.advance(std::chrono::seconds(5));
  auto n = (*ca)->revoke(b->serial_hex, "key compromise");
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(*(*ca)->is_revoked(b->serial_hex) == true);
  CHECK(*(*ca)->revoke(b->serial_hex, "again") == 0);  // already revoked
  clock.advance(std::chrono::seconds(5));
  auto by_device = (*ca)->revoke("a", "decommissioned");
  REQUIRE(by_device.ok());
  CHECK(*by_device == 2);
  CHECK(*(*ca)->is_revoked(a1->serial_hex));
  CHECK((*ca)->revoke("nobody", "x").status().code() == ErrorCode::kNotFound);
  CHECK((*ca)->is_revoked("00ff").status().code() == ErrorCode::kNotFound);

  auto certs = (*ca)->certificates_of("a");
  REQUIRE(certs.ok());
  REQUIRE(certs->size() == 2);
  CHECK((*certs)[0].revoked());
  CHECK((*certs)[0].revocation_reason == "decommissioned");

  auto list = (*ca)->revocation_list();
  REQUIRE(list.ok());
  const Json& revoked = *list->find("revoked");
  REQUIRE(revoked.size() == 3);
  CHECK(revoked.as_array()[0].get_string("serial") == b->serial_hex);
  CHECK(revoked.as_array()[0].get_string("reason") == "key compromise");
  CHECK(list->get_string("ca_fingerprint_sha256") == (*ca)->ca_fingerprint_sha256());
}

TEST_CASE("device_ca: issue is thread-safe and its cost is measured") {
  TempDir dir;
  auto db = open_db(dir.file("fleet.db"));
  SecureRandom random;
  ManualClock clock = clock_at_now();
  auto ca = DeviceCa::open(*db, kMasterKey, random, clock);
  REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
  constexpr int kPerThread = 50;
  std::vector<std::string> pems[2];
  std::atomic<int> failures{0};
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto c = (*ca)->issue("t" + std::to_string(t) + "-" + std::to_string(i));
        if (!c.ok()) {
          ++failures;
          continue;
        }
        pems[t].push_back(c->certificate_pem);
      }
    });
  }
  for (auto& th : threads) th.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // CPU time of the process (both threads) says what a certificate costs when the machine
  // is not shared; wall time says what this run saw.
  const double cpu_ms_each =
      1000.0 * static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC / (2 * kPerThread);
  MESSAGE("device_ca: " << 2 * kPerThread << " certificates on 2 threads in " << secs << " s wall ("
                        << secs * 1000 / (2 * kPerThread) << " ms each), " << cpu_ms_each
                        << " ms CPU each; 10,000 on 2 idle cores: ~"
                        << cpu_ms_each * 10000 / 2 / 1000 << " s");
  CHECK(failures == 0);
  std::set<std::string> distinct;
  for (auto& v : pems) {
    for (auto& p : v) {
      CHECK(mbedtls_verify((*ca)->ca_certificate_pem(), p) == 0);
      distinct.insert(p);
    }
  }
  CHECK(distinct.size() == 2 * kPerThread);
}

TEST_CASE("device_ca: issue_many makes certificates on 2 threads and records them together") {
  TempDir dir;
  auto db = open_db(dir.file("fleet.db"));
  SecureRandom random;
  ManualClock clock = clock_at_now();
  auto ca = DeviceCa::open(*db, kMasterKey, random, clock);
  REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back("bulk-" + std::to_string(i));
  std::vector<std::size_t> seen_done;
  auto certs = (*ca)->issue_many(ids, 2, [&](std::size_t done, std::size_t total) {
    CHECK(total == 20);
    seen_done.push_back(done);
  });
  REQUIRE_MESSAGE(certs.ok(), certs.status().to_string());
  REQUIRE(certs->size() == 20);
  REQUIRE(seen_done.size() == 20);
  CHECK(seen_done.back() == 20);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK((*certs)[i].device_id == ids[i]);
    CHECK(mbedtls_verify((*ca)->ca_certificate_pem(), (*certs)[i].certificate_pem) == 0);
    auto stored = (*ca)->certificates_of(ids[i]);
    REQUIRE(stored.ok());
    REQUIRE(stored->size() == 1);
    CHECK((*stored)[0].serial_hex == (*certs)[i].serial_hex);
  }
  // A bad id fails the whole batch before any work, and nothing is recorded.
  std::vector<std::string> bad{"ok-1", std::string("bad\nid")};
  auto failed = (*ca)->issue_many(bad);
  CHECK(failed.status().code() == ErrorCode::kInvalidArgument);
  CHECK((*ca)->certificates_of("ok-1")->empty());
}

}  // namespace
}  // namespace civicbus::fleet

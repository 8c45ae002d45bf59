#include "fleet/device_ca.hpp"

#include <fmt/format.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <thread>

#include "core/mbedtls_compat.hpp"

namespace civicbus::fleet {
namespace {

constexpr storage::Migration kCaMigrations[] = {
    {1, "device CA key and certificate, issued device certificates", R"sql(
CREATE TABLE fleet_ca (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  certificate_pem TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  subject TEXT NOT NULL,
  sealed_key BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE fleet_device_certs (
  serial TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  certificate_pem TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  revoked_at INTEGER,
  revocation_reason TEXT
);
CREATE INDEX fleet_device_certs_device ON fleet_device_certs (device_id);
)sql"},
};

// Distinct labels keep this key apart from every other key derived from the master key.
constexpr std::string_view kWrapKeyLabel = "civicbus fleet CA key wrap v1";
constexpr std::string_view kWrapAadLabel = "civicbus fleet CA key v1";
constexpr std::size_t kMasterKeyBytes = 32;
constexpr std::size_t kMaxDeviceIdLength = 128;
constexpr std::size_t kCertBufferBytes = 4096;
constexpr TimeMs kMsPerDay = 86'400'000;

using crypto::wipe;

TimeMs now_ms(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

// "YYYYMMDDhhmmss" (UTC), the form mbedtls_x509write_crt_set_validity takes.
std::string x509_time(TimeMs ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}{:02}{:02}{:02}{:02}{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string mbedtls_error(std::string_view what, int rc) {
  return fmt::format("device CA: {} failed (mbedTLS error -0x{:04x})", what,
                     static_cast<unsigned>(-rc));
}

// Escapes a value for mbedTLS's "CN=…,O=…" subject strings. mbedTLS 2.28 can escape only
// ',' there ('=' inside a value needs none); a backslash it cannot carry at all, so names
// with one are refused before they get here (check_name).
std::string dn_escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == ',') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string subject_name(std::string_view cn, std::string_view org) {
  std::string s = "CN=" + dn_escape(cn);
  if (!org.empty()) s += ",O=" + dn_escape(org);
  return s;
}

// DER length octets.
void der_length(std::string& out, std::size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<char>(len));
  } else if (len <= 0xFF) {
    out.push_back('\x81');
    out.push_back(static_cast<char>(len));
  } else {
    out.push_back('\x82');
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(len & 0xFF));
  }
}

// subjectAltName value with one uniformResourceIdentifier: SEQUENCE { [6] IA5String }.
// mbedTLS 2.28 has no SAN writer, so the extension is encoded here.
std::string san_uri_extension(std::string_view uri) {
  std::string inner;
  inner.push_back('\x86');
  der_length(inner, uri.size());
  inner.append(uri);
  std::string out;
  out.push_back('\x30');
  der_length(out, inner.size());
  return out + inner;
}

// extendedKeyUsage value: SEQUENCE { id-kp-clientAuth (1.3.6.1.5.5.7.3.2) }.
constexpr unsigned char kEkuClientAuth[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                                            0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

// The RandomSource as an mbedTLS RNG. The mutex makes it safe for issue() on several
// threads even over a source that is not thread-safe (SeededRandom in tests).
struct RngState {
  RandomSource* random;
  std::mutex* mutex;
};
int rng_callback(void* state, unsigned char* out, std::size_t n) {
  auto* s = static_cast<RngState*>(state);
  std::lock_guard lock(*s->mutex);
  s->random->fill(out, n);
  return 0;
}

struct PkDeleter {
  void operator()(mbedtls_pk_context* pk) const {
    mbedtls_pk_free(pk);
    delete pk;
  }
};
using PkPtr = std::unique_ptr<mbedtls_pk_context, PkDeleter>;

PkPtr new_pk() {
  auto* pk = new mbedtls_pk_context;
  mbedtls_pk_init(pk);
  return PkPtr(pk);
}

Result<PkPtr> generate_p256(RngState& rng) {
  PkPtr pk = new_pk();
  int rc = mbedtls_pk_setup(pk.get(), mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (rc == 0) {
    rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk), rng_callback, &rng);
  }
  if (rc != 0) return internal_error(mbedtls_error("generating a P-256 key", rc));
  return pk;
}

struct CertWriter {
  mbedtls_x509write_cert crt;
  CertWriter() { mbedtls_x509write_crt_init(&crt); }
  ~CertWriter() { mbedtls_x509write_crt_free(&crt); }
};

// Writes the certificate described by `crt` (fully set up) and returns its DER.
Result<std::string> write_der(CertWriter& w, RngState& rng) {
  unsigned char buf[kCertBufferBytes];
  const int len = mbedtls_x509write_crt_der(&w.crt, buf, sizeof buf, rng_callback, &rng);
  if (len < 0) return internal_error(mbedtls_error("writing a certificate", len));
  return std::string(reinterpret_cast<const char*>(buf + sizeof buf - len),
                     static_cast<std::size_t>(len));
}

Result<std::string> der_to_pem(std::string_view der) {
  unsigned char buf[kCertBufferBytes];
  std::size_t olen = 0;
  const int rc = mbedtls_pem_write_buffer(
      "-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n",
      reinterpret_cast<const unsigned char*>(der.data()), der.size(), buf, sizeof buf, &olen);
  if (rc != 0) return internal_error(mbedtls_error("encoding a certificate as PEM", rc));
  return std::string(reinterpret_cast<const char*>(buf), olen > 0 ? olen - 1 : 0);  // no NUL
}

// 16 random bytes with the top bit clear (serials are positive) and the second set, so the
// serial always has 16 bytes and 32 hex digits (126 random bits).
std::string new_serial(RngState& rng) {
  std::string serial(16, '\0');
  rng_callback(&rng, reinterpret_cast<unsigned char*>(serial.data()), serial.size());
  serial[0] = static_cast<char>((static_cast<unsigned char>(serial[0]) & 0x7F) | 0x40);
  return serial;
}

// A value that goes into a certificate subject: `what` names it in the message.
Status check_name(std::string_view what, std::string_view value) {
  if (value.size() > kMaxDeviceIdLength) {
    return invalid_argument(fmt::format("device CA: {} '{}…' is longer than {} characters", what,
                                        value.substr(0, 32), kMaxDeviceIdLength));
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      return invalid_argument(
          fmt::format("device CA: {} '{}' holds a control character", what, value));
    }
    if (c == '\\') {
      return invalid_argument(fmt::format(
          "device CA: {} '{}' holds a backslash, which a certificate subject cannot carry here",
          what, value));
    }
  }
  return Status();
}

Status check_device_id(std::string_view id) {
  if (id.empty()) return invalid_argument("device CA: the device id is empty");
  return check_name("device id", id);
}

}  // namespace

struct DeviceCa::Impl {
  storage::Database& db;
  crypto::AesGcm key_wrap;
  RandomSource& random;
  const Clock& clock;
  DeviceCaOptions options;
  std::mutex rng_mutex;
  RngState rng{&random, &rng_mutex};

  std::string ca_subject;
  std::string ca_key_der;  // wiped on destruction
  // Parsed copies of the CA key, one per concurrent issue(): mbedTLS computes and caches
  // tables inside the key's group while signing, so a key context is never shared by two
  // threads.
  std::mutex pool_mutex;
  std::vector<PkPtr> ca_keys;

  Impl(storage::Database& d, crypto::AesGcm w, RandomSource& r, const Clock& c, DeviceCaOptions o)
      : db(d), key_wrap(std::move(w)), random(r), clock(c), options(std::move(o)) {}
  ~Impl() { wipe(ca_key_der); }

  Result<PkPtr> borrow_ca_key() {
    {
      std::lock_guard lock(pool_mutex);
      if (!ca_keys.empty()) {
        PkPtr pk = std::move(ca_keys.back());
        ca_keys.pop_back();
        return pk;
      }
    }
    PkPtr pk = new_pk();
    const int rc = mbedtls_compat::pk_parse_key(
        pk.get(), reinterpret_cast<const unsigned char*>(ca_key_der.data()), ca_key_der.size(),
        rng_callback, &rng);
    if (rc != 0) return data_loss(mbedtls_error("parsing the CA key", rc));
    return pk;
  }
  void give_back(PkPtr pk) {
    std::lock_guard lock(pool_mutex);
    ca_keys.push_back(std::move(pk));
  }

  static std::string sealed_key_aad(std::string_view ca_fingerprint) {
    return crypto::bound_aad(kWrapAadLabel, {"fleet_ca", "1", ca_fingerprint});
  }
};

DeviceCa::DeviceCa(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceCa::~DeviceCa() = default;

Result<std::unique_ptr<DeviceCa>> DeviceCa::open(storage::Database& db, std::string_view master_key,
                                                 RandomSource& random, const Clock& clock,
                                                 DeviceCaOptions options) {
  if (master_key.size() != kMasterKeyBytes) {
    return invalid_argument(fmt::format("device CA: the master key must be {} bytes, got {}",
                                        kMasterKeyBytes, master_key.size()));
  }
  std::string wrap_key = crypto::hmac_sha256(master_key, kWrapKeyLabel);
  auto gcm = crypto::AesGcm::create(wrap_key);
  wipe(wrap_key);
  if (!gcm.ok()) return gcm.status();
  return open(db, std::move(*gcm), random, clock, std::move(options));
}

Result<std::unique_ptr<DeviceCa>> DeviceCa::open(storage::Database& db, crypto::AesGcm key_wrap,
                                                 RandomSource& random, const Clock& clock,
                                                 DeviceCaOptions options) {
  if (options.ca_validity_days <= 0 || options.device_validity_days <= 0) {
    return invalid_argument(fmt::format(
        "device CA: validity days must be positive (ca_validity_days {}, device_validity_days {})",
        options.ca_validity_days, options.device_validity_days));
  }
  if (options.common_name.empty()) {
    return invalid_argument("device CA: common_name is empty");
  }
  CIVICBUS_RETURN_IF_ERROR(check_name("common_name", options.common_name));
  CIVICBUS_RETURN_IF_ERROR(check_name("organization", options.organization));
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "fleet_ca", kCaMigrations));
  std::unique_ptr<DeviceCa> ca(new DeviceCa(
      std::make_unique<Impl>(db, std::move(key_wrap), random, clock, std::move(options))));
  CIVICBUS_RETURN_IF_ERROR(ca->load_or_create());
  return ca;
}

Status DeviceCa::load_or_create() {
  Impl& im = *impl_;
  return im.db.transaction([&]() -> Status {
    // The subject is kept as the string it was made from: mbedtls_x509_dn_gets does not
    // escape ',' or '=' in values, so reading it back from the certificate is not exact.
    std::optional<std::string> pem, fingerprint, subject, sealed;
    CIVICBUS_RETURN_IF_ERROR(im.db.query(
        "SELECT certificate_pem, fingerprint, subject, sealed_key FROM fleet_ca WHERE id = 1", {},
        [&](const storage::Row& row) {
          pem = std::string(row.get_text(0));
          fingerprint = std::string(row.get_text(1));
          subject = std::string(row.get_text(2));
          sealed = std::string(row.get_blob(3));
          return false;
        }));
    if (pem) {
      auto key = im.key_wrap.open(*sealed, Impl::sealed_key_aad(*fingerprint));
      if (!key.ok()) {
        return failed_precondition(
            "device CA: the master key does not match the one the CA key in fleet_ca was "
            "sealed with (decryption failed); open with the node's original master key");
      }
      im.ca_key_der = std::move(*key);
      // The key must belong to the stored certificate.
      mbedtls_x509_crt crt;
      mbedtls_x509_crt_init(&crt);
      int rc = mbedtls_x509_crt_parse(&crt, reinterpret_cast<const unsigned char*>(pem->c_str()),
                                      pem->size() + 1);
      Status status;
      if (rc != 0) {
        status = data_loss(mbedtls_error("parsing the CA certificate in fleet_ca", rc));
      } else {
        auto pk = im.borrow_ca_key();
        if (!pk.ok()) {
          status = pk.status();
        } else {
          rc = mbedtls_compat::pk_check_pair(&crt.pk, pk->get(), rng_callback, &im.rng);
          if (rc != 0) {
            status = data_loss("device CA: the CA key in fleet_ca does not match its certificate");
          } else {
            im.ca_subject = std::move(*subject);
            im.give_back(std::move(*pk));
          }
        }
      }
      mbedtls_x509_crt_free(&crt);
      CIVICBUS_RETURN_IF_ERROR(status);
      ca_certificate_pem_ = std::move(*pem);
      ca_fingerprint_ = std::move(*fingerprint);
      return Status();
    }

    // First open: a new key and a self-signed certificate.
    CIVICBUS_ASSIGN_OR_RETURN(PkPtr key, generate_p256(im.rng));
    const TimeMs now = now_ms(im.clock);
    const TimeMs not_after = now + static_cast<TimeMs>(im.options.ca_validity_days) * kMsPerDay;
    im.ca_subject = subject_name(im.options.common_name, im.options.organization);
    CertWriter w;
    mbedtls_x509write_crt_set_md_alg(&w.crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w.crt, key.get());
    mbedtls_x509write_crt_set_issuer_key(&w.crt, key.get());
    const std::string serial = new_serial(im.rng);
    int rc = mbedtls_compat::x509write_crt_set_serial_bytes(
        &w.crt, reinterpret_cast<const unsigned char*>(serial.data()), serial.size());
    if (rc == 0) rc = mbedtls_x509write_crt_set_subject_name(&w.crt, im.ca_subject.c_str());
    if (rc == 0) rc = mbedtls_x509write_crt_set_issuer_name(&w.crt, im.ca_subject.c_str());
    if (rc == 0) {
      rc = mbedtls_x509write_crt_set_validity(&w.crt, x509_time(now).c_str(),
                                              x509_time(not_after).c_str());
    }
    if (rc == 0) rc = mbedtls_x509write_crt_set_basic_constraints(&w.crt, 1, 0);
    if (rc == 0) {
      rc = mbedtls_x509write_crt_set_key_usage(
          &w.crt, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
    }
    if (rc == 0) rc = mbedtls_x509write_crt_set_subject_key_identifier(&w.crt);
    if (rc == 0) rc = mbedtls_x509write_crt_set_authority_key_identifier(&w.crt);
    if (rc != 0) return internal_error(mbedtls_error("setting up the CA certificate", rc));
    CIVICBUS_ASSIGN_OR_RETURN(std::string der, write_der(w, im.rng));
    CIVICBUS_ASSIGN_OR_RETURN(std::string cert_pem, der_to_pem(der));
    const std::string fp = crypto::to_hex(crypto::sha256(der));

    unsigned char key_buf[512];
    const int key_len = mbedtls_pk_write_key_der(key.get(), key_buf, sizeof key_buf);
    if (key_len < 0) return internal_error(mbedtls_error("encoding the CA key", key_len));
    std::string key_der(reinterpret_cast<const char*>(key_buf + sizeof key_buf - key_len),
                        static_cast<std::size_t>(key_len));
    explicit_bzero(key_buf, sizeof key_buf);
    const std::string sealed_key = im.key_wrap.seal(im.random, key_der, Impl::sealed_key_aad(fp));
    CIVICBUS_RETURN_IF_ERROR(
        im.db
            .execute("INSERT INTO fleet_ca (id, certificate_pem, fingerprint, subject, sealed_key, "
                     "created_at) VALUES (1, ?, ?, ?, ?, ?)",
                     {std::string_view(cert_pem), std::string_view(fp),
                      std::string_view(im.ca_subject), storage::Blob{sealed_key}, now})
            .status());
    im.ca_key_der = std::move(key_der);
    im.give_back(std::move(key));
    ca_certificate_pem_ = std::move(cert_pem);
    ca_fingerprint_ = fp;
    return Status();
  });
}

Result<IssuedCertificate> DeviceCa::issue(std::string_view device_id) {
  CIVICBUS_ASSIGN_OR_RETURN(IssuedCertificate cert, make_certificate(device_id));
  CIVICBUS_RETURN_IF_ERROR(record(std::span<const IssuedCertificate>(&cert, 1)));
  return cert;
}

Result<std::vector<IssuedCertificate>> DeviceCa::issue_many(
    std::span<const std::string> device_ids, int threads,
    const std::function<void(std::size_t done, std::size_t total)>& progress) {
  for (const std::string& id : device_ids) CIVICBUS_RETURN_IF_ERROR(check_device_id(id));
  const std::size_t total = device_ids.size();
  std::vector<std::optional<IssuedCertificate>> made(total);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;  // guards first_error, done and the progress calls
  Status first_error;
  std::size_t done = 0;
  auto work = [&] {
    for (;;) {
      const std::size_t i = next.fetch_add(1);
      if (i >= total || failed.load()) return;
      auto cert = make_certificate(device_ids[i]);
      std::lock_guard lock(mutex);
      if (!cert.ok()) {
        if (!failed.exchange(true)) first_error = cert.status();
        return;
      }
      made[i] = std::move(*cert);
      ++done;
      if (progress) progress(done, total);
    }
  };
  const std::size_t workers =
      std::min<std::size_t>(total, static_cast<std::size_t>(std::max(1, threads)));
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < workers; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (failed) return first_error;
  std::vector<IssuedCertificate> out;
  out.reserve(total);
  for (auto& m : made) out.push_back(std::move(*m));
  CIVICBUS_RETURN_IF_ERROR(record(out));
  return out;
}

Status DeviceCa::record(std::span<const IssuedCertificate> certificates) {
  Impl& im = *impl_;
  return im.db.transaction([&]() -> Status {
    for (const IssuedCertificate& c : certificates) {
      CIVICBUS_RETURN_IF_ERROR(
          im.db
              .execute("INSERT INTO fleet_device_certs (serial, device_id, fingerprint, "
                       "not_before, not_after, certificate_pem, issued_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       {std::string_view(c.serial_hex), std::string_view(c.device_id),
                        std::string_view(c.fingerprint_sha256), c.not_before, c.not_after,
                        std::string_view(c.certificate_pem), c.not_before})
              .status()
              .with_context(
                  fmt::format("device CA: recording the certificate of '{}'", c.device_id)));
    }
    return Status();
  });
}

Result<IssuedCertificate> DeviceCa::make_certificate(std::string_view device_id) {
  CIVICBUS_RETURN_IF_ERROR(check_device_id(device_id));
  Impl& im = *impl_;
  CIVICBUS_ASSIGN_OR_RETURN(PkPtr device_key, generate_p256(im.rng));
  CIVICBUS_ASSIGN_OR_RETURN(PkPtr ca_key, im.borrow_ca_key());

  IssuedCertificate out;
  out.device_id = std::string(device_id);
  out.not_before = now_ms(im.clock);
  out.not_after = out.not_before + static_cast<TimeMs>(im.options.device_validity_days) * kMsPerDay;
  const std::string subject = subject_name(device_id, im.options.organization);
  const std::string serial = new_serial(im.rng);
  out.serial_hex = crypto::to_hex(serial);
  const std::string san = san_uri_extension(fmt::format("urn:civicbus:device:{}", device_id));

  Result<std::string> der = internal_error("not written");
  {
    CertWriter w;
    mbedtls_x509write_crt_set_md_alg(&w.crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w.crt, device_key.get());
    mbedtls_x509write_crt_set_issuer_key(&w.crt, ca_key.get());
    int rc = mbedtls_compat::x509write_crt_set_serial_bytes(
        &w.crt, reinterpret_cast<const unsigned char*>(serial.data()), serial.size());
    if (rc == 0) rc = mbedtls_x509write_crt_set_subject_name(&w.crt, subject.c_str());
    if (rc == 0) rc = mbedtls_x509write_crt_set_issuer_name(&w.crt, im.ca_subject.c_str());
    if (rc == 0) {
      rc = mbedtls_x509write_crt_set_validity(&w.crt, x509_time(out.not_before).c_str(),
                                              x509_time(out.not_after).c_str());
    }
    if (rc == 0) rc = mbedtls_x509write_crt_set_basic_constraints(&w.crt, 0, -1);
    if (rc == 0) {
      rc = mbedtls_x509write_crt_set_key_usage(&w.crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    }
    if (rc == 0) {
      rc = mbedtls_x509write_crt_set_extension(
          &w.crt, MBEDTLS_OID_SUBJECT_ALT_NAME, MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
          reinterpret_cast<const unsigned char*>(san.data()), san.size());
    }
    if (rc == 0) {
      rc = mbedtls_x509write_crt_set_extension(&w.crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                               MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                               kEkuClientAuth, sizeof kEkuClientAuth);
    }
    if (rc == 0) rc = mbedtls_x509write_crt_set_subject_key_identifier(&w.crt);
    if (rc == 0) rc = mbedtls_x509write_crt_set_authority_key_identifier(&w.crt);
    if (rc != 0) {
      im.give_back(std::move(ca_key));
      return internal_error(mbedtls_error("setting up a device certificate", rc));
    }
    der = write_der(w, im.rng);
  }
  im.give_back(std::move(ca_key));
  if (!der.ok()) return der.status();
  CIVICBUS_ASSIGN_OR_RETURN(out.certificate_pem, der_to_pem(*der));
  out.fingerprint_sha256 = crypto::to_hex(crypto::sha256(*der));

  unsigned char key_pem[1024];
  const int rc = mbedtls_pk_write_key_pem(device_key.get(), key_pem, sizeof key_pem);
  if (rc != 0) return internal_error(mbedtls_error("encoding the device key", rc));
  out.private_key_pem = std::string(reinterpret_cast<const char*>(key_pem));
  explicit_bzero(key_pem, sizeof key_pem);
  return out;
}

Result<int> DeviceCa::revoke(std::string_view serial_or_device_id, std::string_view reason) {
  Impl& im = *impl_;
  const TimeMs now = now_ms(im.clock);
  int revoked = 0;
  CIVICBUS_RETURN_IF_ERROR(im.db.transaction([&]() -> Status {
    std::string serial(serial_or_device_id);
    for (char& c : serial) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CIVICBUS_ASSIGN_OR_RETURN(auto by_serial,
                              im.db.query_int("SELECT COUNT(*) FROM fleet_device_certs "
                                              "WHERE serial = ?",
                                              {std::string_view(serial)}));
    if (by_serial.value_or(0) > 0) {
      CIVICBUS_ASSIGN_OR_RETURN(
          std::int64_t n,
          im.db.execute("UPDATE fleet_device_certs SET revoked_at = ?, revocation_reason = ? "
                        "WHERE serial = ? AND revoked_at IS NULL",
                        {now, reason, std::string_view(serial)}));
      revoked = static_cast<int>(n);
      return Status();
    }
    CIVICBUS_ASSIGN_OR_RETURN(auto by_device,
                              im.db.query_int("SELECT COUNT(*) FROM fleet_device_certs "
                                              "WHERE device_id = ?",
                                              {serial_or_device_id}));
    if (by_device.value_or(0) == 0) {
      return not_found(fmt::format(
          "device CA: no certificate has serial '{}' and no device with that id has one",
          serial_or_device_id));
    }
    CIVICBUS_ASSIGN_OR_RETURN(
        std::int64_t n,
        im.db.execute("UPDATE fleet_device_certs SET revoked_at = ?, revocation_reason = ? "
                      "WHERE device_id = ? AND revoked_at IS NULL",
                      {now, reason, serial_or_device_id}));
    revoked = static_cast<int>(n);
    return Status();
  }));
  return revoked;
}

Result<bool> DeviceCa::is_revoked(std::string_view serial_hex) {
  std::string serial(serial_hex);
  for (char& c : serial) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::optional<bool> revoked;
  CIVICBUS_RETURN_IF_ERROR(
      impl_->db.query("SELECT revoked_at IS NOT NULL FROM fleet_device_certs WHERE serial = ?",
                      {std::string_view(serial)}, [&](const storage::Row& row) {
                        revoked = row.get_int(0) != 0;
                        return false;
                      }));
  if (!revoked) {
    return not_found(fmt::format("device CA: no certificate with serial '{}'", serial_hex));
  }
  return *revoked;
}

Result<std::vector<DeviceCertificate>> DeviceCa::certificates_of(std::string_view device_id) {
  std::vector<DeviceCertificate> out;
  CIVICBUS_RETURN_IF_ERROR(impl_->db.query(
      "SELECT serial, device_id, fingerprint, certificate_pem, not_before, not_after, issued_at, "
      "revoked_at, revocation_reason FROM fleet_device_certs WHERE device_id = ? "
      "ORDER BY issued_at, rowid",
      {device_id}, [&](const storage::Row& row) {
        DeviceCertificate c;
        c.serial_hex = std::string(row.get_text(0));
        c.device_id = std::string(row.get_text(1));
        c.fingerprint_sha256 = std::string(row.get_text(2));
        c.certificate_pem = std::string(row.get_text(3));
        c.not_before = row.get_int(4);
        c.not_after = row.get_int(5);
        c.issued_at = row.get_int(6);
        c.revoked_at = row.get_optional_int(7);
        if (!row.is_null(8)) c.revocation_reason = std::string(row.get_text(8));
        out.push_back(std::move(c));
        return true;
      }));
  return out;
}

Result<Json> DeviceCa::revocation_list() {
  Json revoked = Json::array();
  CIVICBUS_RETURN_IF_ERROR(impl_->db.query(
      "SELECT serial, device_id, revoked_at, revocation_reason FROM fleet_device_certs "
      "WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial",
      {}, [&](const storage::Row& row) {
        revoked.push_back(Json::object({
            {"serial", Json(row.get_text(0))},
            {"device_id", Json(row.get_text(1))},
            {"revoked_at", Json(row.get_int(2))},
            {"reason", row.is_null(3) ? Json("") : Json(row.get_text(3))},
        }));
        return true;
      }));
  return Json::object({
      {"issuer", Json(impl_->ca_subject)},
      {"ca_fingerprint_sha256", Json(ca_fingerprint_)},
      {"generated_at", Json(now_ms(impl_->clock))},
      {"revoked", std::move(revoked)},
  });
}

}  // namespace civicbus::fleet

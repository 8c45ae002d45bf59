#include "http/tls.hpp"

#include <fmt/format.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl_ciphersuites.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>

#include "civicbus/core/crypto.hpp"
#include "core/ascii.hpp"
#include "core/mbedtls_compat.hpp"

namespace civicbus::http {

namespace {

namespace compat = mbedtls_compat;

// "*.example.org" or a name without '*'.
bool valid_server_name_pattern(std::string_view p) {
  if (p.empty()) return false;
  if (p.starts_with("*.")) p.remove_prefix(2);
  if (p.empty() || p.front() == '.' || p.back() == '.') return false;
  return std::none_of(p.begin(), p.end(), [](char c) {
    return c == '*' || c == ' ' || c == '/' || c == ':' || static_cast<unsigned char>(c) < 0x21;
  });
}

Status check_tls_version(TlsVersion v) {
  if (v == TlsVersion::kTls13 && !compat::kHasTls13) {
    return invalid_argument(fmt::format(
        "TLS 1.3 as the minimum version needs mbedTLS 3.x; this build has mbedTLS {} (TLS 1.2 "
        "only): set min_version to TLS 1.2",
        compat::kVersionString));
  }
  return {};
}

}  // namespace

Status TlsServerOptions::validate() const {
  if (default_certificate.cert_chain_file.empty() || default_certificate.key_file.empty()) {
    return invalid_argument(
        "TLS server needs a default certificate: set both its cert_chain_file and key_file");
  }
  for (const auto& sni : sni_certificates) {
    if (!valid_server_name_pattern(sni.server_name)) {
      return invalid_argument(
          fmt::format("SNI server_name '{}' is not a host name or a wildcard like '*.example.org'",
                      sni.server_name));
    }
    if (sni.cert_chain_file.empty() || sni.key_file.empty()) {
      return invalid_argument(fmt::format(
          "SNI certificate for '{}' needs both cert_chain_file and key_file", sni.server_name));
    }
  }
  if (client_auth != TlsClientAuth::kNone && client_ca_file.empty()) {
    return invalid_argument(
        "TLS client certificates are asked for (client_auth optional or required) but no "
        "client_ca_file names the CAs that issue them");
  }
  return check_tls_version(min_version);
}

Status TlsClientOptions::validate() const {
  if (client_cert_file.empty() != client_key_file.empty()) {
    return invalid_argument(
        "TLS client certificate needs both client_cert_file and client_key_file, or neither");
  }
  asio::error_code not_ip;
  (void)asio::ip::make_address(server_name, not_ip);
  if (!server_name.empty() && not_ip && !valid_server_name_pattern(server_name)) {
    return invalid_argument(fmt::format("TLS server_name '{}' is not a host name", server_name));
  }
  if (server_name.starts_with("*")) {
    return invalid_argument(
        fmt::format("TLS server_name '{}' is a wildcard; name the host the certificate must be for",
                    server_name));
  }
  return check_tls_version(min_version);
}

std::string normalize_fingerprint(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return out;
}

namespace detail {

namespace {

namespace compat = mbedtls_compat;

std::string mbedtls_text(int rc) {
  std::array<char, 200> buf{};
  mbedtls_strerror(rc, buf.data(), buf.size());
  return fmt::format("{} (mbedTLS -0x{:04x})", buf.data(), static_cast<unsigned>(-rc));
}

// The TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher only; TLS 1.3 suites first
// where the build has them. Zero-terminated, as mbedtls_ssl_conf_ciphersuites wants.
std::vector<int> ciphersuite_list() {
  std::vector<int> suites = compat::tls13_ciphersuites();
  for (int s : {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}) {
    suites.push_back(s);
  }
  suites.push_back(0);
  return suites;
}

Status check_readable(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return not_found(fmt::format("{} file '{}' does not exist or is not a file", what, path));
  }
  return {};
}

Result<std::unique_ptr<mbedtls_x509_crt>> load_ca(const std::string& path, std::string_view what) {
  CIVICBUS_RETURN_IF_ERROR(check_readable(path, what));
  auto ca = std::make_unique<mbedtls_x509_crt>();
  mbedtls_x509_crt_init(ca.get());
  const int rc = mbedtls_x509_crt_parse_file(ca.get(), path.c_str());
  if (rc != 0) {
    mbedtls_x509_crt_free(ca.get());
    return invalid_argument(fmt::format(
        "{} file '{}' is not a PEM certificate bundle (or holds a certificate that does not "
        "parse): {}",
        what, path, rc > 0 ? fmt::format("{} certificate(s) failed", rc) : mbedtls_text(rc)));
  }
  return ca;
}

void free_ca(std::unique_ptr<mbedtls_x509_crt>& ca) {
  if (ca) mbedtls_x509_crt_free(ca.get());
}

// What a failed verification's flags mean, most telling first.
std::string describe_verify_flags(std::uint32_t flags, std::string_view expected_name) {
  std::vector<std::string> parts;
  if (flags & MBEDTLS_X509_BADCERT_MISSING) parts.emplace_back("no certificate was sent");
  if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) parts.emplace_back("not trusted");
  if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
    parts.push_back(
        expected_name.empty()
            ? std::string("host name mismatch")
            : fmt::format("host name mismatch: the certificate is not for '{}'", expected_name));
  }
  if (flags & MBEDTLS_X509_BADCERT_EXPIRED) parts.emplace_back("expired");
  if (flags & MBEDTLS_X509_BADCERT_FUTURE) parts.emplace_back("not yet valid");
  if (flags & MBEDTLS_X509_BADCERT_REVOKED) parts.emplace_back("revoked");
  if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
               MBEDTLS_X509_BADCERT_NS_CERT_TYPE)) {
    parts.emplace_back("not issued for this use (key usage)");
  }
  if (flags &
      (MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK | MBEDTLS_X509_BADCERT_BAD_KEY)) {
    parts.emplace_back("weak signature or key");
  }
  if (parts.empty()) {
    std::array<char, 512> buf{};
    mbedtls_x509_crt_verify_info(buf.data(), buf.size(), "", flags);
    std::string text(buf.data());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    parts.push_back(text.empty() ? fmt::format("flags 0x{:x}", flags) : text);
  }
  std::string text;
  for (const auto& part : parts) {
    if (!text.empty()) text += ", ";
    text += part;
  }
  return text;
}

// ---- a minimal DER reader for the subjectAltName extension ----
// mbedTLS 2.28 lists only dNSName and otherName entries in crt->subject_alt_names, so the
// extension is read from the raw extensions, the same way for both versions.
struct Der {
  const unsigned char* p;
  const unsigned char* end;

  // Reads one TLV; false at the end or on malformed input.
  bool next(unsigned char& tag, const unsigned char*& value, std::size_t& len) {
    if (p >= end || end - p < 2) return false;
    tag = *p++;
    std::size_t n = *p++;
    if (n & 0x80) {
      const std::size_t bytes = n & 0x7f;
      if (bytes == 0 || bytes > 4 || static_cast<std::size_t>(end - p) < bytes) return false;
      n = 0;
      for (std::size_t i = 0; i < bytes; ++i) n = (n << 8) | *p++;
    }
    if (static_cast<std::size_t>(end - p) < n) return false;
    value = p;
    len = n;
    p += n;
    return true;
  }
};

constexpr unsigned char kOidSubjectAltName[] = {0x55, 0x1d, 0x11};  // 2.5.29.17
constexpr unsigned char kOidCommonName[] = {0x55, 0x04, 0x03};      // 2.5.4.3

void read_subject_alt_names(const mbedtls_x509_crt& crt, PeerCertificate& out) {
  Der ext{crt.v3_ext.p, crt.v3_ext.p + crt.v3_ext.len};
  if (ext.p == nullptr || ext.p == ext.end) return;
  unsigned char tag;
  const unsigned char* value;
  std::size_t len;
  if (*ext.p == 0xa3) {  // the [3] EXPLICIT wrapper, should a version keep it
    if (!ext.next(tag, value, len)) return;
    ext = Der{value, value + len};
  }
  if (!ext.next(tag, value, len) || tag != 0x30) return;  // Extensions ::= SEQUENCE OF
  Der list{value, value + len};
  while (list.next(tag, value, len)) {
    if (tag != 0x30) return;
    Der extension{value, value + len};
    unsigned char t;
    const unsigned char* v;
    std::size_t n;
    if (!extension.next(t, v, n) || t != 0x06) return;
    if (n != sizeof(kOidSubjectAltName) || !std::equal(v, v + n, kOidSubjectAltName)) continue;
    if (!extension.next(t, v, n)) return;
    if (t == 0x01 && !extension.next(t, v, n)) return;  // critical
    if (t != 0x04) return;                              // extnValue OCTET STRING
    Der octets{v, v + n};
    if (!octets.next(t, v, n) || t != 0x30) return;  // GeneralNames
    Der names{v, v + n};
    while (names.next(t, v, n)) {
      const std::string text(reinterpret_cast<const char*>(v), n);
      switch (t) {
        case 0x82:  // [2] dNSName
          out.dns_names.push_back(text);
          break;
        case 0x86:  // [6] uniformResourceIdentifier
          out.uris.push_back(text);
          break;
        case 0x87:  // [7] iPAddress
          if (n == 4) {
            asio::ip::address_v4::bytes_type b;
            std::copy(v, v + 4, b.begin());
            out.ip_addresses.push_back(asio::ip::address_v4(b).to_string());
          } else if (n == 16) {
            asio::ip::address_v6::bytes_type b;
            std::copy(v, v + 16, b.begin());
            out.ip_addresses.push_back(asio::ip::address_v6(b).to_string());
          }
          break;
        default:
          break;
      }
    }
    return;
  }
}

std::string dn_text(const mbedtls_x509_name& name) {
  std::array<char, 1024> buf{};
  const int n = mbedtls_x509_dn_gets(buf.data(), buf.size(), &name);
  return n < 0 ? std::string() : std::string(buf.data(), static_cast<std::size_t>(n));
}

std::string endpoint_text(asio::ip::tcp::socket& socket) {
  asio::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  if (ec) return "an unconnected peer";
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

bool name_matches(const std::string& pattern, bool wildcard, std::string_view name) {
  if (!wildcard) return name == pattern;
  // pattern is "*.rest"; the name must be "label.rest" with a non-empty label without dots.
  const std::string_view rest = std::string_view(pattern).substr(1);  // ".rest"
  if (name.size() <= rest.size() || !name.ends_with(rest)) return false;
  const std::string_view label = name.substr(0, name.size() - rest.size());
  return label.find('.') == std::string_view::npos;
}

}  // namespace

// ---- error category ----

namespace {
class TlsCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "civicbus.tls"; }
  std::string message(int ev) const override {
    switch (static_cast<TlsErrc>(ev)) {
      case TlsErrc::kStreamTruncated:
        return "TLS stream truncated: the connection closed without a close_notify";
      case TlsErrc::kProtocolError:
        return "TLS protocol error";
      case TlsErrc::kNotHandshaken:
        return "TLS handshake not completed";
    }
    return "unknown TLS error";
  }
};
}  // namespace

const std::error_category& tls_category() {
  static const TlsCategory category;
  return category;
}

std::error_code make_error_code(TlsErrc e) {
  return {static_cast<int>(e), tls_category()};
}

// ---- TlsRandom ----

TlsRandom::TlsRandom() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
}

TlsRandom::~TlsRandom() {
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Status TlsRandom::seed(std::string_view personalization) {
  const int rc = mbedtls_ctr_drbg_seed(
      &drbg_, mbedtls_entropy_func, &entropy_,
      reinterpret_cast<const unsigned char*>(personalization.data()), personalization.size());
  if (rc != 0) {
    return unavailable("cannot seed the TLS random generator from system entropy: " +
                       mbedtls_text(rc));
  }
  return {};
}

int TlsRandom::generate(void* self, unsigned char* out, std::size_t len) {
  auto* r = static_cast<TlsRandom*>(self);
  std::lock_guard lock(r->mu_);
  return mbedtls_ctr_drbg_random(&r->drbg_, out, len);
}

// ---- TlsCredential ----

TlsCredential::TlsCredential() {
  mbedtls_x509_crt_init(&chain_);
  mbedtls_pk_init(&key_);
}

TlsCredential::~TlsCredential() {
  mbedtls_pk_free(&key_);
  mbedtls_x509_crt_free(&chain_);
}

Result<std::unique_ptr<TlsCredential>> TlsCredential::load(const std::string& cert_chain_file,
                                                           const std::string& key_file,
                                                           TlsRandom& random,
                                                           std::string_view what) {
  CIVICBUS_RETURN_IF_ERROR(check_readable(cert_chain_file, fmt::format("{} chain", what)));
  CIVICBUS_RETURN_IF_ERROR(check_readable(key_file, fmt::format("{} key", what)));
  auto c = std::make_unique<TlsCredential>();
  int rc = mbedtls_x509_crt_parse_file(&c->chain_, cert_chain_file.c_str());
  if (rc != 0) {
    return invalid_argument(fmt::format(
        "{} chain file '{}' is not a PEM certificate chain: {}", what, cert_chain_file,
        rc > 0 ? fmt::format("{} certificate(s) failed to parse", rc) : mbedtls_text(rc)));
  }
  rc = compat::pk_parse_keyfile(&c->key_, key_file.c_str(), &TlsRandom::generate, &random);
  if (rc != 0) {
    return invalid_argument(
        fmt::format("{} key file '{}' is not an unencrypted PEM or DER private key: {}", what,
                    key_file, mbedtls_text(rc)));
  }
  rc = compat::pk_check_pair(&c->chain_.pk, &c->key_, &TlsRandom::generate, &random);
  if (rc != 0) {
    return invalid_argument(fmt::format(
        "{} key file '{}' does not belong to the first certificate of '{}' (the chain must "
        "start with the leaf certificate): {}",
        what, key_file, cert_chain_file, mbedtls_text(rc)));
  }
  return c;
}

// ---- TlsServerContext ----

Result<std::shared_ptr<const TlsServerContext>> TlsServerContext::create(
    const TlsServerOptions& options) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  std::shared_ptr<TlsServerContext> context(new TlsServerContext());
  CIVICBUS_RETURN_IF_ERROR(context->init(options));
  return std::shared_ptr<const TlsServerContext>(std::move(context));
}

TlsServerContext::~TlsServerContext() {
  if (config_ready_) mbedtls_ssl_config_free(&config_);
  free_ca(client_ca_);
}

Status TlsServerContext::init(const TlsServerOptions& options) {
  options_ = options;
  if (compat::tls_library_init() != 0) {
    return internal_error("cannot initialise the PSA crypto library that TLS runs on");
  }
  CIVICBUS_RETURN_IF_ERROR(random_.seed("civicbus tls server"));
  CIVICBUS_ASSIGN_OR_RETURN(
      default_credential_,
      TlsCredential::load(options.default_certificate.cert_chain_file,
                          options.default_certificate.key_file, random_, "default certificate"));
  for (const auto& entry : options.sni_certificates) {
    SniEntry sni;
    sni.pattern = ascii_lower(entry.server_name);
    sni.wildcard = sni.pattern.starts_with("*.");
    CIVICBUS_ASSIGN_OR_RETURN(
        sni.credential,
        TlsCredential::load(entry.cert_chain_file, entry.key_file, random_,
                            fmt::format("SNI certificate for '{}'", entry.server_name)));
    sni_.push_back(std::move(sni));
  }
  // Exact names win over wildcards; otherwise the configured order holds.
  std::stable_sort(sni_.begin(), sni_.end(),
                   [](const SniEntry& a, const SniEntry& b) { return !a.wildcard && b.wildcard; });
  if (options.client_auth != TlsClientAuth::kNone) {
    CIVICBUS_ASSIGN_OR_RETURN(client_ca_, load_ca(options.client_ca_file, "TLS client CA"));
  }

  mbedtls_ssl_config_init(&config_);
  config_ready_ = true;
  int rc = mbedtls_ssl_config_defaults(&config_, MBEDTLS_SSL_IS_SERVER,
                                       MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) return internal_error("TLS server configuration: " + mbedtls_text(rc));
  mbedtls_ssl_conf_rng(&config_, &TlsRandom::generate, &random_);
  compat::conf_versions(&config_, options.min_version == TlsVersion::kTls13);
  compat::conf_key_exchange_groups(&config_);
  ciphersuites_ = ciphersuite_list();
  mbedtls_ssl_conf_ciphersuites(&config_, ciphersuites_.data());
  rc =
      mbedtls_ssl_conf_own_cert(&config_, default_credential_->chain(), default_credential_->key());
  if (rc != 0) return internal_error("TLS server certificate: " + mbedtls_text(rc));
  // Also without SNI certificates: the callback records the name for TlsStream::server_name().
  mbedtls_ssl_conf_sni(&config_, &TlsServerContext::on_sni, this);
  switch (options.client_auth) {
    case TlsClientAuth::kNone:
      mbedtls_ssl_conf_authmode(&config_, MBEDTLS_SSL_VERIFY_NONE);
      break;
    case TlsClientAuth::kOptional:
      mbedtls_ssl_conf_authmode(&config_, MBEDTLS_SSL_VERIFY_OPTIONAL);
      break;
    case TlsClientAuth::kRequired:
      mbedtls_ssl_conf_authmode(&config_, MBEDTLS_SSL_VERIFY_REQUIRED);
      break;
  }
  if (client_ca_) mbedtls_ssl_conf_ca_chain(&config_, client_ca_.get(), nullptr);
  return {};
}

TlsCredential* TlsServerContext::select(std::string_view server_name) const {
  if (server_name.empty()) return nullptr;
  const std::string name = ascii_lower(server_name);
  for (const auto& entry : sni_) {
    if (name_matches(entry.pattern, entry.wildcard, name)) return entry.credential.get();
  }
  return nullptr;
}

int TlsServerContext::on_sni(void* self, mbedtls_ssl_context* ssl, const unsigned char* name,
                             std::size_t len) {
  const auto* context = static_cast<const TlsServerContext*>(self);
  const std::string_view server_name(reinterpret_cast<const char*>(name), len);
  if (auto* stream = static_cast<TlsStream*>(compat::ssl_user_pointer(ssl))) {
    stream->server_name_ = ascii_lower(server_name);
  }
  // An unknown name gets the default certificate rather than a failed handshake, as most
  // servers do; the client's own name check decides.
  if (TlsCredential* credential = context->select(server_name)) {
    return mbedtls_ssl_set_hs_own_cert(ssl, credential->chain(), credential->key());
  }
  return 0;
}

std::string TlsServerContext::certificate_fingerprint(std::string_view server_name) const {
  TlsCredential* credential = select(server_name);
  if (credential == nullptr) credential = default_credential_.get();
  return describe_certificate(*credential->chain()).sha256_fingerprint;
}

// ---- TlsServerContextHolder ----

Result<std::unique_ptr<TlsServerContextHolder>> TlsServerContextHolder::create(
    TlsServerOptions options) {
  CIVICBUS_ASSIGN_OR_RETURN(auto context, TlsServerContext::create(options));
  return std::make_unique<TlsServerContextHolder>(std::move(context));
}

TlsServerContextHolder::TlsServerContextHolder(std::shared_ptr<const TlsServerContext> initial)
    : current_(std::move(initial)) {}

std::shared_ptr<const TlsServerContext> TlsServerContextHolder::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

Status TlsServerContextHolder::reload() {
  return reload(current()->options());
}

Status TlsServerContextHolder::reload(const TlsServerOptions& options) {
  // Built outside the lock: parsing keys takes a while and new connections keep starting.
  auto fresh = TlsServerContext::create(options);
  if (!fresh.ok()) {
    return fresh.status().with_context(
        "TLS reload failed; still serving the previous certificates");
  }
  std::shared_ptr<const TlsServerContext> old;
  {
    std::lock_guard lock(mu_);
    old = std::exchange(current_, std::move(fresh).value());
    ++generation_;
  }
  return {};  // `old` is freed here unless live connections still hold it
}

std::uint64_t TlsServerContextHolder::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

// ---- TlsClientContext ----

Result<std::shared_ptr<const TlsClientContext>> TlsClientContext::create(
    const TlsClientOptions& options) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  std::shared_ptr<TlsClientContext> context(new TlsClientContext());
  CIVICBUS_RETURN_IF_ERROR(context->init(options));
  return std::shared_ptr<const TlsClientContext>(std::move(context));
}

TlsClientContext::~TlsClientContext() {
  if (config_ready_) mbedtls_ssl_config_free(&config_);
  free_ca(ca_);
}

Status TlsClientContext::init(const TlsClientOptions& options) {
  options_ = options;
  if (compat::tls_library_init() != 0) {
    return internal_error("cannot initialise the PSA crypto library that TLS runs on");
  }
  CIVICBUS_RETURN_IF_ERROR(random_.seed("civicbus tls client"));
  if (options.verify_peer) {
    std::string ca_file = options.ca_file;
    if (ca_file.empty()) {
      for (const char* candidate :
           {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(candidate, ec)) {
          ca_file = candidate;
          break;
        }
      }
      if (ca_file.empty()) {
        return not_found(
            "TLS client has no ca_file and no system CA bundle was found "
            "(/etc/ssl/certs/ca-certificates.crt); set ca_file or install ca-certificates");
      }
    }
    CIVICBUS_ASSIGN_OR_RETURN(ca_, load_ca(ca_file, "TLS CA"));
  }
  if (!options.client_cert_file.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(client_credential_,
                              TlsCredential::load(options.client_cert_file, options.client_key_file,
                                                  random_, "TLS client certificate"));
  }

  mbedtls_ssl_config_init(&config_);
  config_ready_ = true;
  int rc = mbedtls_ssl_config_defaults(&config_, MBEDTLS_SSL_IS_CLIENT,
                                       MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) return internal_error("TLS client configuration: " + mbedtls_text(rc));
  mbedtls_ssl_conf_rng(&config_, &TlsRandom::generate, &random_);
  compat::conf_versions(&config_, options.min_version == TlsVersion::kTls13);
  compat::conf_key_exchange_groups(&config_);
  ciphersuites_ = ciphersuite_list();
  mbedtls_ssl_conf_ciphersuites(&config_, ciphersuites_.data());
  mbedtls_ssl_conf_authmode(
      &config_, options.verify_peer ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
  if (ca_) mbedtls_ssl_conf_ca_chain(&config_, ca_.get(), nullptr);
  if (client_credential_) {
    rc =
        mbedtls_ssl_conf_own_cert(&config_, client_credential_->chain(), client_credential_->key());
    if (rc != 0) return internal_error("TLS client certificate: " + mbedtls_text(rc));
  }
  return {};
}

// ---- TlsStream ----

TlsStream::TlsStream(asio::ip::tcp::socket& socket, bool is_server)
    : socket_(socket), is_server_(is_server) {
  mbedtls_ssl_init(&ssl_);
}

TlsStream::~TlsStream() {
  mbedtls_ssl_free(&ssl_);
}

Status TlsStream::setup(const mbedtls_ssl_config* config) {
  peer_text_ = endpoint_text(socket_);
  const int rc = mbedtls_ssl_setup(&ssl_, config);
  if (rc != 0) {
    return resource_exhausted(fmt::format("TLS session for {}: {}", peer_text_, mbedtls_text(rc)));
  }
  // The BIO pointer doubles as the user pointer on mbedTLS 2.x (see mbedtls_compat.hpp).
  mbedtls_ssl_set_bio(&ssl_, this, &TlsStream::bio_send, &TlsStream::bio_recv, nullptr);
  compat::set_ssl_user_pointer(&ssl_, this);
  asio::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) return io_error(fmt::format("TLS session for {}: {}", peer_text_, ec.message()));
  return {};
}

Result<std::unique_ptr<TlsStream>> TlsStream::server(
    asio::ip::tcp::socket& socket, std::shared_ptr<const TlsServerContext> context) {
  std::unique_ptr<TlsStream> stream(new TlsStream(socket, true));
  stream->server_context_ = std::move(context);
  CIVICBUS_RETURN_IF_ERROR(stream->setup(stream->server_context_->config()));
  return stream;
}

Result<std::unique_ptr<TlsStream>> TlsStream::client(
    asio::ip::tcp::socket& socket, std::shared_ptr<const TlsClientContext> context,
    std::string_view host) {
  std::unique_ptr<TlsStream> stream(new TlsStream(socket, false));
  stream->client_context_ = std::move(context);
  const TlsClientOptions& options = stream->client_context_->options();
  CIVICBUS_RETURN_IF_ERROR(stream->setup(stream->client_context_->config()));

  std::string name(options.server_name.empty() ? host : std::string_view(options.server_name));
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);  // "[::1]" from a URL
  }
  if (name.empty()) {
    return invalid_argument("TLS client needs the host name it connects to (or server_name)");
  }
  stream->expected_name_ = name;
  asio::error_code ec;
  const auto ip = asio::ip::make_address(name, ec);
  int rc = 0;
  if (!ec) {
    // An IP address is not sent as SNI, and mbedTLS 2.28 cannot match iPAddress SANs: no name
    // is set (which also tells 3.6 that no name check is wanted) and verify_ip checks the SANs.
    stream->expected_ip_ = ip;
    rc = mbedtls_ssl_set_hostname(&stream->ssl_, nullptr);
    if (options.verify_peer) {
      mbedtls_ssl_set_verify(&stream->ssl_, &TlsStream::verify_ip, stream.get());
    }
  } else {
    rc = mbedtls_ssl_set_hostname(&stream->ssl_, name.c_str());
  }
  if (rc != 0) {
    return invalid_argument(fmt::format("TLS host name '{}': {}", name, mbedtls_text(rc)));
  }
  return stream;
}

int TlsStream::verify_ip(void* self, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags) {
  if (depth != 0) return 0;
  const auto* stream = static_cast<TlsStream*>(self);
  PeerCertificate described;
  read_subject_alt_names(*crt, described);
  const bool match = std::any_of(described.ip_addresses.begin(), described.ip_addresses.end(),
                                 [&](const std::string& a) {
                                   asio::error_code ec;
                                   const auto addr = asio::ip::make_address(a, ec);
                                   return !ec && addr == *stream->expected_ip_;
                                 });
  if (!match) *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

int TlsStream::bio_send(void* self, const unsigned char* buf, std::size_t len) {
  auto* stream = static_cast<TlsStream*>(self);
  asio::error_code ec;
  const std::size_t n = stream->socket_.send(asio::buffer(buf, len), 0, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    return MBEDTLS_ERR_SSL_WANT_WRITE;
  }
  if (ec == asio::error::interrupted) return MBEDTLS_ERR_SSL_WANT_WRITE;
  if (ec) {
    stream->socket_error_ = ec;
    return MBEDTLS_ERR_NET_SEND_FAILED;
  }
  return static_cast<int>(n);
}

int TlsStream::bio_recv(void* self, unsigned char* buf, std::size_t len) {
  auto* stream = static_cast<TlsStream*>(self);
  asio::error_code ec;
  const std::size_t n = stream->socket_.receive(asio::buffer(buf, len), 0, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    return MBEDTLS_ERR_SSL_WANT_READ;
  }
  if (ec == asio::error::interrupted) return MBEDTLS_ERR_SSL_WANT_READ;
  if (ec == asio::error::eof) {
    stream->tcp_eof_ = true;
    return 0;
  }
  if (ec) {
    stream->socket_error_ = ec;
    return MBEDTLS_ERR_NET_RECV_FAILED;
  }
  return static_cast<int>(n);
}

asio::awaitable<asio::error_code> TlsStream::wait_for(int rc) {
  asio::error_code ec;
  co_await socket_.async_wait(rc == MBEDTLS_ERR_SSL_WANT_READ ? asio::socket_base::wait_read
                                                              : asio::socket_base::wait_write,
                              asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

Status TlsStream::handshake_failure(int rc, const asio::error_code& wait_error) {
  const std::string prefix = fmt::format("TLS handshake with {} failed", peer_text_);
  if (wait_error) {
    last_error_ = wait_error.message();
    if (wait_error == asio::error::operation_aborted || wait_error == asio::error::bad_descriptor) {
      return cancelled(prefix + ": cancelled (timed out or shut down)");
    }
    return unavailable(fmt::format("{}: {}", prefix, wait_error.message()));
  }
  last_error_ = mbedtls_text(rc);
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    const std::uint32_t flags = mbedtls_ssl_get_verify_result(&ssl_);
    return unauthenticated(fmt::format(
        "{}: {} verify failed ({})", prefix, is_server_ ? "client certificate" : "certificate",
        describe_verify_flags(flags, is_server_ ? std::string_view() : expected_name_)));
  }
  if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
    return unavailable(fmt::format(
        "{}: the peer ended it with a fatal alert ({})", prefix,
        is_server_ ? "it may not trust this server's certificate or share no cipher suite"
                   : "it may require a client certificate, not trust this one, or share no "
                     "cipher suite or protocol version"));
  }
  if (rc == MBEDTLS_ERR_NET_SEND_FAILED || rc == MBEDTLS_ERR_NET_RECV_FAILED) {
    return unavailable(fmt::format("{}: {}", prefix, socket_error_.message()));
  }
  if (rc == MBEDTLS_ERR_SSL_CONN_EOF || tcp_eof_) {
    return unavailable(prefix + ": the peer closed the connection");
  }
  if (const char* text = compat::version_specific_error_text(rc)) {
    return unavailable(fmt::format("{}: {} ({})", prefix, text, last_error_));
  }
  return unavailable(fmt::format("{}: {}", prefix, last_error_));
}

asio::awaitable<Status> TlsStream::handshake() {
  for (;;) {
    const int rc = mbedtls_ssl_handshake(&ssl_);
    if (rc == 0) break;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      const asio::error_code ec = co_await wait_for(rc);
      if (ec) co_return handshake_failure(rc, ec);
      continue;
    }
    co_return handshake_failure(rc, {});
  }

  const mbedtls_x509_crt* peer = mbedtls_ssl_get_peer_cert(&ssl_);
  const std::uint32_t flags = mbedtls_ssl_get_verify_result(&ssl_);
  const bool verifying = is_server_ ? server_context_->options().client_auth != TlsClientAuth::kNone
                                    : client_context_->options().verify_peer;
  if (is_server_ && peer != nullptr && verifying && flags != 0) {
    // kOptional: mbedTLS finishes the handshake with a certificate that failed; one that is
    // sent must verify, so the connection ends here.
    (void)mbedtls_ssl_send_alert_message(&ssl_, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                         MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
    last_error_ = "client certificate verify failed";
    co_return unauthenticated(
        fmt::format("TLS handshake with {} failed: client certificate verify failed ({})",
                    peer_text_, describe_verify_flags(flags, {})));
  }
  if (peer != nullptr) peer_ = describe_certificate(*peer);
  handshake_done_ = true;
  co_return Status();
}

std::error_code TlsStream::io_failure(int rc) {
  last_error_ = mbedtls_text(rc);
  if (rc == MBEDTLS_ERR_NET_SEND_FAILED || rc == MBEDTLS_ERR_NET_RECV_FAILED) {
    return socket_error_;
  }
  if (rc == MBEDTLS_ERR_SSL_CONN_EOF || tcp_eof_) return TlsErrc::kStreamTruncated;
  return TlsErrc::kProtocolError;
}

asio::awaitable<std::size_t> TlsStream::read_some(asio::mutable_buffer buffer,
                                                  asio::error_code& ec) {
  ec = {};
  if (!handshake_done_) {
    ec = TlsErrc::kNotHandshaken;
    co_return 0;
  }
  if (buffer.size() == 0) co_return 0;
  for (;;) {
    const int rc =
        mbedtls_ssl_read(&ssl_, static_cast<unsigned char*>(buffer.data()), buffer.size());
    if (rc > 0) co_return static_cast<std::size_t>(rc);
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      ec = asio::error::eof;
      co_return 0;
    }
    if (rc == 0) {  // the TCP stream ended without close_notify
      ec = TlsErrc::kStreamTruncated;
      co_return 0;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      ec = co_await wait_for(rc);
      if (ec) co_return 0;
      continue;
    }
    if (compat::read_should_retry(rc)) continue;
    ec = io_failure(rc);
    co_return 0;
  }
}

asio::awaitable<void> TlsStream::write_all(asio::const_buffer buffer, asio::error_code& ec) {
  ec = {};
  if (!handshake_done_) {
    ec = TlsErrc::kNotHandshaken;
    co_return;
  }
  const auto* p = static_cast<const unsigned char*>(buffer.data());
  std::size_t left = buffer.size();
  while (left > 0) {
    const int rc = mbedtls_ssl_write(&ssl_, p, left);
    if (rc > 0) {
      p += rc;
      left -= static_cast<std::size_t>(rc);
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      ec = co_await wait_for(rc);
      if (ec) co_return;
      continue;
    }
    ec = io_failure(rc);
    co_return;
  }
}

asio::awaitable<void> TlsStream::shutdown() {
  if (handshake_done_) {
    for (int attempts = 0; attempts < 64; ++attempts) {
      const int rc = mbedtls_ssl_close_notify(&ssl_);
      if (rc != MBEDTLS_ERR_SSL_WANT_WRITE && rc != MBEDTLS_ERR_SSL_WANT_READ) break;
      if (co_await wait_for(rc)) break;
    }
    handshake_done_ = false;
  }
  asio::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
}

std::string_view TlsStream::version() const {
  if (!handshake_done_) return {};
  const char* v = mbedtls_ssl_get_version(&ssl_);
  return v ? std::string_view(v) : std::string_view();
}

std::string_view TlsStream::cipher_suite() const {
  if (!handshake_done_) return {};
  const char* c = mbedtls_ssl_get_ciphersuite(&ssl_);
  return c ? std::string_view(c) : std::string_view();
}

PeerCertificate describe_certificate(const mbedtls_x509_crt& crt) {
  PeerCertificate out;
  out.subject = dn_text(crt.subject);
  out.issuer = dn_text(crt.issuer);
  for (const mbedtls_x509_name* n = &crt.subject; n != nullptr; n = n->next) {
    if (n->oid.p != nullptr && n->oid.len == sizeof(kOidCommonName) &&
        std::equal(n->oid.p, n->oid.p + n->oid.len, kOidCommonName)) {
      out.common_name.assign(reinterpret_cast<const char*>(n->val.p), n->val.len);
    }
  }
  read_subject_alt_names(crt, out);
  out.sha256_fingerprint = crypto::to_hex(
      crypto::sha256(std::string_view(reinterpret_cast<const char*>(crt.raw.p), crt.raw.len)));
  std::string_view serial(reinterpret_cast<const char*>(crt.serial.p), crt.serial.len);
  while (serial.size() > 1 && serial.front() == '\0') serial.remove_prefix(1);  // DER sign byte
  out.serial = crypto::to_hex(serial);
  return out;
}

}  // namespace detail
}  // namespace civicbus::http

// The TLS layer under the HTTP/1.1 server and client, on mbedTLS and Asio coroutines.
//
//   TlsServerContext / TlsClientContext  parsed certificates and keys, one mbedtls_ssl_config
//                                       and its random generator; immutable once created and
//                                       shared (shared_ptr<const>) by every stream made from it.
//   TlsServerContextHolder              the server's current context; reload() swaps in a new
//                                       one for new connections while live ones keep theirs.
//   TlsStream                           one connection: borrows a connected tcp::socket and
//                                       runs the handshake, reads and writes over it.
//
// Everything mbedTLS-version specific is in core/mbedtls_compat.hpp.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <asio.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/http/tls.hpp"

namespace civicbus::http::detail {

// Errors of a TlsStream's read_some / write_all that are not the socket's own (those are passed
// through as Asio reports them: eof, connection_reset, operation_aborted on cancel or close).
enum class TlsErrc {
  kStreamTruncated = 1,  // the TCP stream ended without a close_notify: data may be cut off
  kProtocolError,        // a bad record, a failed MAC, an alert from the peer, ...
  kNotHandshaken,        // read or write before a successful handshake
};
const std::error_category& tls_category();
std::error_code make_error_code(TlsErrc e);

// A DRBG seeded from the system entropy, safe to call from several threads (mbedTLS's own
// locking depends on MBEDTLS_THREADING_C, which not every build has).
class TlsRandom {
 public:
  TlsRandom();
  ~TlsRandom();
  TlsRandom(const TlsRandom&) = delete;
  TlsRandom& operator=(const TlsRandom&) = delete;

  Status seed(std::string_view personalization);
  // An mbedTLS f_rng; `self` is the TlsRandom.
  static int generate(void* self, unsigned char* out, std::size_t len);

 private:
  std::mutex mu_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
};

// A parsed certificate chain and its private key, checked to belong together.
class TlsCredential {
 public:
  TlsCredential();
  ~TlsCredential();
  TlsCredential(const TlsCredential&) = delete;
  TlsCredential& operator=(const TlsCredential&) = delete;

  // `what` names the credential in errors ("default certificate", "SNI certificate for
  // 'api.example.org'").
  static Result<std::unique_ptr<TlsCredential>> load(const std::string& cert_chain_file,
                                                     const std::string& key_file, TlsRandom& random,
                                                     std::string_view what);

  mbedtls_x509_crt* chain() { return &chain_; }
  mbedtls_pk_context* key() { return &key_; }

 private:
  mbedtls_x509_crt chain_;
  mbedtls_pk_context key_;
};

// A server's TLS configuration, built once from TlsServerOptions. Immutable after create():
// streams on several threads share it (an RSA key's blinding state is then guarded by
// mbedTLS itself, which needs MBEDTLS_THREADING_C, as Debian's build has). Not movable
// (mbedTLS keeps pointers into it).
class TlsServerContext {
 public:
  static Result<std::shared_ptr<const TlsServerContext>> create(const TlsServerOptions& options);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  const TlsServerOptions& options() const { return options_; }
  const mbedtls_ssl_config* config() const { return &config_; }

  // The SHA-256 fingerprint (hex) of the leaf certificate served for `server_name` (empty:
  // no SNI), for logs and tests.
  std::string certificate_fingerprint(std::string_view server_name) const;

 private:
  TlsServerContext() = default;
  Status init(const TlsServerOptions& options);
  // The credential for an SNI name; nullptr: the default one.
  TlsCredential* select(std::string_view server_name) const;
  static int on_sni(void* self, mbedtls_ssl_context* ssl, const unsigned char* name,
                    std::size_t len);

  struct SniEntry {
    std::string pattern;  // lower case
    bool wildcard = false;
    std::unique_ptr<TlsCredential> credential;
  };

  TlsServerOptions options_;
  TlsRandom random_;
  std::unique_ptr<TlsCredential> default_credential_;
  std::vector<SniEntry> sni_;
  std::unique_ptr<mbedtls_x509_crt> client_ca_;
  std::vector<int> ciphersuites_;  // zero-terminated; the config points into it
  mbedtls_ssl_config config_;
  bool config_ready_ = false;
};

// The server's current context. current() is what a new connection takes; reload() re-reads
// the files named by the options and replaces the context only if all of them load, so a bad
// file leaves the server serving the old certificates. Thread-safe.
class TlsServerContextHolder {
 public:
  static Result<std::unique_ptr<TlsServerContextHolder>> create(TlsServerOptions options);
  explicit TlsServerContextHolder(std::shared_ptr<const TlsServerContext> initial);

  std::shared_ptr<const TlsServerContext> current() const;
  // Re-reads the files of the current options.
  Status reload();
  // Switches to new options (new files, another client CA, ...), validated first.
  Status reload(const TlsServerOptions& options);
  // How many successful reloads there were.
  std::uint64_t generation() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const TlsServerContext> current_;
  std::uint64_t generation_ = 0;
};

// A client's TLS configuration, built once from TlsClientOptions; shared by its streams.
class TlsClientContext {
 public:
  static Result<std::shared_ptr<const TlsClientContext>> create(const TlsClientOptions& options);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  const TlsClientOptions& options() const { return options_; }
  const mbedtls_ssl_config* config() const { return &config_; }

 private:
  TlsClientContext() = default;
  Status init(const TlsClientOptions& options);

  TlsClientOptions options_;
  TlsRandom random_;
  std::unique_ptr<mbedtls_x509_crt> ca_;
  std::unique_ptr<TlsCredential> client_credential_;
  std::vector<int> ciphersuites_;
  mbedtls_ssl_config config_;
  bool config_ready_ = false;
};

// One TLS connection over a connected TCP socket that the caller owns and keeps open for the
// stream's life (the stream sets it non-blocking and never closes it). The stream holds its
// context, so a server reload does not disturb it.
//
// Coroutines run on the socket's executor. One read_some and one write_all may be in flight
// at once if both run on the same strand; otherwise one operation at a time. To give up on
// an operation (a deadline), cancel or close the socket: the operation then ends with
// asio::error::operation_aborted (handshake: kCancelled).
class TlsStream {
 public:
  static Result<std::unique_ptr<TlsStream>> server(asio::ip::tcp::socket& socket,
                                                   std::shared_ptr<const TlsServerContext> context);
  // `host` is what the caller connected to (a name or an IP address); the context's
  // server_name option, when set, replaces it for SNI and the certificate check.
  static Result<std::unique_ptr<TlsStream>> client(asio::ip::tcp::socket& socket,
                                                   std::shared_ptr<const TlsClientContext> context,
                                                   std::string_view host);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Fails with kUnauthenticated when a certificate does not verify, kCancelled when the
  // socket was cancelled or closed, kUnavailable otherwise; the message names the peer:
  // "TLS handshake with 127.0.0.1:5432 failed: certificate verify failed (not trusted)".
  asio::awaitable<Status> handshake();
  // Some bytes (at least one) of application data; 0 with `ec` set at the end or on error:
  // asio::error::eof after the peer's close_notify, TlsErrc::kStreamTruncated when the TCP
  // stream ended without one.
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buffer, asio::error_code& ec);
  asio::awaitable<void> write_all(asio::const_buffer buffer, asio::error_code& ec);
  // Sends close_notify and shuts the socket's sending side; does not wait for the peer's.
  asio::awaitable<void> shutdown();

  bool handshake_done() const { return handshake_done_; }
  // "TLSv1.2", "TLSv1.3"; empty before the handshake.
  std::string_view version() const;
  // The IANA-style name mbedTLS uses: "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256".
  std::string_view cipher_suite() const;
  // Server: the client's certificate, present only when one was sent and verified.
  // Client: the server's certificate (verified unless verify_peer is off).
  const std::optional<PeerCertificate>& peer_certificate() const { return peer_; }
  // Server: the SNI name the client sent (lower case); empty if none.
  const std::string& server_name() const { return server_name_; }
  // "127.0.0.1:5432", as in error messages.
  const std::string& peer_text() const { return peer_text_; }
  // The mbedTLS text of the last failure, for logs.
  const std::string& last_error() const { return last_error_; }

  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  TlsStream(asio::ip::tcp::socket& socket, bool is_server);
  Status setup(const mbedtls_ssl_config* config);

  static int bio_send(void* self, const unsigned char* buf, std::size_t len);
  static int bio_recv(void* self, unsigned char* buf, std::size_t len);
  static int verify_ip(void* self, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags);
  friend class TlsServerContext;  // its SNI callback records server_name_

  // Waits until the socket is ready for what mbedTLS asked (rc is WANT_READ or WANT_WRITE).
  asio::awaitable<asio::error_code> wait_for(int rc);
  Status handshake_failure(int rc, const asio::error_code& wait_error);
  std::error_code io_failure(int rc);

  asio::ip::tcp::socket& socket_;
  bool is_server_;
  std::shared_ptr<const TlsServerContext> server_context_;
  std::shared_ptr<const TlsClientContext> client_context_;
  mbedtls_ssl_context ssl_;
  bool handshake_done_ = false;
  std::string expected_name_;                     // client: what the certificate must name
  std::optional<asio::ip::address> expected_ip_;  // client: when that is an IP address
  std::string server_name_;
  std::string peer_text_;
  std::string last_error_;
  std::optional<PeerCertificate> peer_;
  asio::error_code socket_error_;  // the last error the BIO callbacks saw
  bool tcp_eof_ = false;
};

// What a parsed certificate says, as PeerCertificate.
PeerCertificate describe_certificate(const mbedtls_x509_crt& crt);

}  // namespace civicbus::http::detail

template <>
struct std::is_error_code_enum<civicbus::http::detail::TlsErrc> : std::true_type {};

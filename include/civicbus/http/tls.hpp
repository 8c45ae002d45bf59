// TLS settings for the HTTP/1.1 server and client, and what a server learns about a client
// that authenticated with a certificate. Plain values: no TLS library type shows here. The
// files are PEM and are read when a server or client is created (and again on a reload);
// a value here only names them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::http {

// The lowest protocol version a side accepts. TLS 1.3 needs a build on mbedTLS 3.x;
// validate() refuses kTls13 on a build that cannot speak it.
enum class TlsVersion { kTls12, kTls13 };

// Whether a server asks clients for a certificate (mutual TLS).
enum class TlsClientAuth {
  kNone,      // never asks
  kOptional,  // asks; a client may send none, but one it sends must verify
  kRequired,  // asks; the handshake fails without a certificate that verifies
};

// A certificate chain (leaf first, then intermediates) and its private key, both PEM files.
// The key must not be encrypted.
struct TlsCertificateFiles {
  std::string cert_chain_file;
  std::string key_file;
};

// A certificate served to clients whose SNI matches `server_name`: an exact host name
// ("api.example.org") or a wildcard over one label ("*.example.org" matches
// "a.example.org", not "example.org" nor "a.b.example.org"). Compared case-insensitively.
struct TlsSniCertificate {
  std::string server_name;
  std::string cert_chain_file;
  std::string key_file;
};

struct CIVICBUS_EXPORT TlsServerOptions {
  // Served when the client sends no SNI or one that no entry of `sni_certificates` matches.
  // Required.
  TlsCertificateFiles default_certificate;
  // Tried in order: exact names first, then wildcards.
  std::vector<TlsSniCertificate> sni_certificates;
  // Trust anchors (PEM, may hold several) for client certificates. Required unless
  // client_auth is kNone.
  std::string client_ca_file;
  TlsClientAuth client_auth = TlsClientAuth::kNone;
  TlsVersion min_version = TlsVersion::kTls12;

  // Checks the values without touching the files: names given, patterns well-formed, a CA
  // where client certificates are asked for, a version this build speaks.
  Status validate() const;
};

struct CIVICBUS_EXPORT TlsClientOptions {
  // Trust anchors (PEM bundle). Empty: the system bundle (/etc/ssl/certs/ca-certificates.crt
  // or /etc/pki/tls/certs/ca-bundle.crt), when verify_peer is on.
  std::string ca_file;
  // Off only for tests and lab set-ups: the peer is then not authenticated at all.
  bool verify_peer = true;
  // Sent as SNI and checked against the server certificate instead of the host connected
  // to. Empty: the host of the URL. An IP address is checked against the certificate's IP
  // address SANs and not sent as SNI (RFC 6066 §3).
  std::string server_name;
  // A client certificate for mutual TLS: both or neither.
  std::string client_cert_file;
  std::string client_key_file;
  TlsVersion min_version = TlsVersion::kTls12;

  Status validate() const;
};

// The certificate a peer authenticated with, as the server shows it for a mutual-TLS
// connection (so a gateway can map it to a consumer) and the client for the server.
struct PeerCertificate {
  std::string subject;      // RFC 4514-like DN as mbedTLS prints it: "C=DE, O=City, CN=x"
  std::string issuer;       // likewise
  std::string common_name;  // the subject's (last) CN; empty if none
  std::vector<std::string> dns_names;     // SAN dNSName entries, in certificate order
  std::vector<std::string> uris;          // SAN uniformResourceIdentifier entries
  std::vector<std::string> ip_addresses;  // SAN iPAddress entries, as text ("127.0.0.1", "::1")
  std::string sha256_fingerprint;         // lower-case hex of SHA-256 over the DER encoding
  std::string serial;                     // lower-case hex of the serial number's bytes
};

// Lower-case hex without separators, for comparing with a configured fingerprint that may be
// written "AB:CD:..." (as `openssl x509 -fingerprint` prints it).
CIVICBUS_EXPORT std::string normalize_fingerprint(std::string_view text);

}  // namespace civicbus::http

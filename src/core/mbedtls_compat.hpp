// Every difference between mbedTLS 2.28 (Debian 12) and 3.6 that civicbus meets lives in this
// header and nowhere else: no other file tests MBEDTLS_VERSION_*. Each helper has one name and
// one signature for both versions; callers include the mbedTLS headers they use themselves
// (those are the same in both) and this one.
//
// 2.28 speaks TLS 1.2 only; 3.6 adds TLS 1.3, which runs on PSA Crypto (psa_crypto_init).
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#endif

namespace civicbus::mbedtls_compat {

// ---- SHA-256 (core/crypto.cpp) ----
// 2.x names the int-returning SHA-256 calls *_ret (the plain names are deprecated voids);
// 3.x dropped the suffix.
#if MBEDTLS_VERSION_MAJOR >= 3
inline int sha256_starts(mbedtls_sha256_context* c) {
  return mbedtls_sha256_starts(c, 0);
}
inline int sha256_update(mbedtls_sha256_context* c, const unsigned char* p, std::size_t n) {
  return mbedtls_sha256_update(c, p, n);
}
inline int sha256_finish(mbedtls_sha256_context* c, unsigned char out[32]) {
  return mbedtls_sha256_finish(c, out);
}
#else
inline int sha256_starts(mbedtls_sha256_context* c) {
  return mbedtls_sha256_starts_ret(c, 0);
}
inline int sha256_update(mbedtls_sha256_context* c, const unsigned char* p, std::size_t n) {
  return mbedtls_sha256_update_ret(c, p, n);
}
inline int sha256_finish(mbedtls_sha256_context* c, unsigned char out[32]) {
  return mbedtls_sha256_finish_ret(c, out);
}
#endif

// ---- RSA PKCS#1 v1.5 (gateway/jwt.cpp) ----
// 3.x dropped the padding arguments of mbedtls_rsa_init (set separately) and the `mode` and
// RNG arguments of the public-key verify.
#if MBEDTLS_VERSION_MAJOR >= 3
inline void rsa_init_pkcs1_v15(mbedtls_rsa_context* c) {
  mbedtls_rsa_init(c);
  (void)mbedtls_rsa_set_padding(c, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_NONE);
}
inline int rsa_verify_pkcs1_v15(mbedtls_rsa_context* c, mbedtls_md_type_t md,
                                const unsigned char* hash, unsigned hash_len,
                                const unsigned char* sig) {
  return mbedtls_rsa_pkcs1_verify(c, md, hash_len, hash, sig);
}
inline int rsa_sign_pkcs1_v15(mbedtls_rsa_context* c,
                              int (*rng)(void*, unsigned char*, std::size_t), void* rng_state,
                              mbedtls_md_type_t md, const unsigned char* hash, unsigned hash_len,
                              unsigned char* sig) {
  return mbedtls_rsa_pkcs1_sign(c, rng, rng_state, md, hash_len, hash, sig);
}
#else
inline void rsa_init_pkcs1_v15(mbedtls_rsa_context* c) {
  mbedtls_rsa_init(c, MBEDTLS_RSA_PKCS_V15, 0);
}
inline int rsa_verify_pkcs1_v15(mbedtls_rsa_context* c, mbedtls_md_type_t md,
                                const unsigned char* hash, unsigned hash_len,
                                const unsigned char* sig) {
  return mbedtls_rsa_pkcs1_verify(c, nullptr, nullptr, MBEDTLS_RSA_PUBLIC, md, hash_len, hash, sig);
}
inline int rsa_sign_pkcs1_v15(mbedtls_rsa_context* c,
                              int (*rng)(void*, unsigned char*, std::size_t), void* rng_state,
                              mbedtls_md_type_t md, const unsigned char* hash, unsigned hash_len,
                              unsigned char* sig) {
  return mbedtls_rsa_pkcs1_sign(c, rng, rng_state, MBEDTLS_RSA_PRIVATE, md, hash_len, hash, sig);
}
#endif

// ---- Keys (http/tls.cpp) ----
using RngFunction = int (*)(void*, unsigned char*, std::size_t);

// 3.x takes an RNG for key parsing and pair checks (blinding); 2.x does not.
inline int pk_parse_keyfile(mbedtls_pk_context* pk, const char* path, RngFunction rng,
                            void* rng_state) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_pk_parse_keyfile(pk, path, nullptr, rng, rng_state);
#else
  (void)rng;
  (void)rng_state;
  return mbedtls_pk_parse_keyfile(pk, path, nullptr);
#endif
}

inline int pk_check_pair(const mbedtls_pk_context* pub, const mbedtls_pk_context* prv,
                         RngFunction rng, void* rng_state) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_pk_check_pair(pub, prv, rng, rng_state);
#else
  (void)rng;
  (void)rng_state;
  return mbedtls_pk_check_pair(pub, prv);
#endif
}

// ---- Key parsing and certificate writing (fleet/device_ca.cpp) ----
// 3.x takes an RNG for private-key parsing (blinding); 2.x does not.
inline int pk_parse_key(mbedtls_pk_context* pk, const unsigned char* key, std::size_t key_len,
                        RngFunction rng, void* rng_state) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_pk_parse_key(pk, key, key_len, nullptr, 0, rng, rng_state);
#else
  (void)rng;
  (void)rng_state;
  return mbedtls_pk_parse_key(pk, key, key_len, nullptr, 0);
#endif
}

// The certificate serial from big-endian bytes: 3.x deprecates the MPI form for a raw one.
inline int x509write_crt_set_serial_bytes(mbedtls_x509write_cert* crt, const unsigned char* bytes,
                                          std::size_t len) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_x509write_crt_set_serial_raw(crt, const_cast<unsigned char*>(bytes), len);
#else
  mbedtls_mpi serial;
  mbedtls_mpi_init(&serial);
  int rc = mbedtls_mpi_read_binary(&serial, bytes, len);
  if (rc == 0) rc = mbedtls_x509write_crt_set_serial(crt, &serial);
  mbedtls_mpi_free(&serial);
  return rc;
#endif
}

// ---- TLS (http/tls.cpp) ----

// "2.28.3", for messages.
inline constexpr const char* kVersionString = MBEDTLS_VERSION_STRING;

// Whether this build can negotiate TLS 1.3.
constexpr bool kHasTls13 =
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
    true;
#else
    false;
#endif

// Called once before a TLS configuration is made: 3.x runs TLS 1.3 (and, with
// MBEDTLS_USE_PSA_CRYPTO, parts of 1.2) on PSA Crypto, which must be initialised. Idempotent.
inline int tls_library_init() {
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_PSA_CRYPTO_C)
  return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
#else
  return 0;
#endif
}

// Sets the protocol range: TLS 1.2 or 1.3 as the floor (1.3 only where kHasTls13), and the
// newest this build speaks as the ceiling.
inline void conf_versions(mbedtls_ssl_config* conf, bool min_tls13) {
#if MBEDTLS_VERSION_MAJOR >= 3
  mbedtls_ssl_conf_min_tls_version(
      conf, (min_tls13 && kHasTls13) ? MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
  mbedtls_ssl_conf_max_tls_version(
      conf, kHasTls13 ? MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
#else
  (void)min_tls13;
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

// The (EC)DHE groups a config offers and accepts, in preference order: X25519, then P-256,
// P-384 and P-521, each only where the build has it. mbedTLS's default order starts with
// secp521r1 and the brainpool curves, and a server picks by its own order among what the client
// offers, so an OpenSSL client (which offers P-521) got P-521: with mbedTLS's bignum code about
// twice the key-exchange cost of X25519, on every handshake.
inline void conf_key_exchange_groups(mbedtls_ssl_config* conf) {
  static constexpr std::uint16_t kPreferred[] = {29, 23, 24, 25};  // TLS group ids (IANA)
#if MBEDTLS_VERSION_MAJOR >= 3
  static const std::vector<std::uint16_t> groups = [] {
    std::vector<std::uint16_t> out;
    for (std::uint16_t id : kPreferred) {
      if (mbedtls_ecp_curve_info_from_tls_id(id) != nullptr) out.push_back(id);
    }
    out.push_back(0);  // MBEDTLS_SSL_IANA_TLS_GROUP_NONE
    return out;
  }();
  mbedtls_ssl_conf_groups(conf, groups.data());
#else
  static const std::vector<mbedtls_ecp_group_id> curves = [] {
    std::vector<mbedtls_ecp_group_id> out;
    for (std::uint16_t id : kPreferred) {
      if (const auto* info = mbedtls_ecp_curve_info_from_tls_id(id)) out.push_back(info->grp_id);
    }
    out.push_back(MBEDTLS_ECP_DP_NONE);
    return out;
  }();
  mbedtls_ssl_conf_curves(conf, curves.data());
#endif
}

// The TLS 1.3 suites (all AEAD, all (EC)DHE) to append to the TLS 1.2 list; none on 2.x.
inline std::vector<int> tls13_ciphersuites() {
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
  return {MBEDTLS_TLS1_3_AES_256_GCM_SHA384, MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
          MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256};
#else
  return {};
#endif
}

// A pointer the application attaches to an ssl context, read back in callbacks that receive
// only the context (the SNI callback). 3.x has a user-data slot; 2.x has none, so there the
// BIO pointer (which the caller sets to the same object) stands in.
inline void set_ssl_user_pointer(mbedtls_ssl_context* ssl, void* p) {
#if MBEDTLS_VERSION_MAJOR >= 3
  mbedtls_ssl_set_user_data_p(ssl, p);
#else
  (void)ssl;
  (void)p;
#endif
}
inline void* ssl_user_pointer(mbedtls_ssl_context* ssl) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_ssl_get_user_data_p(ssl);
#else
  return ssl->p_bio;
#endif
}

// Return codes of mbedtls_ssl_read that are no error and no data: call read again. 3.x may
// report a TLS 1.3 NewSessionTicket (3.6.0 does by default) or early data this way.
inline bool read_should_retry([[maybe_unused]] int rc) {
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
  if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) return true;
#endif
#if defined(MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA)
  if (rc == MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA) return true;
#endif
  return false;
}

// Handshake error codes that exist only in one of the versions, as text; nullptr otherwise.
inline const char* version_specific_error_text([[maybe_unused]] int rc) {
#if defined(MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
  if (rc == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE) return "the client sent no certificate";
#endif
#if defined(MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE)
  if (rc == MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE) return "no cipher suite in common";
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION)
  if (rc == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION) return "no protocol version in common";
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION)
  if (rc == MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION) return "no protocol version in common";
#endif
#if defined(MBEDTLS_ERR_SSL_CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME)
  if (rc == MBEDTLS_ERR_SSL_CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME) {
    return "no host name to verify the certificate against";
  }
#endif
  return nullptr;
}

}  // namespace civicbus::mbedtls_compat

// DeviceCa: the node's device certificate authority. It owns one ECDSA P-256 CA key and its
// self-signed certificate (table fleet_ca; the key only sealed with AES-256-GCM under a key
// derived from the node's master key) and issues one X.509 certificate per device, signed
// by that CA (table fleet_device_certs: serial, device, fingerprint, validity, certificate,
// revocation). A device's private key is returned once by issue() and never stored.
//
// It does not know devices, topics or events: the registry and the bulk importer call it and
// publish what they need. Thread-safe: issue() may run on several threads at once (the bulk
// importer uses two).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::fleet {

struct DeviceCaOptions {
  // Subject of the CA certificate made on first open (CN=…, O=…). Later opens keep the
  // certificate in fleet_ca whatever these say.
  std::string common_name = "civicbus device CA";
  std::string organization = "civicbus";  // also O= of every device certificate; "" for none
  int ca_validity_days = 3650;            // 10 years
  int device_validity_days = 1825;        // 5 years: field devices outlive web certificates
};

// What issue() returns, once: the private key is in no table afterwards.
struct IssuedCertificate {
  std::string device_id;
  std::string certificate_pem;
  std::string private_key_pem;     // SEC1 "EC PRIVATE KEY" PEM
  std::string serial_hex;          // 32 lower-case hex digits (16 bytes, positive)
  std::string fingerprint_sha256;  // lower-case hex SHA-256 of the certificate DER
  TimeMs not_before = 0;
  TimeMs not_after = 0;
};

// One row of fleet_device_certs.
struct DeviceCertificate {
  std::string serial_hex;
  std::string device_id;
  std::string fingerprint_sha256;
  std::string certificate_pem;
  TimeMs not_before = 0;
  TimeMs not_after = 0;
  TimeMs issued_at = 0;
  std::optional<TimeMs> revoked_at;
  std::string revocation_reason;
  bool revoked() const { return revoked_at.has_value(); }
};

class DeviceCa {
 public:
  // Opens the CA stored in `db`, creating it on the first open. `master_key` is the node's
  // 32-byte master key; the CA key's wrapping key is derived from it with a label of its own.
  // A master key other than the one the CA was created with fails (kFailedPrecondition).
  // `db`, `random` and `clock` must outlive the DeviceCa.
  static Result<std::unique_ptr<DeviceCa>> open(storage::Database& db, std::string_view master_key,
                                                RandomSource& random, const Clock& clock,
                                                DeviceCaOptions options = {});
  // The same with the AES-256-GCM wrapping key already derived by the caller.
  static Result<std::unique_ptr<DeviceCa>> open(storage::Database& db, crypto::AesGcm key_wrap,
                                                RandomSource& random, const Clock& clock,
                                                DeviceCaOptions options = {});
  ~DeviceCa();
  DeviceCa(const DeviceCa&) = delete;
  DeviceCa& operator=(const DeviceCa&) = delete;

  // A fresh P-256 key and a certificate for it: subject CN=<device_id>, O=<organization>,
  // SAN URI urn:civicbus:device:<id>, keyUsage digitalSignature, extendedKeyUsage clientAuth,
  // 16-byte random serial. Records the certificate (never the key). Thread-safe.
  Result<IssuedCertificate> issue(std::string_view device_id);

  // issue() for many devices: the keys and certificates are made on `threads` threads, then
  // all are recorded in one transaction (one commit instead of one per device, which with
  // synchronous=FULL would cost an fsync each). All or nothing: on any error nothing is
  // recorded and the first error is returned. `progress`, when set, is called after each
  // certificate with (done, total), from the worker threads but never two at once; it must
  // stay valid for the call. Results are in the order of `device_ids`.
  Result<std::vector<IssuedCertificate>> issue_many(
      std::span<const std::string> device_ids, int threads = 2,
      const std::function<void(std::size_t done, std::size_t total)>& progress = {});

  // Revokes the certificate with this serial, or when no serial matches, every certificate
  // of the device with this id that is not revoked yet. Returns how many were revoked
  // (0 when all were already revoked); kNotFound when neither a serial nor a device matches.
  Result<int> revoke(std::string_view serial_or_device_id, std::string_view reason);
  // kNotFound for a serial this CA never issued.
  Result<bool> is_revoked(std::string_view serial_hex);
  // Every certificate of a device, oldest first.
  Result<std::vector<DeviceCertificate>> certificates_of(std::string_view device_id);

  const std::string& ca_certificate_pem() const { return ca_certificate_pem_; }
  const std::string& ca_fingerprint_sha256() const { return ca_fingerprint_; }

  // The revoked serials as JSON: {"issuer", "ca_fingerprint_sha256", "generated_at",
  // "revoked": [{"serial", "device_id", "revoked_at", "reason"}]}. mbedTLS 2.28 has no CRL
  // writer, so this is not an X.509 CRL; brokers that check client certificates read it (or
  // is_revoked()) instead.
  Result<Json> revocation_list();

 private:
  struct Impl;
  explicit DeviceCa(std::unique_ptr<Impl> impl);
  Status load_or_create();
  // Makes the key and certificate of issue() without recording them. Thread-safe.
  Result<IssuedCertificate> make_certificate(std::string_view device_id);
  Status record(std::span<const IssuedCertificate> certificates);

  std::unique_ptr<Impl> impl_;
  std::string ca_certificate_pem_;
  std::string ca_fingerprint_;
};

}  // namespace civicbus::fleet

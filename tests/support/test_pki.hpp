// Test certificates made with the openssl CLI, once per test binary: a CA (ECDSA P-256) and
// the certificates it signs, plus an untrusted self-signed one.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "civicbus/http/tls.hpp"
#include "support/test_support.hpp"

namespace civicbus::testing {

inline void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run_command(argv);
  INFO("openssl output: " << r.output);
  REQUIRE(r.exit_code == 0);
}

// A CA (ECDSA P-256) and certificates it signs, plus an untrusted self-signed one; made once.
struct Pki {
  TempDir dir;
  std::string ca, ca_key;
  std::string server, server_key;        // ECDSA, CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  std::string server2, server2_key;      // RSA 2048, same names (the reload target)
  std::string api, api_key;              // RSA 2048, SAN DNS:api.example.test, DNS:*.wild.test
  std::string client, client_key;        // ECDSA, CN=permit-service, SAN URI + DNS, clientAuth
  std::string untrusted, untrusted_key;  // ECDSA, self-signed, localhost

  std::string path(const std::string& name) const { return dir.file(name); }

  void key(const std::string& name, bool rsa) {
    if (rsa) {
      openssl(
          {"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path(name)});
    } else {
      openssl({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
               path(name)});
    }
  }

  // Signs a leaf for `subject` with the CA (or itself when self_signed).
  void leaf(const std::string& name, bool rsa, const std::string& subject,
            const std::string& extensions, const std::string& serial, bool self_signed = false) {
    key(name + ".key", rsa);
    write_file(path(name + ".ext"), extensions);
    if (self_signed) {
      write_file(
          path(name + ".cnf"),
          "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=localhost\n[v3]\n" + extensions);
      openssl({"req", "-x509", "-new", "-key", path(name + ".key"), "-config", path(name + ".cnf"),
               "-extensions", "v3", "-days", "30", "-set_serial", serial, "-out",
               path(name + ".pem")});
      return;
    }
    openssl({"req", "-new", "-key", path(name + ".key"), "-subj", subject, "-out",
             path(name + ".csr")});
    openssl({"x509", "-req", "-in", path(name + ".csr"), "-CA", ca, "-CAkey", ca_key, "-set_serial",
             serial, "-days", "30", "-sha256", "-extfile", path(name + ".ext"), "-out",
             path(name + ".pem")});
  }

  Pki() {
    ca = path("ca.pem");
    ca_key = path("ca.key");
    key("ca.key", false);
    write_file(path("ca.cnf"),
               "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nO=civicbus tests\n"
               "CN=civicbus test CA\n[v3]\nbasicConstraints=critical,CA:TRUE\n"
               "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n");
    openssl({"req", "-x509", "-new", "-key", ca_key, "-config", path("ca.cnf"), "-extensions", "v3",
             "-days", "30", "-out", ca});

    const std::string server_ext =
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
    leaf("server", false, "/O=civicbus tests/CN=localhost", server_ext, "0x1001");
    leaf("server2", true, "/O=civicbus tests/CN=localhost", server_ext, "0x1003");
    leaf("api", true, "/O=civicbus tests/CN=api.example.test",
         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
         "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:api.example.test,DNS:*.wild.test\n",
         "0x1002");
    leaf("client", false, "/C=DE/O=City of Example/CN=permit-service",
         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
         "extendedKeyUsage=clientAuth\n"
         "subjectAltName=URI:spiffe://civicbus.test/consumer/permits,DNS:permits.internal\n",
         "0x2001");
    leaf("untrusted", false, "",
         "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", "0x3001",
         /*self_signed=*/true);
    server = path("server.pem");
    server2 = path("server2.pem");
    api = path("api.pem");
    client = path("client.pem");
    untrusted = path("untrusted.pem");
    server_key = path("server.key");
    server2_key = path("server2.key");
    api_key = path("api.key");
    client_key = path("client.key");
    untrusted_key = path("untrusted.key");
  }

  // `openssl x509 -fingerprint -sha256` of a certificate file, normalised.
  std::string fingerprint(const std::string& pem) const {
    const auto r =
        run_command({"openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha256"});
    REQUIRE(r.exit_code == 0);
    const auto eq = r.output.find('=');
    REQUIRE(eq != std::string::npos);
    return http::normalize_fingerprint(r.output.substr(eq + 1));
  }
};

inline const Pki& pki() {
  static const Pki instance;
  return instance;
}

}  // namespace civicbus::testing

// A real OpenSSH server for tests: sshd on a free loopback port with its own
// host key (ed25519), config, pid file and authorized_keys in a TempDir, key
// authentication only, and the internal-sftp subsystem; a client key pair
// (ECDSA, PEM) authorized for the user the tests run as. Ready once it accepts
// TCP connections; killed on destruction. Header-only (tests/support/*.cpp are
// not globbed into the support library).
#pragma once

#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "support/mosquitto.hpp"  // tcp_accepts
#include "support/test_support.hpp"

namespace civicbus::testing {

class Sshd {
 public:
  // Throws std::runtime_error (a test failure) when sshd or ssh-keygen is
  // missing or sshd does not come up within 10 s.
  Sshd() : port_(free_loopback_port()) {
    const std::string sshd = "/usr/sbin/sshd";  // sshd re-executes itself: an absolute path
    if (!std::filesystem::exists(sshd)) {
      throw std::runtime_error("sshd is not installed (apt-get install openssh-server)");
    }
    std::error_code ec;
    std::filesystem::create_directories("/run/sshd",
                                        ec);  // its privilege separation dir
    host_key_ = keygen("host_ed25519", {"-t", "ed25519"});
    client_key_ = keygen("client_ecdsa", {"-t", "ecdsa", "-b", "256", "-m", "PEM"});
    write_file(dir_.file("authorized_keys"), read_file(client_key_ + ".pub"));
    const RunResult fp = run_command({"ssh-keygen", "-lf", host_key_ + ".pub"});
    // "256 SHA256:<base64> comment (ED25519)"
    const auto start = fp.output.find("SHA256:");
    host_fingerprint_ = fp.output.substr(start, fp.output.find(' ', start) - start);
    const passwd* pw = ::getpwuid(::getuid());
    user_ = pw != nullptr ? pw->pw_name : "root";
    std::filesystem::create_directories(dir_.path() / "data");

    const std::string conf = dir_.file("sshd_config");
    write_file(conf, "Port " + std::to_string(port_) +
                         "\n"
                         "ListenAddress 127.0.0.1\n"
                         "HostKey " +
                         host_key_ +
                         "\n"
                         "PidFile " +
                         dir_.file("sshd.pid") +
                         "\n"
                         "AuthorizedKeysFile " +
                         dir_.file("authorized_keys") +
                         "\n"
                         "UsePAM no\n"
                         "StrictModes no\n"
                         "PasswordAuthentication no\n"
                         "KbdInteractiveAuthentication no\n"
                         "PermitRootLogin prohibit-password\n"
                         "Subsystem sftp internal-sftp\n"
                         "LogLevel VERBOSE\n");
    log_ = dir_.file("sshd.log");
    auto child = ChildProcess::start({sshd, "-D", "-e", "-f", conf}, log_);
    if (!child) throw std::runtime_error("cannot start sshd");
    process_ = std::make_unique<ChildProcess>(std::move(*child));
    const int port = port_;
    if (!wait_until([port] { return tcp_accepts(port); }, std::chrono::seconds(10))) {
      throw std::runtime_error("sshd did not accept connections on port " + std::to_string(port_) +
                               ": " + read_file(log_));
    }
  }
  ~Sshd() {
    if (process_) {
      process_->kill_now(SIGTERM);
      process_->wait();
    }
  }
  Sshd(const Sshd&) = delete;
  Sshd& operator=(const Sshd&) = delete;

  int port() const { return port_; }
  const std::string& user() const { return user_; }
  // "SHA256:<base64>", as ssh-keygen -l prints the host key's fingerprint.
  const std::string& host_fingerprint() const { return host_fingerprint_; }
  // The authorized client key, PEM text.
  std::string client_private_key() const { return read_file(client_key_); }
  // A fresh key pair the server does not know; its private key, PEM text.
  std::string unknown_private_key() {
    return read_file(keygen("stranger_ecdsa", {"-t", "ecdsa", "-b", "256", "-m", "PEM"}));
  }
  // A folder the tests may use as the remote side (the server sees the same
  // file system).
  std::filesystem::path data_dir() const { return dir_.path() / "data"; }
  std::string log() const { return read_file(log_); }

 private:
  std::string keygen(const std::string& name, std::vector<std::string> type) {
    const std::string path = dir_.file(name);
    std::vector<std::string> argv{"ssh-keygen", "-q", "-N", "", "-C", "civicbus-test", "-f", path};
    argv.insert(argv.begin() + 1, type.begin(), type.end());
    const RunResult r = run_command(argv);
    if (r.exit_code != 0) throw std::runtime_error("ssh-keygen failed: " + r.output);
    return path;
  }

  TempDir dir_;
  int port_;
  std::string host_key_;
  std::string client_key_;
  std::string host_fingerprint_;
  std::string user_;
  std::string log_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace civicbus::testing

// A real mosquitto broker for tests and benchmarks: started on a free loopback port with a
// config in its own TempDir, ready once it accepts TCP connections, killed on destruction.
// Header-only (tests/support/*.cpp are not globbed into the support library).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/test_support.hpp"

namespace civicbus::testing {

inline bool tcp_accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

class Mosquitto {
 public:
  // Starts mosquitto; throws std::runtime_error (a test failure) when it is missing or does not
  // come up within 10 s.
  Mosquitto() : port_(free_loopback_port()) { start(); }
  ~Mosquitto() { stop(); }
  Mosquitto(const Mosquitto&) = delete;
  Mosquitto& operator=(const Mosquitto&) = delete;

  int port() const { return port_; }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  const std::string& log_path() const { return log_; }

  // Kills the broker (SIGKILL, as a crash would) and waits for it to exit.
  void stop() {
    if (process_) {
      process_->kill_now(SIGKILL);
      process_->wait();
      process_.reset();
    }
  }
  // Starts it again on the same port (for reconnect tests).
  void restart() {
    stop();
    start();
  }

 private:
  void start() {
    auto exe = find_program("mosquitto");
    if (!exe) throw std::runtime_error("mosquitto is not installed (apt-get install mosquitto)");
    const std::string conf = dir_.file("mosquitto.conf");
    write_file(conf, "listener " + std::to_string(port_) +
                         " 127.0.0.1\n"
                         "allow_anonymous true\n"
                         "persistence false\n"
                         "max_inflight_messages 0\n"
                         "max_queued_messages 1000000\n"
                         "max_queued_bytes 0\n"
                         "set_tcp_nodelay true\n"
                         "log_dest stderr\n");
    log_ = dir_.file("mosquitto.log");
    process_ =
        std::make_unique<ChildProcess>(ChildProcess::start({*exe, "-c", conf}, log_).value());
    const int port = port_;
    if (!wait_until([port] { return tcp_accepts(port); }, std::chrono::seconds(10))) {
      throw std::runtime_error("mosquitto did not accept connections on port " +
                               std::to_string(port_) + ": " + read_file(log_));
    }
  }

  TempDir dir_;
  int port_;
  std::string log_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace civicbus::testing

// A small blocking POSIX client for the http tests: writes raw bytes, reads raw responses, and
// tells an orderly close (read returns 0) from a reset or a timeout.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace civicbus::testing {

struct RawResponse {
  int status = 0;
  std::string head;  // status line and fields, without the blank line
  std::string body;

  // The value of the first field `name` (case-insensitive), or empty.
  std::string header(std::string_view name) const {
    std::string lower_head;
    for (char c : head)
      lower_head += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string key = "\r\n";
    for (char c : name) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    key += ":";
    const std::size_t at = lower_head.find(key);
    if (at == std::string::npos) return {};
    std::size_t start = at + key.size();
    while (start < head.size() && head[start] == ' ') ++start;
    const std::size_t end = head.find("\r\n", start);
    return head.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }
};

enum class ReadEnd { kData, kClosed, kReset, kTimeout };

class RawClient {
 public:
  explicit RawClient(std::uint16_t port,
                     std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // False if the server already closed (EPIPE/ECONNRESET).
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // One response: its head and a Content-Length body (none for a HEAD request). nullopt on
  // close, reset or timeout.
  std::optional<RawResponse> read_response(bool head_request = false) {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (fill() != ReadEnd::kData) return std::nullopt;
    }
    RawResponse r;
    r.head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    if (r.head.size() < 12 || r.head.compare(0, 9, "HTTP/1.1 ") != 0) return std::nullopt;
    r.status = std::atoi(r.head.substr(9, 3).c_str());
    const std::string length = r.header("Content-Length");
    const std::size_t n = length.empty() || head_request ? 0 : std::stoul(length);
    while (buffer_.size() < n) {
      if (fill() != ReadEnd::kData) return std::nullopt;
    }
    r.body = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return r;
  }

  // What the next read brings, nothing buffered: kClosed is the orderly close the tests want.
  ReadEnd next_read() {
    if (!buffer_.empty()) return ReadEnd::kData;
    return fill();
  }
  const std::string& buffered() const { return buffer_; }

 private:
  ReadEnd fill() {
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return ReadEnd::kData;
    }
    if (n == 0) return ReadEnd::kClosed;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadEnd::kTimeout;
    return ReadEnd::kReset;
  }

  int fd_ = -1;
  std::string buffer_;
};

}  // namespace civicbus::testing

// Loading and creating the master key. The key never appears in an error message: a typo'd
// key is still most of a key, so errors describe only its shape (length, source).
#include "broker/master_key.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/crypto.hpp"

namespace civicbus::broker {
namespace {

// Key files are a line of text; anything much larger is not a key file.
constexpr std::size_t kMaxKeyFileBytes = 4096;

using crypto::wipe;

// strerror() may share a static buffer between threads; the error category does not.
std::string errno_text(int err) {
  return std::system_category().message(err);
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

bool all_hex(std::string_view s) {
  for (char c : s) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now so that a failing close (delayed write error) can be reported.
  int release_and_close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

Result<std::string> read_key_file(const std::string& path) {
  const std::string source = fmt::format("master key file {}", path);
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return not_found(
          fmt::format("{} does not exist; set `security: {{master_key: generate}}` in the node's "
                      "configuration to create it on first start, or provide the key in the "
                      "environment variable named by security.master_key_env",
                      source));
    }
    return io_error(fmt::format("cannot open {}: {}", source, errno_text(err)));
  }
  // fstat on the open descriptor, so the mode checked is the mode of the file read.
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return io_error(fmt::format("cannot stat {}: {}", source, errno_text(errno)));
  }
  if (!S_ISREG(st.st_mode))
    return invalid_argument(fmt::format("{} is not a regular file", source));
  const unsigned mode = static_cast<unsigned>(st.st_mode) & 07777u;
  if ((mode & 077u) != 0) {
    return permission_denied(
        fmt::format("{} has mode {:04o}; it must not be readable by group or others (chmod 600)",
                    source, mode));
  }
  if (static_cast<std::size_t>(st.st_size) > kMaxKeyFileBytes) {
    return invalid_argument(
        fmt::format("{} has {} bytes; expected one line with 64 hex digits or base64 of 32 bytes",
                    source, static_cast<std::int64_t>(st.st_size)));
  }
  std::string text(kMaxKeyFileBytes + 1, '\0');
  std::size_t used = 0;
  while (used < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      wipe(text);
      return io_error(fmt::format("cannot read {}: {}", source, errno_text(err)));
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  Result<std::string> key = parse_master_key(std::string_view(text.data(), used), source);
  wipe(text);
  return key;
}

}  // namespace

Result<std::string> parse_master_key(std::string_view text, std::string_view source) {
  const std::string_view trimmed = trim(text);
  if (trimmed.empty()) return invalid_argument(fmt::format("{} is empty", source));
  if (trimmed.size() == 2 * kMasterKeyBytes && all_hex(trimmed)) {
    Result<std::string> key = crypto::from_hex(trimmed);
    if (key.ok()) return key;
  } else {
    Result<std::string> key = crypto::base64_decode(trimmed);
    if (key.ok() && key->size() == kMasterKeyBytes) return key;
    if (key.ok()) {
      std::size_t decoded = key->size();
      wipe(*key);
      return invalid_argument(fmt::format(
          "{} holds base64 of {} bytes; the master key is 32 bytes (64 hex digits or 44 base64 "
          "characters)",
          source, decoded));
    }
  }
  return invalid_argument(fmt::format(
      "{} is not a master key: expected 64 hex digits or base64 of 32 bytes, got {} characters",
      source, trimmed.size()));
}

Result<std::string> load_master_key(std::string_view env_var, std::string_view file) {
  if (!env_var.empty()) {
    const std::string name(env_var);
    // getenv, not secure_getenv: civicbus is not meant to run set-uid, and refusing the
    // variable silently there would be more confusing than useful.
    // NOLINTNEXTLINE(concurrency-mt-unsafe): read once at start-up; nothing here sets it.
    if (const char* value = std::getenv(name.c_str()); value != nullptr && *value != '\0') {
      return parse_master_key(value, fmt::format("environment variable {}", name));
    }
  }
  if (!file.empty()) {
    Result<std::string> key = read_key_file(std::string(file));
    if (!key.ok() && key.status().code() == ErrorCode::kNotFound && !env_var.empty()) {
      return not_found(fmt::format("{} (and environment variable {} is not set)",
                                   key.status().message(), env_var));
    }
    return key;
  }
  if (env_var.empty()) {
    return invalid_argument(
        "no master key source: neither an environment variable nor a file was given");
  }
  return not_found(fmt::format(
      "no master key: environment variable {} is not set and no key file is configured", env_var));
}

Status write_new_master_key(std::string_view file, RandomSource& random) {
  const std::string path(file);
  if (path.empty()) return invalid_argument("write_new_master_key(): the file name is empty");
  // O_EXCL: never replace a key (data under it would be lost); O_NOFOLLOW: never write
  // through a symlink someone else planted.
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == EEXIST) {
      return already_exists(fmt::format(
          "master key file {} already exists; refusing to replace it (data encrypted under the "
          "old key would become unreadable)",
          path));
    }
    return io_error(fmt::format("cannot create master key file {}: {}", path, errno_text(err)));
  }
  // The umask can only take bits away, but a 0600 set explicitly documents the intent and
  // survives unusual filesystems that ignore the create mode.
  if (::fchmod(fd.get(), 0600) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return io_error(fmt::format("cannot chmod master key file {}: {}", path, errno_text(err)));
  }
  std::string key = random.bytes(kMasterKeyBytes);
  std::string text = crypto::to_hex(key) + "\n";
  wipe(key);
  std::size_t written = 0;
  int err = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  wipe(text);
  if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
  if (err == 0 && fd.release_and_close() != 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    return io_error(fmt::format("cannot write master key file {}: {}", path, errno_text(err)));
  }
  return {};
}

}  // namespace civicbus::broker

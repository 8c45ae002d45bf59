// The sftp connector: a remote drop folder read over SFTP (libssh2) like a
// watched folder, and written one file per batch (uploaded under a temporary
// name, then renamed, so a reader never sees half a file). The host key is
// pinned by its SHA-256 fingerprint. docs/connectors.md ("Object storage and
// SFTP") describes the configuration.
#include <fcntl.h>
#include <fmt/format.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>

#include "civicbus/core/crypto.hpp"
#include "connect/builtin_connectors.hpp"
#include "connect/remote_files.hpp"

namespace civicbus::connect::detail {

namespace {

ConnectorSpec sftp_spec() {
  ConnectorSpec spec;
  spec.name = "sftp";
  spec.title = "SFTP drop folder";
  spec.description =
      "Reads the files of a remote folder over SFTP like a "
      "watched folder (new or changed "
      "files only, CSV, JSON or NDJSON; optionally moved aside "
      "once read) and uploads each "
      "batch as one file, renamed into place when complete.";
  spec.format_source = "RFC 4251-4254 (SSH); draft-ietf-secsh-filexfer-02 (SFTP version 3)";
  spec.is_source = true;
  spec.is_sink = true;
  auto schema = Json::parse(std::string(R"js({
  "type": "object",
  "required": ["host", "username", "path"],
  "properties": {
    "host": {"type": "string", "minLength": 1},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 22},
    "username": {"type": "string", "minLength": 1},
    "password": {"type": "string", "secret": true},
    "private_key": {"type": "string", "secret": true,
                    "description": "PEM or OpenSSH private key text"},
    "private_key_passphrase": {"type": "string", "secret": true},
    "host_key_sha256": {"type": "string", "minLength": 1,
                        "description": "The server's host key fingerprint, as ssh-keygen -l prints it (SHA256:...)"},
    "insecure_skip_host_key_check": {"type": "boolean", "default": false},
    "path": {"type": "string", "minLength": 1, "description": "The remote folder"},
    "move_processed_to": {"type": "string", "minLength": 1,
                          "description": "Subfolder of path that read files are moved to"},
    "file_template": {"type": "string", "minLength": 1,
                      "default": "{stream}-{batch_id}.{ext}",
                      "description": "Sink: the name of each uploaded file in path"},)js") +
                            std::string(remote_format_properties()) + R"js(
  }
})js");
  spec.config_schema = schema.ok() ? std::move(schema).value() : Json::object({{"type", "object"}});
  return spec;
}

struct SftpConfig {
  std::string host;
  int port = 22;
  std::string username;
  std::string password;
  std::string private_key;
  std::string passphrase;
  std::string host_key_sha256;  // normalised: the 32 raw bytes
  bool insecure = false;
  std::string path;
  std::string pattern;
  std::string stream;
  std::string move_processed_to;
  std::string file_template;
};

// Accepts "SHA256:<base64>" (ssh-keygen -l), bare base64 with or without
// padding, and hex with or without ':' separators. The 32 raw bytes, or an
// error naming the value.
Result<std::string> parse_fingerprint(std::string text) {
  if (text.starts_with("SHA256:")) text = text.substr(7);
  std::string hex = text;
  hex.erase(std::remove(hex.begin(), hex.end(), ':'), hex.end());
  if (hex.size() == 64) {
    if (auto raw = crypto::from_hex(hex); raw.ok()) return std::move(raw).value();
  }
  while (!text.empty() && text.back() == '=') text.pop_back();
  while (text.size() % 4 != 0) text += '=';
  if (auto raw = crypto::base64_decode(text); raw.ok() && raw->size() == 32) {
    return std::move(raw).value();
  }
  return invalid_argument(
      fmt::format("\"host_key_sha256\" '{}' is not a SHA-256 fingerprint "
                  "(SHA256:<base64> as ssh-keygen "
                  "-lf prints it, or 64 hex digits)",
                  text));
}

std::string fingerprint_text(std::string_view raw) {
  std::string b64 = crypto::base64_encode(raw);
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return "SHA256:" + b64;
}

Result<SftpConfig> parse_sftp_config(const Json& config) {
  SftpConfig c;
  c.host = config.get_string("host");
  c.username = config.get_string("username");
  c.path = config.get_string("path");
  if (c.host.empty() || c.username.empty() || c.path.empty()) {
    return invalid_argument("sftp config needs \"host\", \"username\" and \"path\"");
  }
  c.port = static_cast<int>(config.get_int("port", 22));
  if (c.port < 1 || c.port > 65535) {
    return invalid_argument(fmt::format("sftp \"port\" {} is not a TCP port", c.port));
  }
  c.password = config.get_string("password");
  c.private_key = config.get_string("private_key");
  c.passphrase = config.get_string("private_key_passphrase");
  if (c.password.empty() && c.private_key.empty()) {
    return invalid_argument(fmt::format(
        "sftp config for {}@{} needs \"password\" or \"private_key\"", c.username, c.host));
  }
  c.insecure = config.get_bool("insecure_skip_host_key_check", false);
  if (const std::string pin = config.get_string("host_key_sha256"); !pin.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(c.host_key_sha256, parse_fingerprint(pin));
  }
  while (c.path.size() > 1 && c.path.ends_with('/')) c.path.pop_back();
  c.pattern = config.get_string("pattern", "*");
  std::string last =
      c.path.substr(c.path.rfind('/') == std::string::npos ? 0 : c.path.rfind('/') + 1);
  c.stream = config.get_string("stream", last.empty() ? c.host : last);
  c.move_processed_to = config.get_string("move_processed_to");
  if (c.move_processed_to.find('/') != std::string::npos || c.move_processed_to == "..") {
    return invalid_argument(fmt::format(
        "\"move_processed_to\" '{}' must be a subfolder name of \"path\"", c.move_processed_to));
  }
  c.file_template = config.get_string("file_template", "{stream}-{batch_id}.{ext}");
  return c;
}

struct RemoteFile {
  std::string name;
  std::int64_t size = 0;
  std::int64_t mtime = 0;  // seconds since the epoch (SFTP v3 has no finer time)
};

// libssh2 wants one global init before any session; the library keeps no other
// global state we touch.
void init_libssh2_once() {
  static std::once_flag once;
  std::call_once(once, [] { libssh2_init(0); });
}

// One SSH connection with its SFTP channel, for the duration of one connector
// call.
class SftpSession {
 public:
  static Result<std::unique_ptr<SftpSession>> open(const SftpConfig& config,
                                                   std::chrono::milliseconds timeout) {
    init_libssh2_once();
    std::unique_ptr<SftpSession> s(new SftpSession());
    s->where_ = fmt::format("sftp://{}@{}:{}", config.username, config.host, config.port);
    CIVICBUS_ASSIGN_OR_RETURN(s->socket_, connect_tcp(config, timeout));
    s->session_ = libssh2_session_init();
    if (s->session_ == nullptr) return internal_error(s->where_ + ": cannot create an SSH session");
    libssh2_session_set_blocking(s->session_, 1);
    libssh2_session_set_timeout(s->session_, static_cast<long>(timeout.count()));
    if (libssh2_session_handshake(s->session_, s->socket_) != 0) {
      return unavailable(s->where_ + ": SSH handshake failed: " + s->last_error());
    }
    CIVICBUS_RETURN_IF_ERROR(s->verify_host_key(config));
    CIVICBUS_RETURN_IF_ERROR(s->authenticate(config));
    s->sftp_ = libssh2_sftp_init(s->session_);
    if (s->sftp_ == nullptr) {
      return unavailable(s->where_ + ": the server offers no SFTP subsystem: " + s->last_error());
    }
    return s;
  }

  ~SftpSession() {
    if (sftp_ != nullptr) libssh2_sftp_shutdown(sftp_);
    if (session_ != nullptr) {
      libssh2_session_disconnect(session_, "civicbus sftp connector done");
      libssh2_session_free(session_);
    }
    if (socket_ >= 0) ::close(socket_);
  }

  // The regular files of `dir` whose name matches `pattern`, by name; dot files
  // left out.
  Result<std::vector<RemoteFile>> list(const std::string& dir, const std::string& pattern) {
    LIBSSH2_SFTP_HANDLE* handle = libssh2_sftp_opendir(sftp_, dir.c_str());
    if (handle == nullptr) return sftp_error("cannot list folder", dir);
    std::vector<RemoteFile> files;
    char name[1024];
    for (;;) {
      LIBSSH2_SFTP_ATTRIBUTES attrs{};
      const int n = libssh2_sftp_readdir(handle, name, sizeof name, &attrs);
      if (n < 0) {
        libssh2_sftp_closedir(handle);
        return sftp_error("cannot list folder", dir);
      }
      if (n == 0) break;
      const std::string file(name, static_cast<std::size_t>(n));
      if (file.starts_with('.')) continue;
      if ((attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) != 0 &&
          !LIBSSH2_SFTP_S_ISREG(attrs.permissions)) {
        continue;
      }
      if (!glob_matches(pattern, file)) continue;
      files.push_back(RemoteFile{file, static_cast<std::int64_t>(attrs.filesize),
                                 static_cast<std::int64_t>(attrs.mtime)});
    }
    libssh2_sftp_closedir(handle);
    std::sort(files.begin(), files.end(),
              [](const RemoteFile& a, const RemoteFile& b) { return a.name < b.name; });
    return files;
  }

  Status download(const std::string& remote, const std::string& local) {
    LIBSSH2_SFTP_HANDLE* handle = libssh2_sftp_open(sftp_, remote.c_str(), LIBSSH2_FXF_READ, 0);
    if (handle == nullptr) return sftp_error("cannot open", remote);
    std::ofstream out(local, std::ios::binary | std::ios::trunc);
    std::string buffer(64 * 1024, '\0');
    Status status;
    for (;;) {
      const ssize_t n = libssh2_sftp_read(handle, buffer.data(), buffer.size());
      if (n < 0) {
        status = sftp_error("cannot read", remote);
        break;
      }
      if (n == 0) break;
      out.write(buffer.data(), n);
    }
    libssh2_sftp_close(handle);
    out.close();
    if (status.ok() && !out) status = io_error(fmt::format("cannot write download '{}'", local));
    return status;
  }

  Status upload(const std::string& remote, std::string_view bytes) {
    LIBSSH2_SFTP_HANDLE* handle = libssh2_sftp_open(
        sftp_, remote.c_str(), LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC,
        LIBSSH2_SFTP_S_IRUSR | LIBSSH2_SFTP_S_IWUSR | LIBSSH2_SFTP_S_IRGRP | LIBSSH2_SFTP_S_IROTH);
    if (handle == nullptr) return sftp_error("cannot create", remote);
    while (!bytes.empty()) {
      const ssize_t n = libssh2_sftp_write(handle, bytes.data(), bytes.size());
      if (n < 0) {
        Status s = sftp_error("cannot write", remote);
        libssh2_sftp_close(handle);
        return s;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    // fsync@openssh.com where the server has it, so the data is on disk before
    // the rename.
    libssh2_sftp_fsync(handle);
    if (libssh2_sftp_close(handle) != 0) return sftp_error("cannot close", remote);
    return Status();
  }

  // SFTP v3 renames refuse an existing target (OpenSSH links then unlinks): the
  // caller decides what an existing target means.
  Status rename(const std::string& from, const std::string& to) {
    if (libssh2_sftp_rename_ex(sftp_, from.c_str(), static_cast<unsigned>(from.size()), to.c_str(),
                               static_cast<unsigned>(to.size()),
                               LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
                                   LIBSSH2_SFTP_RENAME_NATIVE) != 0) {
      return sftp_error(fmt::format("cannot rename '{}' to", from), to);
    }
    return Status();
  }

  Status remove(const std::string& path) {
    if (libssh2_sftp_unlink(sftp_, path.c_str()) != 0) return sftp_error("cannot remove", path);
    return Status();
  }

  bool exists(const std::string& path) {
    LIBSSH2_SFTP_ATTRIBUTES attrs{};
    return libssh2_sftp_stat(sftp_, path.c_str(), &attrs) == 0;
  }

  Status make_dir(const std::string& path) {
    if (exists(path)) return Status();
    if (libssh2_sftp_mkdir(sftp_, path.c_str(),
                           LIBSSH2_SFTP_S_IRWXU | LIBSSH2_SFTP_S_IRGRP | LIBSSH2_SFTP_S_IXGRP) !=
        0) {
      return sftp_error("cannot create folder", path);
    }
    return Status();
  }

  const std::string& where() const { return where_; }

 private:
  SftpSession() = default;

  static Result<int> connect_tcp(const SftpConfig& config, std::chrono::milliseconds timeout) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(config.port);
    if (const int rc = ::getaddrinfo(config.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return unavailable(
          fmt::format("sftp: cannot resolve '{}': {}", config.host, ::gai_strerror(rc)));
    }
    std::string last = "no address";
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      // Non-blocking connect bounded by the call's timeout, then back to
      // blocking for libssh2.
      const int flags = ::fcntl(fd, F_GETFL);
      ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
      int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
        int err = rc == 0 ? ETIMEDOUT : 0;
        socklen_t len = sizeof err;
        if (rc > 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      }
      if (rc == 0) {
        ::fcntl(fd, F_SETFL, flags);
        ::freeaddrinfo(found);
        return fd;
      }
      last = std::strerror(errno);
      ::close(fd);
    }
    ::freeaddrinfo(found);
    return unavailable(
        fmt::format("sftp: cannot connect to {}:{}: {}", config.host, config.port, last));
  }

  Status verify_host_key(const SftpConfig& config) {
    const char* hash = libssh2_hostkey_hash(session_, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (hash == nullptr) return unavailable(where_ + ": the server sent no host key");
    const std::string seen(hash, 32);
    if (!config.host_key_sha256.empty()) {
      if (crypto::constant_time_equal(seen, config.host_key_sha256)) return Status();
      return permission_denied(
          fmt::format("{}: the server's host key is {}, not the pinned {} "
                      "(\"host_key_sha256\"); the host "
                      "key changed or this is not the server you meant",
                      where_, fingerprint_text(seen), fingerprint_text(config.host_key_sha256)));
    }
    if (config.insecure) return Status();
    return failed_precondition(
        fmt::format("{}: no \"host_key_sha256\" pinned; the server presented {} (check it "
                    "out of band, "
                    "e.g. ssh-keygen -lf on the server's host key, then pin it, or set "
                    "\"insecure_skip_host_key_check\": true for a test)",
                    where_, fingerprint_text(seen)));
  }

  Status authenticate(const SftpConfig& config) {
    if (!config.private_key.empty()) {
      const int rc = libssh2_userauth_publickey_frommemory(
          session_, config.username.data(), config.username.size(), nullptr, 0,
          config.private_key.data(), config.private_key.size(),
          config.passphrase.empty() ? nullptr : config.passphrase.c_str());
      if (rc == 0) return Status();
      if (config.password.empty()) {
        return permission_denied(
            fmt::format("{}: the server refused the private key: {}", where_, last_error()));
      }
    }
    if (libssh2_userauth_password_ex(
            session_, config.username.data(), static_cast<unsigned>(config.username.size()),
            config.password.data(), static_cast<unsigned>(config.password.size()), nullptr) != 0) {
      return permission_denied(
          fmt::format("{}: the server refused the password: {}", where_, last_error()));
    }
    return Status();
  }

  std::string last_error() const {
    char* message = nullptr;
    int len = 0;
    libssh2_session_last_error(session_, &message, &len, 0);
    return message != nullptr ? std::string(message, static_cast<std::size_t>(len))
                              : std::string("unknown error");
  }

  Status sftp_error(std::string_view what, const std::string& path) const {
    const unsigned long code = libssh2_sftp_last_error(sftp_);
    const std::string message = fmt::format("{}: {} '{}'", where_, what, path);
    switch (code) {
      case LIBSSH2_FX_NO_SUCH_FILE:
      case LIBSSH2_FX_NO_SUCH_PATH:
        return not_found(message + ": no such file or folder");
      case LIBSSH2_FX_PERMISSION_DENIED:
        return permission_denied(message + ": permission denied");
      case LIBSSH2_FX_FILE_ALREADY_EXISTS:
        return already_exists(message + ": it exists");
      case LIBSSH2_FX_OK:
        return unavailable(message + ": " + last_error());
      default:
        return io_error(fmt::format("{}: SFTP status {}", message, code));
    }
  }

  std::string where_;
  int socket_ = -1;
  LIBSSH2_SESSION* session_ = nullptr;
  LIBSSH2_SFTP* sftp_ = nullptr;
};

std::string join(const std::string& dir, const std::string& name) {
  return dir.ends_with('/') ? dir + name : dir + "/" + name;
}

class SftpConnector final : public Connector {
 public:
  SftpConnector() : spec_(sftp_spec()) {}
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(SftpConfig config, parse_sftp_config(context.config));
    CIVICBUS_ASSIGN_OR_RETURN(auto session, SftpSession::open(config, context.timeout));
    return session->list(config.path, config.pattern).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(SftpConfig config, parse_sftp_config(context.config));
    CIVICBUS_ASSIGN_OR_RETURN(auto session, SftpSession::open(config, context.timeout));
    CIVICBUS_ASSIGN_OR_RETURN(auto files, session->list(config.path, config.pattern));
    if (files.empty()) return std::vector<StreamSpec>{StreamSpec{config.stream, {}, {}, {}}};
    // The first file stands for the others, as a sample does for a watched
    // folder.
    CIVICBUS_ASSIGN_OR_RETURN(RemoteFormat format, remote_format(context.config, files[0].name));
    CIVICBUS_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::create(context, "sftp-download"));
    const std::string local = scratch.file_for(files[0].name, 0);
    CIVICBUS_RETURN_IF_ERROR(session->download(join(config.path, files[0].name), local));
    CIVICBUS_ASSIGN_OR_RETURN(StreamSpec stream,
                              discover_downloaded(context, format, local, config.stream));
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(SftpConfig config, parse_sftp_config(context.config));
    if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                              config.stream) == request.streams.end()) {
      return not_found(fmt::format("connector 'sftp' has no stream '{}' (it offers '{}')",
                                   request.streams.front(), config.stream));
    }
    CIVICBUS_ASSIGN_OR_RETURN(auto session, SftpSession::open(config, context.timeout));
    CIVICBUS_ASSIGN_OR_RETURN(auto files, session->list(config.path, config.pattern));

    // As a watched folder: files new or changed (size or mtime) since the
    // state, by name, each checkpointed once read; the state keeps only files
    // still in the folder.
    const Json* state = request.stream_state(config.stream);
    const Json* known = state != nullptr ? state->find("files") : nullptr;
    Json seen = Json::object();
    std::vector<const RemoteFile*> todo;
    for (const RemoteFile& f : files) {
      const Json* k = known != nullptr ? known->find(f.name) : nullptr;
      if (k != nullptr && k->get_int("size", -1) == f.size && k->get_int("mtime", -1) == f.mtime) {
        seen.set(f.name, *k);
      } else {
        todo.push_back(&f);
      }
    }
    auto state_of = [&] { return Json::object({{"files", seen}}); };
    if (todo.empty()) return out.checkpoint(config.stream, state_of());

    CIVICBUS_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::create(context, "sftp-download"));
    const std::string processed = config.move_processed_to.empty()
                                      ? std::string()
                                      : join(config.path, config.move_processed_to);
    if (!processed.empty()) CIVICBUS_RETURN_IF_ERROR(session->make_dir(processed));
    std::int64_t emitted = 0;
    std::int64_t index = 0;
    for (const RemoteFile* f : todo) {
      const bool limited = request.max_records >= 0;
      if (limited && emitted >= request.max_records) break;
      if (out.cancelled()) {
        return cancelled(fmt::format("read of {}{} cancelled", session->where(), config.path));
      }
      CIVICBUS_ASSIGN_OR_RETURN(RemoteFormat format, remote_format(context.config, f->name));
      const std::string remote = join(config.path, f->name);
      const std::string local = scratch.file_for(f->name, index++);
      CIVICBUS_RETURN_IF_ERROR(session->download(remote, local));
      CIVICBUS_RETURN_IF_ERROR(parse_downloaded(
          context, format, local, session->where() + remote, config.stream, request.batch_size,
          limited ? request.max_records - emitted : -1, out, emitted));
      std::remove(local.c_str());
      // A file cut short by the record limit (a test sync's sample) is not
      // marked read.
      if (limited && emitted >= request.max_records) break;
      seen.set(f->name, Json::object({{"size", f->size}, {"mtime", f->mtime}}));
      CIVICBUS_RETURN_IF_ERROR(out.checkpoint(config.stream, state_of()));
      if (!processed.empty()) {
        // Moved only after the checkpoint: a failure in between reads the file
        // again (at least once), never loses it. A processed file of the same
        // name is replaced.
        const std::string target = join(processed, f->name);
        if (session->exists(target)) CIVICBUS_RETURN_IF_ERROR(session->remove(target));
        CIVICBUS_RETURN_IF_ERROR(session->rename(remote, target));
        seen.erase(f->name);
      }
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    if (request.mode == WriteMode::kUpsert) {
      return invalid_argument(
          fmt::format("connector 'sftp' writes one file per batch; upsert "
                      "(stream '{}') needs a database "
                      "sink",
                      request.stream));
    }
    CIVICBUS_ASSIGN_OR_RETURN(SftpConfig config, parse_sftp_config(context.config));
    const std::string format_name = context.config.get_string("format", "ndjson");
    if (format_name != "csv" && format_name != "ndjson" && format_name != "auto") {
      return invalid_argument(
          fmt::format("connector 'sftp' writes csv or ndjson files; \"format\" "
                      "'{}' is not one",
                      format_name));
    }
    const RemoteFormat format = format_name == "csv" ? RemoteFormat::kCsv : RemoteFormat::kNdjson;
    const std::string delimiter = context.config.get_string("delimiter", ",");
    CIVICBUS_ASSIGN_OR_RETURN(EncodedBatch encoded,
                              encode_batch(batch, format, delimiter.empty() ? ',' : delimiter[0]));
    const bool replayable = !request.batch_id.empty();
    std::string batch_id = request.batch_id;
    if (!replayable) {
      batch_id = fmt::format(
          "{}-{}",
          std::chrono::duration_cast<std::chrono::milliseconds>(context.now().time_since_epoch())
              .count(),
          ++unnamed_batches_);
    }
    const std::string stream = request.stream.empty() ? config.stream : request.stream;
    CIVICBUS_ASSIGN_OR_RETURN(std::string name,
                              render_name(config.file_template, stream, batch_id, context.now(),
                                          remote_format_name(format)));
    if (name.find('/') != std::string::npos) {
      return invalid_argument(
          fmt::format("\"file_template\" '{}' makes '{}', which is not a file "
                      "name in \"path\"",
                      config.file_template, name));
    }
    CIVICBUS_ASSIGN_OR_RETURN(auto session, SftpSession::open(config, context.timeout));
    const std::string final_path = join(config.path, name);
    // The file of a batch is renamed into place only once complete, so an
    // existing file of this batch id is a replay of a batch already written:
    // acknowledged without writing.
    if (replayable && session->exists(final_path)) return std::move(encoded.result);
    // A dot name: the source side of this connector (and most drop-folder
    // readers) skips it.
    const std::string temp_path = join(config.path, "." + name + ".part");
    CIVICBUS_RETURN_IF_ERROR(session->upload(temp_path, encoded.bytes));
    Status renamed = session->rename(temp_path, final_path);
    if (!renamed.ok()) {
      session->remove(temp_path).ignore_error();
      return renamed;
    }
    return std::move(encoded.result);
  }

 private:
  ConnectorSpec spec_;
  std::atomic<std::int64_t> unnamed_batches_{0};
};

}  // namespace

Status add_sftp_connector(ConnectorCatalog& catalog) {
  return catalog.add([] { return std::make_unique<SftpConnector>(); });
}

}  // namespace civicbus::connect::detail

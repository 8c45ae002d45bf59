// A real, throwaway PostgreSQL server for tests and benchmarks: initdb into its
// own TempDir, listening on 127.0.0.1 at a free port (its unix socket inside
// the TempDir), ready once pg_isready says so, stopped (pg_ctl stop -m
// immediate) and removed on destruction. Set up for logical decoding
// (wal_level=logical, 4 replication slots and WAL senders; pg_hba lets
// replication connections in) and for speed over durability (fsync=off).
// Run as root, initdb and postgres run as the `postgres` system user (both
// refuse root). Header-only (tests/support/*.cpp are not globbed into the
// support library).
#pragma once

#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace civicbus::testing {

class Postgres {
 public:
  // Starts the server and creates database "civicbus_test"; throws
  // std::runtime_error (a test failure, not a skip: CI installs the server)
  // when the binaries are missing or the server does not come up within 30 s.
  Postgres() : port_(free_loopback_port()) { start(); }
  ~Postgres() { stop(); }
  Postgres(const Postgres&) = delete;
  Postgres& operator=(const Postgres&) = delete;

  int port() const { return port_; }
  const std::string& user() const { return user_; }
  // A libpq URI for `database` (by default the one created at start) over TCP
  // loopback.
  std::string uri(const std::string& database = "civicbus_test") const {
    return "postgresql://" + user_ + "@127.0.0.1:" + std::to_string(port_) + "/" + database;
  }
  std::string socket_dir() const { return dir_.file("socket"); }
  std::string data_dir() const { return dir_.file("data"); }
  const std::string& log_path() const { return log_; }
  // Where initdb, pg_ctl, psql, pg_recvlogical ... live.
  const std::string& bin_dir() const { return bin_; }

  // Creates another database (one per test keeps tests apart on a shared
  // server); returns its URI. Throws when createdb fails.
  std::string create_database(const std::string& name) const {
    RunResult r = run_command(
        {bin_ + "/createdb", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", user_, name});
    if (r.exit_code != 0) throw std::runtime_error("createdb " + name + " failed: " + r.output);
    return uri(name);
  }

  // Runs `sql` with psql (-X, stops on the first error, unaligned tuples only)
  // in `database`; exit code and output as run_command gives them.
  RunResult psql(const std::string& sql, const std::string& database = "civicbus_test") const {
    return run_command({bin_ + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                        "127.0.0.1", "-p", std::to_string(port_), "-U", user_, "-d", database, "-c",
                        sql});
  }

  // Stops the server at once (as a crash would: no checkpoint) and reaps it.
  void stop() {
    if (!process_) return;
    as_server_user(
        {bin_ + "/pg_ctl", "stop", "-D", data_dir(), "-m", "immediate", "-w", "-t", "10"});
    if (!process_->wait_for(std::chrono::seconds(10))) {
      process_->kill_now(SIGKILL);
      process_->wait();
    }
    process_.reset();
  }

 private:
  // The newest server binaries: on PATH (a CI image or a source build) or in
  // Debian's versioned directories.
  static std::optional<std::string> find_bin_dir() {
    if (auto initdb = find_program("initdb")) {
      // Often a symlink (/usr/local/bin/initdb) into the directory holding its
      // siblings.
      std::error_code ec;
      auto real = std::filesystem::canonical(*initdb, ec);
      if (!ec) return real.parent_path().string();
    }
    for (int version = 20; version >= 12; --version) {
      std::string dir = "/usr/lib/postgresql/" + std::to_string(version) + "/bin";
      if (::access((dir + "/initdb").c_str(), X_OK) == 0 &&
          ::access((dir + "/postgres").c_str(), X_OK) == 0)
        return dir;
    }
    return std::nullopt;
  }

  // argv run by the server's owner: as root, through setpriv as `postgres`
  // (setpriv execs, so the pid is the program's own), from inside the TempDir
  // (root's cwd is not readable by postgres, and initdb wants to know its cwd).
  std::vector<std::string> server_user_argv(const std::vector<std::string>& argv) const {
    std::vector<std::string> out = {"/bin/sh", "-c", "cd \"$0\" && exec \"$@\"",
                                    dir_.path().string()};
    if (::geteuid() == 0) {
      for (const char* a : {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                            "--reset-env", "--"})
        out.emplace_back(a);
    }
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  RunResult as_server_user(const std::vector<std::string>& argv) const {
    return run_command(server_user_argv(argv));
  }

  void start() {
    auto bin = find_bin_dir();
    if (!bin) {
      throw std::runtime_error(
          "PostgreSQL server binaries (initdb, postgres, pg_ctl) were not "
          "found on PATH nor in "
          "/usr/lib/postgresql/<version>/bin; install them (apt-get install "
          "postgresql, or "
          "scripts/install-deps.sh): the PostgreSQL tests need a real server");
    }
    bin_ = *bin;
    for (const char* tool : {"postgres", "pg_ctl", "pg_isready", "createdb", "psql"}) {
      if (::access((bin_ + "/" + tool).c_str(), X_OK) != 0) {
        throw std::runtime_error(bin_ + "/" + tool +
                                 " is missing; install the full PostgreSQL server and client "
                                 "(apt-get install postgresql)");
      }
    }
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) {
        throw std::runtime_error(
            "running as root, but there is no 'postgres' "
            "system user to run initdb and the "
            "server as (both refuse root); install the "
            "postgresql package or run as non-root");
      }
      if (::chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0)
        throw std::runtime_error("cannot chown " + dir_.path().string() + " to postgres");
      user_ = "postgres";
    } else {
      const passwd* pw = ::getpwuid(::geteuid());
      user_ = pw ? pw->pw_name : "postgres";
    }
    as_server_user({"mkdir", "-m", "0700", socket_dir()});

    RunResult init =
        as_server_user({bin_ + "/initdb", "-D", data_dir(), "-U", user_, "--auth=trust", "-E",
                        "UTF8", "--locale=C", "--no-sync", "--no-instructions"});
    if (init.exit_code != 0) throw std::runtime_error("initdb failed: " + init.output);
    {
      // Appended, so the settings win over initdb's; the file keeps its owner.
      std::ofstream conf(data_dir() + "/postgresql.conf", std::ios::app);
      conf << "\n# civicbus test fixture\n"
           << "listen_addresses = '127.0.0.1'\n"
           << "port = " << port_ << "\n"
           << "unix_socket_directories = '" << socket_dir() << "'\n"
           << "wal_level = logical\n"
           << "max_replication_slots = 4\n"
           << "max_wal_senders = 4\n"
           << "fsync = off\n"
           << "synchronous_commit = off\n"
           << "full_page_writes = off\n"
           << "max_connections = 50\n"
           << "shared_buffers = 32MB\n"
           << "log_min_messages = warning\n";
      if (!conf) throw std::runtime_error("cannot append to " + data_dir() + "/postgresql.conf");
    }

    log_ = dir_.file("postgres.log");
    auto child =
        ChildProcess::start(server_user_argv({bin_ + "/postgres", "-D", data_dir()}), log_);
    if (!child) throw std::runtime_error("cannot fork to start " + bin_ + "/postgres");
    process_ = std::make_unique<ChildProcess>(std::move(*child));

    const std::vector<std::string> ready = {bin_ + "/pg_isready",  "-q", "-h",  "127.0.0.1", "-p",
                                            std::to_string(port_), "-U", user_, "-t",        "1"};
    bool exited = false;
    const bool up = wait_until(
        [&] {
          if (process_->wait_for(std::chrono::milliseconds(0))) {
            exited = true;
            return true;
          }
          return run_command(ready).exit_code == 0;
        },
        std::chrono::seconds(30));
    if (exited || !up) {
      if (exited) process_.reset();
      stop();
      throw std::runtime_error(std::string("postgres ") +
                               (exited ? "exited at start" : "was not ready within 30 s") +
                               " on port " + std::to_string(port_) + ": " + read_file(log_));
    }
    create_database("civicbus_test");
  }

  TempDir dir_;  // destroyed last: the server is stopped before its files go
  int port_;
  std::string bin_;
  std::string user_;
  std::string log_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace civicbus::testing

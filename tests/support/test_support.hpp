// Helpers shared by the test suites: temporary directories, loopback ports, child processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace civicbus::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound with port 0, then released).
int free_loopback_port();

// Full path of an executable found on PATH or in /usr/sbin, /usr/bin; nullopt if absent.
std::optional<std::string> find_program(const std::string& name);

// A child process started with argv, stdout/stderr to `log_path` (or inherited when empty).
// Killed (SIGKILL) and reaped on destruction unless already waited for.
class ChildProcess {
 public:
  static std::optional<ChildProcess> start(const std::vector<std::string>& argv,
                                           const std::string& log_path = {});
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  void kill_now(int signal);
  // Waits for the exit; returns the exit code, or 128+signal.
  int wait();
  // Waits up to `timeout`; nullopt if still running.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// Runs argv to completion capturing stdout+stderr; returns {exit code, output}.
struct RunResult {
  int exit_code;
  std::string output;
};
RunResult run_command(const std::vector<std::string>& argv, const std::string& stdin_text = {});

// Polls `ready` every 10 ms until it returns true or `timeout` passes.
bool wait_until(const std::function<bool()>& ready,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Reads a whole file; empty string if it cannot be read.
std::string read_file(const std::string& path);
void write_file(const std::string& path, std::string_view content);

}  // namespace civicbus::testing

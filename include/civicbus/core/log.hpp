// Logger: structured logs as text lines or JSON lines. A Logger is cheap to copy (it shares
// its sink); components take one from the Node and add their own name.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "civicbus/core/clock.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };
enum class LogFormat {
  kText,  // 2026-11-22T14:52:00.123456Z INFO broker: event stored topic=permit.issued offset=7
  kJson,  // {"time":"…","level":"info","component":"broker","msg":"event stored","topic":…}
};

CIVICBUS_EXPORT Result<LogLevel> parse_log_level(std::string_view name);  // "info", "warn", …

struct LogField {
  std::string_view key;
  std::string value;
};

struct LogOptions {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
  // Receives each finished line without the newline. Default: stderr. Called under a lock,
  // so lines never interleave; it must not log.
  std::function<void(std::string_view line)> sink;
};

class CIVICBUS_EXPORT Logger {
 public:
  Logger();                                        // info, text, stderr, system clock
  Logger(LogOptions options, const Clock& clock);  // `clock` must outlive every copy

  // A copy that tags lines with `component`.
  Logger with_component(std::string_view component) const;

  bool enabled(LogLevel level) const;
  void log(LogLevel level, std::string_view message,
           std::initializer_list<LogField> fields = {}) const;
  void trace(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::kTrace, m, f);
  }
  void debug(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::kDebug, m, f);
  }
  void info(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::kInfo, m, f);
  }
  void warn(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::kWarn, m, f);
  }
  void error(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::kError, m, f);
  }

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::string component_;
};

}  // namespace civicbus

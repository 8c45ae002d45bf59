#include "civicbus/core/log.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <iterator>
#include <mutex>

#include "civicbus/core/json.hpp"

namespace civicbus {
namespace {

const char* level_text_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "TRACE";
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kOff:
      break;
  }
  return "OFF";
}

const char* level_json_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      break;
  }
  return "off";
}

// Text lines must stay one line per event and readable by logfmt tools: control characters
// are escaped, and a value is quoted when it is empty or holds a space, quote, '=' or escape.
void append_text_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          fmt::format_to(std::back_inserter(out), "\\x{:02x}", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
}

void append_text_message(std::string& out, std::string_view s) {
  // The message is not quoted, so only what would break the line is escaped.
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      append_text_escaped(out, std::string_view(&c, 1));
    } else {
      out.push_back(c);
    }
  }
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20 ||
        c == 0x7f) {
      return true;
    }
  }
  return false;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

// Reused per thread so that a log line costs no allocation once the buffer has grown.
thread_local std::string t_line_buffer;

}  // namespace

Result<LogLevel> parse_log_level(std::string_view name) {
  static constexpr std::pair<std::string_view, LogLevel> kNames[] = {
      {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug},  {"info", LogLevel::kInfo},
      {"warn", LogLevel::kWarn},   {"warning", LogLevel::kWarn}, {"error", LogLevel::kError},
      {"off", LogLevel::kOff},
  };
  for (const auto& [text, level] : kNames) {
    if (equals_ignoring_case(name, text)) return level;
  }
  return invalid_argument(
      fmt::format("unknown log level '{}'; use one of trace, debug, info, warn, error, off", name));
}

struct Logger::Shared {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
  std::function<void(std::string_view)> sink;
  SystemClock system_clock;  // used when no clock is given
  const Clock* clock = &system_clock;
  std::mutex mu;  // one line at a time into the sink
};

Logger::Logger() : shared_(std::make_shared<Shared>()) {}

Logger::Logger(LogOptions options, const Clock& clock) : shared_(std::make_shared<Shared>()) {
  shared_->level = options.level;
  shared_->format = options.format;
  shared_->sink = std::move(options.sink);
  shared_->clock = &clock;
}

Logger Logger::with_component(std::string_view component) const {
  Logger copy = *this;
  copy.component_ = std::string(component);
  return copy;
}

bool Logger::enabled(LogLevel level) const {
  return level != LogLevel::kOff && shared_->level != LogLevel::kOff && level >= shared_->level;
}

void Logger::log(LogLevel level, std::string_view message,
                 std::initializer_list<LogField> fields) const {
  if (!enabled(level)) return;
  const Shared& s = *shared_;
  // Take the thread's buffer for the time of this call: should anything below log again
  // on this thread, it gets a fresh buffer instead of overwriting this line.
  std::string line = std::move(t_line_buffer);
  line.clear();
  const std::string time = format_rfc3339(s.clock->now());

  if (s.format == LogFormat::kJson) {
    line += "{\"time\":\"";
    line += time;
    line += "\",\"level\":\"";
    line += level_json_name(level);
    line += '"';
    if (!component_.empty()) {
      line += ",\"component\":\"";
      append_json_escaped(line, component_);
      line += '"';
    }
    line += ",\"msg\":\"";
    append_json_escaped(line, message);
    line += '"';
    for (const LogField& f : fields) {
      line += ",\"";
      append_json_escaped(line, f.key);
      line += "\":\"";
      append_json_escaped(line, f.value);
      line += '"';
    }
    line += '}';
  } else {
    line += time;
    line += ' ';
    line += level_text_name(level);
    line += ' ';
    if (!component_.empty()) {
      append_text_message(line, component_);
      line += ": ";
    }
    append_text_message(line, message);
    for (const LogField& f : fields) {
      line += ' ';
      append_text_message(line, f.key);
      line += '=';
      if (needs_quotes(f.value)) {
        line += '"';
        append_text_escaped(line, f.value);
        line += '"';
      } else {
        line += f.value;
      }
    }
  }

  {
    std::lock_guard lock(shared_->mu);
    if (s.sink) {
      s.sink(line);
    } else {
      // One fwrite of line and newline, so lines from other stderr writers interleave whole.
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  }
  t_line_buffer = std::move(line);
}

}  // namespace civicbus

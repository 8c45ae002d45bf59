#include "civicbus/core/log.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "civicbus/core/json.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

struct Captured {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mu);
      lines.emplace_back(line);
    };
  }
};

const SystemTime kT = from_unix_micros(1'795'359'120'123'456);  // 2026-11-22T14:52:00.123456Z

TEST_CASE("log: parse_log_level") {
  CHECK(*parse_log_level("trace") == LogLevel::kTrace);
  CHECK(*parse_log_level("debug") == LogLevel::kDebug);
  CHECK(*parse_log_level("info") == LogLevel::kInfo);
  CHECK(*parse_log_level("INFO") == LogLevel::kInfo);
  CHECK(*parse_log_level("warn") == LogLevel::kWarn);
  CHECK(*parse_log_level("warning") == LogLevel::kWarn);
  CHECK(*parse_log_level("Error") == LogLevel::kError);
  CHECK(*parse_log_level("off") == LogLevel::kOff);
  auto bad = parse_log_level("verbose");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
  CHECK(bad.status().message().find("'verbose'") != std::string::npos);
  CHECK_FALSE(parse_log_level("").ok());
  CHECK_FALSE(parse_log_level("info ").ok());
}

TEST_CASE("log: text lines") {
  ManualClock clock(kT);
  Captured out;
  Logger log(LogOptions{LogLevel::kInfo, LogFormat::kText, out.sink()}, clock);
  Logger broker = log.with_component("broker");
  broker.info("event stored", {{"topic", "permit.issued"}, {"offset", "7"}});
  log.warn("no component");
  broker.error("odd values", {{"empty", ""},
                              {"spaced", "two words"},
                              {"quoted", "say \"hi\""},
                              {"eq", "a=b"},
                              {"newline", "line1\nline2"},
                              {"unicode", "Montréal"}});
  broker.info("multi\nline\tmessage");
  REQUIRE(out.lines.size() == 4);
  CHECK(out.lines[0] ==
        "2026-11-22T14:52:00.123456Z INFO broker: event stored topic=permit.issued offset=7");
  CHECK(out.lines[1] == "2026-11-22T14:52:00.123456Z WARN no component");
  CHECK(out.lines[2] ==
        "2026-11-22T14:52:00.123456Z ERROR broker: odd values empty=\"\" spaced=\"two words\" "
        "quoted=\"say \\\"hi\\\"\" eq=\"a=b\" newline=\"line1\\nline2\" unicode=Montréal");
  CHECK(out.lines[3] == "2026-11-22T14:52:00.123456Z INFO broker: multi\\nline\\tmessage");
  for (const auto& line : out.lines) CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("log: JSON lines parse back") {
  ManualClock clock(kT);
  Captured out;
  Logger log(LogOptions{LogLevel::kTrace, LogFormat::kJson, out.sink()}, clock);
  log.with_component("gateway").info("request done", {{"status", "200"}, {"path", "/v1/\"x\"\\y"}});
  log.debug("control \x01\x1f chars\n", {{"bytes", std::string("a\0b", 3)}});
  log.trace("bad utf-8 \xff here");
  REQUIRE(out.lines.size() == 3);
  CHECK(out.lines[0] ==
        "{\"time\":\"2026-11-22T14:52:00.123456Z\",\"level\":\"info\",\"component\":\"gateway\","
        "\"msg\":\"request done\",\"status\":\"200\",\"path\":\"/v1/\\\"x\\\"\\\\y\"}");

  auto first = Json::parse(out.lines[0]);
  REQUIRE_MESSAGE(first.ok(), first.status().to_string());
  CHECK(first->get_string("path") == "/v1/\"x\"\\y");
  CHECK(first->get_string("component") == "gateway");

  auto second = Json::parse(out.lines[1]);
  REQUIRE_MESSAGE(second.ok(), second.status().to_string());
  CHECK(second->get_string("level") == "debug");
  CHECK(second->get_string("msg") == "control \x01\x1f chars\n");
  CHECK(second->get_string("bytes") == std::string("a\0b", 3));
  CHECK_FALSE(second->contains("component"));

  auto third = Json::parse(out.lines[2]);
  REQUIRE_MESSAGE(third.ok(), third.status().to_string());  // still valid JSON
  CHECK(third->get_string("level") == "trace");
}

TEST_CASE("log: level filter") {
  ManualClock clock;
  Captured out;
  Logger log(LogOptions{LogLevel::kWarn, LogFormat::kText, out.sink()}, clock);
  CHECK_FALSE(log.enabled(LogLevel::kTrace));
  CHECK_FALSE(log.enabled(LogLevel::kInfo));
  CHECK(log.enabled(LogLevel::kWarn));
  CHECK(log.enabled(LogLevel::kError));
  CHECK_FALSE(log.enabled(LogLevel::kOff));  // kOff is a threshold, not a level to log at
  log.trace("t");
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  log.log(LogLevel::kOff, "never");
  REQUIRE(out.lines.size() == 2);
  CHECK(out.lines[0].find(" WARN w") != std::string::npos);
  CHECK(out.lines[1].find(" ERROR e") != std::string::npos);

  Captured none;
  Logger off(LogOptions{LogLevel::kOff, LogFormat::kJson, none.sink()}, clock);
  off.error("dropped");
  CHECK_FALSE(off.enabled(LogLevel::kError));
  CHECK(none.lines.empty());
}

TEST_CASE("log: the clock is read per line") {
  ManualClock clock(kT);
  Captured out;
  Logger log(LogOptions{LogLevel::kInfo, LogFormat::kText, out.sink()}, clock);
  log.info("a");
  clock.advance(std::chrono::seconds{61});
  log.info("b");
  REQUIRE(out.lines.size() == 2);
  CHECK(out.lines[1].rfind("2026-11-22T14:53:01.123456Z INFO b", 0) == 0);
}

TEST_CASE("log: copies share one sink and lines never interleave") {
  ManualClock clock;
  std::string joined;  // the sink appends without its own lock: the logger must serialize
  std::size_t calls = 0;
  Logger log(LogOptions{LogLevel::kInfo, LogFormat::kText,
                        [&](std::string_view line) {
                          joined.append(line);
                          joined.push_back('\n');
                          ++calls;
                        }},
             clock);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Logger mine = log.with_component("worker" + std::to_string(t));
      const std::string payload(200, static_cast<char>('a' + t));
      for (int i = 0; i < 2000; ++i) mine.info("tick", {{"i", std::to_string(i)}, {"p", payload}});
    });
  }
  for (auto& th : threads) th.join();
  CHECK(calls == 8000);
  std::size_t lines = 0, start = 0;
  std::set<std::string> seen;
  while (start < joined.size()) {
    const std::size_t end = joined.find('\n', start);
    REQUIRE(end != std::string::npos);
    const std::string line = joined.substr(start, end - start);
    const auto colon = line.find(": tick i=");
    REQUIRE(colon != std::string::npos);
    const char w = line[colon - 1];  // worker digit
    const std::string payload(200, static_cast<char>('a' + (w - '0')));
    REQUIRE(line.size() > 200);
    REQUIRE(line.substr(line.size() - 200) == payload);
    seen.insert(line.substr(colon - 7));
    ++lines;
    start = end + 1;
  }
  CHECK(lines == 8000);
  CHECK(seen.size() == 8000);
}

TEST_CASE("log: the default logger writes info and up to stderr") {
  Logger log;
  CHECK(log.enabled(LogLevel::kInfo));
  CHECK_FALSE(log.enabled(LogLevel::kDebug));

  testing::TempDir dir;
  const std::string path = dir.file("stderr.txt");
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  dup2(fd, STDERR_FILENO);
  log.with_component("test").info("to stderr", {{"k", "v"}});
  log.debug("hidden");
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(fd);
  close(saved);
  const std::string text = testing::read_file(path);
  CHECK(text.size() > 27);
  CHECK(text.find(" INFO test: to stderr k=v\n") == 27);
  CHECK(text.find("hidden") == std::string::npos);
  CHECK(text.back() == '\n');
}

}  // namespace
}  // namespace civicbus

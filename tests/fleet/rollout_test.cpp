#include "fleet/rollout.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <set>

#include "civicbus/core/random.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::fleet;

namespace {

struct Harness {
  testing::TempDir dir;
  ManualClock clock{std::chrono::system_clock::time_point(std::chrono::seconds(1764600000))};
  SeededRandom random{7};
  IdGenerator ids{clock, random};
  std::unique_ptr<storage::Database> db;
  std::vector<std::pair<std::string, Json>> sent;
  std::set<std::string> unreachable;
  std::vector<RolloutProgress> progress;
  std::unique_ptr<RolloutManager> manager;

  Harness() {
    db = storage::open_sqlite({.path = (dir.path() / "fleet.db").string()}).value();
    reopen();
  }
  void reopen() {
    manager.reset();
    manager =
        RolloutManager::open(*db, clock, ids,
                             [this](const std::string& device, const Json& command) -> Status {
                               if (unreachable.count(device) != 0) {
                                 return unavailable("broker down");
                               }
                               sent.emplace_back(device, command);
                               return Status();
                             })
            .value();
    manager->on_progress([this](const RolloutProgress& p) { progress.push_back(p); });
  }
  static RolloutOptions options(std::size_t n) {
    RolloutOptions o;
    o.id = "r1";
    o.firmware_version = "2.1.0";
    o.firmware_url = "https://firmware.example/wm-2.1.0.bin";
    o.group_id = "meters-north";
    for (std::size_t i = 0; i < n; ++i) o.devices.push_back(fmt::format("wm-{:03}", i));
    o.first_wave = 5;
    o.growth = 2.0;
    o.min_devices = 10;
    o.max_failure_ratio = 0.2;
    o.device_timeout_s = 600;
    return o;
  }
  std::vector<std::string> in_flight_updates() {
    std::vector<std::string> devices;
    for (const auto& [d, c] : sent) {
      if (c.get_string("command") == "ota.update") devices.push_back(d);
    }
    return devices;
  }
};

std::string previous(const std::string&) {
  return "2.0.3";
}

}  // namespace

TEST_CASE("rollout: waves grow until every device is updated") {
  Harness h;
  auto started = h.manager->start(Harness::options(40), previous);
  REQUIRE(started.ok());
  CHECK(started->wave == 1);
  CHECK(started->wave_size == 5);
  CHECK(h.sent.size() == 5);
  CHECK(h.sent[0].second.get_string("version") == "2.1.0");
  CHECK(h.sent[0].second.get_string("url") == "https://firmware.example/wm-2.1.0.bin");

  std::vector<std::size_t> wave_sizes;
  std::size_t answered = 0;
  while (answered < h.sent.size()) {
    auto p = h.manager->progress("r1").value();
    wave_sizes.push_back(p.wave_size);
    const std::size_t upto = h.sent.size();
    for (; answered < upto; ++answered) {
      REQUIRE(h.manager->report(h.sent[answered].first, "", true).ok());
    }
  }
  CHECK(wave_sizes == std::vector<std::size_t>{5, 10, 20, 5});
  auto done = h.manager->progress("r1").value();
  CHECK(done.state == RolloutState::kCompleted);
  CHECK(done.succeeded == 40);
  CHECK(done.failed == 0);
  CHECK(h.progress.back().state == RolloutState::kCompleted);
  // The devices are free for another rollout.
  auto next = Harness::options(3);
  next.id = "r2";
  CHECK(h.manager->start(next, previous).ok());
}

TEST_CASE("rollout: aborts past the failure threshold and rolls back the updated devices") {
  Harness h;
  REQUIRE(h.manager->start(Harness::options(40), previous).ok());
  // Wave 1: 5 succeed. Wave 2 (10 devices): 4 fail → 4 of 15 finished = 26.7% > 20%.
  for (int i = 0; i < 5; ++i) REQUIRE(h.manager->report(h.sent[i].first, "", true).ok());
  REQUIRE(h.sent.size() == 15);
  for (int i = 5; i < 9; ++i) {
    REQUIRE(h.manager->report(h.sent[i].first, "r1", false, "flash write error").ok());
  }
  // Still under min_devices (9 finished): keeps going.
  CHECK(h.manager->progress("r1")->state == RolloutState::kRunning);
  REQUIRE(h.manager->report(h.sent[9].first, "r1", true).ok());
  auto p = h.manager->progress("r1").value();
  CHECK(p.state == RolloutState::kAborted);
  CHECK(p.reason.find("threshold") != std::string::npos);
  // The 6 that updated get a rollback to their previous version; nothing new is sent.
  std::map<std::string, std::string> rollbacks;
  for (const auto& [d, c] : h.sent) {
    if (c.get_string("command") == "ota.rollback") rollbacks[d] = c.get_string("version");
  }
  CHECK(rollbacks.size() == 6);
  CHECK(rollbacks.begin()->second == "2.0.3");
  CHECK(p.pending == 25);
  for (const auto& [d, v] : rollbacks) REQUIRE(h.manager->report(d, "r1", true).ok());
  p = h.manager->progress("r1").value();
  CHECK(p.rolled_back == 6);
  // The 5 still in flight from wave 2 answer late; then every device is free again.
  for (int i = 10; i < 15; ++i) REQUIRE(h.manager->report(h.sent[i].first, "r1", false).ok());
  auto again = Harness::options(40);
  again.id = "r3";
  CHECK(h.manager->start(again, previous).ok());
}

TEST_CASE("rollout: a silent device times out and counts as a failure") {
  Harness h;
  auto o = Harness::options(4);
  o.first_wave = 2;
  o.min_devices = 100;  // never abort here
  REQUIRE(h.manager->start(o, previous).ok());
  REQUIRE(h.manager->report(h.sent[0].first, "", true).ok());
  h.clock.advance(std::chrono::seconds(599));
  h.manager->tick();
  CHECK(h.manager->progress("r1")->in_flight == 1);
  h.clock.advance(std::chrono::seconds(2));
  h.manager->tick();
  auto p = h.manager->progress("r1").value();
  CHECK(p.failed == 1);
  CHECK(p.wave == 2);
  CHECK(p.wave_size == 2);
  auto devices = h.manager->devices("r1").value();
  CHECK(devices.as_array()[1].get_string("state") == "timed_out");
}

TEST_CASE("rollout: an unsendable command fails that device, and state survives a restart") {
  Harness h;
  h.unreachable.insert("wm-001");
  auto o = Harness::options(6);
  o.first_wave = 3;
  REQUIRE(h.manager->start(o, previous).ok());
  auto p = h.manager->progress("r1").value();
  CHECK(p.failed == 1);
  CHECK(p.in_flight == 2);

  h.reopen();
  p = h.manager->progress("r1").value();
  CHECK(p.failed == 1);
  CHECK(p.in_flight == 2);
  CHECK(p.state == RolloutState::kRunning);
  // A device of the running rollout cannot join another.
  auto other = Harness::options(1);
  other.id = "r9";
  auto refused = h.manager->start(other, previous);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("wm-000") != std::string::npos);
  CHECK(h.manager->report("wm-000", "", true).ok());
  CHECK(h.manager->report("nobody", "", true).code() == ErrorCode::kNotFound);
}

TEST_CASE("rollout: options are validated and abort is manual too") {
  Harness h;
  auto o = Harness::options(3);
  o.firmware_version.clear();
  CHECK(h.manager->start(o, previous).status().message().find("firmware_version") !=
        std::string::npos);
  o = Harness::options(3);
  o.devices.push_back("wm-000");
  CHECK(h.manager->start(o, previous).status().message().find("listed twice") != std::string::npos);
  CHECK(RolloutOptions::from_json(Json::parse(R"({"firmware_version":"1","wave":3})").value())
            .status()
            .message()
            .find("unknown field 'wave'") != std::string::npos);
  REQUIRE(h.manager->start(Harness::options(3), previous).ok());
  REQUIRE(h.manager->abort("r1", "ops@city", "bad build").ok());
  auto p = h.manager->progress("r1").value();
  CHECK(p.state == RolloutState::kAborted);
  CHECK(p.reason == "aborted by ops@city: bad build");
  CHECK(h.manager->abort("r1", "ops@city", "again").code() == ErrorCode::kFailedPrecondition);
}

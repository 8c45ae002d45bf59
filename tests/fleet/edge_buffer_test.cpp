#include "fleet/edge_buffer.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <thread>

#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::fleet;

namespace {

std::vector<Reading> readings(int from, int count) {
  std::vector<Reading> out;
  for (int i = from; i < from + count; ++i) {
    out.push_back({"fg-01", "water_level", 0.01 * i, "m", 1764600000000 + i * 30000});
  }
  return out;
}

// The central node: watermarks in its own database, readings in a vector.
struct Central {
  testing::TempDir dir;
  std::unique_ptr<storage::Database> db =
      storage::open_sqlite({.path = (dir.path() / "central.db").string()}).value();
  std::unique_ptr<EdgeWatermarks> marks = EdgeWatermarks::open(*db).value();
  std::vector<Reading> stored;
  bool up = true;
  bool lose_ack = false;  // stores the batch, then the answer is lost

  Status receive(const EdgeBatch& batch) {
    if (!up) return unavailable("uplink down");
    // Through JSON, as the HTTP route does.
    auto parsed = EdgeBatch::from_json(Json::parse(batch.to_json().dump()).value());
    if (!parsed.ok()) return parsed.status();
    std::size_t first = marks->first_new(*parsed).value();
    for (std::size_t i = first; i < parsed->readings.size(); ++i)
      stored.push_back(parsed->readings[i]);
    CIVICBUS_RETURN_IF_ERROR(marks->commit(*parsed));
    if (lose_ack) return unavailable("connection reset before the answer");
    return Status();
  }
};

}  // namespace

TEST_CASE("edge: readings buffered while the uplink is down arrive in order, once") {
  testing::TempDir dir;
  Central central;
  ManualClock clock;
  EdgeBufferOptions o;
  o.path = (dir.path() / "edge.db").string();
  o.edge_id = "edge-creek-3";
  o.max_batch = 40;
  auto edge = EdgeForwarder::open(
                  o, [&](const EdgeBatch& b) { return central.receive(b); }, clock)
                  .value();
  REQUIRE(edge->append(readings(0, 50)).ok());
  REQUIRE(edge->forward_once().ok());  // 40 forwarded
  CHECK(edge->buffered() == 10);

  central.up = false;
  REQUIRE(edge->append(readings(50, 100)).ok());
  CHECK_FALSE(edge->forward_once().ok());
  CHECK(edge->uplink_down());
  CHECK(edge->buffered() == 110);

  // The edge restarts while the uplink is down: the buffer is on disk.
  edge.reset();
  edge = EdgeForwarder::open(
             o, [&](const EdgeBatch& b) { return central.receive(b); }, clock)
             .value();
  CHECK(edge->buffered() == 110);
  CHECK(edge->next_seq() == 151);

  // Back up, but the first answer is lost: the batch is sent again and not stored twice.
  central.up = true;
  central.lose_ack = true;
  CHECK_FALSE(edge->forward_once().ok());
  central.lose_ack = false;
  while (edge->buffered() > 0) REQUIRE(edge->forward_once().ok());

  REQUIRE(central.stored.size() == 150);
  for (int i = 0; i < 150; ++i) {
    CHECK(central.stored[i].time == 1764600000000 + i * 30000);
  }
  CHECK(central.marks->watermark("edge-creek-3") == 150);

  // Sequence numbers continue after an empty buffer and a restart.
  edge.reset();
  edge = EdgeForwarder::open(
             o, [&](const EdgeBatch& b) { return central.receive(b); }, clock)
             .value();
  CHECK(edge->next_seq() == 151);
  // The central side's watermark also survives its restart.
  auto reopened = EdgeWatermarks::open(*central.db).value();
  CHECK(reopened->watermark("edge-creek-3") == 150);
}

TEST_CASE("edge: the forwarding thread drains the buffer and retries with backoff") {
  testing::TempDir dir;
  Central central;
  ManualClock clock;
  EdgeBufferOptions o;
  o.path = (dir.path() / "edge.db").string();
  o.edge_id = "edge-1";
  o.max_batch = 100;
  o.initial_backoff = std::chrono::milliseconds(5);
  o.max_backoff = std::chrono::milliseconds(20);
  std::mutex mu;
  std::atomic<int> failures{3};
  auto edge = EdgeForwarder::open(
                  o,
                  [&](const EdgeBatch& b) -> Status {
                    std::lock_guard lock(mu);
                    if (failures.load() > 0) {
                      --failures;
                      return unavailable("flaky link");
                    }
                    return central.receive(b);
                  },
                  clock)
                  .value();
  edge->start();
  for (int i = 0; i < 10; ++i) REQUIRE(edge->append(readings(i * 100, 100)).ok());
  for (int i = 0; i < 500 && edge->buffered() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  edge->stop();
  std::lock_guard lock(mu);
  CHECK(edge->buffered() == 0);
  CHECK(central.stored.size() == 1000);
  CHECK(edge->forwarded() == 1000);
}

TEST_CASE("edge: limits and bad batches are refused with a reason") {
  testing::TempDir dir;
  ManualClock clock;
  EdgeBufferOptions o;
  o.path = (dir.path() / "edge.db").string();
  o.edge_id = "edge-1";
  o.max_buffered = 10;
  auto edge = EdgeForwarder::open(
                  o, [](const EdgeBatch&) { return Status(); }, clock)
                  .value();
  REQUIRE(edge->append(readings(0, 10)).ok());
  auto full = edge->append(readings(10, 1));
  CHECK(full.code() == ErrorCode::kResourceExhausted);
  CHECK(edge->buffered() == 10);

  o.edge_id.clear();
  CHECK(EdgeForwarder::open(
            o, [](const EdgeBatch&) { return Status(); }, clock)
            .status()
            .message()
            .find("edge_id") != std::string::npos);
  auto bad = EdgeBatch::from_json(
      Json::parse(
          R"({"edge_id":"e","first_seq":1,"readings":[{"device":"d","metric":"m","value":"x","time":1}]})")
          .value());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("readings[0]") != std::string::npos);
}

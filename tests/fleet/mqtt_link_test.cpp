#include "fleet/mqtt_link.hpp"

#include <doctest/doctest.h>
#include <mqtt/async_client.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/core/crypto.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
using civicbus::testing::Mosquitto;

namespace {

// Collects what an MqttLink hands over.
struct Sink {
  std::mutex mu;
  std::vector<Reading> readings;
  std::vector<DecodeError> errors;
  std::vector<std::pair<std::string, Json>> twins;
  std::atomic<std::size_t> count{0};

  MqttLink::ReadingsHandler readings_handler() {
    return [this](MqttBatch& batch) {
      std::lock_guard lock(mu);
      for (auto& r : batch.readings) readings.push_back(std::move(r));
      for (auto& e : batch.errors) errors.push_back(std::move(e));
      count = readings.size();
    };
  }
  MqttLink::TwinHandler twin_handler() {
    return [this](const std::string& id, const Json& reported) {
      std::lock_guard lock(mu);
      twins.emplace_back(id, reported);
    };
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return readings.size();
  }
};

// A plain Paho client for the device side of the tests.
class FakeDevice {
 public:
  // A large offline buffer: the throughput test queues thousands of publishes at once.
  FakeDevice(const std::string& uri, const std::string& id)
      : client_(uri, id, 100000, static_cast<mqtt::iclient_persistence*>(nullptr)) {
    auto opts = mqtt::connect_options_builder().clean_session(true).max_inflight(65535).finalize();
    client_.connect(opts)->wait();
  }
  ~FakeDevice() {
    try {
      client_.disconnect()->wait();
    } catch (...) {
    }
  }
  void publish(const std::string& topic, const std::string& payload) {
    client_.publish(mqtt::make_message(topic, payload, 1, false))->wait();
  }
  mqtt::async_client& client() { return client_; }

 private:
  mqtt::async_client client_;
};

MqttLinkOptions options_for(const Mosquitto& broker, const std::string& id) {
  MqttLinkOptions o;
  o.server_uri = broker.uri();
  o.client_id = id;
  return o;
}

// Publishes `count` copies of `payload` on `topic` at QoS 1 with up to `window` unacknowledged.
void publish_many(mqtt::async_client& client, const std::string& topic, const std::string& payload,
                  int count, std::size_t window = 2000) {
  std::deque<mqtt::delivery_token_ptr> pending;
  for (int i = 0; i < count; ++i) {
    pending.push_back(client.publish(topic, payload.data(), payload.size(), 1, false));
    if (pending.size() >= window) {
      pending.front()->wait();
      pending.pop_front();
    }
  }
  for (auto& t : pending) t->wait();
}

}  // namespace

TEST_CASE("ingest: device topics for provisioning") {
  auto t = device_topics("wm-0001");
  CHECK(t.telemetry == "civicbus/devices/wm-0001/telemetry");
  CHECK(t.senml == "civicbus/devices/wm-0001/senml");
  CHECK(t.twin_reported == "civicbus/devices/wm-0001/twin/reported");
  CHECK(t.twin_desired == "civicbus/devices/wm-0001/twin/desired");
  CHECK(t.commands == "civicbus/devices/wm-0001/commands");
  CHECK(t.all().size() == 5);
  CHECK(device_topics("x", "city/iot").telemetry == "city/iot/x/telemetry");
}

TEST_CASE("ingest: MqttLink options are validated") {
  ManualClock clock;
  MqttLinkOptions o;
  CHECK(!MqttLink::create(o, clock, {}, {}, {}).ok());
  o.server_uri = "tcp://127.0.0.1:1";
  CHECK(!MqttLink::create(o, clock, {}, {}, {}).ok());
  o.client_id = "x";
  o.device_prefix = "civicbus/#";
  auto bad = MqttLink::create(o, clock, {}, {}, {});
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("wildcards") != std::string::npos);
  o.device_prefix = "civicbus/devices";
  auto link = MqttLink::create(o, clock, {}, {}, {});
  REQUIRE(link.ok());
  // Nothing listens on port 1.
  o.connect_timeout = std::chrono::milliseconds(1000);
  auto unreachable = MqttLink::create(o, clock, {}, {}, {});
  REQUIRE(unreachable.ok());
  CHECK(!(*unreachable)->connect().ok());
}

TEST_CASE("ingest: MQTT round trip through mosquitto for every payload format") {
  Mosquitto broker;
  ManualClock clock(SystemTime{std::chrono::milliseconds(1'764'600'000'000)});
  Sink sink;
  DeviceResolver resolver = [](std::string_view id) -> std::optional<ResolvedDevice> {
    if (id == "0101010101010101") return ResolvedDevice{"aq-0007", "air_quality"};
    if (id == "0004A30B001C0530") return ResolvedDevice{"fg-0003", "flood_gauge"};
    return std::nullopt;
  };
  auto link =
      MqttLink::create(options_for(broker, "civicbus-ingest"), clock, resolver,
                       CodecCatalog::builtin(), sink.readings_handler(), sink.twin_handler());
  REQUIRE(link.ok());
  REQUIRE((*link)->connect().ok());
  CHECK((*link)->subscribed());

  FakeDevice device(broker.uri(), "device-wm-0001");
  device.publish("civicbus/devices/wm-0001/telemetry",
                 R"({"ts": 1764600000000, "values": {"flow_rate": 12.5, "battery": 88}})");
  device.publish("civicbus/devices/wm-0001/senml",
                 R"([{"bn":"urn:dev:wm-0001:","n":"total_volume","u":"m3","v":1234.5}])");
  device.publish("application/17c82e96/device/0101010101010101/event/up",
                 R"({"time": "2025-12-01T14:40:00Z", "deviceInfo": {"devEui": "0101010101010101"},
                     "fPort": 2, "data": ")" +
                     crypto::base64_encode(std::string("\x00\x7b\x01\xc8\x00\xd2\x01\x2c", 8)) +
                     R"("})");
  device.publish("v3/floods@city/devices/flood-3/up",
                 R"({"end_device_ids": {"device_id": "flood-3", "dev_eui": "0004A30B001C0530"},
                     "uplink_message": {"f_port": 1, "frm_payload": "BdxQ"}})");
  device.publish("civicbus/devices/wm-0001/twin/reported", R"({"report_interval_s": 900})");
  device.publish("civicbus/devices/wm-0002/telemetry", R"({"flow_rate": "n/a"})");

  REQUIRE(civicbus::testing::wait_until([&] { return sink.size() >= 9; }));
  REQUIRE(civicbus::testing::wait_until([&] {
    std::lock_guard lock(sink.mu);
    return !sink.twins.empty() && !sink.errors.empty();
  }));
  {
    std::lock_guard lock(sink.mu);
    CHECK(sink.readings.size() == 9);  // 2 + 1 + 4 + 2
    CHECK(sink.readings[0].device_id == "wm-0001");
    CHECK(sink.readings[0].metric == "flow_rate");
    CHECK(sink.readings[2].metric == "total_volume");
    CHECK(sink.readings[2].time == 1'764'600'000'000);  // relative 0 = the link's clock
    CHECK(sink.readings[3].device_id == "aq-0007");
    CHECK(sink.readings[3].value == doctest::Approx(12.3));
    CHECK(sink.readings[7].device_id == "fg-0003");
    CHECK(sink.readings[7].value == doctest::Approx(1.5));
    REQUIRE(sink.twins.size() == 1);
    CHECK(sink.twins[0].first == "wm-0001");
    CHECK(sink.twins[0].second.get_int("report_interval_s") == 900);
    REQUIRE(sink.errors.size() == 1);
    CHECK(sink.errors[0].device_id == "wm-0002");
  }
  auto counters = (*link)->counters();
  CHECK(counters.messages == 6);
  CHECK(counters.readings == 9);
  CHECK(counters.decode_errors == 1);
  CHECK(counters.twin_reports == 1);

  // Desired config and commands reach the device's subscription.
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> got;
  device.client().set_message_callback([&](mqtt::const_message_ptr m) {
    std::lock_guard lock(mu);
    got.emplace_back(m->get_topic(), m->to_string());
  });
  device.client().subscribe("civicbus/devices/wm-0001/#", 1)->wait();
  REQUIRE((*link)->publish_desired("wm-0001", Json::object({{"report_interval_s", 300}})).ok());
  REQUIRE((*link)->publish_command("wm-0001", Json::object({{"ota", "2.1.0"}})).ok());
  REQUIRE(civicbus::testing::wait_until([&] {
    std::lock_guard lock(mu);
    return got.size() >= 2;
  }));
  std::lock_guard lock(mu);
  CHECK(got[0].first == "civicbus/devices/wm-0001/twin/desired");
  CHECK(got[0].second == R"({"report_interval_s":300})");
  CHECK(got[1].first == "civicbus/devices/wm-0001/commands");
}

TEST_CASE("ingest: MqttLink reconnects and resubscribes after the broker restarts") {
  Mosquitto broker;
  ManualClock clock;
  Sink sink;
  auto options = options_for(broker, "civicbus-reconnect");
  options.min_reconnect_delay = std::chrono::seconds(1);
  options.max_reconnect_delay = std::chrono::seconds(2);
  auto link = MqttLink::create(options, clock, {}, {}, sink.readings_handler());
  REQUIRE(link.ok());
  REQUIRE((*link)->connect().ok());
  {
    FakeDevice device(broker.uri(), "dev-a");
    device.publish("civicbus/devices/d1/telemetry", R"({"x": 1})");
  }
  REQUIRE(civicbus::testing::wait_until([&] { return sink.size() == 1; }));

  broker.restart();
  REQUIRE(civicbus::testing::wait_until([&] { return !(*link)->connected(); },
                                        std::chrono::seconds(10)) == true);
  REQUIRE(civicbus::testing::wait_until([&] { return (*link)->subscribed(); },
                                        std::chrono::seconds(20)));
  FakeDevice device(broker.uri(), "dev-b");
  device.publish("civicbus/devices/d1/telemetry", R"({"x": 2})");
  REQUIRE(civicbus::testing::wait_until([&] { return sink.size() == 2; }));
  CHECK((*link)->counters().reconnects >= 1);
}

TEST_CASE("ingest: MQTT throughput through mosquitto at QoS 1") {
  Mosquitto broker;
  SystemClock clock;
  constexpr int kMessages = 40'000;
  constexpr int kPerMessage = 5;
  const std::string topic = "civicbus/devices/wm-0001/telemetry";
  const std::string payload =
      R"({"ts": 1764600000000, "values": {"flow_rate": 12.5, "total_volume": 1234.567, "battery": 88, "pressure": 310.2, "leak": 0}})";

  // mosquitto alone: mosquitto_sub -q 1 to /dev/null, the same messages.
  double peer_rate = 0;
  {
    auto sub_exe = civicbus::testing::find_program("mosquitto_sub");
    REQUIRE(sub_exe);
    auto sub = civicbus::testing::ChildProcess::start(
        {*sub_exe, "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-q", "1", "-t", topic,
         "-C", std::to_string(kMessages), "-i", "peer-sub"},
        "/dev/null");
    REQUIRE(sub);
    // mosquitto_sub gives no readiness signal; its subscription shows in the broker's log.
    REQUIRE(civicbus::testing::wait_until([&] {
      return civicbus::testing::read_file(broker.log_path()).find("peer-sub") != std::string::npos;
    }));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    FakeDevice publisher(broker.uri(), "peer-pub");
    const auto start = std::chrono::steady_clock::now();
    publish_many(publisher.client(), topic, payload, kMessages);
    auto rc = sub->wait_for(std::chrono::seconds(60));
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    REQUIRE(rc.has_value());
    CHECK(*rc == 0);
    peer_rate = kMessages * kPerMessage / s;
  }

  std::atomic<std::uint64_t> received{0};
  auto link = MqttLink::create(options_for(broker, "civicbus-bench"), clock, {}, {},
                               [&](MqttBatch& b) { received += b.readings.size(); });
  REQUIRE(link.ok());
  REQUIRE((*link)->connect().ok());
  FakeDevice publisher(broker.uri(), "bench-pub");
  const auto start = std::chrono::steady_clock::now();
  std::thread producer([&] { publish_many(publisher.client(), topic, payload, kMessages); });
  const bool all = civicbus::testing::wait_until(
      [&] { return received.load() >= std::uint64_t{kMessages} * kPerMessage; },
      std::chrono::seconds(120));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  producer.join();
  REQUIRE(all);
  const double rate = kMessages * kPerMessage / s;
  MESSAGE("MQTT QoS 1 ingestion: "
          << kMessages << " messages x " << kPerMessage << " readings in " << s
          << " s = " << static_cast<long>(rate) << " readings/s; mosquitto_sub alone: "
          << static_cast<long>(peer_rate) << " readings/s (ratio " << rate / peer_rate << ")");
  CHECK((*link)->counters().decode_errors == 0);
}

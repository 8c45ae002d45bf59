// A program built outside the civicbus tree against an installed civicbus (tests/package):
// checks that the headers and the library it linked are the same version, then opens a Node
// on a fresh data directory, publishes three events and consumes them in a consumer group.
//   civicbus_consumer <expected version> <data directory to create>
// Exits 0 when everything matched, 1 (with the reason on stderr) otherwise.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "civicbus/core/crypto.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/node/node.hpp"
#include "civicbus/version.hpp"

using namespace civicbus;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "civicbus_consumer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return fail("usage: civicbus_consumer <expected version> <data directory>");
  const std::string expected = argv[1];
  const std::filesystem::path data_dir = argv[2];

  // 1. Versions: the headers (macros, kHeaderVersion), the library (version(),
  //    library_version()) and the package (the expected version) agree.
  std::printf("headers %s (%d.%d.%d), library %s\n", CIVICBUS_VERSION_STRING,
              CIVICBUS_VERSION_MAJOR, CIVICBUS_VERSION_MINOR, CIVICBUS_VERSION_PATCH,
              std::string(version()).c_str());
  if (version() != CIVICBUS_VERSION_STRING || version() != kHeaderVersion) {
    return fail("library version " + std::string(version()) + " differs from the headers' " +
                CIVICBUS_VERSION_STRING);
  }
  if (version_number() != CIVICBUS_VERSION_NUMBER) return fail("version_number() differs");
  if (library_version() != version()) return fail("library_version() differs from version()");
  if (version() != expected) {
    return fail("library version " + std::string(version()) + ", expected " + expected);
  }

  // 2. Free functions and value types of core.
  auto doc = Json::parse(R"({"permit_id": "BP-2026-1041", "value_cad": 425000})");
  if (!doc.ok()) return fail("Json::parse: " + doc.status().to_string());
  if (doc->get_int("value_cad") != 425000) return fail("Json::get_int gave the wrong value");
  if (crypto::to_hex(crypto::sha256("abc")).substr(0, 8) != "ba7816bf") {
    return fail("crypto::sha256 gave the wrong digest");
  }
  if (invalid_argument("x").code() != ErrorCode::kInvalidArgument) {
    return fail("invalid_argument() gave the wrong code");
  }

  // 3. A node: topic, consumer group, publish, consume.
  std::filesystem::remove_all(data_dir);
  NodeOptions options;
  options.data_dir = data_dir.string();
  options.worker_threads = 2;
  options.logging.level = LogLevel::kWarn;
  auto node = Node::create(options);
  if (!node.ok()) return fail("Node::create: " + node.status().to_string());
  broker::Broker& bus = (*node)->broker();

  broker::TopicOptions topic;
  topic.name = "permit.issued";
  topic.owner = "permits";
  if (Status st = bus.create_topic(topic, "permits"); !st.ok()) {
    return fail("create_topic: " + st.to_string());
  }
  std::atomic<int> seen{0};
  broker::ConsumerGroupOptions group;
  group.group = "tax";
  group.topics = {"permit.>"};
  group.start_from = broker::StartFrom::kEarliest;
  auto sub = bus.subscribe(group, [&](const broker::DeliveredEvent& e) {
    if (e.event.data().get_string("permit_id").rfind("BP-", 0) == 0) ++seen;
    return Status();
  });
  if (!sub.ok()) return fail("subscribe: " + sub.status().to_string());
  for (int i = 0; i < 3; ++i) {
    broker::CloudEvent event("permit.issued", "/permits",
                             Json::object({{"permit_id", "BP-2026-" + std::to_string(1041 + i)}}));
    auto ack = bus.publish(event);
    if (!ack.ok()) return fail("publish: " + ack.status().to_string());
    std::printf("published %s at offset %lld\n", ack->id.c_str(),
                static_cast<long long>(ack->offset));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (seen.load() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (seen.load() != 3) return fail("consumed " + std::to_string(seen.load()) + " of 3 events");
  std::printf("consumed %d events\n", seen.load());

  sub->reset();
  node->reset();
  std::filesystem::remove_all(data_dir);
  std::printf("ok\n");
  return 0;
}

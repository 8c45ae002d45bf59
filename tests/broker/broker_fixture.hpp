// A broker on a real SQLite file in a temp dir, with the in-process transport and a thread
// pool, as a Node would compose it. reopen() simulates a restart on the same files.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/executor.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/storage/database.hpp"
#include "civicbus/transport/transport.hpp"
#include "support/test_support.hpp"

namespace civicbus::broker::testing_support {

inline const std::string kTestMasterKey = std::string(32, '\x5a');

class BrokerFixture {
 public:
  struct Config {
    bool with_master_key = true;
    const Clock* clock = nullptr;  // default: the system clock
    BrokerOptions broker;
    transport::InProcessOptions log;
  };

  BrokerFixture() : BrokerFixture(Config{}) {}
  explicit BrokerFixture(Config config) : config_(std::move(config)) {
    if (config_.with_master_key) config_.broker.master_key = kTestMasterKey;
    config_.broker.maintenance_interval = std::chrono::milliseconds(0);  // tests call it
    open();
  }
  ~BrokerFixture() { close(); }

  void open() {
    const Clock& clock = config_.clock ? *config_.clock : system_clock_;
    executor_ = make_thread_pool(4);
    storage::SqliteOptions so;
    so.path = path();
    auto db = storage::open_sqlite(so);
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    db_ = std::move(db).value();
    transport::InProcessOptions lo = config_.log;
    lo.path = log_path();
    auto t = transport::open_in_process(lo, clock, &metrics_);
    REQUIRE_MESSAGE(t.ok(), t.status().to_string());
    transport_ = std::move(t).value();
    Logger logger(LogOptions{LogLevel::kWarn, LogFormat::kText, {}}, clock);
    auto b = Broker::open(config_.broker, BrokerContext{*db_, *transport_, *executor_, clock,
                                                        metrics_, random_, logger});
    REQUIRE_MESSAGE(b.ok(), b.status().to_string());
    broker_ = std::move(b).value();
  }

  void close() {
    if (broker_) broker_->close();
    broker_.reset();
    if (transport_) transport_->close();
    transport_.reset();
    executor_.reset();
    db_.reset();
  }

  void reopen() {
    close();
    open();
  }

  std::string path() const { return dir_.file("civicbus.db"); }
  std::string log_path() const { return dir_.file("log.db"); }
  Broker& broker() { return *broker_; }
  transport::Transport& transport() { return *transport_; }
  storage::Database& db() { return *db_; }
  MetricsRegistry& metrics() { return metrics_; }
  RandomSource& random() { return random_; }

  // Creates a topic with sensible defaults.
  void topic(const std::string& name, std::vector<std::string> pii = {}, std::string subject = {}) {
    TopicOptions t;
    t.name = name;
    t.owner = "test-team";
    t.description = "test topic " + name;
    t.pii_fields = std::move(pii);
    t.schema_subject = std::move(subject);
    Status st = broker_->create_topic(t);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
  }

 private:
  Config config_;
  civicbus::testing::TempDir dir_;
  SystemClock system_clock_;
  SecureRandom random_;
  MetricsRegistry metrics_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<Broker> broker_;
};

// Collects delivered events from handlers on worker threads.
class Collector {
 public:
  void add(const DeliveredEvent& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return events_.size();
  }
  std::vector<DeliveredEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return civicbus::testing::wait_until([&] { return size() >= n; }, timeout);
  }

 private:
  mutable std::mutex mu_;
  std::vector<DeliveredEvent> events_;
};

inline CloudEvent event(const std::string& type, Json data, const std::string& id = {}) {
  CloudEvent e(type, "urn:civicbus:test", std::move(data));
  if (!id.empty()) e.set_id(id);
  return e;
}

}  // namespace civicbus::broker::testing_support

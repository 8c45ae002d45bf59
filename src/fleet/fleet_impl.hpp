// DeviceFleet's insides, shared by fleet.cpp (the façade) and fleet_api.cpp (its HTTP
// routes). Not API.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/core/id.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "civicbus/http/client.hpp"
#include "fleet/alerts.hpp"
#include "fleet/codecs.hpp"
#include "fleet/device_ca.hpp"
#include "fleet/device_types.hpp"
#include "fleet/edge_buffer.hpp"
#include "fleet/mqtt_link.hpp"
#include "fleet/payloads.hpp"
#include "fleet/registry.hpp"
#include "fleet/rollout.hpp"
#include "fleet/timeseries.hpp"

namespace civicbus::fleet {

struct DeviceFleet::Impl {
  Impl(FleetOptions options, FleetDeps deps);

  Status open();
  Status create_topics();
  Status open_mqtt();
  Status open_edge();
  void start_thread();
  void stop_thread();

  TimeMs now_ms() const;
  void publish(std::string_view type, std::string_view subject, Json data);
  void publish_alert(const Alert& a, std::string_view transition);
  Status send_command(const std::string& device_id, const Json& command);
  void track(const Device& d, TimeMs now);
  std::optional<ResolvedDevice> resolve(std::string_view network_id) const;
  void report_twin(const std::string& device_id, const Json& reported);
  std::vector<std::string> rules_for(const Device& d) const;
  ProvisionedDevice finish_provisioning(std::shared_ptr<const Device> device,
                                        const IssuedCertificate* cert, TimeMs now);
  Status retire(const std::string& id);

  std::optional<Rejection> validate(const Reading& r, const Device* device, const DeviceType* type,
                                    TimeMs now) const;
  IngestResult ingest(std::span<const Reading> readings);
  IngestResult ingest_decoded(DecodedPayload decoded);
  Result<Json> receive_edge_batch(const EdgeBatch& batch);
  void queue_reading_events(std::span<const Reading> accepted);
  void publish_reading_events();

  FleetOptions options;
  FleetDeps deps;
  DeviceFleet* self = nullptr;

  SystemClock own_clock;
  const Clock* clock = nullptr;
  std::unique_ptr<RandomSource> own_random;
  RandomSource* random = nullptr;
  MetricsRegistry own_metrics;
  MetricsRegistry* metrics = nullptr;
  std::unique_ptr<IdGenerator> ids;

  std::unique_ptr<DeviceTypeCatalog> catalog;
  CodecCatalog codecs;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<storage::Database> series_db;
  std::unique_ptr<TimeSeriesStore> series;
  std::unique_ptr<AlertEngine> alerts;
  std::unique_ptr<DeviceCa> ca;
  std::unique_ptr<RolloutManager> rollouts;
  std::unique_ptr<EdgeWatermarks> watermarks;
  std::mutex edge_receive_mu;
  std::unique_ptr<http::HttpClient> edge_client;
  std::unique_ptr<EdgeForwarder> forwarder;
  std::unique_ptr<MqttLink> mqtt;
  std::atomic<std::uint64_t> mqtt_decode_errors{0};

  std::mutex handler_mu;
  ActionHandler action_handler;

  Counter* accepted_counter = nullptr;
  std::array<Counter*, 7> rejected_counters{};
  Counter* event_drop_counter = nullptr;

  std::mutex events_mu;
  std::vector<Reading> event_buffer;
  std::size_t event_readings_this_second = 0;

  std::mutex thread_mu;
  std::condition_variable thread_cv;
  bool stopping = false;
  std::thread thread;
  TimeMs last_expire = 0;
};

using Impl = DeviceFleet::Impl;

}  // namespace civicbus::fleet

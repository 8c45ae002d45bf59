#include "civicbus/fleet/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/id.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/storage/database.hpp"
#include "fleet/alerts.hpp"
#include "fleet/codecs.hpp"
#include "fleet/device_ca.hpp"
#include "fleet/device_import.hpp"
#include "fleet/device_types.hpp"
#include "fleet/edge_buffer.hpp"
#include "fleet/fleet_impl.hpp"
#include "fleet/mqtt_link.hpp"
#include "fleet/payloads.hpp"
#include "fleet/registry.hpp"
#include "fleet/rollout.hpp"
#include "fleet/timeseries.hpp"

namespace civicbus::fleet {

namespace {

TimeMs to_ms(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string rfc3339_ms(TimeMs t) {
  return format_rfc3339(SystemTime(std::chrono::milliseconds(t)));
}

struct TopicSpec {
  std::string_view name;
  std::string_view description;
};
constexpr TopicSpec kTopics[] = {
    {"iot.device.provisioned", "A device was added to the fleet registry."},
    {"iot.device.status_changed", "A device moved along its lifecycle (who, when, why)."},
    {"iot.reading.received", "Readings accepted by the fleet, batched."},
    {"iot.alert.raised", "An alert rule raised an alert."},
    {"iot.alert.escalated", "An active alert went from warning to critical."},
    {"iot.alert.acknowledged", "Someone acknowledged an alert."},
    {"iot.alert.resolved", "An alert was resolved (its condition cleared, or by hand)."},
    {"iot.rollout.progressed", "An OTA rollout's counts or state changed."},
};

}  // namespace

Status FleetOptions::validate() const {
  if (max_future_skew.count() < 0) return invalid_argument("fleet: max_future_skew must be >= 0");
  if (tick_interval.count() <= 0) return invalid_argument("fleet: tick_interval must be positive");
  if (readings_per_event == 0) return invalid_argument("fleet: readings_per_event must be >= 1");
  if (api_prefix.empty() || api_prefix.front() != '/' || api_prefix.back() == '/') {
    return invalid_argument(
        fmt::format("fleet: api_prefix '{}' must start with '/' and not end with one", api_prefix));
  }
  if (mqtt && mqtt->server_uri.empty()) {
    return invalid_argument("fleet: mqtt.server_uri is required (tcp://host:port)");
  }
  if (edge) {
    if (edge->edge_id.empty() || edge->buffer_path.empty() || edge->uplink.empty()) {
      return invalid_argument("fleet: edge needs edge_id, buffer_path and uplink");
    }
  }
  return Status();
}

Json ProvisionedDevice::to_json() const {
  Json j = device ? device->to_json() : Json::object();
  if (!certificate_pem.empty()) {
    j["certificate_pem"] = certificate_pem;
    j["private_key_pem"] = private_key_pem;
    j["ca_certificate_pem"] = ca_certificate_pem;
  }
  Json t = Json::array();
  for (const auto& topic : topics) t.as_array().emplace_back(topic);
  j["topics"] = std::move(t);
  Json r = Json::array();
  for (const auto& rule : rules) r.as_array().emplace_back(rule);
  j["rules"] = std::move(r);
  return j;
}

Json ImportReport::to_json() const {
  Json j = Json::object();
  j["provisioned"] = static_cast<std::int64_t>(provisioned.size());
  j["failed"] = static_cast<std::int64_t>(errors.size());
  j["elapsed_ms"] = static_cast<std::int64_t>(elapsed.count());
  Json devices = Json::array();
  for (const auto& p : provisioned) devices.as_array().push_back(p.to_json());
  j["devices"] = std::move(devices);
  Json errs = Json::array();
  for (const auto& e : errors) {
    errs.as_array().push_back(
        Json::object({{"where", e.where}, {"field", e.field}, {"reason", e.reason}}));
  }
  j["errors"] = std::move(errs);
  return j;
}

std::string ImportReport::errors_csv() const {
  ImportPlan plan;
  for (const auto& e : errors) {
    ImportError err;
    const bool item = e.where.rfind("item ", 0) == 0;
    err.json_item = item;
    err.line =
        static_cast<std::size_t>(std::strtoull(e.where.c_str() + (item ? 5 : 5), nullptr, 10));
    err.field = e.field;
    err.reason = e.reason;
    plan.errors.push_back(std::move(err));
  }
  return import_errors_csv(plan);
}

Json SeriesResult::to_json() const {
  Json j = Json::object();
  j["tier"] = tier;
  Json list = Json::array();
  list.as_array().reserve(points.size());
  for (const auto& p : points) {
    Json item = Json::object();
    item["time"] = p.time;
    if (tier == "raw") {
      item["value"] = p.last;
    } else {
      item["count"] = p.count;
      item["sum"] = p.sum;
      item["min"] = p.min;
      item["max"] = p.max;
      item["avg"] = p.avg;
      item["first"] = p.first;
      item["first_time"] = p.first_time;
      item["last"] = p.last;
      item["last_time"] = p.last_time;
    }
    list.as_array().push_back(std::move(item));
  }
  j["points"] = std::move(list);
  return j;
}

// ----- open / close ---------------------------------------------------------------------------

DeviceFleet::DeviceFleet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DeviceFleet::~DeviceFleet() {
  if (!impl_) return;
  impl_->stop_thread();
  impl_->mqtt.reset();
  if (impl_->forwarder) impl_->forwarder->stop();
  impl_->alerts->flush().ignore_error();
  impl_->series->close().ignore_error();
}

Result<std::unique_ptr<DeviceFleet>> DeviceFleet::open(FleetOptions options, FleetDeps deps) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  if (deps.db == nullptr) return invalid_argument("fleet: FleetDeps::db is required");
  if (options.issue_certificates && deps.master_key.size() != 32) {
    return failed_precondition(
        "fleet: issuing device certificates needs the node's 32-byte master key (set "
        "security.master_key, or turn fleet.issue_certificates off)");
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(deps));
  CIVICBUS_RETURN_IF_ERROR(impl->open());
  std::unique_ptr<DeviceFleet> fleet(new DeviceFleet(std::move(impl)));
  fleet->impl_->self = fleet.get();
  fleet->impl_->start_thread();
  return fleet;
}

Impl::Impl(FleetOptions o, FleetDeps d) : options(std::move(o)), deps(std::move(d)) {
  clock = deps.clock != nullptr ? deps.clock : &own_clock;
  if (deps.random != nullptr) {
    random = deps.random;
  } else {
    own_random = std::make_unique<SecureRandom>();
    random = own_random.get();
  }
  metrics = deps.metrics != nullptr ? deps.metrics : &own_metrics;
  ids = std::make_unique<IdGenerator>(*clock, *random);
  accepted_counter = &metrics->counter("civicbus_fleet_readings_accepted_total",
                                       "Readings validated and stored by the fleet");
  for (std::size_t i = 0; i < rejected_counters.size(); ++i) {
    rejected_counters[i] = &metrics->counter(
        "civicbus_fleet_readings_rejected_total", "Readings refused, by reason",
        {{"reason", std::string(reject_reason_name(static_cast<RejectReason>(i)))}});
  }
  event_drop_counter = &metrics->counter(
      "civicbus_fleet_reading_events_dropped_total",
      "Readings stored but not carried by an iot.reading.received event (over the per-second "
      "budget)");
}

TimeMs Impl::now_ms() const {
  return to_ms(clock->now());
}

Status Impl::open() {
  CIVICBUS_ASSIGN_OR_RETURN(catalog, DeviceTypeCatalog::with_builtin_types());
  if (!options.device_types.empty()) {
    CIVICBUS_RETURN_IF_ERROR(catalog->register_types(options.device_types, /*replace=*/true));
  }
  codecs = CodecCatalog::builtin();
  CIVICBUS_ASSIGN_OR_RETURN(registry, Registry::open(*deps.db, *clock, *catalog));

  if (!deps.timeseries_path.empty()) {
    storage::SqliteOptions so;
    so.path = deps.timeseries_path;
    // Readings are re-sent by MQTT (QoS 1) and edge uplinks until acknowledged; the time
    // series commits with NORMAL durability, which WAL keeps consistent across a crash.
    so.synchronous = storage::Synchronous::kNormal;
    CIVICBUS_ASSIGN_OR_RETURN(series_db, storage::open_sqlite(so));
  }
  TimeSeriesOptions tso;
  tso.time_zone = options.time_zone;
  tso.raw_retention = options.raw_retention;
  tso.retention_5m = options.retention_5m;
  tso.retention_1h = options.retention_1h;
  tso.retention_1d = options.retention_1d;
  // Larger writer batches put more readings of a series in one chunk and one rollup merge
  // (a fleet's readings of one interval arrive spread over every device); a query flushes
  // first, so nothing written is invisible.
  tso.flush_interval = std::chrono::milliseconds(1000);
  tso.batch_size = 400'000;
  CIVICBUS_ASSIGN_OR_RETURN(series, TimeSeriesStore::open(series_db ? *series_db : *deps.db, tso));

  CIVICBUS_ASSIGN_OR_RETURN(alerts,
                            AlertEngine::open(*deps.db, *clock, [this] { return ids->next(); }));
  alerts->set_on_alert(
      [this](const Alert& a, std::string_view transition) { publish_alert(a, transition); });
  alerts->set_on_action([this](const RuleAction& action, const Alert& a) {
    ActionHandler handler;
    {
      std::lock_guard lock(handler_mu);
      handler = action_handler;
    }
    if (handler) handler(action.output, action.command, a);
    deps.logger.info(
        fmt::format("fleet: rule '{}' action {} → {}", a.rule_id, action.output, action.command));
  });

  if (options.issue_certificates) {
    DeviceCaOptions cao;
    cao.common_name = options.ca_common_name;
    cao.organization = options.ca_organization;
    CIVICBUS_ASSIGN_OR_RETURN(ca, DeviceCa::open(*deps.db, deps.master_key, *random, *clock, cao));
  }

  CIVICBUS_ASSIGN_OR_RETURN(
      rollouts, RolloutManager::open(*deps.db, *clock, *ids,
                                     [this](const std::string& device, const Json& command) {
                                       return send_command(device, command);
                                     }));
  rollouts->on_progress(
      [this](const RolloutProgress& p) { publish("iot.rollout.progressed", p.id, p.to_json()); });
  CIVICBUS_ASSIGN_OR_RETURN(watermarks, EdgeWatermarks::open(*deps.db));

  registry->on_provisioned(
      [this](const Device& d) { publish("iot.device.provisioned", d.id, d.to_json()); });
  registry->on_status_changed([this](const StatusChange& c, const Device& d) {
    Json data = Json::object();
    data["device_id"] = c.device_id;
    data["type"] = d.type;
    data["from"] = std::string(status_name(c.from));
    data["to"] = std::string(status_name(c.to));
    data["actor"] = c.actor;
    data["reason"] = c.reason;
    data["at"] = rfc3339_ms(c.at);
    publish("iot.device.status_changed", c.device_id, std::move(data));
  });

  CIVICBUS_RETURN_IF_ERROR(create_topics());

  // Every type's default rules, and inactivity tracking of every device still in service.
  for (const auto& type : catalog->list()) {
    CIVICBUS_RETURN_IF_ERROR(alerts->install_type_rules(*type));
  }
  const TimeMs now = now_ms();
  for (const auto& d : registry->query(DeviceQuery{}).devices) {
    if (d->status == DeviceStatus::kDecommissioned) continue;
    track(*d, now);
  }

  if (options.edge) CIVICBUS_RETURN_IF_ERROR(open_edge());
  if (options.mqtt) CIVICBUS_RETURN_IF_ERROR(open_mqtt());
  return Status();
}

Status Impl::create_topics() {
  if (deps.broker == nullptr) return Status();
  for (const auto& spec : kTopics) {
    if (deps.broker->topic(spec.name).ok()) continue;
    broker::TopicOptions t;
    t.name = std::string(spec.name);
    t.owner = "fleet";
    t.description = std::string(spec.description);
    Status s = deps.broker->create_topic(t, "fleet");
    if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s;
  }
  return Status();
}

void Impl::publish(std::string_view type, std::string_view subject, Json data) {
  if (deps.broker == nullptr) return;
  broker::CloudEvent event{std::string(type), deps.source, std::move(data)};
  event.set_subject(std::string(subject));
  deps.broker->publish_async(
      std::move(event), [this, type = std::string(type)](Result<broker::PublishAck> ack) {
        if (!ack.ok()) {
          deps.logger.warn(
              fmt::format("fleet: {} event not published: {}", type, ack.status().message()));
        }
      });
}

void Impl::publish_alert(const Alert& a, std::string_view transition) {
  publish(fmt::format("iot.alert.{}", transition), a.device_id.empty() ? a.rule_id : a.device_id,
          a.to_json());
}

Status Impl::send_command(const std::string& device_id, const Json& command) {
  if (deps.command_sender) return deps.command_sender(device_id, command);
  if (mqtt == nullptr) {
    return unavailable(
        fmt::format("no MQTT link to send '{}' to device '{}' (configure fleet.mqtt)",
                    command.get_string("command"), device_id));
  }
  return mqtt->publish_command(device_id, command);
}

void Impl::track(const Device& d, TimeMs now) {
  auto type = catalog->find(d.type);
  DeviceContext ctx{d.id, d.type, d.location, registry->groups_of(d.id)};
  alerts->track_device(ctx, type ? type->expected_interval_s : 900, now);
}

std::optional<ResolvedDevice> Impl::resolve(std::string_view network_id) const {
  auto d = registry->find(network_id);
  if (!d) d = registry->find_by_serial(network_id);
  if (!d) return std::nullopt;
  ResolvedDevice r;
  r.device_id = d->id;
  if (auto type = catalog->find(d->type)) r.codec = type->codec;
  return r;
}

Status Impl::open_mqtt() {
  MqttLinkOptions mo;
  mo.server_uri = options.mqtt->server_uri;
  mo.client_id = options.mqtt->client_id;
  mo.username = options.mqtt->username;
  mo.password = options.mqtt->password;
  mo.device_prefix = options.mqtt->device_prefix;
  mo.chirpstack_prefix = options.mqtt->chirpstack_prefix;
  mo.tts_prefix = options.mqtt->tts_prefix;
  mo.clean_session = false;  // QoS 1 messages wait in the broker while the node restarts
  CIVICBUS_ASSIGN_OR_RETURN(
      mqtt, MqttLink::create(
                mo, *clock, [this](std::string_view id) { return resolve(id); }, codecs,
                [this](MqttBatch& batch) {
                  mqtt_decode_errors += batch.errors.size();
                  if (!batch.readings.empty()) ingest(batch.readings);
                },
                [this](const std::string& device_id, const Json& reported) {
                  report_twin(device_id, reported);
                }));
  Status s = mqtt->connect();
  if (!s.ok()) {
    // The link keeps retrying in the background; a node starts without its broker.
    deps.logger.warn(fmt::format("fleet: MQTT broker {} not reachable yet: {}",
                                 options.mqtt->server_uri, s.message()));
  }
  return Status();
}

void Impl::report_twin(const std::string& device_id, const Json& reported) {
  // OTA answers come with the twin: {"ota": {"rollout": id, "success": bool}}.
  if (const Json* ota = reported.find("ota"); ota != nullptr && ota->is_object()) {
    Status s = self->report_ota(device_id, *ota);
    if (!s.ok())
      deps.logger.warn(fmt::format("fleet: OTA report of '{}': {}", device_id, s.message()));
  }
  auto r = registry->report(device_id, reported);
  if (!r.ok()) {
    deps.logger.warn(
        fmt::format("fleet: twin report of '{}' refused: {}", device_id, r.status().message()));
  }
}

Status Impl::open_edge() {
  const auto& e = *options.edge;
  http::HttpClientOptions co;
  co.request_timeout = std::chrono::seconds(10);
  co.max_retries = 0;  // the forwarder retries the batch itself, with backoff
  CIVICBUS_ASSIGN_OR_RETURN(edge_client, http::HttpClient::create(co));
  EdgeBufferOptions bo;
  bo.path = e.buffer_path;
  bo.edge_id = e.edge_id;
  bo.max_batch = e.max_batch;
  std::string target = options.api_prefix + "/edge/batches";
  CIVICBUS_ASSIGN_OR_RETURN(
      forwarder,
      EdgeForwarder::open(
          bo,
          [this, target, uplink = e.uplink, key = e.api_key](const EdgeBatch& batch) -> Status {
            http::HttpRequest req;
            req.method = "POST";
            req.target = target;
            req.headers.add("Content-Type", "application/json");
            if (!key.empty()) req.headers.add("X-API-Key", key);
            req.body = batch.to_json().dump();
            CIVICBUS_ASSIGN_OR_RETURN(auto resp, edge_client->send(uplink, std::move(req)));
            if (resp.status != 200) {
              return unavailable(fmt::format("central node {} answered {} to the edge batch: {}",
                                             uplink, resp.status, resp.body.substr(0, 200)));
            }
            return Status();
          },
          *clock));
  forwarder->start();
  return Status();
}

void Impl::start_thread() {
  thread = std::thread([this] {
    std::unique_lock lock(thread_mu);
    while (!stopping) {
      thread_cv.wait_for(lock, options.tick_interval, [&] { return stopping; });
      if (stopping) break;
      lock.unlock();
      Status s = self->tick();
      if (!s.ok()) deps.logger.warn(fmt::format("fleet: tick: {}", s.message()));
      publish_reading_events();
      lock.lock();
    }
  });
}

void Impl::stop_thread() {
  {
    std::lock_guard lock(thread_mu);
    stopping = true;
  }
  thread_cv.notify_all();
  if (thread.joinable()) thread.join();
  publish_reading_events();
}

void Impl::queue_reading_events(std::span<const Reading> accepted) {
  if (options.reading_events == ReadingEvents::kOff || deps.broker == nullptr) return;
  std::lock_guard lock(events_mu);
  const std::size_t room = options.reading_events_per_second > event_readings_this_second
                               ? options.reading_events_per_second - event_readings_this_second
                               : 0;
  const std::size_t take = std::min(room, accepted.size());
  event_buffer.insert(event_buffer.end(), accepted.begin(), accepted.begin() + take);
  event_readings_this_second += take;
  if (take < accepted.size()) event_drop_counter->inc(accepted.size() - take);
}

void Impl::publish_reading_events() {
  std::vector<Reading> batch;
  {
    std::lock_guard lock(events_mu);
    batch.swap(event_buffer);
    event_readings_this_second = 0;
  }
  for (std::size_t at = 0; at < batch.size(); at += options.readings_per_event) {
    const std::size_t end = std::min(batch.size(), at + options.readings_per_event);
    Json list = Json::array();
    list.as_array().reserve(end - at);
    for (std::size_t i = at; i < end; ++i) {
      const Reading& r = batch[i];
      Json item = Json::object();
      item["device_id"] = r.device_id;
      item["metric"] = r.metric;
      item["value"] = r.value;
      if (!r.unit.empty()) item["unit"] = r.unit;
      item["time"] = rfc3339_ms(r.time);
      list.as_array().push_back(std::move(item));
    }
    Json data = Json::object();
    data["count"] = static_cast<std::int64_t>(end - at);
    data["readings"] = std::move(list);
    publish("iot.reading.received", batch[at].device_id, std::move(data));
  }
}

// ----- ingestion -----------------------------------------------------------------------------

std::optional<Rejection> Impl::validate(const Reading& r, const Device* device,
                                        const DeviceType* type, TimeMs now) const {
  auto reject = [&](RejectReason reason, std::string message) {
    return Rejection{r, reason, std::move(message)};
  };
  if (device == nullptr) {
    return reject(RejectReason::kUnknownDevice, fmt::format("unknown device '{}'", r.device_id));
  }
  if (device->status == DeviceStatus::kDecommissioned) {
    return reject(RejectReason::kDeviceNotReporting,
                  fmt::format("device '{}' is decommissioned", r.device_id));
  }
  if (!std::isfinite(r.value) || r.time <= 0 || r.metric.empty()) {
    return reject(RejectReason::kMalformed,
                  fmt::format("device '{}' metric '{}': value must be finite and time positive",
                              r.device_id, r.metric));
  }
  const MetricSpec* spec = type != nullptr ? type->metric(r.metric) : nullptr;
  if (spec == nullptr) {
    std::string known;
    if (type != nullptr) {
      for (const auto& m : type->metrics)
        known += fmt::format("{}{}", known.empty() ? "" : ", ", m.name);
    }
    return reject(RejectReason::kUnknownMetric,
                  fmt::format("device '{}' (type '{}') has no metric '{}' (known: {})", r.device_id,
                              device->type, r.metric, known));
  }
  if (!r.unit.empty() && r.unit != spec->unit) {
    return reject(RejectReason::kUnitMismatch,
                  fmt::format("device '{}' metric '{}': unit '{}' where the type says '{}'",
                              r.device_id, r.metric, r.unit, spec->unit));
  }
  if ((spec->min && r.value < *spec->min) || (spec->max && r.value > *spec->max)) {
    return reject(RejectReason::kOutOfRange,
                  fmt::format("device '{}' metric '{}': {} is outside {}..{} {}", r.device_id,
                              r.metric, r.value, spec->min ? fmt::format("{}", *spec->min) : "",
                              spec->max ? fmt::format("{}", *spec->max) : "", spec->unit));
  }
  if (r.time > now + options.max_future_skew.count()) {
    return reject(RejectReason::kFutureTimestamp,
                  fmt::format("device '{}' metric '{}': time {} is {} s ahead of the node's clock",
                              r.device_id, r.metric, rfc3339_ms(r.time), (r.time - now) / 1000));
  }
  return std::nullopt;
}

IngestResult Impl::ingest(std::span<const Reading> readings) {
  IngestResult result;
  if (readings.empty()) return result;
  const TimeMs now = now_ms();
  std::vector<Reading> accepted_storage;
  std::vector<const Reading*> accepted;
  accepted.reserve(readings.size());
  // Readings of one device usually come together: look the device up once per run.
  std::shared_ptr<const Device> device;
  std::shared_ptr<const DeviceType> type;
  std::vector<std::string> to_activate;
  // Runs of accepted readings of one device, for the rules: (device, readings in the run).
  std::vector<std::pair<std::shared_ptr<const Device>, std::size_t>> runs;
  for (const auto& r : readings) {
    if (!device || device->id != r.device_id) {
      device = registry->find(r.device_id);
      type = device ? catalog->find(device->type) : nullptr;
      if (device && device->status == DeviceStatus::kProvisioned) to_activate.push_back(device->id);
    }
    if (auto rejection = validate(r, device.get(), type.get(), now)) {
      rejected_counters[static_cast<std::size_t>(rejection->reason)]->inc();
      result.rejected.push_back(std::move(*rejection));
      continue;
    }
    accepted.push_back(&r);
    if (runs.empty() || runs.back().first != device) runs.emplace_back(device, 0);
    ++runs.back().second;
  }
  result.accepted = accepted.size();
  if (accepted.empty()) return result;
  accepted_counter->inc(accepted.size());

  std::span<const Reading> stored = readings;
  if (accepted.size() != readings.size()) {
    accepted_storage.reserve(accepted.size());
    for (const Reading* r : accepted) accepted_storage.push_back(*r);
    stored = accepted_storage;
  }
  series->append(stored);

  // First readings move provisioned devices to active, all of this call's in one transaction
  // (another thread may have moved some first: they are skipped).
  if (!to_activate.empty()) {
    auto moved =
        registry->set_status_many(to_activate, DeviceStatus::kActive, "system", "first reading");
    if (!moved.ok()) {
      deps.logger.warn(fmt::format("fleet: activating devices: {}", moved.status().message()));
    }
  }

  DeviceContext ctx;
  std::size_t at = 0;
  for (const auto& [d, count] : runs) {
    const std::span<const Reading> run = stored.subspan(at, count);
    at += count;
    // A device under maintenance reports, but its alerts are held.
    if (d->status == DeviceStatus::kMaintenance) continue;
    if (ctx.device_id != d->id) {
      ctx.device_id = d->id;
      ctx.type = d->type;
      ctx.groups = registry->groups_of(d->id);
    }
    ctx.location = d->location;
    Status s = alerts->evaluate(run, ctx);
    if (!s.ok()) deps.logger.warn(fmt::format("fleet: alert state not stored: {}", s.message()));
  }

  if (forwarder) {
    Status s = forwarder->append(stored);
    if (!s.ok()) deps.logger.warn(fmt::format("fleet: edge buffer: {}", s.message()));
  }
  queue_reading_events(stored);
  return result;
}

IngestResult DeviceFleet::ingest(std::span<const Reading> readings) {
  return impl_->ingest(readings);
}

IngestResult Impl::ingest_decoded(DecodedPayload decoded) {
  IngestResult result = ingest(decoded.readings);
  for (auto& e : decoded.errors) {
    Reading r;
    r.device_id = e.device_id;
    rejected_counters[static_cast<std::size_t>(e.device_id.empty() ? RejectReason::kUnknownDevice
                                                                   : RejectReason::kMalformed)]
        ->inc();
    result.rejected.push_back(Rejection{
        std::move(r), e.device_id.empty() ? RejectReason::kUnknownDevice : RejectReason::kMalformed,
        std::move(e.reason)});
  }
  return result;
}

IngestResult DeviceFleet::ingest_device_json(std::string_view device_id, std::string_view body) {
  return impl_->ingest_decoded(decode_device_json(device_id, body, impl_->now_ms()));
}
IngestResult DeviceFleet::ingest_senml(std::string_view body, std::string_view device_id) {
  return impl_->ingest_decoded(decode_senml(body, impl_->now_ms(), device_id));
}
IngestResult DeviceFleet::ingest_chirpstack(std::string_view body) {
  return impl_->ingest_decoded(decode_chirpstack_uplink(
      body, [this](std::string_view id) { return impl_->resolve(id); }, impl_->codecs,
      impl_->now_ms()));
}
IngestResult DeviceFleet::ingest_tts(std::string_view body) {
  return impl_->ingest_decoded(decode_tts_uplink(
      body, [this](std::string_view id) { return impl_->resolve(id); }, impl_->codecs,
      impl_->now_ms()));
}
IngestResult DeviceFleet::ingest_sigfox(std::string_view body) {
  SigfoxMapping m;
  m.device_field = impl_->options.sigfox_device_field;
  m.data_field = impl_->options.sigfox_data_field;
  m.time_field = impl_->options.sigfox_time_field;
  return impl_->ingest_decoded(decode_sigfox_callback(
      body, m, [this](std::string_view id) { return impl_->resolve(id); }, impl_->codecs,
      impl_->now_ms()));
}

Result<Json> Impl::receive_edge_batch(const EdgeBatch& batch) {
  // One batch at a time, so two deliveries of the same batch cannot both pass the watermark.
  std::lock_guard lock(edge_receive_mu);
  CIVICBUS_ASSIGN_OR_RETURN(std::size_t first, watermarks->first_new(batch));
  IngestResult result;
  if (first < batch.readings.size()) {
    result = ingest(std::span<const Reading>(batch.readings).subspan(first));
    // The readings are durable before the watermark moves past them; a crash in between
    // makes the edge send the batch again (at least once, never lost).
    CIVICBUS_RETURN_IF_ERROR(series->flush());
  }
  CIVICBUS_RETURN_IF_ERROR(watermarks->commit(batch));
  Json j = Json::object();
  j["edge_id"] = batch.edge_id;
  j["accepted"] = static_cast<std::int64_t>(result.accepted);
  j["rejected"] = static_cast<std::int64_t>(result.rejected.size());
  j["duplicates"] = static_cast<std::int64_t>(first);
  j["watermark"] = watermarks->watermark(batch.edge_id);
  return j;
}

// ----- registry ------------------------------------------------------------------------------

Status DeviceFleet::register_type(DeviceType type) {
  CIVICBUS_RETURN_IF_ERROR(impl_->catalog->register_type(type, /*replace=*/true));
  auto stored = impl_->catalog->find(type.name);
  return impl_->alerts->install_type_rules(*stored);
}

std::vector<DeviceType> DeviceFleet::device_types() const {
  std::vector<DeviceType> out;
  for (const auto& t : impl_->catalog->list()) out.push_back(*t);
  return out;
}

std::vector<std::string> Impl::rules_for(const Device& d) const {
  std::vector<std::string> ids;
  auto groups = registry->groups_of(d.id);
  for (const auto& rule : alerts->list_rules()) {
    const auto& s = rule.scope;
    if ((!s.device.empty() && s.device == d.id) || (!s.type.empty() && s.type == d.type) ||
        (!s.group.empty() && std::find(groups.begin(), groups.end(), s.group) != groups.end())) {
      ids.push_back(rule.id);
    }
  }
  return ids;
}

ProvisionedDevice Impl::finish_provisioning(std::shared_ptr<const Device> device,
                                            const IssuedCertificate* cert, TimeMs now) {
  ProvisionedDevice p;
  p.device = device;
  if (cert != nullptr) {
    p.certificate_pem = cert->certificate_pem;
    p.private_key_pem = cert->private_key_pem;
    p.ca_certificate_pem = ca->ca_certificate_pem();
  }
  p.topics = device_topics(device->id, options.mqtt ? options.mqtt->device_prefix
                                                    : std::string("civicbus/devices"))
                 .all();
  track(*device, now);
  p.rules = rules_for(*device);
  return p;
}

Result<ProvisionedDevice> DeviceFleet::provision(Device device, std::string_view actor) {
  auto& m = *impl_;
  if (device.id.empty()) device.id = device.serial;
  if (device.id.empty()) return invalid_argument("device: 'serial' (or 'id') is required");
  if (m.registry->find(device.id)) {
    return already_exists(fmt::format("device '{}' already exists", device.id));
  }
  std::optional<IssuedCertificate> cert;
  if (m.ca) {
    CIVICBUS_ASSIGN_OR_RETURN(cert, m.ca->issue(device.id));
    device.certificate_serial = cert->serial_hex;
  }
  auto stored = m.registry->provision(std::move(device), actor);
  if (!stored.ok()) {
    if (cert) m.ca->revoke(cert->serial_hex, "provisioning failed").status().ignore_error();
    return stored.status();
  }
  return m.finish_provisioning(*stored, cert ? &*cert : nullptr, m.now_ms());
}

Result<ImportReport> DeviceFleet::import_devices(
    std::string_view text, ImportFormat format, std::string_view actor,
    const std::function<void(std::size_t, std::size_t)>& progress) {
  auto& m = *impl_;
  const auto started = std::chrono::steady_clock::now();
  DeviceTypeLookup lookup = [&m, keep = std::vector<std::shared_ptr<const DeviceType>>()](
                                std::string_view name) mutable -> const DeviceType* {
    auto t = m.catalog->find(name);
    if (!t) return nullptr;
    keep.push_back(t);
    return t.get();
  };
  Result<ImportPlan> parsed = format == ImportFormat::kCsv    ? parse_device_csv(text, lookup)
                              : format == ImportFormat::kJson ? parse_device_json(text, lookup)
                                                              : parse_device_import(text, lookup);
  CIVICBUS_RETURN_IF_ERROR(parsed.status());
  ImportPlan& plan = *parsed;
  ImportReport report;
  for (const auto& e : plan.errors) report.errors.push_back({e.location(), e.field, e.reason});

  // Rows whose id is taken already are refused before any certificate is made.
  std::vector<ImportRow> rows;
  rows.reserve(plan.rows.size());
  for (auto& row : plan.rows) {
    if (m.registry->find(row.device.id)) {
      report.errors.push_back({fmt::format("line {}", row.line), "id",
                               fmt::format("device '{}' already exists", row.device.id)});
      continue;
    }
    rows.push_back(std::move(row));
  }
  std::vector<IssuedCertificate> certs;
  if (m.ca && !rows.empty()) {
    std::vector<std::string> ids;
    ids.reserve(rows.size());
    for (const auto& row : rows) ids.push_back(row.device.id);
    CIVICBUS_ASSIGN_OR_RETURN(certs, m.ca->issue_many(ids, 2, progress));
    for (std::size_t i = 0; i < rows.size(); ++i)
      rows[i].device.certificate_serial = certs[i].serial_hex;
  } else if (progress) {
    progress(rows.size(), rows.size());
  }
  std::vector<Device> devices;
  devices.reserve(rows.size());
  for (auto& row : rows) devices.push_back(row.device);
  CIVICBUS_ASSIGN_OR_RETURN(auto results, m.registry->provision_batch(std::move(devices), actor));
  const TimeMs now = m.now_ms();
  for (const auto& r : results) {
    if (!r.status.ok() || !r.device) {
      report.errors.push_back({fmt::format("line {}", rows[r.index].line), "", r.status.message()});
      if (!certs.empty()) {
        m.ca->revoke(certs[r.index].serial_hex, "provisioning failed").status().ignore_error();
      }
      continue;
    }
    report.provisioned.push_back(
        m.finish_provisioning(r.device, certs.empty() ? nullptr : &certs[r.index], now));
  }
  std::stable_sort(
      report.errors.begin(), report.errors.end(), [](const ImportIssue& a, const ImportIssue& b) {
        auto n = [](const std::string& w) {
          return std::strtoull(w.c_str() + std::min<std::size_t>(5, w.size()), nullptr, 10);
        };
        return n(a.where) < n(b.where);
      });
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  return report;
}

std::shared_ptr<const Device> DeviceFleet::device(std::string_view id) const {
  return impl_->registry->find(id);
}

DeviceQueryResult DeviceFleet::devices(const DeviceQuery& query) const {
  return impl_->registry->query(query);
}

Result<std::shared_ptr<const Device>> DeviceFleet::update_device(std::string_view id,
                                                                 const DeviceUpdate& update,
                                                                 std::string_view actor) {
  CIVICBUS_ASSIGN_OR_RETURN(auto d, impl_->registry->update(id, update, actor));
  impl_->track(*d, impl_->now_ms());  // location or groups may have changed
  return d;
}

Status Impl::retire(const std::string& id) {
  if (ca) {
    auto revoked = ca->revoke(id, "device decommissioned");
    if (!revoked.ok() && revoked.status().code() != ErrorCode::kNotFound) return revoked.status();
  }
  return alerts->untrack_device(id);
}

Result<std::shared_ptr<const Device>> DeviceFleet::set_status(std::string_view id,
                                                              DeviceStatus status,
                                                              std::string_view actor,
                                                              std::string_view reason) {
  CIVICBUS_ASSIGN_OR_RETURN(auto d, impl_->registry->set_status(id, status, actor, reason));
  if (status == DeviceStatus::kDecommissioned) {
    CIVICBUS_RETURN_IF_ERROR(impl_->retire(d->id));
  }
  return d;
}

Result<std::vector<StatusChange>> DeviceFleet::history(std::string_view id) const {
  return impl_->registry->history(id);
}

Result<std::vector<std::string>> DeviceFleet::decommission_where(const DeviceQuery& query,
                                                                 std::string_view actor,
                                                                 std::string_view reason) {
  CIVICBUS_ASSIGN_OR_RETURN(auto ids, impl_->registry->decommission_where(query, actor, reason));
  for (const auto& id : ids) CIVICBUS_RETURN_IF_ERROR(impl_->retire(id));
  return ids;
}

Result<Group> DeviceFleet::create_group(Group group, std::string_view actor) {
  return impl_->registry->create_group(std::move(group), actor);
}
Result<Group> DeviceFleet::group(std::string_view id) const {
  return impl_->registry->get_group(id);
}
std::vector<Group> DeviceFleet::groups() const {
  return impl_->registry->list_groups();
}
Status DeviceFleet::delete_group(std::string_view id, std::string_view actor) {
  return impl_->registry->delete_group(id, actor);
}
Result<std::vector<std::string>> DeviceFleet::group_members(std::string_view id) const {
  return impl_->registry->members(id);
}

Result<Json> DeviceFleet::push_config(std::string_view device_id, const Json& patch,
                                      std::string_view actor) {
  auto& m = *impl_;
  if (!patch.is_object()) return invalid_argument("a configuration patch must be a JSON object");
  CIVICBUS_ASSIGN_OR_RETURN(auto d, m.registry->set_desired(device_id, patch, actor));
  CIVICBUS_ASSIGN_OR_RETURN(Json delta, m.registry->delta(device_id));
  if (m.mqtt) {
    Json message = Json::object();
    message["version"] = d->desired_version;
    message["desired"] = d->desired;
    message["delta"] = delta;
    Status s = m.mqtt->publish_desired(d->id, message);
    if (!s.ok()) {
      // The desired state is stored; the device gets it with its next twin exchange.
      m.deps.logger.warn(
          fmt::format("fleet: desired config for '{}' not sent now: {}", d->id, s.message()));
    }
  }
  return delta;
}

Result<std::vector<std::string>> DeviceFleet::push_group_config(std::string_view group_id,
                                                                const Json& patch,
                                                                std::string_view actor) {
  CIVICBUS_ASSIGN_OR_RETURN(auto members, impl_->registry->members(group_id));
  std::vector<std::string> updated;
  for (const auto& id : members) {
    auto d = impl_->registry->find(id);
    if (!d || d->status == DeviceStatus::kDecommissioned) continue;
    CIVICBUS_RETURN_IF_ERROR(push_config(id, patch, actor).status());
    updated.push_back(id);
  }
  return updated;
}

Result<Json> DeviceFleet::report_config(std::string_view device_id, const Json& reported) {
  if (!reported.is_object())
    return invalid_argument("a reported configuration must be a JSON object");
  CIVICBUS_RETURN_IF_ERROR(impl_->registry->report(device_id, reported).status());
  return impl_->registry->delta(device_id);
}

Result<Json> DeviceFleet::twin(std::string_view device_id) const {
  auto d = impl_->registry->find(device_id);
  if (!d) return not_found(fmt::format("unknown device '{}'", device_id));
  Json j = Json::object();
  j["device_id"] = d->id;
  j["desired"] = d->desired;
  j["desired_version"] = d->desired_version;
  j["reported"] = d->reported;
  j["reported_version"] = d->reported_version;
  CIVICBUS_ASSIGN_OR_RETURN(j["delta"], impl_->registry->delta(device_id));
  return j;
}

// ----- time series ---------------------------------------------------------------------------

Result<SeriesResult> DeviceFleet::readings(std::string_view device_id, std::string_view metric,
                                           TimeMs from, TimeMs to, std::string_view agg) {
  if (!impl_->registry->find(device_id)) {
    return not_found(fmt::format("unknown device '{}'", device_id));
  }
  if (to <= from)
    return invalid_argument(fmt::format("readings: 'to' ({}) must be after 'from' ({})", to, from));
  CIVICBUS_ASSIGN_OR_RETURN(Tier tier, parse_tier(agg));
  CIVICBUS_ASSIGN_OR_RETURN(auto q, impl_->series->query(device_id, metric, from, to, tier));
  SeriesResult out;
  out.tier = std::string(tier_name(q.tier));
  out.points = std::move(q.points);
  return out;
}

std::vector<LatestReading> DeviceFleet::latest(std::string_view device_id) const {
  std::vector<LatestReading> out;
  auto d = impl_->registry->find(device_id);
  auto type = d ? impl_->catalog->find(d->type) : nullptr;
  for (const auto& v : impl_->series->latest(device_id)) {
    LatestReading r;
    r.metric = v.metric;
    r.value = v.value;
    r.time = v.time;
    if (type) {
      if (const MetricSpec* spec = type->metric(v.metric)) r.unit = spec->unit;
    }
    out.push_back(std::move(r));
  }
  return out;
}

// ----- alerts --------------------------------------------------------------------------------

Result<Json> DeviceFleet::add_rule(const Json& rule) {
  CIVICBUS_ASSIGN_OR_RETURN(auto r, impl_->alerts->add_rule(rule));
  return r.to_json();
}
Result<Json> DeviceFleet::put_rule(const Json& rule) {
  CIVICBUS_ASSIGN_OR_RETURN(auto parsed, AlertRule::from_json(rule));
  CIVICBUS_ASSIGN_OR_RETURN(auto r, impl_->alerts->put_rule(std::move(parsed)));
  return r.to_json();
}
Status DeviceFleet::remove_rule(std::string_view rule_id) {
  return impl_->alerts->remove_rule(rule_id);
}
Json DeviceFleet::rules() const {
  Json list = Json::array();
  for (const auto& r : impl_->alerts->list_rules()) list.as_array().push_back(r.to_json());
  return list;
}
Result<std::vector<Alert>> DeviceFleet::alerts(const AlertQuery& q) const {
  AlertFilter f;
  f.state = q.state;
  f.active_only = q.active_only;
  f.device_id = q.device_id;
  f.severity = q.severity;
  f.rule_id = q.rule_id;
  f.limit = q.limit;
  return impl_->alerts->list_alerts(f);
}
Result<Alert> DeviceFleet::alert(std::string_view id) const {
  return impl_->alerts->get_alert(id);
}
Result<Alert> DeviceFleet::acknowledge(std::string_view alert_id, std::string_view who,
                                       std::string_view note) {
  return impl_->alerts->acknowledge(alert_id, who, note);
}
Result<Alert> DeviceFleet::resolve(std::string_view alert_id, std::string_view who,
                                   std::string_view note) {
  return impl_->alerts->resolve(alert_id, who, note);
}
void DeviceFleet::on_action(ActionHandler handler) {
  std::lock_guard lock(impl_->handler_mu);
  impl_->action_handler = std::move(handler);
}

// ----- rollouts ------------------------------------------------------------------------------

Result<Json> DeviceFleet::start_rollout(const Json& rollout, std::string_view actor) {
  auto& m = *impl_;
  if (!rollout.is_object()) return invalid_argument("a rollout must be a JSON object");
  Json body = rollout;
  std::string group = body.get_string("group");
  if (body.find("group") != nullptr)
    body.as_object().erase(
        std::remove_if(body.as_object().begin(), body.as_object().end(),
                       [](const auto& member) { return member.first == "group"; }),
        body.as_object().end());
  CIVICBUS_ASSIGN_OR_RETURN(RolloutOptions o, RolloutOptions::from_json(body));
  if (!group.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(auto members, m.registry->members(group));
    o.group_id = group;
    for (const auto& id : members) {
      auto d = m.registry->find(id);
      if (d && d->status != DeviceStatus::kDecommissioned) o.devices.push_back(id);
    }
  }
  for (const auto& id : o.devices) {
    if (!m.registry->find(id)) return not_found(fmt::format("rollout: unknown device '{}'", id));
  }
  CIVICBUS_ASSIGN_OR_RETURN(auto p, m.rollouts->start(std::move(o), [&m](const std::string& id) {
    auto d = m.registry->find(id);
    return d ? d->firmware_version : std::string();
  }));
  m.deps.logger.info(fmt::format("fleet: rollout {} of {} to {} devices started by {}", p.id,
                                 p.firmware_version, p.total, actor));
  return p.to_json();
}

Result<Json> DeviceFleet::rollout(std::string_view id) const {
  CIVICBUS_ASSIGN_OR_RETURN(auto p, impl_->rollouts->progress(id));
  Json j = p.to_json();
  CIVICBUS_ASSIGN_OR_RETURN(j["devices"], impl_->rollouts->devices(id));
  return j;
}

Json DeviceFleet::rollouts() const {
  Json list = Json::array();
  for (const auto& p : impl_->rollouts->list()) list.as_array().push_back(p.to_json());
  return list;
}

Status DeviceFleet::abort_rollout(std::string_view id, std::string_view actor,
                                  std::string_view reason) {
  return impl_->rollouts->abort(id, actor, reason);
}

Status DeviceFleet::report_ota(std::string_view device_id, const Json& result) {
  if (!result.is_object()) return invalid_argument("an OTA result must be a JSON object");
  const Json* success = result.find("success");
  if (success == nullptr || !success->is_bool()) {
    return invalid_argument("an OTA result needs \"success\": true or false");
  }
  const std::string rollout_id = result.get_string("rollout");
  CIVICBUS_RETURN_IF_ERROR(impl_->rollouts->report(device_id, rollout_id, success->as_bool(),
                                                   result.get_string("detail")));
  if (success->as_bool()) {
    if (std::string version = result.get_string("version"); !version.empty()) {
      DeviceUpdate u;
      u.firmware_version = version;
      CIVICBUS_RETURN_IF_ERROR(impl_->registry->update(device_id, u, "device").status());
    }
  }
  return Status();
}

// ----- operations ----------------------------------------------------------------------------

Status DeviceFleet::tick() {
  auto& m = *impl_;
  const TimeMs now = m.now_ms();
  Status first;
  auto keep = [&](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  keep(m.alerts->tick(now));
  m.rollouts->tick();
  if (now - m.last_expire >= 3600 * 1000) {
    m.last_expire = now;
    keep(m.series->expire(now).status());
  }
  return first;
}

Status DeviceFleet::flush() {
  CIVICBUS_RETURN_IF_ERROR(impl_->series->flush());
  return impl_->alerts->flush();
}

bool DeviceFleet::mqtt_connected() const {
  return impl_->mqtt && impl_->mqtt->connected();
}

const std::string& DeviceFleet::ca_certificate_pem() const {
  static const std::string kNone;
  return impl_->ca ? impl_->ca->ca_certificate_pem() : kNone;
}

FleetStats DeviceFleet::stats() const {
  FleetStats s;
  s.devices = impl_->registry->size();
  s.readings_accepted = impl_->accepted_counter->value();
  for (const auto* c : impl_->rejected_counters) s.readings_rejected += c->value();
  s.active_alerts = impl_->alerts->active_alert_count();
  if (impl_->mqtt) s.mqtt_messages = impl_->mqtt->counters().messages;
  if (impl_->forwarder) s.edge_buffered = impl_->forwarder->buffered();
  return s;
}

}  // namespace civicbus::fleet

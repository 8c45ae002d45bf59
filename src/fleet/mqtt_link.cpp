#include "fleet/mqtt_link.hpp"

#include <fmt/format.h>
#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <utility>

namespace civicbus::fleet {
namespace {

enum class TopicKind { kTelemetry, kSenml, kTwinReported, kChirpStack, kTts, kOther };

struct TopicMatch {
  TopicKind kind = TopicKind::kOther;
  std::string_view device;  // the {id} segment for per-device topics
};

// Splits `rest` ("a/b/c") into segments without allocating beyond the vector.
std::vector<std::string_view> segments(std::string_view rest) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const auto slash = rest.find('/', start);
    out.push_back(rest.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

bool strip_prefix(std::string_view& topic, std::string_view prefix) {
  if (prefix.empty() || topic.size() <= prefix.size() + 1 || !topic.starts_with(prefix) ||
      topic[prefix.size()] != '/') {
    return false;
  }
  topic.remove_prefix(prefix.size() + 1);
  return true;
}

TopicMatch classify(std::string_view topic, const MqttLinkOptions& o) {
  std::string_view rest = topic;
  if (strip_prefix(rest, o.device_prefix)) {
    auto s = segments(rest);
    if (s.size() == 2 && s[1] == "telemetry") return {TopicKind::kTelemetry, s[0]};
    if (s.size() == 2 && s[1] == "senml") return {TopicKind::kSenml, s[0]};
    if (s.size() == 3 && s[1] == "twin" && s[2] == "reported") {
      return {TopicKind::kTwinReported, s[0]};
    }
  }
  rest = topic;
  if (strip_prefix(rest, o.chirpstack_prefix)) {
    auto s = segments(rest);  // {app}/device/{devEui}/event/up
    if (s.size() == 5 && s[1] == "device" && s[3] == "event" && s[4] == "up") {
      return {TopicKind::kChirpStack, s[2]};
    }
  }
  rest = topic;
  if (strip_prefix(rest, o.tts_prefix)) {
    auto s = segments(rest);  // {app}@{tenant}/devices/{device}/up
    if (s.size() == 4 && s[1] == "devices" && s[3] == "up") return {TopicKind::kTts, s[2]};
  }
  return {};
}

TimeMs now_ms(const Clock& clock) {
  return to_unix_micros(clock.now()) / 1000;
}

}  // namespace

DeviceTopics device_topics(std::string_view device_id, std::string_view device_prefix) {
  const std::string base = fmt::format("{}/{}/", device_prefix, device_id);
  return {base + "telemetry", base + "senml", base + "twin/reported", base + "twin/desired",
          base + "commands"};
}

struct MqttLink::Impl : public virtual mqtt::iaction_listener {
  MqttLinkOptions options;
  const Clock* clock = nullptr;
  DeviceResolver resolver;
  CodecCatalog codecs;
  ReadingsHandler on_readings;
  TwinHandler on_twin;
  std::unique_ptr<mqtt::async_client> client;

  std::atomic<std::uint64_t> messages{0}, readings{0}, decode_errors{0}, twin_reports{0},
      published{0}, connects{0};
  std::atomic<bool> is_subscribed{false};
  std::mutex mu;
  std::condition_variable cv;

  std::vector<std::string> filters() const {
    std::vector<std::string> f = {options.device_prefix + "/+/telemetry",
                                  options.device_prefix + "/+/senml",
                                  options.device_prefix + "/+/twin/reported"};
    if (!options.chirpstack_prefix.empty()) {
      f.push_back(options.chirpstack_prefix + "/+/device/+/event/up");
    }
    if (!options.tts_prefix.empty()) f.push_back(options.tts_prefix + "/+/devices/+/up");
    return f;
  }

  // Subscription acknowledged (iaction_listener, Paho's thread).
  void on_success(const mqtt::token&) override {
    {
      std::lock_guard lock(mu);
      is_subscribed = true;
    }
    cv.notify_all();
  }
  void on_failure(const mqtt::token&) override {}

  void subscribe_all() {
    is_subscribed = false;
    auto topics = mqtt::string_collection::create(filters());
    mqtt::iasync_client::qos_collection qos(topics->size(), 1);
    try {
      client->subscribe(topics, qos, nullptr, *this);
    } catch (const mqtt::exception&) {
      // The connection dropped again; the next connected callback retries.
    }
  }

  void on_message(const mqtt::const_message_ptr& msg) {
    messages.fetch_add(1, std::memory_order_relaxed);
    const std::string& topic = msg->get_topic();
    const std::string& payload = msg->get_payload();
    const TopicMatch match = classify(topic, options);
    const TimeMs received_at = now_ms(*clock);
    MqttBatch batch;
    batch.topic = topic;
    DecodedPayload decoded;
    switch (match.kind) {
      case TopicKind::kTelemetry:
        decoded = decode_device_json(match.device, payload, received_at);
        break;
      case TopicKind::kSenml:
        decoded = decode_senml(payload, received_at, match.device);
        break;
      case TopicKind::kChirpStack:
        decoded = decode_chirpstack_uplink(payload, resolver, codecs, received_at);
        break;
      case TopicKind::kTts:
        decoded = decode_tts_uplink(payload, resolver, codecs, received_at);
        break;
      case TopicKind::kTwinReported: {
        auto j = Json::parse(payload);
        if (!j.ok() || !j->is_object()) {
          decode_errors.fetch_add(1, std::memory_order_relaxed);
          decoded.errors.push_back(
              {std::string(match.device),
               fmt::format("twin report of device '{}' on '{}' is not a JSON object{}",
                           match.device, topic, j.ok() ? "" : ": " + j.status().message())});
          break;
        }
        twin_reports.fetch_add(1, std::memory_order_relaxed);
        if (on_twin) on_twin(std::string(match.device), *j);
        return;
      }
      case TopicKind::kOther:
        decode_errors.fetch_add(1, std::memory_order_relaxed);
        decoded.errors.push_back({"", fmt::format("message on unexpected topic '{}'", topic)});
        break;
    }
    if (match.kind != TopicKind::kOther && match.kind != TopicKind::kTwinReported) {
      decode_errors.fetch_add(decoded.errors.size(), std::memory_order_relaxed);
    }
    readings.fetch_add(decoded.readings.size(), std::memory_order_relaxed);
    batch.readings = std::move(decoded.readings);
    batch.errors = std::move(decoded.errors);
    if (on_readings) on_readings(batch);
  }

  Status publish(std::string_view topic, std::string_view payload, bool retained) {
    try {
      auto msg =
          mqtt::make_message(std::string(topic), payload.data(), payload.size(), 1, retained);
      auto token = client->publish(msg);
      if (!token->wait_for(options.connect_timeout)) {
        return deadline_exceeded(
            fmt::format("MQTT publish to '{}' was not acknowledged within "
                        "{} ms",
                        topic, options.connect_timeout.count()));
      }
      published.fetch_add(1, std::memory_order_relaxed);
      return Status();
    } catch (const mqtt::exception& e) {
      return unavailable(fmt::format("MQTT publish to '{}' via {} failed: {}", topic,
                                     options.server_uri, e.what()));
    }
  }
};

MqttLink::MqttLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttLink::~MqttLink() {
  if (impl_ && impl_->client) {
    disconnect().ignore_error();
    impl_->client->disable_callbacks();
  }
}

Result<std::unique_ptr<MqttLink>> MqttLink::create(MqttLinkOptions options, const Clock& clock,
                                                   DeviceResolver resolver, CodecCatalog codecs,
                                                   ReadingsHandler on_readings,
                                                   TwinHandler on_twin) {
  if (options.server_uri.empty()) return invalid_argument("MQTT link: server_uri is empty");
  if (options.client_id.empty()) return invalid_argument("MQTT link: client_id is empty");
  if (options.device_prefix.empty()) return invalid_argument("MQTT link: device_prefix is empty");
  for (const std::string* p :
       {&options.device_prefix, &options.chirpstack_prefix, &options.tts_prefix}) {
    if (p->find_first_of("+#") != std::string::npos || p->ends_with("/")) {
      return invalid_argument(fmt::format(
          "MQTT link: topic prefix '{}' must not contain wildcards or end with '/'", *p));
    }
  }
  if (options.max_inflight < 1) return invalid_argument("MQTT link: max_inflight must be >= 1");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->clock = &clock;
  impl->resolver = std::move(resolver);
  impl->codecs = std::move(codecs);
  impl->on_readings = std::move(on_readings);
  impl->on_twin = std::move(on_twin);
  try {
    impl->client =
        std::make_unique<mqtt::async_client>(impl->options.server_uri, impl->options.client_id,
                                             static_cast<mqtt::iclient_persistence*>(nullptr));
  } catch (const mqtt::exception& e) {
    return invalid_argument(fmt::format("MQTT link: cannot create a client for '{}': {}",
                                        impl->options.server_uri, e.what()));
  }
  Impl* raw = impl.get();
  raw->client->set_message_callback([raw](mqtt::const_message_ptr msg) { raw->on_message(msg); });
  raw->client->set_connected_handler([raw](const std::string&) {
    if (raw->connects.fetch_add(1) > 0) raw->subscribe_all();
  });
  return std::unique_ptr<MqttLink>(new MqttLink(std::move(impl)));
}

Status MqttLink::connect() {
  Impl& im = *impl_;
  auto opts =
      mqtt::connect_options_builder()
          .clean_session(im.options.clean_session)
          .keep_alive_interval(std::chrono::seconds(im.options.keep_alive_s))
          .connect_timeout(im.options.connect_timeout)
          .automatic_reconnect(im.options.min_reconnect_delay, im.options.max_reconnect_delay)
          .max_inflight(im.options.max_inflight)
          .finalize();
  if (!im.options.username.empty()) {
    opts.set_user_name(im.options.username);
    opts.set_password(im.options.password);
  }
  try {
    auto token = im.client->connect(opts);
    if (!token->wait_for(im.options.connect_timeout + std::chrono::seconds(1))) {
      return unavailable(fmt::format("MQTT link: no CONNACK from {} within {} ms",
                                     im.options.server_uri, im.options.connect_timeout.count()));
    }
  } catch (const mqtt::exception& e) {
    return unavailable(fmt::format("MQTT link: cannot connect to {} as '{}': {}",
                                   im.options.server_uri, im.options.client_id, e.what()));
  }
  // The connected handler subscribes on reconnects; the first subscription is made here so that
  // connect() returns only once the subscriptions are in place.
  im.subscribe_all();
  std::unique_lock lock(im.mu);
  if (!im.cv.wait_for(lock, im.options.connect_timeout, [&] { return im.is_subscribed.load(); })) {
    return unavailable(
        fmt::format("MQTT link: {} did not acknowledge the subscriptions within "
                    "{} ms",
                    im.options.server_uri, im.options.connect_timeout.count()));
  }
  return Status();
}

Status MqttLink::disconnect() {
  try {
    if (impl_->client->is_connected()) {
      impl_->client->disconnect()->wait_for(impl_->options.connect_timeout);
    }
  } catch (const mqtt::exception& e) {
    return unavailable(fmt::format("MQTT link: disconnect from {} failed: {}",
                                   impl_->options.server_uri, e.what()));
  }
  return Status();
}

bool MqttLink::connected() const {
  return impl_->client->is_connected();
}
bool MqttLink::subscribed() const {
  return connected() && impl_->is_subscribed.load();
}

Status MqttLink::publish_desired(std::string_view device_id, const Json& desired) {
  if (device_id.empty()) return invalid_argument("MQTT link: desired config needs a device id");
  return impl_->publish(device_topics(device_id, impl_->options.device_prefix).twin_desired,
                        desired.dump(), /*retained=*/true);
}

Status MqttLink::publish_command(std::string_view device_id, const Json& command) {
  if (device_id.empty()) return invalid_argument("MQTT link: a command needs a device id");
  return impl_->publish(device_topics(device_id, impl_->options.device_prefix).commands,
                        command.dump(), /*retained=*/false);
}

Status MqttLink::publish(std::string_view topic, std::string_view payload, bool retained) {
  return impl_->publish(topic, payload, retained);
}

MqttLinkCounters MqttLink::counters() const {
  const Impl& im = *impl_;
  MqttLinkCounters c;
  c.messages = im.messages.load();
  c.readings = im.readings.load();
  c.decode_errors = im.decode_errors.load();
  c.twin_reports = im.twin_reports.load();
  c.published = im.published.load();
  const auto connects = im.connects.load();
  c.reconnects = connects > 0 ? connects - 1 : 0;
  return c;
}

}  // namespace civicbus::fleet

// MqttLink: the fleet's MQTT ingestion over Eclipse Paho (async client, kept out of this
// header). It connects to a broker, subscribes QoS 1 to the per-device topics and to the
// LoRaWAN network servers' uplink topics, decodes every message (payloads.hpp) and hands the
// readings of each message, as one batch, to a handler; twin reports go to a second handler.
// It publishes desired configuration and commands (QoS 1). It does not validate or store
// readings: the handler does (the fleet's ingestion pipeline).
//
// Topics (prefixes configurable):
//   {device_prefix}/{id}/telemetry       device JSON (decode_device_json)
//   {device_prefix}/{id}/senml           SenML JSON pack (decode_senml)
//   {device_prefix}/{id}/twin/reported   twin report (JSON object) → TwinHandler
//   {device_prefix}/{id}/twin/desired    published by publish_desired (retained)
//   {device_prefix}/{id}/commands        published by publish_command
//   {chirpstack_prefix}/+/device/+/event/up   ChirpStack v4 uplink events
//   {tts_prefix}/+/devices/+/up               The Things Stack v3 uplinks
//
// Delivery: the handlers run on Paho's callback thread, one message at a time, in arrival
// order; a message counts as consumed when the handler returns. Paho (the C library under
// it) sends the QoS 1 PUBACK when the message is received, so a crash inside the handler loses
// that message; use a persistent session (clean_session = false) so the broker keeps what
// arrives while the link is down.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "fleet/codecs.hpp"
#include "fleet/payloads.hpp"

namespace civicbus::fleet {

struct MqttLinkOptions {
  std::string server_uri;  // "tcp://127.0.0.1:1883" (ssl:// later)
  std::string client_id;   // required; unique per broker
  bool clean_session = true;
  std::string username;  // "" for anonymous
  std::string password;
  std::string device_prefix = "civicbus/devices";
  std::string chirpstack_prefix = "application";  // "" to not subscribe
  std::string tts_prefix = "v3";                  // "" to not subscribe
  int keep_alive_s = 30;
  std::chrono::milliseconds connect_timeout{5000};
  // Automatic reconnect with back-off between these bounds.
  std::chrono::seconds min_reconnect_delay{1};
  std::chrono::seconds max_reconnect_delay{16};
  // Outbound QoS 1 messages awaiting PUBACK.
  int max_inflight = 65535;
};

// One MQTT message, decoded. Valid only during the handler call.
struct MqttBatch {
  std::string_view topic;
  std::vector<Reading> readings;
  std::vector<DecodeError> errors;
};

struct MqttLinkCounters {
  std::uint64_t messages = 0;       // messages received on any subscribed topic
  std::uint64_t readings = 0;       // readings handed to the handler
  std::uint64_t decode_errors = 0;  // DecodeErrors (items) plus messages on unknown topics
  std::uint64_t twin_reports = 0;
  std::uint64_t published = 0;  // publish_* completed (PUBACK received)
  std::uint64_t reconnects = 0;
};

// A device's topics, for provisioning (ACLs, the device's own configuration).
struct DeviceTopics {
  std::string telemetry, senml, twin_reported, twin_desired, commands;
  std::vector<std::string> all() const {
    return {telemetry, senml, twin_reported, twin_desired, commands};
  }
};
DeviceTopics device_topics(std::string_view device_id,
                           std::string_view device_prefix = "civicbus/devices");

class MqttLink {
 public:
  // Called with each message's readings (possibly none, with errors). Paho's thread.
  using ReadingsHandler = std::function<void(MqttBatch& batch)>;
  // Called with a device's twin report (a JSON object). Paho's thread.
  using TwinHandler = std::function<void(const std::string& device_id, const Json& reported)>;

  // Validates the options and creates the client (not yet connected). `clock` stamps payloads
  // without a time and must outlive the link; `resolver` maps DevEUIs / TTS device ids.
  static Result<std::unique_ptr<MqttLink>> create(MqttLinkOptions options, const Clock& clock,
                                                  DeviceResolver resolver, CodecCatalog codecs,
                                                  ReadingsHandler on_readings,
                                                  TwinHandler on_twin = {});
  ~MqttLink();  // disconnects
  MqttLink(const MqttLink&) = delete;
  MqttLink& operator=(const MqttLink&) = delete;

  // Connects and subscribes (blocking, up to connect_timeout each). After a broker loss the
  // client reconnects and resubscribes by itself.
  Status connect();
  Status disconnect();
  bool connected() const;
  // True once the subscriptions of the current connection are acknowledged.
  bool subscribed() const;

  // QoS 1; blocks until the broker acknowledges (or the connect timeout passes).
  // Desired configuration is retained so that a device connecting later receives it.
  Status publish_desired(std::string_view device_id, const Json& desired);
  Status publish_command(std::string_view device_id, const Json& command);
  Status publish(std::string_view topic, std::string_view payload, bool retained = false);

  MqttLinkCounters counters() const;

  struct Impl;

 private:
  explicit MqttLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::fleet

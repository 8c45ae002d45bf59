// The `mqtt` connector: an MQTT 3.1.1 source (a persistent subscription that lands every message in
// a durable SQLite inbox, drained incrementally by read()) and sink (one QoS 1 publish per record,
// acknowledged before write() returns), over Eclipse Paho C++. Also the registration of the
// messaging family (mqtt, smtp).
#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "builtin_connectors.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/storage/database.hpp"
#include "http_connectors.hpp"
#include "record_template.hpp"
#include "rest_client.hpp"

namespace civicbus::connect::detail {
namespace {

constexpr storage::Migration kMqttInboxMigrations[] = {
    {1, "mqtt inbox",
     "CREATE TABLE mqtt_inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
     "received_at INTEGER NOT "
     "NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, "
     "retained INTEGER "
     "NOT NULL);"
     "CREATE INDEX mqtt_inbox_received_at ON mqtt_inbox (received_at);"},
};

Json string_schema(bool secret = false) {
  Json s = Json::object({{"type", "string"}});
  if (secret) s.set("secret", true);
  return s;
}

ConnectorSpec mqtt_spec() {
  ConnectorSpec spec;
  spec.name = "mqtt";
  spec.title = "MQTT broker";
  spec.description =
      "Subscribes to topic filters with a persistent session "
      "and stores every message in a "
      "durable inbox that reads drain incrementally; publishes "
      "records as JSON (QoS 1, "
      "acknowledged) to a topic built from the record's fields.";
  spec.format_source = "MQTT Version 3.1.1 (OASIS Standard, 2014), RFC 8259 (JSON)";
  spec.is_source = true;
  spec.is_sink = true;
  auto integer = [](std::int64_t min) {
    return Json::object({{"type", "integer"}, {"minimum", min}});
  };
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"server_uri"})},
       {"properties",
        Json::object({{"server_uri", string_schema()},
                      {"client_id", string_schema()},
                      {"topics", Json::object({{"type", "array"}, {"items", string_schema()}})},
                      {"qos", Json::object({{"enum", Json::array({0, 1})}})},
                      {"username", string_schema()},
                      {"password", string_schema(true)},
                      {"keep_alive_s", integer(0)},
                      {"ca_file", string_schema()},
                      {"stream", string_schema()},
                      {"inbox_retention_hours", integer(0)},
                      {"topic", string_schema()},
                      {"payload_field", string_schema()},
                      {"retain", Json::object({{"type", "boolean"}})}})}});
  return spec;
}

struct MqttSettings {
  std::string server_uri;
  std::string client_id;
  std::vector<std::string> topics;
  int qos = 1;
  std::string username;
  std::string password;
  int keep_alive_s = 30;
  std::string ca_file;
  std::string stream = "mqtt";
  std::int64_t inbox_retention_hours = 168;
  std::string topic_template;
  std::string payload_field;
  bool retain = false;
};

// Checks a topic filter against MQTT 3.1.1 §4.7: '#' only as the whole last level, '+' only as a
// whole level.
Status check_topic_filter(std::string_view filter) {
  if (filter.empty()) return invalid_argument("mqtt 'topics' has an empty topic filter");
  std::size_t start = 0;
  while (true) {
    std::size_t slash = filter.find('/', start);
    std::string_view level = filter.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    bool last = slash == std::string_view::npos;
    if (level.find_first_of("+#") != std::string_view::npos && level.size() != 1) {
      return invalid_argument("mqtt topic filter '" + std::string(filter) +
                              "': '+' and '#' must fill a whole level");
    }
    if (level == "#" && !last) {
      return invalid_argument("mqtt topic filter '" + std::string(filter) +
                              "': '#' must be the last level");
    }
    if (last) break;
    start = slash + 1;
  }
  return Status();
}

Result<MqttSettings> parse_mqtt_settings(const Json& config) {
  MqttSettings s;
  CIVICBUS_ASSIGN_OR_RETURN(s.server_uri, required_string(config, "server_uri"));
  if (!s.server_uri.starts_with("tcp://") && !s.server_uri.starts_with("ssl://")) {
    return invalid_argument("mqtt 'server_uri' '" + s.server_uri +
                            "' must start with tcp:// or ssl://");
  }
  s.client_id = config.get_string("client_id");
  if (const Json* t = config.find("topics"); t != nullptr && t->is_array()) {
    for (const auto& f : t->as_array()) {
      if (!f.is_string()) return invalid_argument("mqtt 'topics' must be strings");
      CIVICBUS_RETURN_IF_ERROR(check_topic_filter(f.as_string()));
      s.topics.push_back(f.as_string());
    }
  }
  s.qos = static_cast<int>(config.get_int("qos", 1));
  if (s.qos != 0 && s.qos != 1) return invalid_argument("mqtt 'qos' must be 0 or 1");
  s.username = config.get_string("username");
  s.password = config.get_string("password");
  s.keep_alive_s = static_cast<int>(config.get_int("keep_alive_s", 30));
  if (s.keep_alive_s < 0) return invalid_argument("mqtt 'keep_alive_s' must be >= 0");
  s.ca_file = config.get_string("ca_file");
  if (!s.ca_file.empty() && !s.server_uri.starts_with("ssl://")) {
    return invalid_argument("mqtt 'ca_file' needs an ssl:// 'server_uri'");
  }
  s.stream = config.get_string("stream", s.stream);
  s.inbox_retention_hours = config.get_int("inbox_retention_hours", s.inbox_retention_hours);
  if (s.inbox_retention_hours < 0) {
    return invalid_argument("mqtt 'inbox_retention_hours' must be >= 0");
  }
  s.topic_template = config.get_string("topic");
  s.payload_field = config.get_string("payload_field");
  s.retain = config.get_bool("retain");
  return s;
}

mqtt::connect_options connect_options(const MqttSettings& s, bool clean_session,
                                      std::chrono::milliseconds timeout) {
  auto builder = mqtt::connect_options_builder()
                     .clean_session(clean_session)
                     .keep_alive_interval(std::chrono::seconds(s.keep_alive_s))
                     .connect_timeout(std::chrono::duration_cast<std::chrono::seconds>(
                         std::max(timeout, std::chrono::milliseconds(1000))));
  if (s.server_uri.starts_with("ssl://")) {
    auto ssl = mqtt::ssl_options_builder().enable_server_cert_auth(true).verify(true);
    if (!s.ca_file.empty()) ssl.trust_store(s.ca_file);
    builder.ssl(ssl.finalize());
  }
  auto options = builder.finalize();
  if (!s.username.empty()) {
    options.set_user_name(s.username);
    options.set_password(s.password);
  }
  return options;
}

// Connects `client`, waiting up to `timeout`; the error names the server and the client id.
Status connect_client(mqtt::async_client& client, const MqttSettings& s, bool clean_session,
                      std::chrono::milliseconds timeout) {
  try {
    auto token = client.connect(connect_options(s, clean_session, timeout));
    if (!token->wait_for(timeout + std::chrono::seconds(1))) {
      return unavailable("mqtt: no CONNACK from " + s.server_uri + " within " +
                         std::to_string(timeout.count()) + " ms");
    }
  } catch (const mqtt::exception& e) {
    return unavailable("mqtt: cannot connect to " + s.server_uri + " as '" +
                       client.get_client_id() + "': " + e.what());
  }
  return Status();
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80             ? 0
                    : (c & 0xE0) == 0xC0 ? 1
                    : (c & 0xF0) == 0xE0 ? 2
                    : (c & 0xF8) == 0xF0 ? 3
                                         : 4;
    if (n == 4 || i + n >= s.size() + (n == 0 ? 1 : 0)) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

// Lifetime: the subscription starts on the first check() or read() and lasts until the connector is
// destroyed (the destructor disconnects; with clean_session false the broker keeps the session and
// queues QoS 1 messages until the next connector with the same client id connects). The settings of
// that first call stay in force for the subscription's life. The inbox is a SQLite file in the
// work_dir, so it outlives the connector.
//
// Delivery: Paho C 1.3 has no manual acknowledgement; it sends PUBACK when a QoS 1 message arrives,
// just before handing it to the callback that writes the inbox. A process crash in that window (one
// SQLite insert) loses the message; everything in the inbox survives. A redelivery after a
// reconnect may store a message twice (at-least-once).
//
// The sink keeps one clean-session connection (client id "<client_id>-pub") between writes.
class MqttConnector final : public Connector {
 public:
  ~MqttConnector() override {
    stop(subscriber_);
    stop(publisher_);
  }

  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(MqttSettings s, parse_mqtt_settings(context.config));
    if (s.topics.empty()) {
      // A sink-only configuration: a clean connection proves the server and the credentials.
      return ensure_publisher(s, context);
    }
    return start(s, context);
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(MqttSettings s, parse_mqtt_settings(context.config));
    StreamSpec stream;
    stream.name = s.stream;
    stream.fields = {FieldSpec{"_inbox_id", FieldType::kInteger, false},
                     FieldSpec{"topic", FieldType::kString, false},
                     FieldSpec{"qos", FieldType::kInteger, false},
                     FieldSpec{"retained", FieldType::kBoolean, false},
                     FieldSpec{"received_at", FieldType::kTimestamp, false},
                     FieldSpec{"payload", FieldType::kString, true}};
    stream.primary_key = {"_inbox_id"};
    stream.cursor_field = "_inbox_id";
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(MqttSettings s, parse_mqtt_settings(context.config));
    CIVICBUS_RETURN_IF_ERROR(start(s, context));
    CIVICBUS_ASSIGN_OR_RETURN(auto streams, streams_to_read(request, {s.stream}, spec_.name));
    if (streams.empty()) return Status();
    if (std::uint64_t lost = store_failures_.exchange(0); lost > 0) {
      return data_loss(
          "mqtt: " + std::to_string(lost) + " message(s) from " + s.server_uri +
          " were acknowledged but could not be stored in the inbox: " + last_store_error());
    }
    std::int64_t after = 0;
    if (const Json* state = request.stream_state(s.stream)) after = state->get_int("cursor", 0);
    // Rows already committed downstream and older than the retention go; unread rows stay whatever
    // their age.
    if (s.inbox_retention_hours > 0 && after > 0) {
      std::int64_t cutoff =
          to_unix_micros(context.now()) - s.inbox_retention_hours * 3'600'000'000LL;
      CIVICBUS_RETURN_IF_ERROR(
          inbox_
              ->execute("DELETE FROM mqtt_inbox WHERE id <= ? AND received_at < ?", {after, cutoff})
              .status());
    }
    std::int64_t remaining = request.max_records;
    StreamWriter writer(out, s.stream, request, &remaining);
    constexpr std::int64_t kSlice = 1000;  // a large inbox is not held in memory at once
    for (;;) {
      std::vector<Json> rows;
      std::vector<std::int64_t> ids;
      CIVICBUS_RETURN_IF_ERROR(
          inbox_->query("SELECT id, received_at, topic, payload, qos, retained "
                        "FROM mqtt_inbox WHERE id > ? "
                        "ORDER BY id LIMIT ?",
                        {after, kSlice}, [&](const storage::Row& row) {
                          ids.push_back(row.get_int(0));
                          rows.push_back(to_record(row));
                          return true;
                        }));
      if (rows.empty()) break;
      std::int64_t last = after;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(rows[i], ids[i]));
        if (!added) break;
        last = ids[i];
      }
      CIVICBUS_RETURN_IF_ERROR(writer.flush());
      if (last > after) {
        after = last;
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint(s.stream, Json::object({{"cursor", after}})));
      }
      if (writer.limit_reached() || static_cast<std::int64_t>(rows.size()) < kSlice) break;
      if (out.cancelled()) return cancelled("read of the mqtt inbox was cancelled");
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    (void)request;
    CIVICBUS_ASSIGN_OR_RETURN(MqttSettings s, parse_mqtt_settings(context.config));
    if (s.topic_template.empty()) {
      return invalid_argument(
          "the mqtt sink needs 'topic' (a template such as "
          "\"city/permits/{status}\")");
    }
    CIVICBUS_RETURN_IF_ERROR(ensure_publisher(s, context));
    WriteResult result;
    std::vector<mqtt::delivery_token_ptr> pending;
    std::string topic;
    std::string missing;
    try {
      for (const Record& record : batch.records) {
        Json object = batch.to_object(record);
        if (!fill_template(s.topic_template, batch, record, true, topic, missing)) {
          result.rejected.push_back(RowError{record.position, missing, "",
                                             "topic template '" + s.topic_template +
                                                 "' needs field '" + missing +
                                                 "', which is missing, null or empty"});
          continue;
        }
        if (topic.find_first_of("+#") != std::string::npos) {
          result.rejected.push_back(RowError{record.position, "", topic,
                                             "topic '" + topic +
                                                 "' contains a wildcard ('+' or '#'), which a "
                                                 "published topic may not"});
          continue;
        }
        std::string payload;
        if (s.payload_field.empty()) {
          payload = object.dump();
        } else {
          const Json* v = object.find(s.payload_field);
          if (v == nullptr || v->is_null()) {
            result.rejected.push_back(
                RowError{record.position, s.payload_field, "",
                         "payload field '" + s.payload_field + "' is missing or null"});
            continue;
          }
          payload = v->is_string() ? v->as_string() : v->dump();
        }
        pending.push_back(
            publisher_->publish(topic, payload.data(), payload.size(), /*qos=*/1, s.retain));
      }
      // Publishes are pipelined; write() returns once every PUBACK is in.
      for (auto& token : pending) {
        if (!token->wait_for(context.timeout)) {
          return deadline_exceeded("mqtt: " + s.server_uri +
                                   " did not acknowledge a publish within " +
                                   std::to_string(context.timeout.count()) + " ms");
        }
        ++result.written;
      }
    } catch (const mqtt::exception& e) {
      // Some records may be out already: the hub retries the batch (at-least-once).
      return unavailable("mqtt: publish to " + s.server_uri + " failed: " + e.what());
    }
    return result;
  }

 private:
  static void stop(std::unique_ptr<mqtt::async_client>& client) {
    if (client == nullptr) return;
    try {
      client->disable_callbacks();
      if (client->is_connected()) client->disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception&) {
      // The broker is gone; nothing is left to release there.
    }
    client.reset();
  }

  Status ensure_publisher(const MqttSettings& s, const ConnectorContext& context) {
    std::lock_guard lock(mutex_);
    // The connection is kept while the settings it was made with stay the same.
    std::string key = s.server_uri + '\n' + s.client_id + '\n' + s.username + '\n' + s.password +
                      '\n' + s.ca_file + '\n' + std::to_string(s.keep_alive_s);
    if (publisher_ != nullptr && publisher_->is_connected() && key == publisher_key_) {
      return Status();
    }
    stop(publisher_);
    publisher_key_ = key;
    std::string id = s.client_id.empty() ? "civicbus-" + crypto::to_hex(SecureRandom().bytes(8))
                                         : s.client_id + "-pub";
    try {
      publisher_ = std::make_unique<mqtt::async_client>(
          s.server_uri, id, static_cast<mqtt::iclient_persistence*>(nullptr));
    } catch (const mqtt::exception& e) {
      return invalid_argument("mqtt: cannot create a client for " + s.server_uri + ": " + e.what());
    }
    Status connected = connect_client(*publisher_, s, /*clean_session=*/true, context.timeout);
    if (!connected.ok()) publisher_.reset();
    return connected;
  }

  Status start(const MqttSettings& s, const ConnectorContext& context) {
    std::lock_guard lock(mutex_);
    if (subscriber_ != nullptr) return Status();
    if (s.topics.empty()) {
      return invalid_argument("the mqtt source needs 'topics' (one or more topic filters)");
    }
    if (s.client_id.empty()) {
      return invalid_argument(
          "the mqtt source needs 'client_id': its "
          "persistent session is kept by the broker "
          "under that id");
    }
    if (context.work_dir.empty()) {
      return failed_precondition("the mqtt source needs a work_dir for its durable inbox");
    }
    if (inbox_ == nullptr) {
      std::error_code ec;
      std::filesystem::create_directories(context.work_dir, ec);
      storage::SqliteOptions db_options;
      db_options.path = (std::filesystem::path(context.work_dir) / "mqtt_inbox.db").string();
      CIVICBUS_ASSIGN_OR_RETURN(inbox_, storage::open_sqlite(db_options));
      CIVICBUS_RETURN_IF_ERROR(storage::migrate(*inbox_, "mqtt_inbox", kMqttInboxMigrations));
    }
    std::unique_ptr<mqtt::async_client> client;
    try {
      client = std::make_unique<mqtt::async_client>(
          s.server_uri, s.client_id, static_cast<mqtt::iclient_persistence*>(nullptr));
    } catch (const mqtt::exception& e) {
      return invalid_argument("mqtt: cannot create a client for " + s.server_uri + ": " + e.what());
    }
    // Set before connecting: a resumed session delivers its queued messages straight away.
    client->set_message_callback([this](mqtt::const_message_ptr msg) { store(*msg); });
    // Paho resubscribes nothing by itself, but the broker keeps the subscriptions of a persistent
    // session, so an automatic reconnect resumes delivery.
    auto options = connect_options(s, /*clean_session=*/false, context.timeout);
    options.set_automatic_reconnect(1, 30);
    try {
      auto token = client->connect(options);
      if (!token->wait_for(context.timeout + std::chrono::seconds(1))) {
        stop(client);
        return unavailable("mqtt: no CONNACK from " + s.server_uri + " within " +
                           std::to_string(context.timeout.count()) + " ms");
      }
      auto filters = mqtt::string_collection::create(s.topics);
      std::vector<int> qos(s.topics.size(), s.qos);
      auto sub = client->subscribe(filters, qos);
      if (!sub->wait_for(context.timeout)) {
        stop(client);
        return unavailable("mqtt: " + s.server_uri +
                           " did not acknowledge the subscription "
                           "within " +
                           std::to_string(context.timeout.count()) + " ms");
      }
      auto granted = sub->get_subscribe_response().get_reason_codes();
      for (std::size_t i = 0; i < granted.size() && i < s.topics.size(); ++i) {
        if (static_cast<int>(granted[i]) >= 0x80) {
          stop(client);
          return permission_denied("mqtt: " + s.server_uri + " refused the subscription to '" +
                                   s.topics[i] + "'");
        }
      }
    } catch (const mqtt::exception& e) {
      stop(client);
      return unavailable("mqtt: cannot subscribe at " + s.server_uri + " as '" + s.client_id +
                         "': " + e.what());
    }
    subscriber_ = std::move(client);
    return Status();
  }

  // Paho's callback thread: the message is in the inbox (synced) when this returns.
  void store(const mqtt::message& msg) {
    const std::string& payload = msg.get_payload();
    auto stored = inbox_->execute(
        "INSERT INTO mqtt_inbox (received_at, topic, payload, qos, retained) "
        "VALUES (?, ?, ?, ?, "
        "?)",
        {to_unix_micros(clock_.now()), std::string_view(msg.get_topic()), storage::Blob{payload},
         static_cast<std::int64_t>(msg.get_qos()),
         static_cast<std::int64_t>(msg.is_retained() ? 1 : 0)});
    if (!stored.ok()) {
      std::lock_guard lock(error_mutex_);
      last_store_error_ = stored.status().message();
      store_failures_.fetch_add(1);
    }
  }

  std::string last_store_error() const {
    std::lock_guard lock(error_mutex_);
    return last_store_error_;
  }

  // {_inbox_id, topic, qos, retained, received_at} and the payload: a JSON object's members as
  // columns (a member named like a metadata column becomes payload_<name>), else the text in
  // `payload` (base64 with payload_base64 = true when it is not UTF-8).
  static Json to_record(const storage::Row& row) {
    Json object = Json::object({{"_inbox_id", row.get_int(0)},
                                {"topic", std::string(row.get_text(2))},
                                {"qos", row.get_int(4)},
                                {"retained", row.get_int(5) != 0},
                                {"received_at", format_rfc3339(from_unix_micros(row.get_int(1)))}});
    std::string_view payload = row.get_blob(3);
    if (!payload.empty() && payload.front() == '{') {
      auto json = Json::parse(payload);
      if (json.ok() && json->is_object()) {
        for (auto& [k, v] : json->as_object()) {
          object.set(object.contains(k) ? "payload_" + k : k, std::move(v));
        }
        return object;
      }
    }
    if (valid_utf8(payload)) {
      object.set("payload", std::string(payload));
    } else {
      object.set("payload", crypto::base64_encode(payload));
      object.set("payload_base64", true);
    }
    return object;
  }

  ConnectorSpec spec_ = mqtt_spec();
  std::mutex mutex_;
  SystemClock clock_;  // the context's clock lives only for one call; the
                       // callback outlives it
  std::unique_ptr<storage::Database> inbox_;
  std::atomic<std::uint64_t> store_failures_{0};
  mutable std::mutex error_mutex_;
  std::string last_store_error_;
  std::string publisher_key_;
  std::unique_ptr<mqtt::async_client> publisher_;
  std::unique_ptr<mqtt::async_client> subscriber_;  // declared last: stopped before the inbox
};

}  // namespace

std::unique_ptr<Connector> make_mqtt_connector() {
  return std::make_unique<MqttConnector>();
}

Status add_messaging_connectors(ConnectorCatalog& catalog) {
  Status first;
  for (ConnectorFactory factory :
       {ConnectorFactory(make_mqtt_connector), ConnectorFactory(make_smtp_connector)}) {
    Status added = catalog.add(std::move(factory));
    if (!added.ok() && first.ok()) first = added;
  }
  return first;
}

}  // namespace civicbus::connect::detail

#include "fleet/payloads.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/crypto.hpp"

namespace civicbus::fleet {
namespace {

constexpr double kSenmlRelativeLimit = 268435456.0;  // 2^28 s (RFC 8428 §4.5.3)

DecodedPayload parse_error(std::string_view device_id, std::string_view what,
                           const Status& status) {
  DecodedPayload out;
  out.errors.push_back(
      {std::string(device_id), fmt::format("{} is not valid JSON: {}", what, status.message())});
  return out;
}

// Epoch milliseconds from a number (ms) or an RFC 3339 string.
Result<TimeMs> time_from_ms_or_text(const Json& v) {
  if (v.is_number()) {
    const double ms = v.as_double();
    if (!std::isfinite(ms)) return invalid_argument("the time is not a finite number");
    return static_cast<TimeMs>(std::llround(ms));
  }
  if (v.is_string()) {
    auto t = parse_rfc3339(v.as_string());
    if (!t.ok()) return t.status();
    return to_unix_micros(*t) / 1000;
  }
  return invalid_argument("the time must be epoch milliseconds or an RFC 3339 string");
}

Result<TimeMs> time_from_rfc3339(const std::string& text) {
  auto t = parse_rfc3339(text);
  if (!t.ok()) return t.status();
  return to_unix_micros(*t) / 1000;
}

// A telemetry value: number, boolean, or {"value": n, "unit": "…"}.
bool reading_value(const Json& v, double& value, std::string& unit) {
  if (v.is_number()) {
    value = v.as_double();
    return std::isfinite(value);
  }
  if (v.is_bool()) {
    value = v.as_bool() ? 1 : 0;
    return true;
  }
  if (v.is_object()) {
    const Json* inner = v.find("value");
    if (inner == nullptr || !(inner->is_number() || inner->is_bool())) return false;
    unit = v.get_string("unit");
    std::string ignored;
    return reading_value(*inner, value, ignored);
  }
  return false;
}

void append_values(std::string_view device_id, const Json& values, TimeMs time,
                   std::string_view where, DecodedPayload& out, bool skip_ts) {
  for (const auto& [metric, v] : values.as_object()) {
    if (skip_ts && metric == "ts") continue;
    Reading r;
    if (!reading_value(v, r.value, r.unit)) {
      out.errors.push_back({std::string(device_id),
                            fmt::format("{}metric '{}' of device '{}' is not a number or boolean",
                                        where, metric, device_id)});
      continue;
    }
    r.device_id = std::string(device_id);
    r.metric = metric;
    r.time = time;
    out.readings.push_back(std::move(r));
  }
}

void decode_telemetry_entry(std::string_view device_id, const Json& entry, TimeMs received_at,
                            std::string_view where, DecodedPayload& out) {
  if (!entry.is_object()) {
    out.errors.push_back(
        {std::string(device_id), fmt::format("{}telemetry must be a JSON object", where)});
    return;
  }
  TimeMs time = received_at;
  if (const Json* ts = entry.find("ts"); ts != nullptr) {
    auto t = time_from_ms_or_text(*ts);
    if (!t.ok()) {
      out.errors.push_back({std::string(device_id), fmt::format("{}'ts' of device '{}': {}", where,
                                                                device_id, t.status().message())});
      return;
    }
    time = *t;
  }
  if (const Json* values = entry.find("values"); values != nullptr) {
    if (!values->is_object()) {
      out.errors.push_back(
          {std::string(device_id),
           fmt::format("{}'values' of device '{}' must be an object", where, device_id)});
      return;
    }
    append_values(device_id, *values, time, where, out, false);
    return;
  }
  append_values(device_id, entry, time, where, out, true);
}

// ----- SenML -----------------------------------------------------------------------------

bool senml_name_ok(std::string_view name) {
  if (name.empty()) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != ':' && c != '.' && c != '/' && c != '_') return false;
  }
  return true;
}

bool senml_known_field(std::string_view key) {
  static constexpr std::string_view kKnown[] = {"bn", "bt", "bu", "bv", "bs", "bver", "n", "u",
                                                "v",  "vs", "vb", "vd", "s",  "t",    "ut"};
  for (auto k : kKnown) {
    if (k == key) return true;
  }
  return false;
}

// ----- LoRaWAN / Sigfox ------------------------------------------------------------------

const Json* member(const Json& j, std::string_view field) {
  if (!field.empty() && field[0] == '/') return j.at_pointer(field);
  return j.find(field);
}

void decode_binary(const ResolvedDevice& device, const CodecCatalog& codecs,
                   std::string_view codec_name, std::string_view bytes, std::optional<int> fport,
                   TimeMs time, DecodedPayload& out) {
  const Codec* codec = codecs.find(codec_name);
  if (codec == nullptr) {
    out.errors.push_back(
        {device.device_id,
         codec_name.empty()
             ? fmt::format("device '{}' sent a binary payload but its type has no codec",
                           device.device_id)
             : fmt::format("device '{}': codec '{}' is not defined", device.device_id,
                           codec_name)});
    return;
  }
  auto values = codec->decode(bytes, fport);
  if (!values.ok()) {
    out.errors.push_back({device.device_id, fmt::format("device '{}': {}", device.device_id,
                                                        values.status().message())});
    return;
  }
  for (CodecValue& v : *values) {
    out.readings.push_back(
        {device.device_id, std::move(v.metric), v.value, std::move(v.unit), time});
  }
}

void flatten(std::string_view device_id, const Json& object, const std::string& prefix, TimeMs time,
             std::vector<Reading>& out) {
  for (const auto& [key, v] : object.as_object()) {
    std::string name = prefix.empty() ? key : prefix + "_" + key;
    if (v.is_object()) {
      flatten(device_id, v, name, time, out);
    } else if (v.is_number() || v.is_bool()) {
      const double value = v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_double();
      if (std::isfinite(value))
        out.push_back({std::string(device_id), std::move(name), value, {}, time});
    }
  }
}

struct Uplink {
  std::string network;                                   // "ChirpStack", "The Things Stack"
  std::vector<std::pair<std::string, std::string>> ids;  // (label, value) tried in order
  TimeMs time = 0;
  std::optional<int> fport;
  const Json* decoded = nullptr;  // object / decoded_payload
  const Json* payload = nullptr;  // base64 string
};

DecodedPayload decode_uplink(const Uplink& up, const DeviceResolver& resolver,
                             const CodecCatalog& codecs) {
  DecodedPayload out;
  std::optional<ResolvedDevice> device;
  std::string tried;
  for (const auto& [label, value] : up.ids) {
    if (value.empty()) continue;
    if (resolver) device = resolver(value);
    if (device) break;
    tried += fmt::format("{}{} '{}'", tried.empty() ? "" : ", ", label, value);
  }
  if (!device) {
    out.errors.push_back(
        {"", tried.empty() ? fmt::format("{} uplink names no device", up.network)
                           : fmt::format("{} uplink from an unknown device ({} not registered)",
                                         up.network, tried)});
    return out;
  }
  if (up.decoded != nullptr && up.decoded->is_object() && up.decoded->size() > 0) {
    flatten(device->device_id, *up.decoded, {}, up.time, out.readings);
    if (out.readings.empty()) {
      out.errors.push_back(
          {device->device_id, fmt::format("{} uplink of device '{}': the decoded object has no "
                                          "numeric values",
                                          up.network, device->device_id)});
    }
    return out;
  }
  if (up.payload == nullptr || !up.payload->is_string() || up.payload->as_string().empty()) {
    out.errors.push_back(
        {device->device_id, fmt::format("{} uplink of device '{}' carries no application payload",
                                        up.network, device->device_id)});
    return out;
  }
  auto bytes = crypto::base64_decode(up.payload->as_string());
  if (!bytes.ok()) {
    out.errors.push_back(
        {device->device_id, fmt::format("{} uplink of device '{}': payload is not base64: {}",
                                        up.network, device->device_id, bytes.status().message())});
    return out;
  }
  decode_binary(*device, codecs, device->codec, *bytes, up.fport, up.time, out);
  return out;
}

}  // namespace

DecodedPayload decode_device_json(std::string_view device_id, std::string_view body,
                                  TimeMs received_at) {
  auto j = Json::parse(body);
  if (!j.ok())
    return parse_error(device_id, fmt::format("telemetry of device '{}'", device_id), j.status());
  return decode_device_json_parsed(device_id, *j, received_at);
}

DecodedPayload decode_device_json_parsed(std::string_view device_id, const Json& body,
                                         TimeMs received_at) {
  DecodedPayload out;
  if (device_id.empty()) {
    out.errors.push_back({"", "telemetry names no device"});
    return out;
  }
  if (body.is_array()) {
    std::size_t i = 0;
    for (const Json& entry : body.as_array()) {
      decode_telemetry_entry(device_id, entry, received_at, fmt::format("entry {}: ", i++), out);
    }
    return out;
  }
  decode_telemetry_entry(device_id, body, received_at, {}, out);
  return out;
}

DecodedPayload decode_senml(std::string_view body, TimeMs received_at, std::string_view device_id) {
  auto j = Json::parse(body);
  if (!j.ok()) return parse_error(device_id, "SenML pack", j.status());
  return decode_senml_parsed(*j, received_at, device_id);
}

DecodedPayload decode_senml_parsed(const Json& pack, TimeMs received_at,
                                   std::string_view device_id) {
  DecodedPayload out;
  if (!pack.is_array()) {
    out.errors.push_back({std::string(device_id), "a SenML pack must be a JSON array of records"});
    return out;
  }
  // Must-understand fields (ending in '_') we do not know reject the whole pack.
  for (std::size_t i = 0; i < pack.as_array().size(); ++i) {
    const Json& rec = pack.as_array()[i];
    if (!rec.is_object()) continue;
    for (const auto& [key, v] : rec.as_object()) {
      if (!key.empty() && key.back() == '_' && !senml_known_field(key)) {
        out.errors.push_back({std::string(device_id),
                              fmt::format("SenML record {} has must-understand field '{}' which "
                                          "is not supported; the pack is rejected",
                                          i, key)});
        return out;
      }
    }
  }
  std::string base_name, base_unit;
  double base_time = 0, base_value = 0, base_sum = 0;
  std::size_t index = 0;
  for (const Json& rec : pack.as_array()) {
    const std::size_t i = index++;
    auto fail = [&](std::string device, std::string reason) {
      out.errors.push_back({std::move(device), fmt::format("SenML record {}: {}", i, reason)});
    };
    if (!rec.is_object()) {
      fail(std::string(device_id), "a record must be a JSON object");
      continue;
    }
    // Base fields apply from this record on (RFC 8428 §4.1).
    if (const Json* v = rec.find("bn"); v && v->is_string()) base_name = v->as_string();
    if (const Json* v = rec.find("bu"); v && v->is_string()) base_unit = v->as_string();
    if (const Json* v = rec.find("bt"); v && v->is_number()) base_time = v->as_double();
    if (const Json* v = rec.find("bv"); v && v->is_number()) base_value = v->as_double();
    if (const Json* v = rec.find("bs"); v && v->is_number()) base_sum = v->as_double();

    const std::string name = base_name + rec.get_string("n");
    const bool has_value = rec.contains("v") || rec.contains("vb") || rec.contains("vs") ||
                           rec.contains("vd") || rec.contains("s");
    if (!has_value) {
      // A record with only base fields sets context (allowed when nothing else is in it).
      bool only_base = true;
      for (const auto& [key, v] : rec.as_object()) {
        if (key.size() < 2 || key[0] != 'b') only_base = false;
      }
      if (!only_base) fail(std::string(device_id), fmt::format("'{}' has no value", name));
      continue;
    }
    if (!senml_name_ok(name)) {
      fail(std::string(device_id),
           fmt::format("name '{}' is not a valid SenML name (letters, digits, '-', ':', '.', '/', "
                       "'_', starting with a letter or digit)",
                       name));
      continue;
    }
    // Device and metric from the resolved name (see the header's convention).
    const auto sep = name.find_last_of(":/");
    std::string device, metric;
    if (sep == std::string::npos) {
      metric = name;
    } else {
      device = name.substr(0, sep);
      metric = name.substr(sep + 1);
      if (device.starts_with("urn:dev:")) device.erase(0, 8);
    }
    if (device.empty()) device = std::string(device_id);
    if (device.empty()) {
      fail("", fmt::format("'{}' names no device and the pack came without one", name));
      continue;
    }
    if (!device_id.empty() && device != device_id) {
      fail(device, fmt::format("'{}' names device '{}' but the pack came from device '{}'", name,
                               device, device_id));
      continue;
    }
    if (metric.empty()) {
      fail(device, fmt::format("'{}' names no metric", name));
      continue;
    }
    Reading r;
    r.device_id = device;
    r.metric = metric;
    if (const Json* v = rec.find("v"); v != nullptr) {
      if (!v->is_number()) {
        fail(device, fmt::format("'v' of '{}' must be a number", name));
        continue;
      }
      r.value = base_value + v->as_double();
    } else if (const Json* vb = rec.find("vb"); vb != nullptr) {
      if (!vb->is_bool()) {
        fail(device, fmt::format("'vb' of '{}' must be a boolean", name));
        continue;
      }
      r.value = vb->as_bool() ? 1 : 0;
    } else if (rec.contains("vs") || rec.contains("vd")) {
      fail(device, fmt::format("'{}' has a {} value, which is not a numeric reading; skipped", name,
                               rec.contains("vs") ? "string" : "data"));
      continue;
    } else {
      const Json* s = rec.find("s");
      if (!s->is_number()) {
        fail(device, fmt::format("'s' of '{}' must be a number", name));
        continue;
      }
      r.value = base_sum + s->as_double();
    }
    if (!std::isfinite(r.value)) {
      fail(device, fmt::format("the value of '{}' is not finite", name));
      continue;
    }
    r.unit = rec.contains("u") ? rec.get_string("u") : base_unit;
    double t = base_time;
    if (const Json* tv = rec.find("t"); tv != nullptr) {
      if (!tv->is_number()) {
        fail(device, fmt::format("'t' of '{}' must be a number", name));
        continue;
      }
      t += tv->as_double();
    }
    if (t < kSenmlRelativeLimit) {
      r.time = received_at + static_cast<TimeMs>(std::llround(t * 1000));
    } else {
      r.time = static_cast<TimeMs>(std::llround(t * 1000));
    }
    out.readings.push_back(std::move(r));
  }
  return out;
}

DecodedPayload decode_chirpstack_uplink(std::string_view body, const DeviceResolver& resolver,
                                        const CodecCatalog& codecs, TimeMs received_at) {
  auto j = Json::parse(body);
  if (!j.ok()) return parse_error({}, "ChirpStack uplink event", j.status());
  return decode_chirpstack_uplink_parsed(*j, resolver, codecs, received_at);
}

DecodedPayload decode_chirpstack_uplink_parsed(const Json& event, const DeviceResolver& resolver,
                                               const CodecCatalog& codecs, TimeMs received_at) {
  if (!event.is_object()) {
    DecodedPayload out;
    out.errors.push_back({"", "a ChirpStack uplink event must be a JSON object"});
    return out;
  }
  Uplink up;
  up.network = "ChirpStack";
  const Json* info = event.find("deviceInfo");
  if (info != nullptr) {
    up.ids.emplace_back("devEui", info->get_string("devEui"));
    up.ids.emplace_back("deviceName", info->get_string("deviceName"));
  }
  up.time = received_at;
  if (const Json* t = event.find("time"); t != nullptr && t->is_string()) {
    auto parsed = time_from_rfc3339(t->as_string());
    if (parsed.ok()) up.time = *parsed;
  }
  if (const Json* port = event.find("fPort"); port != nullptr && port->is_int()) {
    up.fport = static_cast<int>(port->as_int());
  }
  up.decoded = event.find("object");
  up.payload = event.find("data");
  return decode_uplink(up, resolver, codecs);
}

DecodedPayload decode_tts_uplink(std::string_view body, const DeviceResolver& resolver,
                                 const CodecCatalog& codecs, TimeMs received_at) {
  auto j = Json::parse(body);
  if (!j.ok()) return parse_error({}, "The Things Stack uplink message", j.status());
  return decode_tts_uplink_parsed(*j, resolver, codecs, received_at);
}

DecodedPayload decode_tts_uplink_parsed(const Json& message, const DeviceResolver& resolver,
                                        const CodecCatalog& codecs, TimeMs received_at) {
  DecodedPayload out;
  const Json* uplink = message.find("uplink_message");
  if (uplink == nullptr || !uplink->is_object()) {
    out.errors.push_back({"", "The Things Stack message has no 'uplink_message'"});
    return out;
  }
  Uplink up;
  up.network = "The Things Stack";
  if (const Json* ids = message.find("end_device_ids"); ids != nullptr) {
    up.ids.emplace_back("dev_eui", ids->get_string("dev_eui"));
    up.ids.emplace_back("device_id", ids->get_string("device_id"));
  }
  up.time = received_at;
  for (const Json* t : {uplink->find("received_at"), message.find("received_at")}) {
    if (t == nullptr || !t->is_string()) continue;
    auto parsed = time_from_rfc3339(t->as_string());
    if (parsed.ok()) {
      up.time = *parsed;
      break;
    }
  }
  if (const Json* port = uplink->find("f_port"); port != nullptr && port->is_int()) {
    up.fport = static_cast<int>(port->as_int());
  }
  up.decoded = uplink->find("decoded_payload");
  up.payload = uplink->find("frm_payload");
  return decode_uplink(up, resolver, codecs);
}

DecodedPayload decode_sigfox_callback(std::string_view body, const SigfoxMapping& mapping,
                                      const DeviceResolver& resolver, const CodecCatalog& codecs,
                                      TimeMs received_at) {
  auto j = Json::parse(body);
  if (!j.ok()) return parse_error({}, "Sigfox callback body", j.status());
  DecodedPayload out;
  if (!j->is_object()) {
    out.errors.push_back({"", "a Sigfox callback body must be a JSON object"});
    return out;
  }
  const Json* dev = member(*j, mapping.device_field);
  if (dev == nullptr || !(dev->is_string() || dev->is_int())) {
    out.errors.push_back(
        {"", fmt::format("Sigfox callback has no device id in '{}'", mapping.device_field)});
    return out;
  }
  const std::string sigfox_id = dev->is_string() ? dev->as_string() : std::to_string(dev->as_int());
  std::optional<ResolvedDevice> device = resolver ? resolver(sigfox_id) : std::nullopt;
  if (!device) {
    out.errors.push_back(
        {"", fmt::format("Sigfox callback from an unknown device (id '{}' not registered)",
                         sigfox_id)});
    return out;
  }
  TimeMs time = received_at;
  if (const Json* t = member(*j, mapping.time_field); t != nullptr) {
    double seconds = 0;
    bool ok = false;
    if (t->is_number()) {
      seconds = t->as_double();
      ok = std::isfinite(seconds);
    } else if (t->is_string() && !t->as_string().empty()) {
      char* end = nullptr;
      seconds = std::strtod(t->as_string().c_str(), &end);
      ok = end != nullptr && *end == '\0' && std::isfinite(seconds);
    }
    if (!ok) {
      out.errors.push_back(
          {device->device_id, fmt::format("Sigfox callback of device '{}': '{}' is not epoch "
                                          "seconds",
                                          device->device_id, mapping.time_field)});
      return out;
    }
    time = static_cast<TimeMs>(std::llround(seconds * 1000));
  }
  const Json* data = member(*j, mapping.data_field);
  if (data == nullptr || !data->is_string()) {
    out.errors.push_back(
        {device->device_id, fmt::format("Sigfox callback of device '{}' has no hex payload in '{}'",
                                        device->device_id, mapping.data_field)});
    return out;
  }
  auto bytes = crypto::from_hex(data->as_string());
  if (!bytes.ok()) {
    out.errors.push_back(
        {device->device_id,
         fmt::format("Sigfox callback of device '{}': '{}' is not hex: {}", device->device_id,
                     mapping.data_field, bytes.status().message())});
    return out;
  }
  std::string codec = device->codec;
  if (!mapping.codec_field.empty()) {
    if (const Json* c = member(*j, mapping.codec_field); c != nullptr && c->is_string()) {
      codec = c->as_string();
    }
  }
  decode_binary(*device, codecs, codec, *bytes, std::nullopt, time, out);
  return out;
}

void append_object_readings(std::string_view device_id, const Json& object, TimeMs time,
                            std::vector<Reading>& out) {
  if (object.is_object()) flatten(device_id, object, {}, time, out);
}

}  // namespace civicbus::fleet

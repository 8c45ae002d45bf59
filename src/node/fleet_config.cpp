// The `fleet:` section of the node's YAML: fills fleet::FleetOptions (docs/CONFIG.md,
// docs/fleet.md). Each field is checked here with its line; FleetOptions::validate() and the
// device type parser check what spans fields.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "civicbus/core/time_zone.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "node/config_loader.hpp"

namespace civicbus::config_detail {

Status Loader::load_fleet(const Entry& e, NodeOptions& out) {
  fleet::FleetOptions o;
  bool enabled = true;
  if (e.value.IsNull()) {
    out.fleet = std::move(o);  // `fleet:` alone runs the fleet on its defaults
    return {};
  }
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f,
      fields(e.value, "'fleet'", "in fleet",
             {"enabled", "time_zone", "retention", "max_future_skew", "device_types",
              "certificates", "mqtt", "sigfox", "reading_events", "tick_interval", "edge", "api"}));
  if (const Entry* v = f.get("enabled")) {
    CIVICBUS_ASSIGN_OR_RETURN(enabled, read_bool(*v));
  }
  if (const Entry* v = f.get("time_zone")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.time_zone, read_string(*v));
    if (auto zone = TimeZone::load(o.time_zone); !zone.ok()) {
      return fail(v->value, zone.status().message());
    }
  }
  if (const Entry* v = f.get("retention")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields r, fields(v->value, "'fleet.retention'", "in fleet.retention",
                                               {"raw", "5m", "1h", "1d"}));
    if (const Entry* x = r.get("raw")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.raw_retention, read_duration(*x));
    }
    if (const Entry* x = r.get("5m")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.retention_5m, read_duration(*x));
    }
    if (const Entry* x = r.get("1h")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.retention_1h, read_duration(*x));
    }
    if (const Entry* x = r.get("1d")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.retention_1d, read_duration(*x));
    }
  }
  if (const Entry* v = f.get("max_future_skew")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.max_future_skew, read_duration(*v));
  }
  if (const Entry* v = f.get("tick_interval")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.tick_interval, read_duration(*v));
    if (o.tick_interval.count() < 10)
      return fail(v->value, "'tick_interval' must be at least 10ms");
  }
  if (const Entry* v = f.get("device_types")) {
    // Inline (a YAML list in the JSON form of data/fleet/device_types.json) or a .json file.
    CIVICBUS_ASSIGN_OR_RETURN(Json types, read_json(*v));
    if (!types.is_array()) {
      return fail(v->value,
                  "'fleet.device_types' must be a list of device types (or a .json file "
                  "holding one)");
    }
    for (std::size_t i = 0; i < types.as_array().size(); ++i) {
      auto t =
          fleet::parse_device_type(types.as_array()[i], fmt::format("fleet.device_types[{}]", i));
      if (!t.ok()) return fail(v->value, t.status().message());
      o.device_types.push_back(std::move(*t));
    }
  }
  if (const Entry* v = f.get("certificates")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields c,
                              fields(v->value, "'fleet.certificates'", "in fleet.certificates",
                                     {"enabled", "ca_common_name", "ca_organization"}));
    if (const Entry* x = c.get("enabled")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.issue_certificates, read_bool(*x));
    }
    if (const Entry* x = c.get("ca_common_name")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.ca_common_name, read_string(*x));
    }
    if (const Entry* x = c.get("ca_organization")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.ca_organization, read_string(*x));
    }
  }
  if (const Entry* v = f.get("mqtt")) {
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields m, fields(v->value, "'fleet.mqtt'", "in fleet.mqtt",
                         {"server", "client_id", "username", "password", "device_prefix",
                          "chirpstack_prefix", "tts_prefix"}));
    fleet::FleetMqttOptions mqtt;
    const Entry* server = m.get("server");
    if (server == nullptr) return fail(v->value, "'fleet.mqtt' needs 'server' (tcp://host:port)");
    CIVICBUS_ASSIGN_OR_RETURN(mqtt.server_uri, read_string(*server));
    if (!mqtt.server_uri.starts_with("tcp://") && !mqtt.server_uri.starts_with("mqtt://")) {
      return fail(
          server->value,
          fmt::format("'fleet.mqtt.server' must be tcp://host:port; got '{}'", mqtt.server_uri));
    }
    if (const Entry* x = m.get("client_id")) {
      CIVICBUS_ASSIGN_OR_RETURN(mqtt.client_id, read_string(*x));
    }
    if (const Entry* x = m.get("username")) {
      CIVICBUS_ASSIGN_OR_RETURN(mqtt.username, read_string(*x));
    }
    if (const Entry* x = m.get("password")) {
      CIVICBUS_ASSIGN_OR_RETURN(mqtt.password, read_secret(x->value, "fleet.mqtt.password"));
    }
    if (const Entry* x = m.get("device_prefix")) {
      CIVICBUS_ASSIGN_OR_RETURN(mqtt.device_prefix, read_string(*x));
    }
    if (const Entry* x = m.get("chirpstack_prefix")) {
      CIVICBUS_ASSIGN_OR_RETURN(mqtt.chirpstack_prefix, read_string(*x));
    }
    if (const Entry* x = m.get("tts_prefix")) {
      CIVICBUS_ASSIGN_OR_RETURN(mqtt.tts_prefix, read_string(*x));
    }
    o.mqtt = std::move(mqtt);
  }
  if (const Entry* v = f.get("sigfox")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields s, fields(v->value, "'fleet.sigfox'", "in fleet.sigfox",
                                               {"device_field", "data_field", "time_field"}));
    if (const Entry* x = s.get("device_field")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.sigfox_device_field, read_string(*x));
    }
    if (const Entry* x = s.get("data_field")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.sigfox_data_field, read_string(*x));
    }
    if (const Entry* x = s.get("time_field")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.sigfox_time_field, read_string(*x));
    }
  }
  if (const Entry* v = f.get("reading_events")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields r,
                              fields(v->value, "'fleet.reading_events'", "in fleet.reading_events",
                                     {"mode", "per_second", "per_event"}));
    if (const Entry* x = r.get("mode")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto mode, read_choice(*x, {"batched", "off"}));
      o.reading_events =
          mode == "off" ? fleet::ReadingEvents::kOff : fleet::ReadingEvents::kBatched;
    }
    if (const Entry* x = r.get("per_second")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 0, 10'000'000));
      o.reading_events_per_second = static_cast<std::size_t>(n);
    }
    if (const Entry* x = r.get("per_event")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 1, 100'000));
      o.readings_per_event = static_cast<std::size_t>(n);
    }
  }
  if (const Entry* v = f.get("edge")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields ed,
                              fields(v->value, "'fleet.edge'", "in fleet.edge",
                                     {"id", "buffer", "uplink", "api_key", "max_batch"}));
    fleet::FleetEdgeOptions edge;
    const Entry* id = ed.get("id");
    const Entry* uplink = ed.get("uplink");
    if (id == nullptr || uplink == nullptr) {
      return fail(v->value,
                  "'fleet.edge' needs 'id' (this edge's name) and 'uplink' (the "
                  "central node's gateway, host:port)");
    }
    CIVICBUS_ASSIGN_OR_RETURN(edge.edge_id, read_string(*id));
    CIVICBUS_ASSIGN_OR_RETURN(edge.uplink, read_string(*uplink));
    if (const Entry* x = ed.get("buffer")) {
      CIVICBUS_ASSIGN_OR_RETURN(edge.buffer_path, read_string(*x));
      edge.buffer_path = resolve(edge.buffer_path);
    }
    if (const Entry* x = ed.get("api_key")) {
      CIVICBUS_ASSIGN_OR_RETURN(edge.api_key, read_secret(x->value, "fleet.edge.api_key"));
    }
    if (const Entry* x = ed.get("max_batch")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 1, 100'000));
      edge.max_batch = static_cast<std::size_t>(n);
    }
    o.edge = std::move(edge);
  }
  if (const Entry* v = f.get("api")) {
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields a, fields(v->value, "'fleet.api'", "in fleet.api", {"prefix", "auth", "groups"}));
    if (const Entry* x = a.get("prefix")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.api_prefix, read_string(*x));
    }
    if (const Entry* x = a.get("auth")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.api_auth, read_auth_methods(*x, "fleet.api"));
    }
    if (const Entry* x = a.get("groups")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.api_groups, read_string_list(*x));
      if (!o.api_groups.empty() && o.api_auth.empty()) {
        return fail(x->value,
                    "'fleet.api.groups' needs 'fleet.api.auth' (a public API has no "
                    "consumer to check)");
      }
    }
  }
  if (Status s = o.validate(); !s.ok()) return fail(e.value, s.message());
  if (enabled) {
    out.fleet = std::move(o);
  } else {
    out.fleet.reset();
  }
  return {};
}

}  // namespace civicbus::config_detail

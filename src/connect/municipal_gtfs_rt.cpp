// `gtfs_rt`: GTFS-realtime feeds (a protobuf FeedMessage) from a file or an http(s) URL,
// decoded by a small wire-format reader (no protobuf runtime) into three streams:
// trip_updates (one row per stop time update), vehicle_positions and alerts. The header
// timestamp is the cursor: a feed not newer than the committed state is skipped.
//
// Field numbers are those of gtfs-realtime.proto (package transit_realtime):
//   FeedMessage     1 header, 2 entity
//   FeedHeader      1 gtfs_realtime_version, 2 incrementality, 3 timestamp
//   FeedEntity      1 id, 2 is_deleted, 3 trip_update, 4 vehicle, 5 alert
//   TripUpdate      1 trip, 2 stop_time_update, 3 vehicle, 4 timestamp, 5 delay
//   StopTimeUpdate  1 stop_sequence, 2 arrival, 3 departure, 4 stop_id, 5 schedule_relationship
//   StopTimeEvent   1 delay, 2 time, 3 uncertainty
//   VehiclePosition 1 trip, 2 position, 3 current_stop_sequence, 4 current_status,
//                   5 timestamp, 6 congestion_level, 7 stop_id, 8 vehicle, 9 occupancy_status
//   Position        1 latitude (float), 2 longitude (float), 3 bearing (float),
//                   4 odometer (double), 5 speed (float)
//   TripDescriptor  1 trip_id, 2 start_time, 3 start_date, 4 schedule_relationship,
//                   5 route_id, 6 direction_id
//   VehicleDescriptor 1 id, 2 label, 3 license_plate
//   Alert           1 active_period, 5 informed_entity, 6 cause, 7 effect, 8 url,
//                   10 header_text, 11 description_text
//   TimeRange       1 start, 2 end;  EntitySelector 1 agency_id, 2 route_id, 3 route_type,
//                   4 trip, 5 stop_id;  TranslatedString 1 translation (1 text, 2 language)
#include <cstring>

#include "builtin_connectors.hpp"
#include "civicbus/http/client.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

Result<std::uint64_t> ProtoReader::varint() {
  std::uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) {
      return invalid_argument("protobuf: varint runs past the end at offset " +
                              std::to_string(pos_));
    }
    auto byte = static_cast<unsigned char>(data_[pos_++]);
    value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  return invalid_argument("protobuf: varint longer than 10 bytes at offset " +
                          std::to_string(pos_));
}

Result<std::optional<ProtoField>> ProtoReader::next() {
  if (pos_ >= data_.size()) return std::optional<ProtoField>();
  ProtoField f;
  f.offset = pos_;
  CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t tag, varint());
  f.number = static_cast<std::uint32_t>(tag >> 3);
  f.wire_type = static_cast<int>(tag & 7);
  if (f.number == 0 || (tag >> 3) > 0x1fffffff) {
    return invalid_argument("protobuf: invalid field number at offset " + std::to_string(f.offset));
  }
  auto need = [&](std::uint64_t n) -> Status {
    if (n > data_.size() - pos_) {
      return invalid_argument("protobuf: field " + std::to_string(f.number) + " at offset " +
                              std::to_string(f.offset) + " runs past the end of its message");
    }
    return Status();
  };
  switch (f.wire_type) {
    case 0: {
      CIVICBUS_ASSIGN_OR_RETURN(f.value, varint());
      break;
    }
    case 1:
    case 5: {
      std::size_t n = f.wire_type == 1 ? 8 : 4;
      CIVICBUS_RETURN_IF_ERROR(need(n));
      for (std::size_t i = 0; i < n; ++i) {
        f.value |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + i]))
                   << (8 * i);
      }
      pos_ += n;
      break;
    }
    case 2: {
      CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t len, varint());
      CIVICBUS_RETURN_IF_ERROR(need(len));
      f.bytes = data_.substr(pos_, static_cast<std::size_t>(len));
      pos_ += static_cast<std::size_t>(len);
      break;
    }
    default:
      return invalid_argument("protobuf: field " + std::to_string(f.number) + " at offset " +
                              std::to_string(f.offset) + " has wire type " +
                              std::to_string(f.wire_type) + " (groups are not supported)");
  }
  return std::optional<ProtoField>(f);
}

namespace {

// Walks one message, calling `on(field)` for every field; errors get the message path.
template <typename F>
Status each_field(std::string_view bytes, const std::string& path, F&& on) {
  ProtoReader reader(bytes);
  while (true) {
    auto next = reader.next();
    if (!next.ok()) return next.status().with_context("gtfs-realtime " + path);
    if (!*next) return Status();
    CIVICBUS_RETURN_IF_ERROR(on(**next));
  }
}

Status expect(const ProtoField& f, int wire_type, const std::string& path, const char* name) {
  if (f.wire_type == wire_type) return Status();
  return invalid_argument("gtfs-realtime " + path + "." + name + " (field " +
                          std::to_string(f.number) + " at offset " + std::to_string(f.offset) +
                          "): wire type " + std::to_string(f.wire_type) + ", expected " +
                          std::to_string(wire_type));
}

float as_float(std::uint64_t v) {
  auto bits = static_cast<std::uint32_t>(v);
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

double as_double(std::uint64_t v) {
  double out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

Json signed32(std::uint64_t v) {
  return Json(static_cast<std::int64_t>(static_cast<std::int32_t>(v)));
}
Json signed64(std::uint64_t v) {
  return Json(static_cast<std::int64_t>(v));
}
Json unsigned64(std::uint64_t v) {
  return Json(static_cast<unsigned long long>(v));
}

// Reads the fields of a TripDescriptor into `row` (columns trip_id, route_id, ...).
Status trip_descriptor(std::string_view bytes, const std::string& path, Json& row) {
  return each_field(bytes, path, [&](const ProtoField& f) -> Status {
    static const char* kStrings[] = {nullptr,      "trip_id", "start_time",
                                     "start_date", nullptr,   "route_id"};
    if (f.number == 1 || f.number == 2 || f.number == 3 || f.number == 5) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, kStrings[f.number]));
      row.set(kStrings[f.number], std::string(f.bytes));
    } else if (f.number == 4) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "schedule_relationship"));
      row.set("trip_schedule_relationship", signed32(f.value));
    } else if (f.number == 6) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "direction_id"));
      row.set("direction_id", signed32(f.value));
    }
    return Status();
  });
}

Status vehicle_descriptor(std::string_view bytes, const std::string& path, Json& row) {
  return each_field(bytes, path, [&](const ProtoField& f) -> Status {
    static const char* kNames[] = {nullptr, "vehicle_id", "vehicle_label", "license_plate"};
    if (f.number >= 1 && f.number <= 3) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, kNames[f.number]));
      row.set(kNames[f.number], std::string(f.bytes));
    }
    return Status();
  });
}

Status stop_time_event(std::string_view bytes, const std::string& path, const std::string& prefix,
                       Json& row) {
  return each_field(bytes, path, [&](const ProtoField& f) -> Status {
    if (f.number == 1) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "delay"));
      row.set(prefix + "_delay", signed32(f.value));
    } else if (f.number == 2) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "time"));
      row.set(prefix + "_time", signed64(f.value));
    } else if (f.number == 3) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "uncertainty"));
      row.set(prefix + "_uncertainty", signed32(f.value));
    }
    return Status();
  });
}

// The first translation's text (feeds usually carry one; the language is kept beside it).
Status translated_string(std::string_view bytes, const std::string& path, Json& out) {
  return each_field(bytes, path, [&](const ProtoField& f) -> Status {
    if (f.number != 1) return Status();
    CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "translation"));
    Json t = Json::object();
    CIVICBUS_RETURN_IF_ERROR(
        each_field(f.bytes, path + ".translation", [&](const ProtoField& g) -> Status {
          if (g.number == 1 || g.number == 2) {
            CIVICBUS_RETURN_IF_ERROR(
                expect(g, 2, path + ".translation", g.number == 1 ? "text" : "language"));
            t.set(g.number == 1 ? "text" : "language", std::string(g.bytes));
          }
          return Status();
        }));
    if (out.is_null()) out = t.get_string("text");
    return Status();
  });
}

Json base_row(const std::string& entity_id, const GtfsRtFeed& feed) {
  Json row = Json::object({{"entity_id", entity_id}});
  row.set("feed_timestamp", feed.timestamp ? Json(*feed.timestamp) : Json());
  return row;
}

Status trip_update(std::string_view bytes, const std::string& path, const std::string& id,
                   GtfsRtFeed& feed) {
  Json common = base_row(id, feed);
  std::vector<std::string_view> updates;
  CIVICBUS_RETURN_IF_ERROR(each_field(bytes, path, [&](const ProtoField& f) -> Status {
    switch (f.number) {
      case 1:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "trip"));
        return trip_descriptor(f.bytes, path + ".trip", common);
      case 2:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "stop_time_update"));
        updates.push_back(f.bytes);
        return Status();
      case 3:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "vehicle"));
        return vehicle_descriptor(f.bytes, path + ".vehicle", common);
      case 4:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "timestamp"));
        common.set("timestamp", unsigned64(f.value));
        return Status();
      case 5:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "delay"));
        common.set("trip_delay", signed32(f.value));
        return Status();
      default:
        return Status();
    }
  }));
  if (updates.empty()) {
    feed.trip_updates.push_back(std::move(common));
    return Status();
  }
  for (std::size_t i = 0; i < updates.size(); ++i) {
    std::string p = path + ".stop_time_update[" + std::to_string(i) + "]";
    Json row = common;
    CIVICBUS_RETURN_IF_ERROR(each_field(updates[i], p, [&](const ProtoField& f) -> Status {
      switch (f.number) {
        case 1:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 0, p, "stop_sequence"));
          row.set("stop_sequence", unsigned64(f.value & 0xffffffffu));
          return Status();
        case 2:
        case 3:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 2, p, f.number == 2 ? "arrival" : "departure"));
          return stop_time_event(f.bytes, p + (f.number == 2 ? ".arrival" : ".departure"),
                                 f.number == 2 ? "arrival" : "departure", row);
        case 4:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 2, p, "stop_id"));
          row.set("stop_id", std::string(f.bytes));
          return Status();
        case 5:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 0, p, "schedule_relationship"));
          row.set("stop_schedule_relationship", signed32(f.value));
          return Status();
        default:
          return Status();
      }
    }));
    feed.trip_updates.push_back(std::move(row));
  }
  return Status();
}

Status vehicle_position(std::string_view bytes, const std::string& path, const std::string& id,
                        GtfsRtFeed& feed) {
  Json row = base_row(id, feed);
  CIVICBUS_RETURN_IF_ERROR(each_field(bytes, path, [&](const ProtoField& f) -> Status {
    switch (f.number) {
      case 1:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "trip"));
        return trip_descriptor(f.bytes, path + ".trip", row);
      case 2: {
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "position"));
        std::string p = path + ".position";
        return each_field(f.bytes, p, [&](const ProtoField& g) -> Status {
          static const char* kNames[] = {nullptr,   "latitude", "longitude",
                                         "bearing", "odometer", "speed"};
          if (g.number < 1 || g.number > 5) return Status();
          int wire = g.number == 4 ? 1 : 5;
          CIVICBUS_RETURN_IF_ERROR(expect(g, wire, p, kNames[g.number]));
          row.set(kNames[g.number],
                  wire == 1 ? as_double(g.value) : static_cast<double>(as_float(g.value)));
          return Status();
        });
      }
      case 3:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "current_stop_sequence"));
        row.set("current_stop_sequence", unsigned64(f.value & 0xffffffffu));
        return Status();
      case 4:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "current_status"));
        row.set("current_status", signed32(f.value));
        return Status();
      case 5:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "timestamp"));
        row.set("timestamp", unsigned64(f.value));
        return Status();
      case 6:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "congestion_level"));
        row.set("congestion_level", signed32(f.value));
        return Status();
      case 7:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "stop_id"));
        row.set("stop_id", std::string(f.bytes));
        return Status();
      case 8:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "vehicle"));
        return vehicle_descriptor(f.bytes, path + ".vehicle", row);
      case 9:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "occupancy_status"));
        row.set("occupancy_status", signed32(f.value));
        return Status();
      default:
        return Status();
    }
  }));
  feed.vehicle_positions.push_back(std::move(row));
  return Status();
}

Status alert(std::string_view bytes, const std::string& path, const std::string& id,
             GtfsRtFeed& feed) {
  Json row = base_row(id, feed);
  Json periods = Json::array();
  Json informed = Json::array();
  Json header, description, url;
  CIVICBUS_RETURN_IF_ERROR(each_field(bytes, path, [&](const ProtoField& f) -> Status {
    switch (f.number) {
      case 1: {
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "active_period"));
        Json period = Json::object();
        std::string p = path + ".active_period";
        CIVICBUS_RETURN_IF_ERROR(each_field(f.bytes, p, [&](const ProtoField& g) -> Status {
          if (g.number != 1 && g.number != 2) return Status();
          CIVICBUS_RETURN_IF_ERROR(expect(g, 0, p, g.number == 1 ? "start" : "end"));
          period.set(g.number == 1 ? "start" : "end", unsigned64(g.value));
          return Status();
        }));
        periods.push_back(std::move(period));
        return Status();
      }
      case 5: {
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "informed_entity"));
        Json selector = Json::object();
        std::string p = path + ".informed_entity";
        CIVICBUS_RETURN_IF_ERROR(each_field(f.bytes, p, [&](const ProtoField& g) -> Status {
          if (g.number == 1 || g.number == 2 || g.number == 5) {
            const char* name = g.number == 1 ? "agency_id" : g.number == 2 ? "route_id" : "stop_id";
            CIVICBUS_RETURN_IF_ERROR(expect(g, 2, p, name));
            selector.set(name, std::string(g.bytes));
          } else if (g.number == 3) {
            CIVICBUS_RETURN_IF_ERROR(expect(g, 0, p, "route_type"));
            selector.set("route_type", signed32(g.value));
          } else if (g.number == 4) {
            CIVICBUS_RETURN_IF_ERROR(expect(g, 2, p, "trip"));
            Json trip = Json::object();
            CIVICBUS_RETURN_IF_ERROR(trip_descriptor(g.bytes, p + ".trip", trip));
            selector.set("trip", std::move(trip));
          }
          return Status();
        }));
        informed.push_back(std::move(selector));
        return Status();
      }
      case 6:
      case 7:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, f.number == 6 ? "cause" : "effect"));
        row.set(f.number == 6 ? "cause" : "effect", signed32(f.value));
        return Status();
      case 8:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "url"));
        return translated_string(f.bytes, path + ".url", url);
      case 10:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "header_text"));
        return translated_string(f.bytes, path + ".header_text", header);
      case 11:
        CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "description_text"));
        return translated_string(f.bytes, path + ".description_text", description);
      default:
        return Status();
    }
  }));
  row.set("header_text", header);
  row.set("description_text", description);
  row.set("url", url);
  row.set("active_start", periods.size() > 0 ? periods.as_array()[0].find("start") != nullptr
                                                   ? *periods.as_array()[0].find("start")
                                                   : Json()
                                             : Json());
  row.set("active_end", periods.size() > 0 ? periods.as_array()[0].find("end") != nullptr
                                                 ? *periods.as_array()[0].find("end")
                                                 : Json()
                                           : Json());
  row.set("active_periods", std::move(periods));
  row.set("informed_entities", std::move(informed));
  feed.alerts.push_back(std::move(row));
  return Status();
}

}  // namespace

Result<GtfsRtFeed> decode_gtfs_rt(std::string_view bytes) {
  GtfsRtFeed feed;
  std::vector<std::string_view> entities;
  bool has_header = false;
  CIVICBUS_RETURN_IF_ERROR(each_field(bytes, "FeedMessage", [&](const ProtoField& f) -> Status {
    if (f.number == 1) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 2, "FeedMessage", "header"));
      has_header = true;
      return each_field(f.bytes, "FeedMessage.header", [&](const ProtoField& g) -> Status {
        if (g.number == 1) {
          CIVICBUS_RETURN_IF_ERROR(expect(g, 2, "FeedMessage.header", "gtfs_realtime_version"));
          feed.version = std::string(g.bytes);
        } else if (g.number == 2) {
          CIVICBUS_RETURN_IF_ERROR(expect(g, 0, "FeedMessage.header", "incrementality"));
          feed.incrementality = static_cast<std::int64_t>(g.value);
        } else if (g.number == 3) {
          CIVICBUS_RETURN_IF_ERROR(expect(g, 0, "FeedMessage.header", "timestamp"));
          feed.timestamp = static_cast<std::int64_t>(g.value & 0x7fffffffffffffffULL);
        }
        return Status();
      });
    }
    if (f.number == 2) {
      CIVICBUS_RETURN_IF_ERROR(expect(f, 2, "FeedMessage", "entity"));
      entities.push_back(f.bytes);
    }
    return Status();
  }));
  if (!has_header) return invalid_argument("gtfs-realtime FeedMessage: no header (field 1)");
  // Entities are read after the header, wherever it sits, so rows carry its timestamp.
  for (std::size_t i = 0; i < entities.size(); ++i) {
    std::string path = "FeedMessage.entity[" + std::to_string(i) + "]";
    std::string id;
    bool deleted = false;
    std::string_view tu, vp, al;
    bool has_tu = false, has_vp = false, has_al = false;
    CIVICBUS_RETURN_IF_ERROR(each_field(entities[i], path, [&](const ProtoField& f) -> Status {
      switch (f.number) {
        case 1:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "id"));
          id = std::string(f.bytes);
          break;
        case 2:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 0, path, "is_deleted"));
          deleted = f.value != 0;
          break;
        case 3:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "trip_update"));
          tu = f.bytes;
          has_tu = true;
          break;
        case 4:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "vehicle"));
          vp = f.bytes;
          has_vp = true;
          break;
        case 5:
          CIVICBUS_RETURN_IF_ERROR(expect(f, 2, path, "alert"));
          al = f.bytes;
          has_al = true;
          break;
        default:
          break;
      }
      return Status();
    }));
    if (id.empty()) return invalid_argument("gtfs-realtime " + path + ": no id (field 1)");
    if (deleted) continue;  // a differential feed's deletion carries no row
    if (has_tu) CIVICBUS_RETURN_IF_ERROR(trip_update(tu, path + ".trip_update", id, feed));
    if (has_vp) CIVICBUS_RETURN_IF_ERROR(vehicle_position(vp, path + ".vehicle", id, feed));
    if (has_al) CIVICBUS_RETURN_IF_ERROR(alert(al, path + ".alert", id, feed));
  }
  return feed;
}

namespace {

struct StreamDef {
  const char* name;
  std::vector<std::pair<const char*, FieldType>> fields;
  std::vector<std::string> key;
};

const std::vector<StreamDef>& stream_defs() {
  using F = FieldType;
  static const std::vector<StreamDef> k = {
      {"trip_updates",
       {{"entity_id", F::kString},
        {"feed_timestamp", F::kInteger},
        {"trip_id", F::kString},
        {"route_id", F::kString},
        {"start_date", F::kString},
        {"start_time", F::kString},
        {"direction_id", F::kInteger},
        {"trip_schedule_relationship", F::kInteger},
        {"vehicle_id", F::kString},
        {"vehicle_label", F::kString},
        {"timestamp", F::kInteger},
        {"trip_delay", F::kInteger},
        {"stop_sequence", F::kInteger},
        {"stop_id", F::kString},
        {"arrival_time", F::kInteger},
        {"arrival_delay", F::kInteger},
        {"departure_time", F::kInteger},
        {"departure_delay", F::kInteger},
        {"stop_schedule_relationship", F::kInteger}},
       {"entity_id", "stop_sequence"}},
      {"vehicle_positions",
       {{"entity_id", F::kString},
        {"feed_timestamp", F::kInteger},
        {"trip_id", F::kString},
        {"route_id", F::kString},
        {"vehicle_id", F::kString},
        {"vehicle_label", F::kString},
        {"latitude", F::kNumber},
        {"longitude", F::kNumber},
        {"bearing", F::kNumber},
        {"speed", F::kNumber},
        {"odometer", F::kNumber},
        {"current_stop_sequence", F::kInteger},
        {"stop_id", F::kString},
        {"current_status", F::kInteger},
        {"timestamp", F::kInteger},
        {"congestion_level", F::kInteger},
        {"occupancy_status", F::kInteger}},
       {"entity_id"}},
      {"alerts",
       {{"entity_id", F::kString},
        {"feed_timestamp", F::kInteger},
        {"cause", F::kInteger},
        {"effect", F::kInteger},
        {"header_text", F::kString},
        {"description_text", F::kString},
        {"url", F::kString},
        {"active_start", F::kInteger},
        {"active_end", F::kInteger},
        {"active_periods", F::kJson},
        {"informed_entities", F::kJson}},
       {"entity_id"}},
  };
  return k;
}

class GtfsRtConnector : public Connector {
 public:
  GtfsRtConnector() {
    spec_.name = "gtfs_rt";
    spec_.title = "GTFS-realtime feed";
    spec_.description =
        "Decodes a GTFS-realtime FeedMessage (protobuf) from a file or an http(s) URL into "
        "trip_updates, vehicle_positions and alerts; the header timestamp is the cursor.";
    spec_.format_source = "GTFS Realtime reference (gtfs-realtime.proto, transit_realtime)";
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"properties",
         Json::object({{"path", Json::object({{"type", "string"}})},
                       {"url", Json::object({{"type", "string"}, {"pattern", "^https?://"}})}})},
        {"oneOf", Json::array({Json::object({{"required", Json::array({"path"})}}),
                               Json::object({{"required", Json::array({"url"})}})})},
    });
  }
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    CIVICBUS_ASSIGN_OR_RETURN(std::string bytes, fetch(context));
    return decode_gtfs_rt(bytes).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    std::vector<StreamSpec> out;
    for (const auto& d : stream_defs()) {
      StreamSpec s;
      s.name = d.name;
      for (const auto& [n, t] : d.fields) {
        s.fields.push_back({n, t, std::string_view(n) != "entity_id"});
      }
      s.primary_key = d.key;
      s.cursor_field = "feed_timestamp";
      out.push_back(std::move(s));
    }
    return out;
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    CIVICBUS_ASSIGN_OR_RETURN(std::string bytes, fetch(context));
    CIVICBUS_ASSIGN_OR_RETURN(GtfsRtFeed feed, decode_gtfs_rt(bytes));
    std::int64_t budget = request.max_records;
    for (const auto& d : stream_defs()) {
      if (!wants_stream(request, d.name)) continue;
      std::int64_t ts = feed.timestamp.value_or(0);
      if (const Json* state = request.stream_state(d.name)) {
        const Json* cursor = state->find("cursor");
        // The same or an older feed has nothing new: producers serve one feed for seconds.
        if (cursor != nullptr && cursor->is_number() && feed.timestamp && ts <= cursor->as_int()) {
          continue;
        }
      }
      const std::vector<Json>& rows = d.name == std::string_view("trip_updates") ? feed.trip_updates
                                      : d.name == std::string_view("vehicle_positions")
                                          ? feed.vehicle_positions
                                          : feed.alerts;
      std::vector<std::string> columns;
      for (const auto& [n, t] : d.fields) columns.emplace_back(n);
      std::vector<Record> records;
      std::int64_t position = 0;
      for (const auto& row : rows) {
        Record r;
        r.position = ++position;
        for (const auto& c : columns) {
          const Json* v = row.find(c);
          r.values.push_back(v != nullptr ? *v : Json());
        }
        records.push_back(std::move(r));
      }
      Json state = feed.timestamp ? Json::object({{"cursor", ts}}) : Json();
      CIVICBUS_RETURN_IF_ERROR(
          emit_records(out, request, d.name, columns, std::move(records), budget, state));
    }
    return Status();
  }

 private:
  Result<std::string> fetch(const ConnectorContext& context) {
    std::string path = context.config.get_string("path");
    if (!path.empty()) return read_file_bytes(path);
    std::string url = context.config.get_string("url");
    bool tls = url.rfind("https://", 0) == 0;
    std::string rest = url.substr(tls ? 8 : 7);
    auto slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
    if (authority.empty()) return invalid_argument("gtfs_rt url '" + url + "' has no host");
    // "host" alone means the scheme's port.
    bool has_port = authority.back() != ']' && authority.find(':') != std::string::npos &&
                    authority.find(':') == authority.rfind(':');
    if (authority.front() == '[') has_port = authority.find("]:") != std::string::npos;
    if (!has_port) authority += tls ? ":443" : ":80";
    if (client_ == nullptr) {
      http::HttpClientOptions options;
      options.request_timeout = context.timeout;
      options.max_response_body_bytes = 64 * 1024 * 1024;
      if (tls) options.tls = http::TlsClientOptions{};
      CIVICBUS_ASSIGN_OR_RETURN(client_, http::HttpClient::create(std::move(options)));
    }
    http::HttpRequest request;
    request.method = "GET";
    request.target = target;
    request.headers.add("Accept", "application/x-protobuf, application/octet-stream");
    auto response = client_->send(authority, std::move(request));
    if (!response.ok()) return response.status().with_context("gtfs_rt GET " + url);
    if (response->status != 200) {
      return unavailable("gtfs_rt GET " + url + " answered " + std::to_string(response->status));
    }
    return std::move(response->body);
  }

  ConnectorSpec spec_;
  std::unique_ptr<http::HttpClient> client_;  // created on first fetch of a URL
};

}  // namespace

std::unique_ptr<Connector> make_gtfs_rt_connector() {
  return std::make_unique<GtfsRtConnector>();
}

}  // namespace civicbus::connect::detail

// `gtfs`: a GTFS static (General Transit Feed Specification, Schedule) feed, from a .zip or
// an unpacked folder. One stream per file present (agency, stops, routes, trips, stop_times,
// calendar, calendar_dates, and the optional files); values get the types of the GTFS
// reference (dates YYYYMMDD become ISO dates; times stay text, since they pass 24:00:00).
// Required files and each file's required fields are checked.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>

#include "builtin_connectors.hpp"
#include "civicbus/core/csv.hpp"
#include "municipal_formats.hpp"
#include "zip_reader.hpp"

namespace civicbus::connect::detail {

namespace {

struct GtfsFile {
  const char* stream;
  bool required;
  std::vector<std::string> required_fields;
  std::vector<std::string> primary_key;
};

const std::vector<GtfsFile>& gtfs_files() {
  static const std::vector<GtfsFile> k = {
      {"agency", true, {"agency_name", "agency_url", "agency_timezone"}, {"agency_id"}},
      {"stops", true, {"stop_id"}, {"stop_id"}},
      {"routes", true, {"route_id", "route_type"}, {"route_id"}},
      {"trips", true, {"route_id", "service_id", "trip_id"}, {"trip_id"}},
      {"stop_times", true, {"trip_id", "stop_sequence"}, {"trip_id", "stop_sequence"}},
      {"calendar",
       false,
       {"service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
        "start_date", "end_date"},
       {"service_id"}},
      {"calendar_dates", false, {"service_id", "date", "exception_type"}, {"service_id", "date"}},
      {"fare_attributes", false, {"fare_id", "price", "currency_type"}, {"fare_id"}},
      {"fare_rules", false, {"fare_id"}, {}},
      {"shapes",
       false,
       {"shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"},
       {"shape_id", "shape_pt_sequence"}},
      {"frequencies",
       false,
       {"trip_id", "start_time", "end_time", "headway_secs"},
       {"trip_id", "start_time"}},
      {"transfers", false, {}, {}},
      {"pathways", false, {"pathway_id"}, {"pathway_id"}},
      {"levels", false, {"level_id"}, {"level_id"}},
      {"feed_info", false, {"feed_publisher_name", "feed_publisher_url", "feed_lang"}, {}},
      {"translations", false, {}, {}},
      {"attributions", false, {}, {}},
  };
  return k;
}

FieldType gtfs_field_type(const std::string& f) {
  static const std::map<std::string, FieldType> k = {
      {"stop_lat", FieldType::kNumber},
      {"stop_lon", FieldType::kNumber},
      {"shape_pt_lat", FieldType::kNumber},
      {"shape_pt_lon", FieldType::kNumber},
      {"shape_dist_traveled", FieldType::kNumber},
      {"price", FieldType::kNumber},
      {"length", FieldType::kNumber},
      {"max_slope", FieldType::kNumber},
      {"level_index", FieldType::kNumber},
      {"route_type", FieldType::kInteger},
      {"direction_id", FieldType::kInteger},
      {"stop_sequence", FieldType::kInteger},
      {"location_type", FieldType::kInteger},
      {"wheelchair_boarding", FieldType::kInteger},
      {"wheelchair_accessible", FieldType::kInteger},
      {"bikes_allowed", FieldType::kInteger},
      {"pickup_type", FieldType::kInteger},
      {"drop_off_type", FieldType::kInteger},
      {"continuous_pickup", FieldType::kInteger},
      {"continuous_drop_off", FieldType::kInteger},
      {"timepoint", FieldType::kInteger},
      {"monday", FieldType::kInteger},
      {"tuesday", FieldType::kInteger},
      {"wednesday", FieldType::kInteger},
      {"thursday", FieldType::kInteger},
      {"friday", FieldType::kInteger},
      {"saturday", FieldType::kInteger},
      {"sunday", FieldType::kInteger},
      {"exception_type", FieldType::kInteger},
      {"payment_method", FieldType::kInteger},
      {"transfers", FieldType::kInteger},
      {"transfer_duration", FieldType::kInteger},
      {"shape_pt_sequence", FieldType::kInteger},
      {"headway_secs", FieldType::kInteger},
      {"exact_times", FieldType::kInteger},
      {"transfer_type", FieldType::kInteger},
      {"min_transfer_time", FieldType::kInteger},
      {"route_sort_order", FieldType::kInteger},
      {"pathway_mode", FieldType::kInteger},
      {"is_bidirectional", FieldType::kInteger},
      {"traversal_time", FieldType::kInteger},
      {"stair_count", FieldType::kInteger},
      {"start_date", FieldType::kDate},
      {"end_date", FieldType::kDate},
      {"date", FieldType::kDate},
      {"feed_start_date", FieldType::kDate},
      {"feed_end_date", FieldType::kDate},
  };
  auto it = k.find(f);
  return it == k.end() ? FieldType::kString : it->second;
}

Result<Json> convert(const std::string& value, FieldType type, const std::string& at,
                     const std::string& field) {
  if (value.empty()) return Json();
  auto bad = [&](const char* what) {
    return invalid_argument(at + ", field '" + field + "': '" + value + "' is not " + what);
  };
  switch (type) {
    case FieldType::kInteger: {
      long long n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size()) return bad("an integer");
      return Json(n);
    }
    case FieldType::kNumber: {
      double d = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
      if (ec != std::errc() || end != value.data() + value.size()) return bad("a number");
      return Json(d);
    }
    case FieldType::kDate: {
      if (value.size() != 8) return bad("a date YYYYMMDD");
      std::string iso = value.substr(0, 4) + "-" + value.substr(4, 2) + "-" + value.substr(6, 2);
      if (!parse_iso_date_days(iso)) return bad("a date YYYYMMDD");
      return Json(iso);
    }
    default:
      return Json(value);
  }
}

// Where the feed's files come from: a zip in memory or a folder.
class FeedSource {
 public:
  static Result<FeedSource> open(const std::string& path, std::uint64_t max_file_bytes) {
    FeedSource s;
    s.path_ = path;
    s.max_ = max_file_bytes;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return s;
    CIVICBUS_ASSIGN_OR_RETURN(std::string bytes, read_file_bytes(path));
    s.zip_bytes_ = std::make_shared<std::string>(std::move(bytes));
    auto archive = ZipArchive::open(*s.zip_bytes_);
    if (!archive.ok()) return archive.status().with_context("gtfs '" + path + "'");
    s.zip_ = std::make_shared<ZipArchive>(std::move(archive).value());
    return s;
  }

  bool has(const std::string& file) const {
    if (zip_) return zip_->find(file) != nullptr;
    std::error_code ec;
    return std::filesystem::is_regular_file(std::filesystem::path(path_) / file, ec);
  }

  Result<std::string> read(const std::string& file) const {
    if (zip_) {
      const ZipEntry* e = zip_->find(file);
      if (e == nullptr) return not_found("gtfs '" + path_ + "' has no " + file);
      auto data = zip_->read(*e, max_);
      if (!data.ok()) return data.status().with_context("gtfs '" + path_ + "'");
      return data;
    }
    return read_file_bytes((std::filesystem::path(path_) / file).string());
  }

 private:
  std::string path_;
  std::uint64_t max_ = 0;
  std::shared_ptr<std::string> zip_bytes_;  // the zip's view points into it
  std::shared_ptr<ZipArchive> zip_;
};

class GtfsConnector : public Connector {
 public:
  GtfsConnector() {
    spec_.name = "gtfs";
    spec_.title = "GTFS static transit feed";
    spec_.description =
        "Reads a GTFS Schedule feed (.zip or folder): one stream per file, typed by the GTFS "
        "reference; required files and fields are checked.";
    spec_.format_source = "GTFS Schedule reference (gtfs.org/schedule/reference)";
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"required", Json::array({"path"})},
        {"properties", Json::object({
                           {"path", Json::object({{"type", "string"}})},
                           {"max_file_bytes", Json::object({{"type", "integer"}, {"minimum", 1}})},
                       })},
    });
  }
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    return discover(context).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    CIVICBUS_ASSIGN_OR_RETURN(FeedSource feed, open(context));
    std::vector<StreamSpec> out;
    for (const auto& f : gtfs_files()) {
      std::string file = std::string(f.stream) + ".txt";
      if (!feed.has(file)) continue;
      CIVICBUS_ASSIGN_OR_RETURN(std::string text, feed.read(file));
      CsvReader reader(text);
      auto header = reader.next_record();
      if (!header.ok()) return header.status().with_context("gtfs " + file);
      StreamSpec s;
      s.name = f.stream;
      if (*header) {
        for (std::string name : (*header)->fields) {
          if (s.fields.empty() && name.rfind("\xEF\xBB\xBF", 0) == 0) name.erase(0, 3);
          bool required = std::find(f.required_fields.begin(), f.required_fields.end(), name) !=
                          f.required_fields.end();
          s.fields.push_back({name, gtfs_field_type(name), !required});
        }
      }
      for (const auto& k : f.primary_key) {
        if (s.field(k) != nullptr) s.primary_key.push_back(k);
      }
      if (s.primary_key.size() != f.primary_key.size()) s.primary_key.clear();
      out.push_back(std::move(s));
    }
    return out;
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    CIVICBUS_ASSIGN_OR_RETURN(FeedSource feed, open(context));
    std::int64_t budget = request.max_records;
    for (const auto& f : gtfs_files()) {
      std::string file = std::string(f.stream) + ".txt";
      if (!wants_stream(request, f.stream) || !feed.has(file)) continue;
      if (out.cancelled()) return cancelled("gtfs read cancelled");
      CIVICBUS_ASSIGN_OR_RETURN(std::string text, feed.read(file));
      auto table = parse_csv(text);
      if (!table.ok()) return table.status().with_context("gtfs " + file);
      std::vector<std::string> columns = table->header;
      if (!columns.empty() && columns[0].rfind("\xEF\xBB\xBF", 0) == 0) columns[0].erase(0, 3);
      std::vector<FieldType> types;
      for (const auto& c : columns) types.push_back(gtfs_field_type(c));
      std::vector<Record> rows;
      for (const auto& rec : table->records) {
        std::string at = file + " line " + std::to_string(rec.line);
        Record r;
        r.position = static_cast<std::int64_t>(rec.line);
        for (std::size_t i = 0; i < columns.size(); ++i) {
          std::string v = i < rec.fields.size() ? rec.fields[i] : "";
          CIVICBUS_ASSIGN_OR_RETURN(Json value, convert(v, types[i], at, columns[i]));
          r.values.push_back(std::move(value));
        }
        for (const auto& req : f.required_fields) {
          auto it = std::find(columns.begin(), columns.end(), req);
          // A required column may be absent for conditionally required fields (agency_id):
          // only the listed ones must be filled.
          if (it == columns.end() ||
              r.values[static_cast<std::size_t>(it - columns.begin())].is_null()) {
            return invalid_argument("gtfs " + at + ", field '" + req +
                                    "': required by the GTFS reference but empty");
          }
        }
        rows.push_back(std::move(r));
      }
      CIVICBUS_RETURN_IF_ERROR(
          emit_records(out, request, f.stream, columns, std::move(rows), budget, Json()));
    }
    return Status();
  }

 private:
  Result<FeedSource> open(const ConnectorContext& context) {
    std::string path = context.config.get_string("path");
    auto max = static_cast<std::uint64_t>(context.config.get_int("max_file_bytes", 512 << 20));
    CIVICBUS_ASSIGN_OR_RETURN(FeedSource feed, FeedSource::open(path, max));
    for (const auto& f : gtfs_files()) {
      if (f.required && !feed.has(std::string(f.stream) + ".txt")) {
        return invalid_argument("gtfs '" + path + "' has no " + f.stream +
                                ".txt, which every feed must have");
      }
    }
    if (!feed.has("calendar.txt") && !feed.has("calendar_dates.txt")) {
      return invalid_argument(
          "gtfs '" + path + "' has neither calendar.txt nor calendar_dates.txt (one is required)");
    }
    return feed;
  }

  ConnectorSpec spec_;
};

}  // namespace

std::unique_ptr<Connector> make_gtfs_connector() {
  return std::make_unique<GtfsConnector>();
}

}  // namespace civicbus::connect::detail

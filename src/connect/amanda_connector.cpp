// The `amanda` connector: the permitting database of CSDC Systems' AMANDA as a source. AMANDA
// runs on Oracle or SQL Server; migrations start from an export of its tables into SQLite or
// PostgreSQL, which this connector reads (config `dialect`). The assumed schema (Folder,
// Property, People, FolderPeople and the Valid* code tables, keyed by *RSN) is
// data/connect/amanda_schema.sql, documented in docs/connectors.md ("AMANDA").
//
// Two streams, each a join the municipality would otherwise write by hand:
//   permits     Folder + Property (address) + ValidStatus / ValidSub (descriptions)
//   applicants  FolderPeople + People + ValidPeople (the person's role on the folder)
// both incremental by `changed_at` (the latest StampDate of the joined rows, so a changed
// address or phone number reads the row again) or, for exports without stamps, by folder_rsn.
// The queries use unquoted identifiers: SQLite matches them in any case and PostgreSQL folds
// them to the lower case an export without quoted names has.
#include <fmt/format.h>

#include <algorithm>
#include <mutex>

#include "builtin_connectors.hpp"
#include "civicbus/storage/database.hpp"
#include "sql_common.hpp"

namespace civicbus::connect {
namespace {

Json config_schema() {
  return Json::parse(R"json({
    "type": "object",
    "required": ["dialect"],
    "properties": {
      "dialect": {"enum": ["sqlite", "postgres"], "description": "where the AMANDA export lives"},
      "path": {"type": "string", "minLength": 1, "description": "sqlite: the export's file"},
      "uri": {"type": "string", "secret": true, "description": "postgres: libpq URI or connection string"},
      "host": {"type": "string"},
      "port": {"type": "integer", "minimum": 1, "maximum": 65535},
      "dbname": {"type": "string"},
      "user": {"type": "string"},
      "password": {"type": "string", "secret": true},
      "sslmode": {"enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]},
      "schema": {"type": "string", "description": "postgres: schema holding the AMANDA tables (default: the search path)"},
      "incremental_by": {"enum": ["changed_at", "folder_rsn"], "default": "changed_at", "description": "changed_at: the rows' StampDate (changes and new rows); folder_rsn: new folders only, for exports without stamps"},
      "folder_types": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "permits: only these FolderType codes (BP, DM, ...)"},
      "people_codes": {"type": "array", "items": {"type": "integer"}, "description": "applicants: only these FolderPeople.PeopleCode roles"}
    },
    "additionalProperties": false
  })json")
      .value();
}

std::string sql_literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

// The latest of two StampDates, NULLs ignored, and a fixed early date when both are NULL:
// a NULL cursor would sort first in SQLite and last in PostgreSQL, and could not be resumed
// after.
std::string latest_stamp(std::string_view a, std::string_view b) {
  return fmt::format(
      "COALESCE(CASE WHEN {1} > {0} OR {0} IS NULL THEN {1} ELSE {0} END, '1900-01-01 00:00:00')",
      a, b);
}

FieldSpec field(std::string name, FieldType type, bool nullable = true) {
  return FieldSpec{std::move(name), type, nullable};
}

struct AmandaStream {
  StreamSpec spec;
  std::string query;
};

AmandaStream permits_stream(const Json& config) {
  AmandaStream s;
  s.spec.name = "permits";
  s.spec.fields = {
      field("folder_rsn", FieldType::kInteger, false),
      field("folder_number", FieldType::kString),
      field("folder_type", FieldType::kString, false),
      field("sub_code", FieldType::kInteger),
      field("sub_type", FieldType::kString),
      field("status_code", FieldType::kInteger),
      field("status", FieldType::kString),
      field("folder_name", FieldType::kString),
      field("description", FieldType::kString),
      field("in_date", FieldType::kTimestamp),
      field("issue_date", FieldType::kTimestamp),
      field("expiry_date", FieldType::kTimestamp),
      field("final_date", FieldType::kTimestamp),
      field("property_rsn", FieldType::kInteger),
      field("house", FieldType::kString),
      field("street", FieldType::kString),
      field("street_type", FieldType::kString),
      field("street_direction", FieldType::kString),
      field("unit", FieldType::kString),
      field("city", FieldType::kString),
      field("province", FieldType::kString),
      field("postal_code", FieldType::kString),
      field("roll_number", FieldType::kString),
      field("changed_at", FieldType::kTimestamp, false),
  };
  s.spec.primary_key = {"folder_rsn"};
  s.query = fmt::format(
      "SELECT f.FolderRSN AS folder_rsn, f.CustomFolderNumber AS folder_number, "
      "f.FolderType AS folder_type, f.SubCode AS sub_code, vsub.SubDesc AS sub_type, "
      "f.StatusCode AS status_code, vs.StatusDesc AS status, f.FolderName AS folder_name, "
      "f.FolderDescription AS description, f.InDate AS in_date, f.IssueDate AS issue_date, "
      "f.ExpiryDate AS expiry_date, f.FinalDate AS final_date, f.PropertyRSN AS property_rsn, "
      "p.PropHouse AS house, p.PropStreet AS street, p.PropStreetType AS street_type, "
      "p.PropStreetDirection AS street_direction, p.PropUnit AS unit, p.PropCity AS city, "
      "p.PropProvince AS province, p.PropPostal AS postal_code, p.PropertyRoll AS roll_number, "
      "{} AS changed_at "
      "FROM Folder f LEFT JOIN Property p ON p.PropertyRSN = f.PropertyRSN "
      "LEFT JOIN ValidStatus vs ON vs.StatusCode = f.StatusCode "
      "LEFT JOIN ValidSub vsub ON vsub.SubCode = f.SubCode",
      latest_stamp("f.StampDate", "p.StampDate"));
  if (const Json* types = config.find("folder_types"); types != nullptr && types->size() > 0) {
    std::string list;
    for (const auto& t : types->as_array())
      list += (list.empty() ? "" : ", ") + sql_literal(t.as_string());
    s.query += fmt::format(" WHERE f.FolderType IN ({})", list);
  }
  return s;
}

AmandaStream applicants_stream(const Json& config) {
  AmandaStream s;
  s.spec.name = "applicants";
  s.spec.fields = {
      field("folder_rsn", FieldType::kInteger, false),
      field("people_rsn", FieldType::kInteger, false),
      field("role_code", FieldType::kInteger, false),
      field("role", FieldType::kString),
      field("title", FieldType::kString),
      field("first_name", FieldType::kString),
      field("last_name", FieldType::kString),
      field("organization", FieldType::kString),
      field("address", FieldType::kString),
      field("city", FieldType::kString),
      field("postal_code", FieldType::kString),
      field("phone", FieldType::kString),
      field("email", FieldType::kString),
      field("changed_at", FieldType::kTimestamp, false),
  };
  s.spec.primary_key = {"folder_rsn", "people_rsn", "role_code"};
  s.query = fmt::format(
      "SELECT fp.FolderRSN AS folder_rsn, fp.PeopleRSN AS people_rsn, fp.PeopleCode AS role_code, "
      "vp.PeopleDesc AS role, pe.NameTitle AS title, pe.NameFirst AS first_name, "
      "pe.NameLast AS last_name, pe.OrganizationName AS organization, "
      "pe.AddressLine1 AS address, pe.AddrCity AS city, pe.AddrPostal AS postal_code, "
      "pe.Phone1 AS phone, pe.EmailAddress AS email, {} AS changed_at "
      "FROM FolderPeople fp JOIN People pe ON pe.PeopleRSN = fp.PeopleRSN "
      "LEFT JOIN ValidPeople vp ON vp.PeopleCode = fp.PeopleCode",
      latest_stamp("fp.StampDate", "pe.StampDate"));
  if (const Json* codes = config.find("people_codes"); codes != nullptr && codes->size() > 0) {
    std::string list;
    for (const auto& c : codes->as_array())
      list += (list.empty() ? "" : ", ") + std::to_string(c.as_int());
    s.query += fmt::format(" WHERE fp.PeopleCode IN ({})", list);
  }
  return s;
}

std::vector<AmandaStream> amanda_streams(const Json& config) {
  std::vector<AmandaStream> streams = {permits_stream(config), applicants_stream(config)};
  const std::string cursor = config.get_string("incremental_by", "changed_at") == "folder_rsn"
                                 ? "folder_rsn"
                                 : "changed_at";
  for (auto& s : streams) s.spec.cursor_field = cursor;
  return streams;
}

// The tables the streams read, each with a column that must be there.
constexpr std::pair<const char*, const char*> kRequiredTables[] = {
    {"Folder", "FolderRSN"},       {"Property", "PropertyRSN"}, {"ValidStatus", "StatusCode"},
    {"ValidSub", "SubCode"},       {"People", "PeopleRSN"},     {"FolderPeople", "PeopleCode"},
    {"ValidPeople", "PeopleCode"},
};

class AmandaConnector final : public Connector {
 public:
  AmandaConnector() {
    spec_.name = "amanda";
    spec_.title = "AMANDA permitting database (CSDC Systems)";
    spec_.description =
        "Reads permits (Folder with its property and status) and applicants (People through "
        "FolderPeople) from an export of an AMANDA database into SQLite or PostgreSQL, "
        "incremental by the rows' StampDate or by FolderRSN.";
    spec_.format_source =
        "CSDC AMANDA data model (Folder/Property/People/FolderPeople, Valid* code tables); "
        "assumed columns in data/connect/amanda_schema.sql";
    spec_.is_source = true;
    spec_.is_sink = false;
    spec_.config_schema = config_schema();
  }

  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config));
    for (const auto& [table, column] : kRequiredTables) {
      Status probe = db->query(fmt::format("SELECT {} FROM {} WHERE 1 = 0", column, table), {},
                               [](const storage::Row&) { return false; });
      if (!probe.ok()) {
        return not_found(fmt::format(
            "AMANDA database '{}' has no table {} with column {} (see "
            "data/connect/amanda_schema.sql for the tables and columns the connector reads): {}",
            db->describe(), table, column, probe.message()));
      }
    }
    return Status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate(context.config));
    std::vector<StreamSpec> out;
    for (auto& s : amanda_streams(context.config)) out.push_back(std::move(s.spec));
    return out;
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate(context.config));
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config));
    std::int64_t budget = request.max_records;
    for (auto& stream : amanda_streams(context.config)) {
      if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                                stream.spec.name) == request.streams.end()) {
        continue;
      }
      detail::SqlReadPlan plan;
      plan.stream = std::move(stream.spec);
      plan.from = "(" + stream.query + ")";
      CIVICBUS_RETURN_IF_ERROR(detail::read_sql_stream(*db, plan, request, out, budget));
      if (budget == 0) break;
    }
    return Status();
  }

 private:
  static Status validate(const Json& config) {
    std::string dialect = config.get_string("dialect");
    if (dialect == "sqlite" && config.get_string("path").empty()) {
      return invalid_argument(
          "amanda connector: dialect 'sqlite' needs 'path' (the export's file)");
    }
    if (dialect != "sqlite" && dialect != "postgres") {
      return invalid_argument(
          fmt::format("amanda connector: 'dialect' is '{}'; use 'sqlite' or 'postgres'", dialect));
    }
    return Status();
  }

  // One connection per connector instance, reopened when the config names another database.
  Result<storage::Database*> database(const Json& config) {
    CIVICBUS_RETURN_IF_ERROR(validate(config));
    std::lock_guard lock(mutex_);
    const bool sqlite = config.get_string("dialect") == "sqlite";
    std::string target;
    if (sqlite) {
      target = "sqlite:" + config.get_string("path");
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(std::string connection, detail::postgres_connection_string(config));
      target = "postgres:" + connection + "\n" + config.get_string("schema");
    }
    if (db_ != nullptr && target == target_) return db_.get();
    if (sqlite) {
      storage::SqliteOptions options;
      options.path = config.get_string("path");
      options.create_if_missing = false;  // a source must not create an empty file
      options.verify_on_open = false;
      auto db = storage::open_sqlite(options);
      if (!db.ok()) return db.status().with_context("amanda connector");
      db_ = std::move(db).value();
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(db_, detail::open_postgres_for(config, "amanda"));
      if (std::string schema = config.get_string("schema"); !schema.empty()) {
        CIVICBUS_RETURN_IF_ERROR(
            db_->execute_script("SET search_path TO " + detail::quote_identifier(schema)));
      }
    }
    target_ = std::move(target);
    return db_.get();
  }

  ConnectorSpec spec_;
  std::mutex mutex_;
  std::unique_ptr<storage::Database> db_;
  std::string target_;  // may hold a password: never logged nor returned
};

}  // namespace

namespace detail {
Status add_amanda_connector(ConnectorCatalog& catalog) {
  return catalog.add([] { return std::make_unique<AmandaConnector>(); });
}
}  // namespace detail

}  // namespace civicbus::connect

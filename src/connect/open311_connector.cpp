// open311: Open311 GeoReport v2 as a source (services.json, requests.json
// incremental by updated_datetime) and a sink (POST requests.json,
// form-encoded, recording the service_request_id or token the server answers).
#include <filesystem>
#include <mutex>

#include "civicbus/storage/database.hpp"
#include "http_connectors.hpp"
#include "rest_client.hpp"

namespace civicbus::connect::detail {

namespace {

constexpr storage::Migration kSubmissionMigrations[] = {
    {1, "open311 submissions",
     "CREATE TABLE open311_submissions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
     "submitted_at TEXT "
     "NOT NULL, position INTEGER NOT NULL, service_request_id TEXT, token "
     "TEXT, service_notice "
     "TEXT);"},
};

// The POST fields GeoReport v2 defines; anything else in a record is ignored,
// except "attributes" ({code: value}), sent as attribute[code].
constexpr std::string_view kPostFields[] = {
    "service_code", "lat",         "long",       "address_string", "address_id",
    "email",        "device_id",   "account_id", "first_name",     "last_name",
    "phone",        "description", "media_url"};

// GeoReport errors are a list of {"code", "description"}.
std::string georeport_error_text(const std::string& body) {
  auto json = Json::parse(body);
  if (!json.ok()) return body.substr(0, 200);
  std::string out;
  const Json* list = json->is_array() ? &*json : json->find("errors");
  if (list == nullptr || !list->is_array()) return body.substr(0, 200);
  for (const auto& e : list->as_array()) {
    if (!out.empty()) out += "; ";
    out +=
        scalar_text(e.find("code") ? *e.find("code") : Json()) + " " + e.get_string("description");
  }
  return out;
}

ConnectorSpec open311_spec() {
  ConnectorSpec spec;
  spec.name = "open311";
  spec.title = "Open311 GeoReport v2";
  spec.description =
      "Reads services and service requests (incremental by updated_datetime) "
      "from an Open311 "
      "GeoReport v2 endpoint and submits service requests to it.";
  spec.format_source = "Open311 GeoReport v2 (wiki.open311.org/GeoReport_v2), JSON format";
  spec.is_source = true;
  spec.is_sink = true;
  auto str = [] { return Json::object({{"type", "string"}}); };
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"base_url"})},
       {"properties",
        Json::object({{"base_url", str()},
                      {"jurisdiction_id", str()},
                      {"api_key", Json::object({{"type", "string"}, {"secret", true}})},
                      {"status", str()},
                      {"service_code", str()},
                      {"start_date", str()},
                      {"end_date", str()},
                      {"incremental_param", str()},
                      {"retry", Json::object({{"type", "object"}})}})}});
  return spec;
}

class Open311Connector final : public Connector {
 public:
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    return fetch_list(session, "services.json", {}).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    auto text = [](const char* n) { return FieldSpec{n, FieldType::kString, true}; };
    StreamSpec services;
    services.name = "services";
    for (const char* n :
         {"service_code", "service_name", "description", "type", "keywords", "group"}) {
      services.fields.push_back(text(n));
    }
    services.fields.push_back(FieldSpec{"metadata", FieldType::kBoolean, true});
    services.primary_key = {"service_code"};
    StreamSpec requests;
    requests.name = "requests";
    for (const char* n : {"service_request_id", "status", "status_notes", "service_name",
                          "service_code", "description", "agency_responsible", "service_notice",
                          "address", "address_id", "zipcode", "media_url"}) {
      requests.fields.push_back(text(n));
    }
    for (const char* n : {"requested_datetime", "updated_datetime", "expected_datetime"}) {
      requests.fields.push_back(FieldSpec{n, FieldType::kTimestamp, true});
    }
    requests.fields.push_back(FieldSpec{"lat", FieldType::kNumber, true});
    requests.fields.push_back(FieldSpec{"long", FieldType::kNumber, true});
    requests.primary_key = {"service_request_id"};
    requests.cursor_field = "updated_datetime";
    return std::vector<StreamSpec>{std::move(services), std::move(requests)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    CIVICBUS_ASSIGN_OR_RETURN(auto streams,
                              streams_to_read(request, {"services", "requests"}, spec_.name));
    std::int64_t remaining = request.max_records;
    for (const auto& stream : streams) {
      StreamWriter writer(out, stream, request, &remaining);
      if (stream == "services") {
        CIVICBUS_ASSIGN_OR_RETURN(Json::Array services, fetch_list(session, "services.json", {}));
        std::int64_t position = 0;
        for (const auto& s : services) {
          CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(s, ++position));
          if (!added) break;
        }
        CIVICBUS_RETURN_IF_ERROR(writer.flush());
        continue;
      }
      const Json& c = context.config;
      std::string cursor = c.get_string("start_date");
      if (const Json* state = request.stream_state("requests")) {
        cursor = state->get_string("cursor", cursor);
      }
      QueryParams params;
      if (!cursor.empty())
        params.emplace_back(c.get_string("incremental_param", "start_date"), cursor);
      for (const char* key : {"end_date", "status", "service_code"}) {
        std::string v = c.get_string(key);
        if (!v.empty()) params.emplace_back(key, v);
      }
      CIVICBUS_ASSIGN_OR_RETURN(Json::Array requests, fetch_list(session, "requests.json", params));
      // GeoReport v2 has no order or paging: sort by updated_datetime so the
      // cursor only moves forward, and drop what the last run already had
      // (start_date is inclusive).
      std::stable_sort(requests.begin(), requests.end(), [](const Json& a, const Json& b) {
        return updated_key(a) < updated_key(b);
      });
      std::string newest = cursor;
      std::int64_t cursor_key = cursor.empty() ? INT64_MIN : parse_key(cursor);
      std::int64_t position = 0;
      for (const auto& r : requests) {
        ++position;
        std::int64_t key = updated_key(r);
        if (!cursor.empty() && key <= cursor_key) continue;
        CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(r, position));
        if (!added) break;
        newest = r.get_string("updated_datetime", newest);
      }
      CIVICBUS_RETURN_IF_ERROR(writer.flush());
      if (!newest.empty()) {
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint("requests", Json::object({{"cursor", newest}})));
      }
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    if (request.stream != "requests") {
      return invalid_argument("open311 writes only to stream 'requests', not '" + request.stream +
                              "'");
    }
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    if (session.api_key.empty()) {
      return failed_precondition("open311 needs 'api_key' to submit service requests");
    }
    std::unique_ptr<storage::Database> db;
    if (!context.work_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(context.work_dir, ec);
      storage::SqliteOptions options;
      options.path = (std::filesystem::path(context.work_dir) / "open311_submissions.db").string();
      CIVICBUS_ASSIGN_OR_RETURN(db, storage::open_sqlite(options));
      CIVICBUS_RETURN_IF_ERROR(storage::migrate(*db, "open311_submissions", kSubmissionMigrations));
    }
    Url url = session.base;
    url.target += "/requests.json";
    WriteResult result;
    std::vector<Open311Submission> submissions;
    for (const auto& record : batch.records) {
      Json object = batch.to_object(record);
      auto reject = [&](std::string field, std::string reason) {
        result.rejected.push_back(
            RowError{record.position, std::move(field), "", std::move(reason)});
      };
      if (object.get_string("service_code").empty()) {
        reject("service_code", "a GeoReport request needs a service_code");
        continue;
      }
      bool located = (object.find("lat") && !object.find("lat")->is_null() && object.find("long") &&
                      !object.find("long")->is_null()) ||
                     !object.get_string("address_string").empty() ||
                     !object.get_string("address_id").empty();
      if (!located) {
        reject("lat",
               "a GeoReport request needs lat and long, address_string "
               "or address_id");
        continue;
      }
      QueryParams form{{"api_key", session.api_key}};
      if (!session.jurisdiction.empty()) form.emplace_back("jurisdiction_id", session.jurisdiction);
      for (std::string_view field : kPostFields) {
        const Json* v = object.find(field);
        if (v != nullptr && !v->is_null()) form.emplace_back(std::string(field), scalar_text(*v));
      }
      if (const Json* attributes = object.find("attributes");
          attributes != nullptr && attributes->is_object()) {
        for (const auto& [code, value] : attributes->as_object()) {
          if (value.is_array()) {  // multivaluelist:
                                   // attribute[code][]=a&attribute[code][]=b
            for (const auto& item : value.as_array()) {
              form.emplace_back("attribute[" + code + "][]", scalar_text(item));
            }
          } else {
            form.emplace_back("attribute[" + code + "]", scalar_text(value));
          }
        }
      }
      CIVICBUS_ASSIGN_OR_RETURN(RestResponse response,
                                session.client->send("POST", url, {}, encode_query(form),
                                                     "application/x-www-form-urlencoded"));
      if (response.status / 100 != 2) {
        response.url = url.to_string();
        std::string detail = georeport_error_text(response.body);
        if (response.status == 400 || response.status == 404) {
          reject("",
                 "server refused the request (" + std::to_string(response.status) + "): " + detail);
          continue;
        }
        RestResponse shown = response;
        shown.body = detail;
        return status_from_response(shown, "open311 POST requests.json");
      }
      auto json = Json::parse(response.body);
      const Json* first = nullptr;
      if (json.ok() && json->is_array() && json->size() > 0) first = &json->as_array()[0];
      if (json.ok() && json->is_object()) first = &*json;
      if (first == nullptr) {
        return data_loss("open311 POST requests.json answered without a service request: " +
                         response.body.substr(0, 200));
      }
      Open311Submission submission{
          record.position,
          scalar_text(first->find("service_request_id") ? *first->find("service_request_id")
                                                        : Json()),
          first->get_string("token"), first->get_string("service_notice")};
      if (db != nullptr) {
        std::string now = format_rfc3339(context.now());
        CIVICBUS_RETURN_IF_ERROR(
            db->execute(
                  "INSERT INTO open311_submissions (submitted_at, position, "
                  "service_request_id, token, service_notice) VALUES (?, ?, ?, "
                  "?, ?)",
                  {std::string_view(now), submission.position,
                   std::string_view(submission.service_request_id),
                   std::string_view(submission.token), std::string_view(submission.service_notice)})
                .status());
      }
      submissions.push_back(std::move(submission));
      ++result.written;
    }
    std::lock_guard lock(mutex_);
    last_submissions_ = std::move(submissions);
    return result;
  }

  std::vector<Open311Submission> last_submissions() const {
    std::lock_guard lock(mutex_);
    return last_submissions_;
  }

 private:
  struct Session {
    Url base;
    std::string jurisdiction;
    std::string api_key;
    std::unique_ptr<RestClient> client;
  };

  static std::int64_t parse_key(const std::string& text) {
    auto t = parse_rfc3339(text);
    return t.ok() ? to_unix_micros(*t) : INT64_MIN;
  }
  static std::int64_t updated_key(const Json& r) {
    return parse_key(r.get_string("updated_datetime", r.get_string("requested_datetime")));
  }

  Result<Session> open(const ConnectorContext& context) {
    const Json& c = context.config;
    Session session;
    CIVICBUS_ASSIGN_OR_RETURN(std::string base, required_string(c, "base_url"));
    CIVICBUS_ASSIGN_OR_RETURN(session.base, Url::parse(base));
    std::string path = session.base.target.substr(0, session.base.target.find('?'));
    if (!path.empty() && path.back() == '/') path.pop_back();
    session.base.target = path;
    session.jurisdiction = c.get_string("jurisdiction_id");
    session.api_key = c.get_string("api_key");
    CIVICBUS_ASSIGN_OR_RETURN(RetryPolicy retry, RetryPolicy::from_json(c.find("retry")));
    CIVICBUS_ASSIGN_OR_RETURN(session.client, RestClient::create({}, retry, context.timeout));
    return session;
  }

  Result<Json::Array> fetch_list(Session& session, std::string_view resource, QueryParams params) {
    if (!session.jurisdiction.empty()) params.emplace_back("jurisdiction_id", session.jurisdiction);
    Url url = session.base;
    url.target += "/" + std::string(resource);
    CIVICBUS_ASSIGN_OR_RETURN(RestResponse response, session.client->send("GET", url, params));
    if (response.status / 100 != 2) {
      response.body = georeport_error_text(response.body);
      return status_from_response(response, "open311 GET " + std::string(resource));
    }
    auto json = Json::parse(response.body);
    if (!json.ok() || !json->is_array()) {
      return data_loss("open311 GET " + response.url + " did not answer a JSON list");
    }
    return std::move(json->as_array());
  }

  ConnectorSpec spec_ = open311_spec();
  mutable std::mutex mutex_;
  std::vector<Open311Submission> last_submissions_;
};

}  // namespace

std::unique_ptr<Connector> make_open311_connector() {
  return std::make_unique<Open311Connector>();
}

std::vector<Open311Submission> open311_last_submissions(const Connector& connector) {
  const auto* open311 = dynamic_cast<const Open311Connector*>(&connector);
  return open311 == nullptr ? std::vector<Open311Submission>{} : open311->last_submissions();
}

}  // namespace civicbus::connect::detail

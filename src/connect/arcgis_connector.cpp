// arcgis: an Esri ArcGIS REST feature (or map) service layer as a source. Layer
// metadata
// (`<service>/<layer>?f=json`) gives the fields and the object id;
// `<layer>/query` pages with resultOffset/resultRecordCount while the answer
// says exceededTransferLimit. Incremental by the layer's edit-date field.
#include <algorithm>
#include <ctime>

#include "http_connectors.hpp"
#include "rest_client.hpp"

namespace civicbus::connect::detail {

namespace {

struct EsriType {
  std::string_view esri;
  FieldType type;
};
constexpr EsriType kEsriTypes[] = {
    {"esriFieldTypeOID", FieldType::kInteger},
    {"esriFieldTypeSmallInteger", FieldType::kInteger},
    {"esriFieldTypeInteger", FieldType::kInteger},
    {"esriFieldTypeBigInteger", FieldType::kInteger},
    {"esriFieldTypeSingle", FieldType::kNumber},
    {"esriFieldTypeDouble", FieldType::kNumber},
    {"esriFieldTypeString", FieldType::kString},
    {"esriFieldTypeGUID", FieldType::kString},
    {"esriFieldTypeGlobalID", FieldType::kString},
    {"esriFieldTypeXML", FieldType::kString},
    {"esriFieldTypeDate", FieldType::kTimestamp},
    {"esriFieldTypeTimestampOffset", FieldType::kTimestamp},
    {"esriFieldTypeDateOnly", FieldType::kDate},
    {"esriFieldTypeTimeOnly", FieldType::kString},
    {"esriFieldTypeBlob", FieldType::kJson},
    {"esriFieldTypeRaster", FieldType::kJson},
};

FieldType esri_field_type(std::string_view esri) {
  for (const auto& t : kEsriTypes) {
    if (t.esri == esri) return t.type;
  }
  return FieldType::kJson;
}

// An ArcGIS date (milliseconds since the epoch) as the SQL literal its where
// clauses take, truncated to the second (the literal has no fraction): the
// boundary second is read again, never skipped.
std::string esri_timestamp_literal(std::int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &tm);
  return std::string("timestamp '") + buffer + "'";
}

// ArcGIS answers errors with HTTP 200 and {"error": {"code", "message",
// "details"}}.
Status esri_error(const Json& body, const std::string& what) {
  const Json* error = body.find("error");
  if (error == nullptr || !error->is_object()) return Status();
  std::int64_t code = error->get_int("code", 0);
  std::string message =
      what + ": ArcGIS error " + std::to_string(code) + ": " + error->get_string("message");
  if (const Json* details = error->find("details"); details != nullptr && details->is_array()) {
    for (const auto& d : details->as_array()) message += " " + scalar_text(d);
  }
  if (code == 498 || code == 499 || code == 401) {
    return unauthenticated(message + " (check 'token')");
  }
  if (code == 403) return permission_denied(message);
  if (code == 404) return not_found(message);
  if (code == 400) return invalid_argument(message);
  return unavailable(message);
}

struct Layer {
  std::string name;
  std::string object_id_field;
  std::string edit_date_field;
  std::string geometry_type;
  std::int64_t max_record_count = 1000;
  std::vector<FieldSpec> fields;  // attributes, then x/y or geometry
  std::vector<std::string> date_fields;
};

ConnectorSpec arcgis_spec() {
  ConnectorSpec spec;
  spec.name = "arcgis";
  spec.title = "Esri ArcGIS REST feature service layer";
  spec.description =
      "Reads the features of one layer of an ArcGIS REST "
      "feature or map service (paged with "
      "resultOffset/resultRecordCount, incremental by the "
      "layer's edit-date field).";
  spec.format_source =
      "Esri ArcGIS REST API: Layer (Feature Service) and Query (Feature "
      "Service/Layer), JSON response format";
  auto str = [] { return Json::object({{"type", "string"}}); };
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"service_url"})},
       {"properties",
        Json::object({{"service_url", str()},
                      {"layer", Json::object({{"type", "integer"}, {"minimum", 0}})},
                      {"where", str()},
                      {"out_fields", str()},
                      {"page_size", Json::object({{"type", "integer"}, {"minimum", 1}})},
                      {"token", Json::object({{"type", "string"}, {"secret", true}})},
                      {"edit_date_field", str()},
                      {"stream", str()},
                      {"retry", Json::object({{"type", "object"}})}})}});
  return spec;
}

class ArcgisConnector final : public Connector {
 public:
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    return load_layer(session).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    CIVICBUS_ASSIGN_OR_RETURN(Layer layer, load_layer(session));
    return std::vector<StreamSpec>{stream_spec(session, layer)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    CIVICBUS_ASSIGN_OR_RETURN(Layer layer, load_layer(session));
    StreamSpec stream = stream_spec(session, layer);
    CIVICBUS_ASSIGN_OR_RETURN(auto streams, streams_to_read(request, {stream.name}, spec_.name));
    if (streams.empty()) return Status();
    const Json& c = context.config;
    std::string where = c.get_string("where", "1=1");
    std::optional<std::int64_t> cursor;
    if (const Json* state = request.stream_state(stream.name)) {
      if (const Json* v = state->find("cursor"); v != nullptr && v->is_int()) cursor = v->as_int();
    }
    if (cursor && !layer.edit_date_field.empty()) {
      where =
          "(" + where + ") AND " + layer.edit_date_field + " >= " + esri_timestamp_literal(*cursor);
    }
    std::string order = layer.object_id_field + " ASC";
    if (!layer.edit_date_field.empty()) order = layer.edit_date_field + " ASC," + order;
    std::int64_t page_size =
        std::min(c.get_int("page_size", layer.max_record_count), layer.max_record_count);
    if (page_size <= 0) page_size = 1000;
    Url url = session.layer_url;
    url.target += "/query";
    std::int64_t remaining = request.max_records;
    StreamWriter writer(out, stream.name, request, &remaining);
    std::int64_t offset = 0;
    for (int page = 1;; ++page) {
      if (out.cancelled()) return cancelled("read of layer '" + layer.name + "' was cancelled");
      QueryParams params{{"where", where},
                         {"outFields", c.get_string("out_fields", "*")},
                         {"returnGeometry", "true"},
                         {"orderByFields", order},
                         {"resultOffset", std::to_string(offset)},
                         {"resultRecordCount", std::to_string(page_size)},
                         {"f", "json"}};
      add_token(session, params);
      auto body = session.client->get_json(url, params);
      if (!body.ok()) {
        return Status(body.status().code(), "layer '" + layer.name + "', page " +
                                                std::to_string(page) + ": " +
                                                body.status().message());
      }
      CIVICBUS_RETURN_IF_ERROR(esri_error(*body, "query of layer '" + layer.name + "'"));
      const Json* features = body->find("features");
      if (features == nullptr || !features->is_array()) {
        return data_loss("query of layer '" + layer.name + "' answered without 'features'");
      }
      for (const Json& feature : features->as_array()) {
        Json record = flatten(layer, feature);
        if (!layer.edit_date_field.empty()) {
          const Json* attributes = feature.find("attributes");
          const Json* edited =
              attributes != nullptr ? attributes->find(layer.edit_date_field) : nullptr;
          if (edited != nullptr && edited->is_int() && (!cursor || edited->as_int() > *cursor)) {
            page_cursor_ = edited->as_int();
          }
        }
        std::int64_t position = ++offset;
        CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(record, position));
        if (!added) break;
      }
      CIVICBUS_RETURN_IF_ERROR(writer.flush());
      if (page_cursor_ && !writer.limit_reached()) {
        cursor = page_cursor_;
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint(stream.name, Json::object({{"cursor", *cursor}})));
      }
      if (writer.limit_reached() || features->size() == 0 ||
          !body->get_bool("exceededTransferLimit")) {
        break;
      }
    }
    return Status();
  }

 private:
  struct Session {
    Url layer_url;
    std::string token;
    std::unique_ptr<RestClient> client;
  };

  Result<Session> open(const ConnectorContext& context) {
    const Json& c = context.config;
    Session session;
    CIVICBUS_ASSIGN_OR_RETURN(std::string service, required_string(c, "service_url"));
    CIVICBUS_ASSIGN_OR_RETURN(session.layer_url, Url::parse(service));
    std::string path = session.layer_url.target.substr(0, session.layer_url.target.find('?'));
    if (!path.empty() && path.back() == '/') path.pop_back();
    session.layer_url.target = path + "/" + std::to_string(c.get_int("layer", 0));
    session.token = c.get_string("token");
    CIVICBUS_ASSIGN_OR_RETURN(RetryPolicy retry, RetryPolicy::from_json(c.find("retry")));
    CIVICBUS_ASSIGN_OR_RETURN(session.client, RestClient::create({}, retry, context.timeout));
    edit_date_override_ = c.get_string("edit_date_field");
    stream_name_ = c.get_string("stream");
    page_cursor_.reset();
    return session;
  }

  static void add_token(const Session& session, QueryParams& params) {
    if (!session.token.empty()) params.emplace_back("token", session.token);
  }

  Result<Layer> load_layer(Session& session) {
    QueryParams params{{"f", "json"}};
    add_token(session, params);
    CIVICBUS_ASSIGN_OR_RETURN(Json body, session.client->get_json(session.layer_url, params));
    CIVICBUS_RETURN_IF_ERROR(esri_error(body, "layer " + session.layer_url.to_string()));
    Layer layer;
    layer.name = body.get_string("name", "layer");
    layer.object_id_field = body.get_string("objectIdField");
    layer.geometry_type = body.get_string("geometryType");
    layer.max_record_count = body.get_int("maxRecordCount", 1000);
    if (const Json* edit = body.find("editFieldsInfo"); edit != nullptr && edit->is_object()) {
      layer.edit_date_field = edit->get_string("editDateField");
    }
    if (!edit_date_override_.empty()) layer.edit_date_field = edit_date_override_;
    const Json* fields = body.find("fields");
    if (fields == nullptr || !fields->is_array()) {
      return data_loss("layer " + session.layer_url.to_string() +
                       " has no 'fields' list; is it a feature layer of a FeatureServer or "
                       "MapServer?");
    }
    for (const Json& f : fields->as_array()) {
      std::string type = f.get_string("type");
      if (type == "esriFieldTypeGeometry") continue;  // the geometry comes apart from attributes
      FieldSpec spec{f.get_string("name"), esri_field_type(type), f.get_bool("nullable", true)};
      if (type == "esriFieldTypeOID") {
        spec.nullable = false;
        if (layer.object_id_field.empty()) layer.object_id_field = spec.name;
      }
      if (type == "esriFieldTypeDate") layer.date_fields.push_back(spec.name);
      layer.fields.push_back(std::move(spec));
    }
    if (layer.object_id_field.empty()) {
      return data_loss("layer " + session.layer_url.to_string() + " names no objectIdField");
    }
    if (layer.geometry_type == "esriGeometryPoint") {
      layer.fields.push_back(FieldSpec{"x", FieldType::kNumber, true});
      layer.fields.push_back(FieldSpec{"y", FieldType::kNumber, true});
    } else if (!layer.geometry_type.empty()) {
      layer.fields.push_back(FieldSpec{"geometry", FieldType::kJson, true});
    }
    return layer;
  }

  StreamSpec stream_spec(const Session&, const Layer& layer) const {
    StreamSpec stream;
    stream.name = stream_name_.empty() ? layer.name : stream_name_;
    stream.fields = layer.fields;
    stream.primary_key = {layer.object_id_field};
    stream.cursor_field = layer.edit_date_field;
    return stream;
  }

  // Attributes as they are (dates as RFC 3339), a point as x/y, other geometry
  // as its JSON.
  static Json flatten(const Layer& layer, const Json& feature) {
    Json record = Json::object();
    if (const Json* attributes = feature.find("attributes");
        attributes != nullptr && attributes->is_object()) {
      for (const auto& [name, value] : attributes->as_object()) {
        bool is_date = std::find(layer.date_fields.begin(), layer.date_fields.end(), name) !=
                       layer.date_fields.end();
        if (is_date && value.is_number()) {
          auto ms = static_cast<std::int64_t>(value.as_double());
          record.set(name, format_rfc3339(from_unix_micros(ms * 1000)));
        } else {
          record.set(name, value);
        }
      }
    }
    const Json* geometry = feature.find("geometry");
    if (layer.geometry_type == "esriGeometryPoint") {
      record.set("x",
                 geometry != nullptr && geometry->contains("x") ? *geometry->find("x") : Json());
      record.set("y",
                 geometry != nullptr && geometry->contains("y") ? *geometry->find("y") : Json());
    } else if (!layer.geometry_type.empty()) {
      record.set("geometry", geometry != nullptr ? *geometry : Json());
    }
    return record;
  }

  ConnectorSpec spec_ = arcgis_spec();
  std::string edit_date_override_;
  std::string stream_name_;
  std::optional<std::int64_t> page_cursor_;  // the newest edit date of the complete pages
};

}  // namespace

std::unique_ptr<Connector> make_arcgis_connector() {
  return std::make_unique<ArcgisConnector>();
}

}  // namespace civicbus::connect::detail

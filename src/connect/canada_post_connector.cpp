// canada_post: Canada Post AddressComplete (Interactive Find v2.10 and Retrieve
// v2.11) as a source that validates a list of addresses and emits each with the
// service's full address.
#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "canada_post_client.hpp"
#include "http_connectors.hpp"

namespace civicbus::connect::detail {

namespace {

constexpr std::string_view kFindPath = "/AddressComplete/Interactive/Find/v2.10/json3.ws";
constexpr std::string_view kRetrievePath = "/AddressComplete/Interactive/Retrieve/v2.11/json3.ws";

// AddressComplete answers errors as a one-row table with Error, Description,
// Cause and Resolution. General errors are below 100 (2: unknown key, 3: out of
// credit, 8-10: limits and surge protection, …); service-specific ones from
// 1000 on concern the request itself.
Status error_row_status(const Json& row, std::string_view method) {
  std::string code = scalar_text(row.find("Error") != nullptr ? *row.find("Error") : Json());
  std::string message = "AddressComplete " + std::string(method) + " error " + code + ": " +
                        row.get_string("Description") + " (" + row.get_string("Cause") + ")";
  int n = std::atoi(code.c_str());
  if (n == 2) return unauthenticated(message + "; check the API key");
  if (n == 3 || n == 8 || n == 9 || n == 10) return resource_exhausted(message);
  if (n >= 1000) return invalid_argument(message);
  if (n == -1 || n == 0) return unavailable(message);
  return permission_denied(message);
}

}  // namespace

Result<std::unique_ptr<AddressCompleteClient>> AddressCompleteClient::create(
    AddressCompleteOptions options) {
  if (options.api_key.empty()) return invalid_argument("AddressComplete needs an API key");
  std::unique_ptr<AddressCompleteClient> client(new AddressCompleteClient());
  CIVICBUS_ASSIGN_OR_RETURN(client->base_, Url::parse(options.base_url));
  CIVICBUS_ASSIGN_OR_RETURN(client->client_,
                            RestClient::create(AuthConfig{}, options.retry, options.timeout));
  client->options_ = std::move(options);
  return client;
}

Result<Json::Array> AddressCompleteClient::call(std::string_view method_path,
                                                const QueryParams& params) {
  Url url = base_;
  std::string base_path = url.target.substr(0, url.target.find('?'));
  if (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
  url.target = base_path + std::string(method_path);
  QueryParams query{{"Key", options_.api_key}};
  query.insert(query.end(), params.begin(), params.end());
  CIVICBUS_ASSIGN_OR_RETURN(RestResponse response, client_->send("GET", url, query));
  std::string method = method_path == kFindPath ? "Find" : "Retrieve";
  if (response.status / 100 != 2) {
    response.url = url.to_string();  // the query holds the key: never echo it
    Status status = status_from_response(response, "AddressComplete " + method);
    // Whatever the service's HTTP answer, a fault on its side is kUnavailable
    // for the breaker.
    if (response.status >= 500 || response.status == 429) return unavailable(status.message());
    return status;
  }
  auto json = Json::parse(response.body);
  if (!json.ok() || json->find("Items") == nullptr || !json->find("Items")->is_array()) {
    return unavailable("AddressComplete " + method +
                       " answered something that is not its "
                       "{\"Items\": [...]} table");
  }
  Json::Array items = std::move(json->find("Items")->as_array());
  if (items.size() == 1 && items[0].contains("Error")) return error_row_status(items[0], method);
  return items;
}

Result<std::vector<AddressCandidate>> AddressCompleteClient::find(const std::string& search_term,
                                                                  const std::string& last_id) {
  QueryParams params{{"SearchTerm", search_term},
                     {"Country", options_.country},
                     {"LanguagePreference", options_.language},
                     {"MaxSuggestions", std::to_string(options_.max_suggestions)}};
  if (!last_id.empty()) params.emplace_back("LastId", last_id);
  CIVICBUS_ASSIGN_OR_RETURN(Json::Array items, call(kFindPath, params));
  std::vector<AddressCandidate> out;
  for (const Json& item : items) {
    out.push_back(AddressCandidate{item.get_string("Id"), item.get_string("Text"),
                                   item.get_string("Description"),
                                   item.get_string("Next", "Retrieve")});
  }
  return out;
}

Result<std::vector<Json>> AddressCompleteClient::retrieve(const std::string& id) {
  CIVICBUS_ASSIGN_OR_RETURN(Json::Array items, call(kRetrievePath, {{"Id", id}}));
  // Rows come one per language (Language "ENG", "FRE"); the preferred one goes
  // first.
  std::string preferred = options_.language.rfind("fr", 0) == 0 ? "FRE" : "ENG";
  std::stable_partition(items.begin(), items.end(),
                        [&](const Json& row) { return row.get_string("Language") == preferred; });
  return std::vector<Json>(items.begin(), items.end());
}

Result<AddressValidation> AddressCompleteClient::validate(const std::string& address) {
  AddressValidation result;
  result.input = address;
  CIVICBUS_ASSIGN_OR_RETURN(auto candidates, find(address));
  result.candidates = static_cast<int>(candidates.size());
  for (int depth = 0; depth <= options_.max_find_depth && !candidates.empty(); ++depth) {
    const AddressCandidate& best = candidates.front();
    if (best.next == "Retrieve") {
      CIVICBUS_ASSIGN_OR_RETURN(auto rows, retrieve(best.id));
      if (rows.empty()) break;
      result.outcome = AddressValidation::Outcome::kValid;
      result.address = rows.front();
      return result;
    }
    // A container (a street or a building): search within it.
    CIVICBUS_ASSIGN_OR_RETURN(candidates, find(address, best.id));
  }
  return result;
}

namespace {

ConnectorSpec canada_post_spec() {
  ConnectorSpec spec;
  spec.name = "canada_post";
  spec.title = "Canada Post AddressComplete validation";
  spec.description =
      "Validates addresses (from the config or an NDJSON file) with "
      "AddressComplete Find and "
      "Retrieve and emits each with the full Canada Post address.";
  spec.format_source = "Canada Post AddressComplete Interactive Find v2.10 and Retrieve v2.11";
  auto str = [] { return Json::object({{"type", "string"}}); };
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"api_key"})},
       {"properties",
        Json::object({{"base_url", str()},
                      {"api_key", Json::object({{"type", "string"}, {"secret", true}})},
                      {"country", str()},
                      {"language", str()},
                      {"stream", str()},
                      {"addresses", Json::object({{"type", "array"}})},
                      {"input_path", str()},
                      {"address_field", str()},
                      {"max_find_depth", Json::object({{"type", "integer"}, {"minimum", 0}})},
                      {"retry", Json::object({{"type", "object"}})}})}});
  return spec;
}

class CanadaPostConnector final : public Connector {
 public:
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto client, make_client(context));
    // A search proves the key; AddressComplete answers an unknown key with
    // error 2.
    return client->find("1 Main St").status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    StreamSpec stream;
    stream.name = context.config.get_string("stream", "addresses");
    for (const char* name : {"input", "status", "address_id", "line1", "line2", "city",
                             "province_code", "postal_code", "country_iso2", "label"}) {
      stream.fields.push_back(FieldSpec{name, FieldType::kString, true});
    }
    stream.fields.push_back(FieldSpec{"candidates", FieldType::kInteger, false});
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    std::string stream = context.config.get_string("stream", "addresses");
    CIVICBUS_ASSIGN_OR_RETURN(auto streams, streams_to_read(request, {stream}, spec_.name));
    if (streams.empty()) return Status();
    CIVICBUS_ASSIGN_OR_RETURN(auto client, make_client(context));
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<Json> inputs, load_inputs(context.config));
    std::string field = context.config.get_string("address_field", "address");
    std::int64_t done = 0;
    if (const Json* state = request.stream_state(stream)) done = state->get_int("cursor", 0);
    std::int64_t remaining = request.max_records;
    StreamWriter writer(out, stream, request, &remaining);
    for (std::size_t i = static_cast<std::size_t>(std::max<std::int64_t>(done, 0));
         i < inputs.size(); ++i) {
      if (out.cancelled()) return cancelled("address validation was cancelled");
      Json record = inputs[i].is_object() ? inputs[i] : Json::object({{field, inputs[i]}});
      std::string text = record.get_string(field);
      auto validation = client->validate(text);
      if (!validation.ok()) {
        CIVICBUS_RETURN_IF_ERROR(writer.flush());
        return Status(validation.status().code(),
                      "address " + std::to_string(i + 1) + ": " + validation.status().message());
      }
      const Json& a = validation->address;
      bool valid = validation->outcome == AddressValidation::Outcome::kValid;
      record.set("input", text);
      record.set("status", valid ? "valid" : "not_found");
      record.set("candidates", validation->candidates);
      auto copy = [&](const char* to, const char* from) {
        record.set(to, valid && a.contains(from) ? *a.find(from) : Json());
      };
      copy("address_id", "Id");
      copy("line1", "Line1");
      copy("line2", "Line2");
      copy("city", "City");
      copy("province_code", "ProvinceCode");
      copy("postal_code", "PostalCode");
      copy("country_iso2", "CountryIso2");
      copy("label", "Label");
      CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(record, static_cast<std::int64_t>(i + 1)));
      if (!added) break;
      done = static_cast<std::int64_t>(i + 1);
      if (writer.limit_reached() || (i + 1) % std::max<std::size_t>(request.batch_size, 1) == 0) {
        CIVICBUS_RETURN_IF_ERROR(writer.flush());
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint(stream, Json::object({{"cursor", done}})));
      }
    }
    CIVICBUS_RETURN_IF_ERROR(writer.flush());
    return out.checkpoint(stream, Json::object({{"cursor", done}}));
  }

 private:
  Result<std::unique_ptr<AddressCompleteClient>> make_client(const ConnectorContext& context) {
    const Json& c = context.config;
    AddressCompleteOptions options;
    options.base_url = c.get_string("base_url", options.base_url);
    CIVICBUS_ASSIGN_OR_RETURN(options.api_key, required_string(c, "api_key"));
    options.country = c.get_string("country", options.country);
    options.language = c.get_string("language", options.language);
    options.max_find_depth = static_cast<int>(c.get_int("max_find_depth", options.max_find_depth));
    options.timeout = context.timeout;
    CIVICBUS_ASSIGN_OR_RETURN(options.retry, RetryPolicy::from_json(c.find("retry")));
    return AddressCompleteClient::create(std::move(options));
  }

  // The addresses to validate: "addresses" (strings or objects) and/or the
  // lines of the NDJSON file at "input_path", in that order. The state cursor
  // counts them, so the list must only grow at its end between runs.
  static Result<std::vector<Json>> load_inputs(const Json& config) {
    std::vector<Json> inputs;
    if (const Json* list = config.find("addresses"); list != nullptr && list->is_array()) {
      inputs = list->as_array();
    }
    std::string path = config.get_string("input_path");
    if (!path.empty()) {
      std::ifstream in(path);
      if (!in) return not_found("canada_post 'input_path' " + path + " cannot be opened");
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto json = Json::parse(line);
        if (!json.ok()) {
          return invalid_argument(path + " line " + std::to_string(number) +
                                  " is not JSON: " + json.status().message());
        }
        inputs.push_back(std::move(json).value());
      }
    }
    if (inputs.empty()) {
      return invalid_argument("canada_post needs 'addresses' or 'input_path' with addresses");
    }
    return inputs;
  }

  ConnectorSpec spec_ = canada_post_spec();
};

}  // namespace

std::unique_ptr<Connector> make_canada_post_connector() {
  return std::make_unique<CanadaPostConnector>();
}

}  // namespace civicbus::connect::detail

#include "broker/asyncapi.hpp"

#include <fmt/format.h>

namespace civicbus::broker {
namespace {

// AsyncAPI component and operation ids may not contain dots.
std::string id_of(std::string_view topic) {
  std::string out(topic);
  for (char& c : out) {
    if (c == '.' || c == '-') c = '_';
  }
  return out;
}

Json cloudevent_envelope(const Json& data_schema) {
  Json properties = Json::object({
      {"specversion", Json::object({{"type", "string"}, {"const", "1.0"}})},
      {"id", Json::object({{"type", "string"}, {"minLength", 1}})},
      {"source", Json::object({{"type", "string"}, {"format", "uri-reference"}})},
      {"type", Json::object({{"type", "string"}})},
      {"subject", Json::object({{"type", "string"}})},
      {"time", Json::object({{"type", "string"}, {"format", "date-time"}})},
      {"datacontenttype", Json::object({{"type", "string"}})},
      {"dataschema", Json::object({{"type", "string"}, {"format", "uri"}})},
      {"partitionkey", Json::object({{"type", "string"}})},
      {"traceparent", Json::object({{"type", "string"}})},
  });
  if (!data_schema.is_null()) properties.set("data", data_schema);
  return Json::object({{"type", "object"},
                       {"required", Json::array({"specversion", "id", "source", "type"})},
                       {"properties", std::move(properties)}});
}

}  // namespace

Json build_asyncapi(const std::vector<AsyncApiChannel>& channels, std::string_view node_source) {
  Json doc = Json::object({
      {"asyncapi", "3.0.0"},
      {"info", Json::object({{"title", "civicbus event catalogue"},
                             {"version", "1.0.0"},
                             {"description", fmt::format("Topics served by {}", node_source)}})},
      {"defaultContentType", "application/cloudevents+json"},
  });
  Json chans = Json::object();
  Json ops = Json::object();
  Json messages = Json::object();
  for (const auto& c : channels) {
    const std::string id = id_of(c.topic.name);
    Json pii = Json::array();
    for (const auto& p : c.topic.pii_fields) pii.push_back(p);
    Json message = Json::object({
        {"name", c.topic.name},
        {"title", c.topic.name},
        {"contentType", "application/cloudevents+json"},
        {"payload", Json::object({{"schemaFormat", "application/schema+json;version=draft-2020-12"},
                                  {"schema", cloudevent_envelope(c.data_schema)}})},
    });
    if (c.schema_version > 0) {
      message.set("x-civicbus-schema", Json::object({{"subject", c.topic.schema_subject},
                                                     {"version", c.schema_version}}));
    }
    messages.set(id, std::move(message));
    chans.set(
        id,
        Json::object({
            {"address", c.topic.name},
            {"description", c.topic.description},
            {"messages",
             Json::object({{id, Json::object({{"$ref", "#/components/messages/" + id}})}})},
            {"x-civicbus-owner", c.topic.owner},
            {"x-civicbus-sensitivity", std::string(to_string(c.topic.sensitivity))},
            {"x-civicbus-retention-seconds", static_cast<std::int64_t>(c.topic.retention.count())},
            {"x-civicbus-retention-bytes", c.topic.retention_bytes},
            {"x-civicbus-pii-fields", std::move(pii)},
        }));
    Json channel_ref = Json::object({{"$ref", "#/channels/" + id}});
    ops.set("publish_" + id,
            Json::object({{"action", "send"},
                          {"channel", channel_ref},
                          {"summary", fmt::format("Publish {} events", c.topic.name)}}));
    for (const auto& g : c.consumer_groups) {
      ops.set(fmt::format("{}_receives_{}", id_of(g), id),
              Json::object({{"action", "receive"},
                            {"channel", channel_ref},
                            {"summary", fmt::format("Consumer group {}", g)},
                            {"x-civicbus-consumer-group", g}}));
    }
  }
  doc.set("channels", std::move(chans));
  doc.set("operations", std::move(ops));
  doc.set("components", Json::object({{"messages", std::move(messages)}}));
  return doc;
}

}  // namespace civicbus::broker

#include "civicbus/broker/cloud_event.hpp"

#include <fmt/format.h>

#include <cctype>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/clock.hpp"

namespace civicbus::broker {
namespace {

bool is_context_attribute(std::string_view name) {
  return name == "id" || name == "source" || name == "specversion" || name == "type" ||
         name == "datacontenttype" || name == "dataschema" || name == "subject" || name == "time" ||
         name == "data" || name == "data_base64";
}

// CloudEvents 1.0 §3.1.1: attribute names are lower-case ASCII letters and digits.
bool valid_attribute_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

// A URI-reference per RFC 3986 at the level a broker can check cheaply: no spaces or control
// characters, and a scheme (when present) of the allowed characters.
bool plausible_uri_reference(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' ||
        c == '`' || c == '{' || c == '|' || c == '}') {
      return false;
    }
  }
  return !s.empty();
}

bool absolute_uri(std::string_view s) {
  auto colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (!std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (std::size_t i = 1; i < colon; ++i) {
    char c = s[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return false;
  }
  return plausible_uri_reference(s);
}

Status require_string(const Json& doc, std::string_view name, bool required) {
  const Json* v = doc.find(name);
  if (v == nullptr) {
    if (required) {
      return invalid_argument(
          fmt::format("CloudEvent has no '{}' attribute; it is required", name));
    }
    return {};
  }
  if (!v->is_string()) {
    return invalid_argument(fmt::format("CloudEvent attribute '{}' must be a string", name));
  }
  if (required && v->as_string().empty()) {
    return invalid_argument(fmt::format("CloudEvent attribute '{}' must not be empty", name));
  }
  return {};
}

}  // namespace

CloudEvent::CloudEvent(std::string type, std::string source, Json data)
    : doc_(Json::object({{"specversion", "1.0"},
                         {"id", ""},
                         {"source", std::move(source)},
                         {"type", std::move(type)}})) {
  if (!data.is_null()) {
    doc_.set("datacontenttype", "application/json");
    doc_.set("data", std::move(data));
  }
}

Result<CloudEvent> CloudEvent::parse(std::string_view json_text) {
  auto doc = Json::parse(json_text);
  if (!doc.ok()) return doc.status().with_context("CloudEvent is not valid JSON");
  CIVICBUS_ASSIGN_OR_RETURN(CloudEvent event, from_json(std::move(doc).value()));
  event.text_ = std::string(json_text);
  return event;
}

Result<CloudEvent> CloudEvent::from_json(Json document) {
  CloudEvent event(std::move(document));
  CIVICBUS_RETURN_IF_ERROR(event.validate());
  event.validated_ = true;
  return event;
}

Status CloudEvent::validate() const {
  if (!doc_.is_object()) return invalid_argument("CloudEvent must be a JSON object");
  const Json* spec = doc_.find("specversion");
  if (spec == nullptr)
    return invalid_argument("CloudEvent has no 'specversion' attribute; it is required");
  if (!spec->is_string() || spec->as_string() != "1.0") {
    return invalid_argument(
        fmt::format("CloudEvent attribute 'specversion' must be \"1.0\", got {}", spec->dump()));
  }
  // `id` may be empty here: publish() assigns one.
  const Json* id = doc_.find("id");
  if (id != nullptr && !id->is_string()) {
    return invalid_argument("CloudEvent attribute 'id' must be a string");
  }
  CIVICBUS_RETURN_IF_ERROR(require_string(doc_, "source", true));
  if (!plausible_uri_reference(doc_.find("source")->as_string())) {
    return invalid_argument(
        fmt::format("CloudEvent attribute 'source' must be a URI-reference, got {}",
                    doc_.find("source")->dump()));
  }
  CIVICBUS_RETURN_IF_ERROR(require_string(doc_, "type", true));
  for (std::string_view name : {"datacontenttype", "dataschema", "subject", "time"}) {
    CIVICBUS_RETURN_IF_ERROR(require_string(doc_, name, false));
    const Json* v = doc_.find(name);
    if (v != nullptr && v->as_string().empty()) {
      return invalid_argument(
          fmt::format("CloudEvent attribute '{}' must not be empty when present", name));
    }
  }
  if (const Json* t = doc_.find("time")) {
    if (!parse_rfc3339(t->as_string()).ok()) {
      return invalid_argument(fmt::format(
          "CloudEvent attribute 'time' must be an RFC 3339 timestamp, got {}", t->dump()));
    }
  }
  if (const Json* s = doc_.find("dataschema")) {
    if (!absolute_uri(s->as_string())) {
      return invalid_argument(fmt::format(
          "CloudEvent attribute 'dataschema' must be an absolute URI, got {}", s->dump()));
    }
  }
  if (doc_.contains("data") && doc_.contains("data_base64")) {
    return invalid_argument("CloudEvent must not carry both 'data' and 'data_base64'");
  }
  if (const Json* b = doc_.find("data_base64"); b != nullptr && !b->is_string()) {
    return invalid_argument("CloudEvent attribute 'data_base64' must be a base64 string");
  }
  for (const auto& [name, value] : doc_.as_object()) {
    if (is_context_attribute(name)) continue;
    if (!valid_attribute_name(name)) {
      return invalid_argument(
          fmt::format("CloudEvent attribute name '{}' is invalid: names are lower-case letters a-z "
                      "and digits 0-9",
                      name));
    }
    if (!(value.is_string() || value.is_bool() || value.is_int())) {
      return invalid_argument(fmt::format(
          "CloudEvent extension attribute '{}' must be a string, integer or boolean", name));
    }
  }
  return {};
}

std::string CloudEvent::partition_key() const {
  if (const Json* k = doc_.find("partitionkey")) {
    if (k->is_string()) return k->as_string();
    return k->dump();
  }
  return doc_.get_string("subject");
}

CloudEvent& CloudEvent::set_id(std::string id) {
  changed();
  doc_.set("id", std::move(id));
  return *this;
}
CloudEvent& CloudEvent::set_subject(std::string subject) {
  changed();
  doc_.set("subject", std::move(subject));
  return *this;
}
CloudEvent& CloudEvent::set_time(std::string rfc3339) {
  changed();
  doc_.set("time", std::move(rfc3339));
  return *this;
}
CloudEvent& CloudEvent::set_partition_key(std::string key) {
  changed();
  doc_.set("partitionkey", std::move(key));
  return *this;
}
CloudEvent& CloudEvent::set_traceparent(std::string traceparent) {
  changed();
  doc_.set("traceparent", std::move(traceparent));
  return *this;
}
CloudEvent& CloudEvent::set_attribute(std::string_view name, Json value) {
  changed();
  doc_.set(name, std::move(value));
  return *this;
}

const Json& CloudEvent::data() const {
  static const Json kNull;
  const Json* d = doc_.find("data");
  return d ? *d : kNull;
}

Json& CloudEvent::mutable_data() {
  changed();
  return doc_["data"];
}

// --- topic names and patterns -------------------------------------------------------------

Status validate_topic_name(std::string_view name) {
  if (name.empty() || name.size() > 249) {
    return invalid_argument(fmt::format("topic name '{}' must be 1 to 249 characters", name));
  }
  std::size_t token_start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (i == token_start) {
        return invalid_argument(fmt::format(
            "topic name '{}' has an empty token: use dotted words like 'permit.issued'", name));
      }
      token_start = i + 1;
      continue;
    }
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
      return invalid_argument(fmt::format(
          "topic name '{}' has '{}' at position {}: use lower-case letters, digits, '_' and '-' "
          "between dots",
          name, c, i));
    }
  }
  return {};
}

bool topic_matches(std::string_view pattern, std::string_view topic) {
  std::size_t p = 0;
  std::size_t t = 0;
  while (true) {
    std::size_t pe = pattern.find('.', p);
    std::size_t te = topic.find('.', t);
    std::string_view ptok =
        pattern.substr(p, pe == std::string_view::npos ? std::string_view::npos : pe - p);
    if (ptok == ">") return t < topic.size();  // one or more tokens remain
    std::string_view ttok =
        topic.substr(t, te == std::string_view::npos ? std::string_view::npos : te - t);
    if (ptok != "*" && ptok != ttok) return false;
    bool p_end = pe == std::string_view::npos;
    bool t_end = te == std::string_view::npos;
    if (p_end || t_end) return p_end && t_end;
    p = pe + 1;
    t = te + 1;
  }
}

}  // namespace civicbus::broker

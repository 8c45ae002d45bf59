// CloudEvent: the one event envelope of civicbus (CloudEvents 1.0, structured JSON mode).
// The event is kept as its JSON document, so extension attributes and `data` survive
// untouched; accessors read the attributes.
#pragma once

#include <string>
#include <string_view>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::broker {

class CIVICBUS_EXPORT CloudEvent {
 public:
  // An event of `type` from `source` carrying `data`; specversion 1.0 and
  // datacontenttype application/json. The id and time are filled in at publish when empty.
  CloudEvent(std::string type, std::string source, Json data = Json());

  // Parses and validates a structured-mode CloudEvent. Errors name the attribute:
  // "CloudEvent attribute 'specversion' must be \"1.0\", got \"0.3\"".
  static Result<CloudEvent> parse(std::string_view json_text);
  static Result<CloudEvent> from_json(Json document);

  // Checks the required attributes (id, source, specversion, type) and the types and
  // formats of the optional ones (time RFC 3339, dataschema URI, extension names a-z0-9).
  Status validate() const;

  std::string id() const { return doc_.get_string("id"); }
  std::string source() const { return doc_.get_string("source"); }
  std::string type() const { return doc_.get_string("type"); }
  std::string subject() const { return doc_.get_string("subject"); }
  std::string time() const { return doc_.get_string("time"); }
  std::string datacontenttype() const { return doc_.get_string("datacontenttype"); }
  std::string dataschema() const { return doc_.get_string("dataschema"); }
  // W3C trace context, the CloudEvents distributed-tracing extension.
  std::string traceparent() const { return doc_.get_string("traceparent"); }
  // Ordering key: the `partitionkey` extension (CloudEvents partitioning), else `subject`.
  std::string partition_key() const;

  CloudEvent& set_id(std::string id);
  CloudEvent& set_subject(std::string subject);
  CloudEvent& set_time(std::string rfc3339);
  CloudEvent& set_partition_key(std::string key);
  CloudEvent& set_traceparent(std::string traceparent);
  // Sets any attribute, including extensions (string, integer or boolean values).
  CloudEvent& set_attribute(std::string_view name, Json value);

  // The `data` member (null when absent).
  const Json& data() const;
  Json& mutable_data();

  const Json& document() const { return doc_; }
  Json& mutable_document() {
    changed();
    return doc_;
  }
  // The structured-mode JSON text. For an event parsed from text and not changed since, that
  // very text (a publish then stores what the producer sent without writing it again).
  std::string to_json() const& { return text_.empty() ? doc_.dump() : text_; }
  std::string to_json() && { return text_.empty() ? doc_.dump() : std::move(text_); }
  // True while the event is as parse() or from_json() validated it: nothing changed since.
  bool validated_unchanged() const { return validated_; }

 private:
  explicit CloudEvent(Json doc) : doc_(std::move(doc)) {}
  Json doc_;
  void changed() {
    text_.clear();
    validated_ = false;
  }
  std::string text_;  // the text parsed from, while unchanged; empty otherwise
  bool validated_ = false;
};

}  // namespace civicbus::broker

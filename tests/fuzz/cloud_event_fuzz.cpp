// Fuzz target: CloudEvent::parse and validate (structured-mode JSON, CloudEvents 1.0).
//
// The input is the event's JSON text. Parsing must not crash; an event that parses keeps its
// text while unchanged, and once changed must be written (to_json) as text that parses and
// validates again with the same attributes; its accessors must work.
// The attributes an event carries into the broker are checked on the way: its `time` must
// survive format_rfc3339(parse_rfc3339(t)) to the microsecond, and a `type` that is a valid
// topic name must match itself as a subscription pattern.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/broker/broker.hpp"
#include "civicbus/broker/cloud_event.hpp"
#include "civicbus/core/clock.hpp"

namespace {

using civicbus::broker::CloudEvent;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "cloud_event fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  civicbus::Result<CloudEvent> event = CloudEvent::parse(text);
  if (!event.ok()) {
    if (event.status().message().empty()) fail("parse error without a message");
    return 0;
  }
  if (!event->validate().ok())
    fail("a parsed event does not validate", event->validate().message());
  if (!event->validated_unchanged()) fail("a parsed event is not marked validated");
  // Unchanged, an event is stored as the producer sent it.
  if (event->to_json() != text) fail("to_json() of an unchanged event is not its text");

  // Changed, it is written from its document; that text must be a valid event again, with the
  // same attributes.
  CloudEvent changed = *event;
  changed.set_attribute("fuzzchanged", true);
  if (changed.validated_unchanged()) fail("a changed event is still marked validated");
  const std::string written = changed.to_json();
  civicbus::Result<CloudEvent> again = CloudEvent::parse(written);
  if (!again.ok()) fail("a written event does not parse again", again.status().message());
  if (again->document() != changed.document()) fail("the event changed on a round trip", written);

  // The accessors the broker reads on publish.
  (void)event->id();
  (void)event->source();
  (void)event->subject();
  (void)event->datacontenttype();
  (void)event->dataschema();
  (void)event->traceparent();
  (void)event->partition_key();
  (void)event->data();

  if (const std::string time = event->time(); !time.empty()) {
    civicbus::Result<civicbus::SystemTime> t = civicbus::parse_rfc3339(time);
    if (!t.ok()) fail("validate() accepted a time parse_rfc3339 refuses", time);
    const std::string formatted = civicbus::format_rfc3339(*t);
    civicbus::Result<civicbus::SystemTime> back = civicbus::parse_rfc3339(formatted);
    if (!back.ok()) fail("format_rfc3339 wrote a time parse_rfc3339 refuses", formatted);
    if (civicbus::to_unix_micros(*back) != civicbus::to_unix_micros(*t)) {
      fail("the time changed on a round trip through format_rfc3339", formatted);
    }
  }

  const std::string type = event->type();
  if (civicbus::broker::validate_topic_name(type).ok()) {
    if (!civicbus::broker::topic_matches(type, type)) fail("a topic does not match itself", type);
    if (!civicbus::broker::topic_matches(">", type)) fail("'>' does not match a topic", type);
  }
  const std::string subject = event->subject();
  (void)civicbus::broker::topic_matches(type, subject);
  return 0;
}

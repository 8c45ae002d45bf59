// Payload decoding for the fleet's ingestion: device JSON telemetry, SenML (RFC 8428),
// ChirpStack v4 and The Things Stack v3 uplink events, and Sigfox HTTP callbacks, each into
// Readings plus per-item errors with reasons. Nothing here throws, stores or validates against
// device types: the ingestion pipeline does that with what these functions return.
//
// Times: Reading::time is milliseconds since the epoch; `received_at` (from the caller's Clock)
// is used when a payload carries no time.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/fleet/types.hpp"
#include "fleet/codecs.hpp"

namespace civicbus::fleet {

// What a network identity (DevEUI, Sigfox id, TTS device id) stands for in the registry.
struct ResolvedDevice {
  std::string device_id;
  std::string codec;  // codec name for binary payloads; "" when the type sends JSON
};
// Supplied by the caller (the registry); called once per uplink, possibly from an MQTT
// callback thread, so it must be thread-safe if the link's handler threads are.
using DeviceResolver = std::function<std::optional<ResolvedDevice>(std::string_view network_id)>;

// One item that could not be decoded. `device_id` is "" when the device is unknown.
struct DecodeError {
  std::string device_id;
  std::string reason;  // names the item (record index, metric, field) and what is wrong
};

struct DecodedPayload {
  std::vector<Reading> readings;
  std::vector<DecodeError> errors;
};

// Device JSON telemetry for `device_id` (from the topic or the HTTP route):
//   {"ts": 1764600000000, "values": {"flow_rate": 12.5, "battery": 88}}
//   {"flow_rate": 12.5}                      (time = received_at; "ts" allowed beside them)
//   [{"ts": …, "values": {…}}, …]
// "ts" is epoch milliseconds or an RFC 3339 string. A value is a number, a boolean (1/0) or
// {"value": n, "unit": "…"}; anything else is an error for that metric only.
DecodedPayload decode_device_json(std::string_view device_id, std::string_view body,
                                  TimeMs received_at);
DecodedPayload decode_device_json_parsed(std::string_view device_id, const Json& body,
                                         TimeMs received_at);

// SenML JSON (RFC 8428). Each record's name is bn + n, resolved in order with the base fields.
// Convention for device and metric: the resolved name is split at its last ':' or '/'; the
// part before is the device, the part after the metric. A "urn:dev:" prefix is dropped from
// the device ("urn:dev:wm-0001:flow_rate" → device "wm-0001", metric "flow_rate";
// "wm-0001/flow_rate" → "wm-0001", "flow_rate"). A name without separator is a metric of
// `device_id` (the topic's device). When `device_id` is not empty, records naming another
// device are refused (a device reports only for itself). Times: bt + t; values below 2^28 are
// relative to received_at, others absolute epoch seconds. vb becomes 1/0; vs and vd are
// reported as errors (not numeric); s (sum) counts as the value when v is absent. Unknown
// fields ending in '_' reject the whole pack (RFC 8428 §4.4).
DecodedPayload decode_senml(std::string_view body, TimeMs received_at,
                            std::string_view device_id = {});
DecodedPayload decode_senml_parsed(const Json& pack, TimeMs received_at,
                                   std::string_view device_id = {});

// ChirpStack v4 uplink event (MQTT application/+/device/+/event/up or HTTP integration).
// The device is looked up by deviceInfo.devEui through `resolver`; time is "time" (RFC 3339)
// or received_at. A decoded "object" is preferred (numeric and boolean members become
// readings, nested objects are flattened with '_'); otherwise "data" (base64) goes through the
// device's codec with fPort.
DecodedPayload decode_chirpstack_uplink(std::string_view body, const DeviceResolver& resolver,
                                        const CodecCatalog& codecs, TimeMs received_at);
DecodedPayload decode_chirpstack_uplink_parsed(const Json& event, const DeviceResolver& resolver,
                                               const CodecCatalog& codecs, TimeMs received_at);

// The Things Stack v3 uplink message. The device is looked up by end_device_ids.dev_eui, then
// by end_device_ids.device_id; time is uplink_message.received_at, then received_at. A
// decoded_payload is preferred, else frm_payload (base64) through the codec with f_port.
DecodedPayload decode_tts_uplink(std::string_view body, const DeviceResolver& resolver,
                                 const CodecCatalog& codecs, TimeMs received_at);
DecodedPayload decode_tts_uplink_parsed(const Json& message, const DeviceResolver& resolver,
                                        const CodecCatalog& codecs, TimeMs received_at);

// Where a Sigfox callback's JSON body (as configured in the Sigfox backend) keeps each item.
// Fields are top-level member names, or RFC 6901 pointers when they start with '/'.
struct SigfoxMapping {
  std::string device_field = "device";  // Sigfox device id (hex string)
  std::string data_field = "data";      // payload, hex
  std::string time_field = "time";      // epoch seconds (number or numeric string)
  // When set, this member's value (a string) names the codec instead of the resolver's.
  std::string codec_field;
};

DecodedPayload decode_sigfox_callback(std::string_view body, const SigfoxMapping& mapping,
                                      const DeviceResolver& resolver, const CodecCatalog& codecs,
                                      TimeMs received_at);

// A flat JSON object of decoded values (network-server "object" / "decoded_payload"):
// numbers and booleans become readings; nested objects are flattened with '_'
// ({"pm": {"2_5": 3}} → "pm_2_5"); strings, arrays and nulls are skipped silently.
void append_object_readings(std::string_view device_id, const Json& object, TimeMs time,
                            std::vector<Reading>& out);

}  // namespace civicbus::fleet

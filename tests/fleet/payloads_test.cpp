#include "fleet/payloads.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>

#include "civicbus/core/crypto.hpp"
#include "fleet/codecs.hpp"

using namespace civicbus;
using namespace civicbus::fleet;

namespace {

constexpr TimeMs kNow = 1'764'600'000'000;  // 2025-12-01T14:40:00Z

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int v : b) s.push_back(static_cast<char>(v));
  return s;
}

const Reading* find(const DecodedPayload& d, std::string_view metric) {
  for (const Reading& r : d.readings) {
    if (r.metric == metric) return &r;
  }
  return nullptr;
}

DeviceResolver resolver_of(std::map<std::string, ResolvedDevice> known) {
  return [known = std::move(known)](std::string_view id) -> std::optional<ResolvedDevice> {
    auto it = known.find(std::string(id));
    if (it == known.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST_CASE("ingest: device JSON telemetry in its three forms") {
  auto d = decode_device_json(
      "wm-0001",
      R"({"ts": 1764600000123, "values": {"flow_rate": 12.5, "battery": 88, "leak": false}})",
      kNow - 5);
  REQUIRE(d.errors.empty());
  REQUIRE(d.readings.size() == 3);
  CHECK(d.readings[0].device_id == "wm-0001");
  CHECK(d.readings[0].metric == "flow_rate");
  CHECK(d.readings[0].value == 12.5);
  CHECK(d.readings[0].time == 1764600000123);
  CHECK(find(d, "leak")->value == 0);

  auto flat = decode_device_json("wm-0001", R"({"flow_rate": 3.25})", kNow);
  REQUIRE(flat.readings.size() == 1);
  CHECK(flat.readings[0].time == kNow);

  auto arr = decode_device_json("wm-0001",
                                R"([{"ts": 1000, "values": {"flow_rate": 1}},
                                    {"ts": "2025-12-01T14:40:00.5Z", "values": {"flow_rate": {"value": 2, "unit": "L/min"}}},
                                    {"ts": 3000, "values": {"flow_rate": "high"}}])",
                                kNow);
  REQUIRE(arr.readings.size() == 2);
  CHECK(arr.readings[1].time == kNow + 500);
  CHECK(arr.readings[1].unit == "L/min");
  REQUIRE(arr.errors.size() == 1);
  CHECK(arr.errors[0].reason.find("entry 2") != std::string::npos);
  CHECK(arr.errors[0].reason.find("flow_rate") != std::string::npos);

  auto broken = decode_device_json("wm-0001", "{not json", kNow);
  CHECK(broken.readings.empty());
  REQUIRE(broken.errors.size() == 1);
  CHECK(broken.errors[0].reason.find("not valid JSON") != std::string::npos);
}

TEST_CASE("ingest: SenML examples from RFC 8428") {
  // §5.1.2: multiple data points, names resolved from the base name, relative time 0 = now.
  auto d = decode_senml(R"([
      {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
      {"n":"current","u":"A","v":1.2}])",
                        kNow);
  REQUIRE(d.errors.empty());
  REQUIRE(d.readings.size() == 2);
  CHECK(d.readings[0].device_id == "ow:10e2073a01080063");
  CHECK(d.readings[0].metric == "voltage");
  CHECK(d.readings[0].unit == "V");
  CHECK(d.readings[0].time == kNow);
  CHECK(d.readings[1].metric == "current");
  CHECK(d.readings[1].value == doctest::Approx(1.2));

  // §5.1.3: base time absolute, relative offsets, base unit.
  auto m = decode_senml(R"([
      {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,
       "n":"voltage","u":"V","v":120.1},
      {"n":"current","t":-5,"v":1.2},
      {"n":"current","t":-4,"v":1.3}])",
                        kNow);
  REQUIRE(m.errors.empty());
  REQUIRE(m.readings.size() == 3);
  CHECK(m.readings[0].time == 1276020076001);
  CHECK(m.readings[1].time == 1276020071001);
  CHECK(m.readings[1].unit == "A");
  CHECK(m.readings[0].unit == "V");

  // Relative time (< 2^28): seconds before now; vb → 1/0; vs skipped and reported; bv added.
  auto r = decode_senml(R"([
      {"bn":"wm-0001/","bv":10,"n":"flow_rate","v":2.5,"t":-60},
      {"n":"leak","vb":true},
      {"n":"status","vs":"ok"}])",
                        kNow, "wm-0001");
  REQUIRE(r.readings.size() == 2);
  CHECK(r.readings[0].device_id == "wm-0001");
  CHECK(r.readings[0].value == 12.5);
  CHECK(r.readings[0].time == kNow - 60'000);
  CHECK(r.readings[1].value == 1);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].reason.find("record 2") != std::string::npos);
  CHECK(r.errors[0].reason.find("string value") != std::string::npos);
}

TEST_CASE("ingest: SenML device naming and refusals") {
  // The brief's convention: urn:dev:<id>: + metric.
  auto a = decode_senml(R"([{"bn":"urn:dev:wm-0001:","n":"flow_rate","v":1}])", kNow, "wm-0001");
  REQUIRE(a.readings.size() == 1);
  CHECK(a.readings[0].device_id == "wm-0001");
  // A bare metric belongs to the topic's device.
  auto b = decode_senml(R"([{"n":"flow_rate","v":1}])", kNow, "wm-0002");
  REQUIRE(b.readings.size() == 1);
  CHECK(b.readings[0].device_id == "wm-0002");
  // A device may not report for another one.
  auto c = decode_senml(R"([{"bn":"urn:dev:wm-0009:","n":"flow_rate","v":1}])", kNow, "wm-0001");
  CHECK(c.readings.empty());
  REQUIRE(c.errors.size() == 1);
  CHECK(c.errors[0].reason.find("wm-0009") != std::string::npos);
  // No device at all.
  auto d = decode_senml(R"([{"n":"flow_rate","v":1}])", kNow);
  REQUIRE(d.errors.size() == 1);
  CHECK(d.errors[0].reason.find("no device") != std::string::npos);
  // Must-understand fields reject the whole pack; invalid names are refused.
  auto e = decode_senml(R"([{"n":"x/a","v":1},{"n":"x/b","v":2,"foo_":1}])", kNow);
  CHECK(e.readings.empty());
  REQUIRE(e.errors.size() == 1);
  CHECK(e.errors[0].reason.find("foo_") != std::string::npos);
  auto f = decode_senml(R"([{"n":"x/b c","v":2}])", kNow);
  REQUIRE(f.errors.size() == 1);
  CHECK(f.errors[0].reason.find("not a valid SenML name") != std::string::npos);
  auto g = decode_senml(R"({"n":"x"})", kNow);
  REQUIRE(g.errors.size() == 1);
}

TEST_CASE("ingest: codecs decode every field type and name the short field") {
  auto catalog = CodecCatalog::parse(R"({"codecs": [{"name": "all", "fields": [
      {"metric": "a", "offset": 0, "type": "u8"},
      {"metric": "b", "offset": 1, "type": "i8"},
      {"metric": "c", "offset": 2, "type": "u16be", "scale": 0.5},
      {"metric": "d", "offset": 2, "type": "i16le"},
      {"metric": "e", "offset": 4, "type": "i32be", "add": -1},
      {"metric": "f", "offset": 8, "type": "f32le"},
      {"metric": "g", "offset": 4, "type": "u32le", "fport": 9}]}]})");
  REQUIRE(catalog.ok());
  const Codec* codec = catalog->find("all");
  REQUIRE(codec != nullptr);
  // 1.5f little-endian is 00 00 C0 3F.
  const std::string payload =
      bytes({200, 0xFE, 0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 0xC0, 0x3F});
  auto values = codec->decode(payload, 1);
  REQUIRE(values.ok());
  REQUIRE(values->size() == 6);  // "g" is for fPort 9 only
  CHECK((*values)[0].value == 200);
  CHECK((*values)[1].value == -2);
  CHECK((*values)[2].value == 0x0102 * 0.5);
  CHECK((*values)[3].value == 0x0201);
  CHECK((*values)[4].value == -3);
  CHECK((*values)[5].value == 1.5);
  auto port9 = codec->decode(payload, 9);
  REQUIRE(port9.ok());
  CHECK(port9->back().value == 0xFEFFFFFF);

  auto hex = codec->decode_hex("c8fe0102ffffff", 1);
  REQUIRE(!hex.ok());
  CHECK(hex.status().message().find("codec 'all' field 'e'") != std::string::npos);
  CHECK(hex.status().message().find("byte offset 4") != std::string::npos);
  CHECK(!codec->decode_hex("zz", 1).ok());
  CHECK(codec->decode_base64(crypto::base64_encode(payload), 1).ok());

  auto bad = CodecCatalog::parse(
      R"([{"name": "x", "fields": [{"metric": "m", "offset": 0, "type": "u24"}]}])");
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("u24") != std::string::npos);
  CHECK(bad.status().message().find("codec 'x' field 'm'") != std::string::npos);
}

TEST_CASE("ingest: built-in codecs are embedded and decode the shipped types") {
  CodecCatalog builtin = CodecCatalog::builtin();
  REQUIRE(builtin.find("parking_sensor") != nullptr);
  REQUIRE(builtin.find("air_quality") != nullptr);
  REQUIRE(builtin.find("flood_gauge") != nullptr);
  auto level = builtin.find("flood_gauge")->decode_hex("04d25f");
  REQUIRE(level.ok());
  CHECK((*level)[0].metric == "water_level");
  CHECK((*level)[0].value == doctest::Approx(1.234));
  CHECK((*level)[1].value == 95);
  auto parked = builtin.find("parking_sensor")->decode_hex("0157");
  REQUIRE(parked.ok());
  CHECK((*parked)[0].value == 1);
  CHECK((*parked)[1].value == 87);
  // The air-quality codec only knows fPort 2.
  CHECK(!builtin.find("air_quality")->decode_hex("007b01c800d2012c", 1).ok());
  // Round trip through JSON.
  auto again = Codec::from_json(builtin.find("air_quality")->to_json());
  REQUIRE(again.ok());
  CHECK(again->fields.size() == 4);
}

TEST_CASE("ingest: ChirpStack v4 uplink events") {
  CodecCatalog codecs = CodecCatalog::builtin();
  auto resolver = resolver_of({{"0101010101010101", {"aq-0007", "air_quality"}}});
  const std::string data =
      crypto::base64_encode(bytes({0x00, 0x7b, 0x01, 0xc8, 0x00, 0xd2, 0x01, 0x2c}));
  const std::string event = R"({
    "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    "time": "2025-12-01T14:39:59.775023242+00:00",
    "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "City",
                   "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
                   "applicationName": "air", "deviceProfileName": "AQ-1",
                   "deviceName": "aq station 7", "devEui": "0101010101010101", "tags": {}},
    "devAddr": "00189440", "dr": 1, "fPort": 2, "fCnt": 10, "data": ")" +
                            data + R"(",
    "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -60, "snr": 10}],
    "txInfo": {"frequency": 868100000}})";
  auto d = decode_chirpstack_uplink(event, resolver, codecs, kNow);
  REQUIRE(d.errors.empty());
  REQUIRE(d.readings.size() == 4);
  CHECK(d.readings[0].device_id == "aq-0007");
  CHECK(d.readings[0].time == 1764599999775);
  CHECK(find(d, "pm2_5")->value == doctest::Approx(12.3));
  CHECK(find(d, "o3")->value == doctest::Approx(30.0));

  // A decoded object wins over the bytes.
  auto with_object = decode_chirpstack_uplink(
      R"({"deviceInfo": {"devEui": "0101010101010101"}, "fPort": 2, "data": "AA==",
          "object": {"pm2_5": 40.5, "pm": {"10": 70}, "label": "x"}})",
      resolver, codecs, kNow);
  REQUIRE(with_object.errors.empty());
  REQUIRE(with_object.readings.size() == 2);
  CHECK(with_object.readings[0].value == 40.5);
  CHECK(with_object.readings[1].metric == "pm_10");
  CHECK(with_object.readings[0].time == kNow);

  auto unknown = decode_chirpstack_uplink(
      R"({"deviceInfo": {"devEui": "ffffffffffffffff"}, "data": "AA=="})", resolver, codecs, kNow);
  REQUIRE(unknown.errors.size() == 1);
  CHECK(unknown.errors[0].reason.find("ffffffffffffffff") != std::string::npos);
  CHECK(unknown.errors[0].reason.find("unknown device") != std::string::npos);

  auto short_payload = decode_chirpstack_uplink(
      R"({"deviceInfo": {"devEui": "0101010101010101"}, "fPort": 2, "data": "AHs="})", resolver,
      codecs, kNow);
  REQUIRE(short_payload.errors.size() == 1);
  CHECK(short_payload.errors[0].device_id == "aq-0007");
  CHECK(short_payload.errors[0].reason.find("field 'pm10'") != std::string::npos);
}

TEST_CASE("ingest: The Things Stack v3 uplink messages") {
  CodecCatalog codecs = CodecCatalog::builtin();
  auto resolver =
      resolver_of({{"0004A30B001C0530", {"fg-0003", "flood_gauge"}}, {"rain-7", {"rg-0007", ""}}});
  const std::string message = R"({
    "end_device_ids": {"device_id": "flood-3", "application_ids": {"application_id": "floods"},
                       "dev_eui": "0004A30B001C0530", "join_eui": "800000000000000C",
                       "dev_addr": "00BCB929"},
    "correlation_ids": ["as:up:01E0..."],
    "received_at": "2025-12-01T14:40:01.000Z",
    "uplink_message": {"session_key_id": "AXA50...", "f_port": 1, "f_cnt": 42,
                       "frm_payload": ")" +
                              crypto::base64_encode(bytes({0x05, 0xdc, 0x50})) + R"(",
                       "rx_metadata": [{"gateway_ids": {"gateway_id": "gw1"}, "rssi": -42}],
                       "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}}},
                       "received_at": "2025-12-01T14:40:00.900Z"}})";
  auto d = decode_tts_uplink(message, resolver, codecs, kNow);
  REQUIRE(d.errors.empty());
  REQUIRE(d.readings.size() == 2);
  CHECK(d.readings[0].device_id == "fg-0003");
  CHECK(d.readings[0].metric == "water_level");
  CHECK(d.readings[0].value == doctest::Approx(1.5));
  CHECK(d.readings[0].time == kNow + 900);

  // No dev_eui (ABP devices may omit it): the device id is tried; decoded_payload wins.
  auto decoded = decode_tts_uplink(
      R"({"end_device_ids": {"device_id": "rain-7"},
          "uplink_message": {"f_port": 1, "decoded_payload": {"rainfall": 0.4, "ok": true}}})",
      resolver, codecs, kNow);
  REQUIRE(decoded.errors.empty());
  REQUIRE(decoded.readings.size() == 2);
  CHECK(decoded.readings[0].device_id == "rg-0007");
  CHECK(decoded.readings[1].value == 1);

  // A device whose type has no codec sending bytes is an error naming the device.
  auto no_codec = decode_tts_uplink(
      R"({"end_device_ids": {"device_id": "rain-7"}, "uplink_message": {"f_port": 1, "frm_payload": "AQ=="}})",
      resolver, codecs, kNow);
  REQUIRE(no_codec.errors.size() == 1);
  CHECK(no_codec.errors[0].reason.find("rg-0007") != std::string::npos);
  auto missing =
      decode_tts_uplink(R"({"end_device_ids": {"device_id": "x"}})", resolver, codecs, kNow);
  REQUIRE(missing.errors.size() == 1);
}

TEST_CASE("ingest: Sigfox callbacks with a configurable mapping") {
  CodecCatalog codecs = CodecCatalog::builtin();
  auto resolver = resolver_of({{"1A2B3C", {"ps-0100", "parking_sensor"}}});
  auto d = decode_sigfox_callback(
      R"({"device": "1A2B3C", "time": 1764600000, "data": "0064", "seqNumber": 12, "rssi": -120.0})",
      SigfoxMapping{}, resolver, codecs, kNow);
  REQUIRE(d.errors.empty());
  REQUIRE(d.readings.size() == 2);
  CHECK(d.readings[0].device_id == "ps-0100");
  CHECK(d.readings[0].metric == "occupied");
  CHECK(d.readings[0].value == 0);
  CHECK(d.readings[1].value == 100);
  CHECK(d.readings[0].time == 1764600000000);

  SigfoxMapping mapping;
  mapping.device_field = "/msg/id";
  mapping.data_field = "payload";
  mapping.time_field = "ts";
  auto custom =
      decode_sigfox_callback(R"({"msg": {"id": "1A2B3C"}, "ts": "1764600001", "payload": "0150"})",
                             mapping, resolver, codecs, kNow);
  REQUIRE(custom.errors.empty());
  CHECK(custom.readings[0].value == 1);
  CHECK(custom.readings[0].time == 1764600001000);

  auto unknown = decode_sigfox_callback(R"({"device": "FFFF", "data": "00"})", SigfoxMapping{},
                                        resolver, codecs, kNow);
  REQUIRE(unknown.errors.size() == 1);
  CHECK(unknown.errors[0].reason.find("'FFFF' not registered") != std::string::npos);
  auto short_data = decode_sigfox_callback(R"({"device": "1A2B3C", "data": "01"})", SigfoxMapping{},
                                           resolver, codecs, kNow);
  REQUIRE(short_data.errors.size() == 1);
  CHECK(short_data.errors[0].reason.find("field 'battery'") != std::string::npos);
  CHECK(short_data.errors[0].reason.find("byte offset 1") != std::string::npos);
  auto not_hex = decode_sigfox_callback(R"({"device": "1A2B3C", "data": "xyz"})", SigfoxMapping{},
                                        resolver, codecs, kNow);
  REQUIRE(not_hex.errors.size() == 1);
  CHECK(not_hex.errors[0].reason.find("not hex") != std::string::npos);
}

// Fuzz target: the device fleet's payload decoders (src/fleet/payloads.hpp, codecs.hpp): device
// JSON, SenML, ChirpStack v4 and The Things Stack v3 uplinks, Sigfox callbacks and the binary
// codecs, all of which read bytes from devices and network servers.
//
// Whatever the input, decoding must not crash, every error must say why, and every reading
// produced must name a device and a metric.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "fleet/codecs.hpp"
#include "fleet/payloads.hpp"

namespace {

using namespace civicbus::fleet;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fleet_payloads fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check(const DecodedPayload& p) {
  for (const auto& r : p.readings) {
    if (r.device_id.empty() || r.metric.empty()) fail("a reading without device or metric");
  }
  for (const auto& e : p.errors) {
    if (e.reason.empty()) fail("an error without a reason");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const CodecCatalog codecs = CodecCatalog::builtin();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  constexpr TimeMs kNow = 1764600000000;
  DeviceResolver resolver = [](std::string_view id) -> std::optional<ResolvedDevice> {
    if (id.empty()) return std::nullopt;
    // Every built-in codec in turn, by the id's first byte.
    static const auto names = codecs.names();
    if (names.empty()) return ResolvedDevice{std::string(id), ""};
    return ResolvedDevice{std::string(id), names[static_cast<unsigned char>(id[0]) % names.size()]};
  };
  check(decode_device_json("dev-1", body, kNow));
  check(decode_senml(body, kNow));
  check(decode_senml(body, kNow, "dev-1"));
  check(decode_chirpstack_uplink(body, resolver, codecs, kNow));
  check(decode_tts_uplink(body, resolver, codecs, kNow));
  check(decode_sigfox_callback(body, SigfoxMapping{}, resolver, codecs, kNow));
  for (const auto& name : codecs.names()) {
    const Codec* codec = codecs.find(name);
    auto bytes = codec->decode(body, size > 0 ? data[0] : 0);
    if (!bytes.ok() && bytes.status().message().empty()) fail("a codec error without a message");
    auto hex = codec->decode_hex(body, 1);
    if (!hex.ok() && hex.status().message().empty()) fail("a codec error without a message");
  }
  return 0;
}

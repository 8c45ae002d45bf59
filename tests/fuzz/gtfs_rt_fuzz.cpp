// Fuzz target: the protobuf wire-format reader and the GTFS-realtime decoder
// (src/connect/municipal_formats.hpp), behind the `gtfs_rt` connector.
//
// Whatever the input, nothing crashes or reads out of bounds; the reader's fields come in
// increasing offsets and their bytes lie inside the input; decoder errors name the
// gtfs-realtime message path; and a decoded feed's rows all carry an entity id.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "connect/municipal_formats.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "gtfs_rt fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace civicbus::connect::detail;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ProtoReader reader(bytes);
  std::size_t last = 0;
  bool first = true;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto next = reader.next();
    if (!next.ok()) {
      if (next.status().message().find("offset") == std::string::npos) {
        fail("a reader error that names no offset", next.status().message());
      }
      break;
    }
    if (!*next) break;
    const ProtoField& f = **next;
    if (!first && f.offset <= last) fail("fields out of order");
    first = false;
    last = f.offset;
    if (f.wire_type == 2 && (f.bytes.data() < bytes.data() ||
                             f.bytes.data() + f.bytes.size() > bytes.data() + bytes.size())) {
      fail("a field's bytes lie outside the input");
    }
  }
  auto feed = decode_gtfs_rt(bytes);
  if (!feed.ok()) {
    if (feed.status().message().find("gtfs-realtime") == std::string::npos) {
      fail("a decoder error that names no message", feed.status().message());
    }
    return 0;
  }
  for (const auto* stream : {&feed->trip_updates, &feed->vehicle_positions, &feed->alerts}) {
    for (const auto& row : *stream) {
      if (row.find("entity_id") == nullptr) fail("a row without entity_id");
    }
  }
  return 0;
}

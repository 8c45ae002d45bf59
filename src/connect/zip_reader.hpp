// ZipArchive: reads the members of a .zip held in memory through its central directory
// (PKWARE APPNOTE 6.3: end-of-central-directory record, central file headers, local headers),
// for feeds delivered zipped (GTFS). Stored (0) and deflate (8) members; no ZIP64, encryption
// or multi-disk archives. Every member's CRC-32 is checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"

namespace civicbus::connect::detail {

struct ZipEntry {
  std::string name;
  std::uint16_t method = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::uint64_t local_header_offset = 0;
};

class ZipArchive {
 public:
  // Reads the central directory of `data`, which must outlive the archive.
  static Result<ZipArchive> open(std::string_view data);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  // The member's bytes, inflated and CRC-checked; refuses members larger than `max_size`.
  Result<std::string> read(const ZipEntry& entry, std::uint64_t max_size) const;

 private:
  std::string_view data_;
  std::vector<ZipEntry> entries_;
};

}  // namespace civicbus::connect::detail

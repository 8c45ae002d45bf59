#include "zip_reader.hpp"

#include <zlib.h>

#include <algorithm>

namespace civicbus::connect::detail {

namespace {

constexpr std::uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr std::uint32_t kCentralFileHeader = 0x02014b50;
constexpr std::uint32_t kLocalFileHeader = 0x04034b50;

std::uint16_t u16(std::string_view d, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(d[at]) |
                                    static_cast<unsigned char>(d[at + 1]) << 8);
}

std::uint32_t u32(std::string_view d, std::size_t at) {
  return static_cast<std::uint32_t>(u16(d, at)) | static_cast<std::uint32_t>(u16(d, at + 2)) << 16;
}

}  // namespace

Result<ZipArchive> ZipArchive::open(std::string_view data) {
  if (data.size() < 22) return invalid_argument("zip: too short to be an archive");
  // The end record sits in the last 22 bytes plus a comment of at most 65535 bytes.
  std::size_t lowest = data.size() > 22 + 65535 ? data.size() - 22 - 65535 : 0;
  std::size_t eocd = std::string_view::npos;
  for (std::size_t at = data.size() - 22 + 1; at-- > lowest;) {
    if (u32(data, at) == kEndOfCentralDirectory) {
      eocd = at;
      break;
    }
  }
  if (eocd == std::string_view::npos) {
    return invalid_argument("zip: no end-of-central-directory record (not a zip file?)");
  }
  if (u16(data, eocd + 4) != 0 || u16(data, eocd + 6) != 0) {
    return invalid_argument("zip: multi-disk archives are not supported");
  }
  std::uint16_t count = u16(data, eocd + 10);
  std::uint32_t cd_size = u32(data, eocd + 12);
  std::uint32_t cd_offset = u32(data, eocd + 16);
  if (count == 0xffff || cd_offset == 0xffffffff) {
    return invalid_argument("zip: ZIP64 archives are not supported");
  }
  if (static_cast<std::uint64_t>(cd_offset) + cd_size > eocd) {
    return invalid_argument("zip: the central directory lies outside the archive");
  }
  ZipArchive archive;
  archive.data_ = data;
  std::size_t at = cd_offset;
  for (std::uint16_t i = 0; i < count; ++i) {
    if (at + 46 > eocd || u32(data, at) != kCentralFileHeader) {
      return invalid_argument("zip: central directory entry " + std::to_string(i) + " at offset " +
                              std::to_string(at) + " is malformed");
    }
    ZipEntry e;
    std::uint16_t flags = u16(data, at + 8);
    e.method = u16(data, at + 10);
    e.crc32 = u32(data, at + 16);
    e.compressed_size = u32(data, at + 20);
    e.uncompressed_size = u32(data, at + 24);
    std::size_t name_len = u16(data, at + 28);
    std::size_t extra_len = u16(data, at + 30);
    std::size_t comment_len = u16(data, at + 32);
    e.local_header_offset = u32(data, at + 42);
    if (at + 46 + name_len + extra_len + comment_len > eocd) {
      return invalid_argument("zip: central directory entry " + std::to_string(i) +
                              " runs past the directory");
    }
    e.name = std::string(data.substr(at + 46, name_len));
    if (flags & 0x1) return invalid_argument("zip: member '" + e.name + "' is encrypted");
    archive.entries_.push_back(std::move(e));
    at += 46 + name_len + extra_len + comment_len;
  }
  return archive;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  // Feeds zipped with their folder ("gtfs/stops.txt") are common: match the base name too.
  for (const auto& e : entries_) {
    auto slash = e.name.rfind('/');
    if (slash != std::string::npos && std::string_view(e.name).substr(slash + 1) == name) {
      return &e;
    }
  }
  return nullptr;
}

Result<std::string> ZipArchive::read(const ZipEntry& e, std::uint64_t max_size) const {
  std::string what = "zip member '" + e.name + "'";
  if (e.uncompressed_size > max_size) {
    return resource_exhausted(what + " is " + std::to_string(e.uncompressed_size) +
                              " bytes, over the limit of " + std::to_string(max_size));
  }
  std::uint64_t lh = e.local_header_offset;
  if (lh + 30 > data_.size() || u32(data_, lh) != kLocalFileHeader) {
    return invalid_argument(what + ": no local header at offset " + std::to_string(lh));
  }
  std::uint64_t start = lh + 30 + u16(data_, lh + 26) + u16(data_, lh + 28);
  if (start + e.compressed_size > data_.size()) {
    return invalid_argument(what + ": the data runs past the end of the archive");
  }
  std::string_view packed = data_.substr(start, e.compressed_size);
  std::string out;
  if (e.method == 0) {
    if (e.compressed_size != e.uncompressed_size) {
      return invalid_argument(what + ": a stored member whose sizes differ");
    }
    out = std::string(packed);
  } else if (e.method == 8) {
    out.resize(e.uncompressed_size);
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return internal_error("zlib inflateInit2 failed");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(packed.data()));
    z.avail_in = static_cast<uInt>(packed.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    int rc = inflate(&z, Z_FINISH);
    std::uint64_t produced = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || produced != e.uncompressed_size) {
      return invalid_argument(what + ": the deflate data is corrupt or its size (" +
                              std::to_string(produced) + " bytes) is not the declared " +
                              std::to_string(e.uncompressed_size));
    }
  } else {
    return invalid_argument(what + ": compression method " + std::to_string(e.method) +
                            " is not supported (stored or deflate)");
  }
  auto crc = static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size())));
  if (crc != e.crc32) return data_loss(what + ": CRC-32 mismatch");
  return out;
}

}  // namespace civicbus::connect::detail

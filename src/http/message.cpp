#include "civicbus/http/message.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace civicbus::http {

namespace {

// Each byte of `w` with 'A'..'Z' made 'a'..'z', eight at once: a byte's high bit is set in
// `from_a` when its low seven bits are 'A' or more, in `past_z` when they are past 'Z'
// (neither sum carries into the next byte); a byte of 0x80 or more is left as it is.
inline std::uint64_t fold_case(std::uint64_t w) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  const std::uint64_t low7 = w & (0x7f * kOnes);
  const std::uint64_t from_a = low7 + (0x80 - 'A') * kOnes;
  const std::uint64_t past_z = low7 + (0x7f - 'Z') * kOnes;
  const std::uint64_t upper = from_a & ~past_z & ~w & (0x80 * kOnes);
  return w | (upper >> 2);  // 0x80 >> 2 is 0x20, the case bit, in the same byte
}

inline std::uint64_t load8(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// The first and last `half` bytes of a name of 2 * half bytes or fewer (2 <= n < 8), as one
// word: the two halves may overlap, which compares some bytes twice.
inline std::uint64_t load_short(const char* p, std::size_t n) {
  if (n >= 4) {
    std::uint32_t first;
    std::uint32_t last;
    std::memcpy(&first, p, 4);
    std::memcpy(&last, p + n - 4, 4);
    return first | (std::uint64_t{last} << 32);
  }
  std::uint16_t first;
  std::uint16_t last;
  std::memcpy(&first, p, 2);
  std::memcpy(&last, p + n - 2, 2);
  return first | (std::uint64_t{last} << 16);
}

inline bool same_word(std::uint64_t a, std::uint64_t b) {
  return a == b || fold_case(a) == fold_case(b);
}

// The field-name comparison of every lookup below, inlined into them (a message's fields are
// searched by name many times per request): lengths first, then eight bytes at a time (the
// last word overlapping the one before), folding case only for words that differ.
inline bool same_name(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* pa = a.data();
  const char* pb = b.data();
  if (n >= 8) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      if (!same_word(load8(pa + i), load8(pb + i))) return false;
    }
    return i == n || same_word(load8(pa + n - 8), load8(pb + n - 8));
  }
  if (n >= 2) return same_word(load_short(pa, n), load_short(pb, n));
  return n == 0 || same_word(static_cast<unsigned char>(pa[0]), static_cast<unsigned char>(pb[0]));
}

}  // namespace

bool detail::same_length_equals_ignore_case(std::string_view a, std::string_view b) {
  return same_name(a, b);
}

void HttpHeaders::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void HttpHeaders::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

std::size_t HttpHeaders::remove(std::string_view name) {
  const auto before = fields_.size();
  std::erase_if(fields_, [&](const Field& f) { return same_name(f.first, name); });
  return before - fields_.size();
}

std::optional<std::string_view> HttpHeaders::get(std::string_view name) const {
  for (const Field& f : fields_) {
    if (same_name(f.first, name)) return std::string_view(f.second);
  }
  return std::nullopt;
}

std::vector<std::string_view> HttpHeaders::get_all(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const Field& f : fields_) {
    if (same_name(f.first, name)) out.emplace_back(f.second);
  }
  return out;
}

std::size_t HttpHeaders::count(std::string_view name) const {
  return static_cast<std::size_t>(std::count_if(
      fields_.begin(), fields_.end(), [&](const Field& f) { return same_name(f.first, name); }));
}

HttpResponse HttpResponse::text(int status, std::string body, std::string content_type) {
  HttpResponse r;
  r.status = status;
  r.headers.add("Content-Type", std::move(content_type));
  r.body = std::move(body);
  return r;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace civicbus::http

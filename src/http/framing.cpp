#include "http/framing.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "civicbus/http/message.hpp"

namespace civicbus::http::detail {

namespace {

const char* noun(Peer peer) {
  return peer == Peer::kRequest ? "request" : "response";
}

}  // namespace

std::size_t FramingFindings::fail(FramingError error, std::string reason, std::size_t at) {
  error_ = error;
  reason_ = std::move(reason);
  return at;
}

void FramingFindings::clear_findings() {
  error_ = FramingError::kNone;
  reason_.clear();
}

namespace {

// Whether any byte of `word` equals `byte` (the classic zero-byte test on word ^ byte*0x01..).
constexpr bool has_byte(std::uint64_t word, std::uint8_t byte) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
  const std::uint64_t x = word ^ (kOnes * byte);
  return ((x - kOnes) & ~x & kHighs) != 0;
}

// The index of the first byte equal to `a`, `b` or `c` in `data` at or after `from`, or
// data.size(). Every byte of every head read and every field written passes here (through
// is_safe_field_text), and each field name of a head read: sixteen bytes at a time with SSE2 where
// the compiler has it, then eight at a time, then one. The last part of a block or word is
// read as the block or word ending at data.size(), which overlaps bytes already looked at:
// most field names and values are shorter than 32 bytes, and a byte loop over their tails
// cost more than the rest of the check. A template, so that each use is compiled for its own
// three bytes (constants in the comparisons) and inlined: a call cost a quarter of a check.
template <char a, char b, char c>
inline std::size_t first_of(std::string_view data, std::size_t from) {
  std::size_t i = from;
  const std::size_t size = data.size();
  if (i >= size) return size;
#if defined(__SSE2__)
  const __m128i va = _mm_set1_epi8(a);
  const __m128i vb = _mm_set1_epi8(b);
  const __m128i vc = _mm_set1_epi8(c);
  auto hits_at = [&](std::size_t at) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data.data() + at));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb)),
                                     _mm_cmpeq_epi8(v, vc));
    return static_cast<unsigned>(_mm_movemask_epi8(hit));
  };
  for (; i + 16 <= size; i += 16) {
    const unsigned hits = hits_at(i);
    if (hits != 0) return i + static_cast<std::size_t>(__builtin_ctz(hits));
  }
  if (i == size) return size;
  if (size >= 16) {
    // The block ending at `size`; its bytes before `i` do not count (they may lie before
    // `from`).
    const std::size_t base = size - 16;
    const unsigned hits = hits_at(base) & (~0U << (i - base));
    return hits != 0 ? base + static_cast<std::size_t>(__builtin_ctz(hits)) : size;
  }
#endif
  auto word_has_any = [](std::uint64_t word) {
    return has_byte(word, static_cast<std::uint8_t>(a)) ||
           has_byte(word, static_cast<std::uint8_t>(b)) ||
           has_byte(word, static_cast<std::uint8_t>(c));
  };
  std::uint64_t word;
  for (; i + 8 <= size; i += 8) {
    std::memcpy(&word, data.data() + i, 8);
    if (word_has_any(word)) break;
  }
  if (i + 8 > size && size >= 8 && i < size) {
    // The word ending at `size`: nothing there means nothing from `i` on; a find (perhaps
    // before `i`) is placed by the byte loop.
    std::memcpy(&word, data.data() + size - 8, 8);
    if (!word_has_any(word)) return size;
  } else if (size < 8 && size - i >= 4) {
    // Four to seven bytes: the four from `i` and the four ending at `size`, as one word.
    std::uint32_t low;
    std::uint32_t high;
    std::memcpy(&low, data.data() + i, 4);
    std::memcpy(&high, data.data() + size - 4, 4);
    word = low | (std::uint64_t{high} << 32);
    if (!word_has_any(word)) return size;
  }
  for (; i < size; ++i) {
    const char x = data[i];
    if (x == a || x == b || x == c) return i;
  }
  return i;
}

}  // namespace

HeadScanner::HeadScanner(Peer peer, std::size_t max_header_count, std::size_t max_header_bytes,
                         StartLineCheck valid_start_line)
    : peer_(peer),
      max_header_count_(max_header_count),
      max_header_bytes_(max_header_bytes),
      valid_start_line_(valid_start_line) {}

void HeadScanner::reset() {
  bytes_ = 0;
  field_count_ = 0;
  line_index_ = 0;
  line_empty_ = true;
  in_name_ = false;
  prev_cr_ = false;
  done_ = false;
  start_line_.clear();
  clear_findings();
}

std::size_t HeadScanner::scan(std::string_view data) {
  const bool request = peer_ == Peer::kRequest;
  auto section = [&] { return std::string(noun(peer_)) + " header section"; };
  auto too_large = [&](std::size_t at) {
    return fail(
        FramingError::kLimitExceeded,
        section() + " is larger than the limit of " + std::to_string(max_header_bytes_) + " bytes",
        at);
  };
  std::size_t i = 0;
  while (i < data.size()) {
    // The usual case: a whole line, CRLF included, at the start of `data` or right after the
    // last line, well within the limits. It is checked and passed in one step; anything else
    // (a line split across reads, a line end other than CRLF, the empty line, a limit, a
    // finding) goes byte by byte below, which reports it.
    if (!prev_cr_ && line_empty_ && (line_index_ > 0 || start_line_.empty())) {
      const std::size_t end = first_of<'\r', '\n', '\r'>(data, i);
      if (end > i && end + 1 < data.size() && data[end] == '\r' && data[end + 1] == '\n' &&
          bytes_ + (end + 2 - i) <= max_header_bytes_) {
        const std::string_view line = data.substr(i, end - i);
        bool whole = false;
        if (line_index_ == 0) {
          whole = valid_start_line_(line);
        } else if (field_count_ < max_header_count_ && line[0] != ' ' && line[0] != '\t') {
          const std::size_t at = first_of<':', ' ', '\t'>(line, 0);
          whole = at < line.size() && line[at] == ':';
          if (whole) ++field_count_;
        }
        if (whole) {
          bytes_ += end + 2 - i;
          ++line_index_;
          in_name_ = true;
          i = end + 2;
          continue;
        }
      }
    }
    const char c = data[i];
    if (prev_cr_ || c == '\r' || c == '\n') {
      // One byte of a line end.
      if (++bytes_ > max_header_bytes_) return too_large(i);
      if (prev_cr_) {
        prev_cr_ = false;
        if (c != '\n') return fail(FramingError::kMalformed, "bare CR in the " + section(), i);
        if (line_empty_) {
          if (line_index_ == 0) {
            // A server ignores empty lines before the request line; a client does not expect
            // any before a status line.
            if (!request) {
              return fail(FramingError::kMalformed, "empty line before the status line", i);
            }
            ++i;
            continue;
          }
          done_ = true;
          return i + 1;
        }
        if (line_index_ == 0 && !valid_start_line_(start_line_)) {
          return fail(FramingError::kMalformed,
                      request ? "malformed request line" : "malformed status line", i);
        }
        if (line_index_ > 0 && ++field_count_ > max_header_count_) {
          return fail(FramingError::kLimitExceeded,
                      std::string(noun(peer_)) + " has more than " +
                          std::to_string(max_header_count_) + " header fields",
                      i);
        }
        ++line_index_;
        line_empty_ = true;
        in_name_ = true;
      } else if (c == '\r') {
        prev_cr_ = true;
      } else {
        return fail(FramingError::kMalformed,
                    request ? "bare LF in the request header section (lines must end in CRLF)"
                            : "bare LF in the response header section",
                    i);
      }
      ++i;
      continue;
    }
    // A run of line content, up to the next CR or LF, checked as a whole. Past the byte limit
    // only what lies within it is checked, so a finding inside the limit is reported first.
    const std::size_t end = first_of<'\r', '\n', '\r'>(data, i);
    const std::size_t allowed = max_header_bytes_ - bytes_;  // bytes_ <= limit here
    const std::size_t stop = std::min(end, i + allowed);
    const std::string_view run = data.substr(i, stop - i);
    if (!run.empty()) {
      if (line_empty_) {
        line_empty_ = false;
        if (line_index_ > 0 && (run[0] == ' ' || run[0] == '\t')) {
          return fail(FramingError::kMalformed, "obsolete line folding in the " + section(), i);
        }
      }
      if (line_index_ == 0) {
        start_line_.append(run);
      } else if (in_name_) {
        const std::size_t at = first_of<':', ' ', '\t'>(run, 0);
        if (at < run.size()) {
          if (run[at] != ':') {
            return fail(FramingError::kMalformed,
                        request ? "whitespace between a header field name and the colon"
                                : "whitespace between a response header field name and the colon",
                        i + at);
          }
          in_name_ = false;
        }
      }
      bytes_ += run.size();
    }
    if (stop < end) {
      ++bytes_;
      return too_large(stop);
    }
    i = end;
  }
  return data.size();
}

ChunkScanner::ChunkScanner(Peer peer, std::size_t max_trailer_bytes)
    : peer_(peer), max_trailer_bytes_(max_trailer_bytes) {}

void ChunkScanner::reset() {
  state_ = State::kSize;
  size_ = 0;
  digits_ = 0;
  trailer_bytes_ = 0;
  clear_findings();
}

std::size_t ChunkScanner::scan(std::string_view data) {
  auto bad = [&](std::size_t i, const char* why) { return fail(FramingError::kMalformed, why, i); };
  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    switch (state_) {
      case State::kSize: {
        int digit = -1;
        if (c >= '0' && c <= '9')
          digit = c - '0';
        else if (c >= 'a' && c <= 'f')
          digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
          digit = c - 'A' + 10;
        if (digit >= 0) {
          if (size_ > (UINT64_MAX >> 4)) return bad(i, "chunk size overflows");
          size_ = (size_ << 4) | static_cast<std::uint64_t>(digit);
          ++digits_;
          break;
        }
        if (digits_ == 0) return bad(i, "invalid chunk size");
        if (c == ';')
          state_ = State::kExt;
        else if (c == '\r')
          state_ = State::kSizeLf;
        else
          return bad(i, "invalid chunk size");
        break;
      }
      case State::kExt:
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == '\n' || (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
          return bad(i, "invalid chunk extension");
        break;
      case State::kSizeLf:
        if (c != '\n') return bad(i, "chunk size line must end in CRLF");
        state_ = size_ == 0 ? State::kTrailerLineStart : State::kData;
        break;
      case State::kData: {
        const std::size_t take =
            static_cast<std::size_t>(std::min<std::uint64_t>(size_, data.size() - i));
        size_ -= take;
        i += take - 1;
        if (size_ == 0) state_ = State::kDataCr;
        break;
      }
      // The CRLF after chunk data: llhttp 8.1 (Debian's) skips these two bytes without
      // looking at them, so this scanner is what checks them.
      case State::kDataCr:
        if (c != '\r') return bad(i, "chunk data must be followed by CRLF");
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return bad(i, "chunk data must be followed by CRLF");
        state_ = State::kSize;
        digits_ = 0;
        break;
      case State::kTrailerLineStart:
      case State::kTrailerLine:
        if (++trailer_bytes_ > max_trailer_bytes_) {
          return fail(FramingError::kLimitExceeded,
                      std::string(noun(peer_)) + " trailer section is larger than the limit", i);
        }
        if (c == '\r') {
          state_ = state_ == State::kTrailerLineStart ? State::kEndLf : State::kTrailerLf;
        } else if (c == '\n') {
          return bad(i, "bare LF in the trailer section");
        } else if (state_ == State::kTrailerLineStart && (c == ' ' || c == '\t')) {
          return bad(i, "obsolete line folding in the trailer section");
        } else {
          state_ = State::kTrailerLine;
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return bad(i, "bare CR in the trailer section");
        state_ = State::kTrailerLineStart;
        break;
      case State::kEndLf:
        if (c != '\n') return bad(i, "bare CR at the end of a chunked body");
        state_ = State::kDone;
        return i + 1;
      case State::kDone:
        return i;
    }
  }
  return data.size();
}

namespace {

// The tchar set as a table: methods and field names are checked on every request.
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

}  // namespace

bool is_tchar(char c) {
  return kTchar[static_cast<unsigned char>(c)];
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool is_safe_field_text(std::string_view s) {
  return first_of<'\r', '\n', '\0'>(s, 0) == s.size();
}

std::size_t count_breaks(std::string_view s) {
  std::size_t count = 0;
  std::size_t i = 0;
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i nul = _mm_setzero_si128();
  // Each hit byte is -1: subtracting counts it in its lane (up to 255 blocks per lane before
  // the lanes are summed), without a popcount the baseline x86-64 target lacks.
  __m128i lanes = _mm_setzero_si128();
  std::size_t blocks = 0;
  auto sum_lanes = [&] {
    const __m128i sums = _mm_sad_epu8(lanes, nul);
    count += static_cast<std::size_t>(_mm_cvtsi128_si32(sums)) +
             static_cast<std::size_t>(_mm_extract_epi16(sums, 4));
    lanes = _mm_setzero_si128();
    blocks = 0;
  };
  for (; i + 16 <= s.size(); i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                                     _mm_cmpeq_epi8(v, nul));
    lanes = _mm_sub_epi8(lanes, hit);
    if (++blocks == 255) sum_lanes();
  }
  if (i < s.size() && s.size() >= 16) {
    // The last 1..15 bytes: the block ending at s.size(), with its bytes before `i` masked out
    // (a load from kTail at `rest` has 16 - rest zero bytes, then rest 0xff bytes).
    alignas(16) static constexpr unsigned char kTail[32] = {
        0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
        0,    0,    0,    0,    0,    0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const std::size_t rest = s.size() - i;
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + s.size() - 16));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                                     _mm_cmpeq_epi8(v, nul));
    const __m128i mask = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTail + rest));
    lanes = _mm_sub_epi8(lanes, _mm_and_si128(hit, mask));
    i = s.size();
  }
  sum_lanes();
#endif
  for (; i < s.size(); ++i) {
    count += static_cast<std::size_t>(s[i] == '\r' || s[i] == '\n' || s[i] == '\0');
  }
  return count;
}

bool is_framing_field(std::string_view name) {
  switch (name.size()) {  // by length first: every field of every message is checked
    case 10:
      return same_name(name, "Connection");
    case 14:
      return same_name(name, "Content-Length");
    case 17:
      return same_name(name, "Transfer-Encoding");
    default:
      return false;
  }
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool parse_content_length(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

std::vector<std::string_view> split_codings(const std::vector<std::string_view>& fields) {
  std::vector<std::string_view> codings;
  for (std::string_view field : fields) {
    while (true) {
      const std::size_t comma = field.find(',');
      codings.push_back(trim_ows(field.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      field.remove_prefix(comma + 1);
    }
  }
  return codings;
}

}  // namespace civicbus::http::detail

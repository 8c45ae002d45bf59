// The byte scanners and small helpers that RequestParser and ResponseParser share: llhttp
// (strict, no lenient flags) parses, and these check what llhttp 8 is lenient about or does
// not check at all, so that the server and the client are equally strict about HTTP/1.1
// framing (RFC 9112).
//
//  - HeadScanner: the header section. Refuses bare CR, bare LF, obs-fold and whitespace
//    between a field name and its colon; counts fields and bytes against the limits. The
//    start line is collected and handed to a check of the parser's own (request line or
//    status line), since only the parser knows its shape.
//  - ChunkScanner: a chunked body. Hex sizes without overflow, the CRLF after chunk data
//    (llhttp 8.1, as Debian ships it, skips those two bytes unchecked), extensions, trailer
//    lines and the trailer byte limit.
//
// A scanner returns how many of the bytes belong to the message (up to its end, or up to the
// byte at fault); the parser feeds exactly those to llhttp, so that llhttp's own finding
// about the same bytes is reported first and where the input is split does not change which
// finding is reported. After an error, error() and reason() say what; the parser turns them
// into its own kind of error (an HTTP status or a Status).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/http/message.hpp"

namespace civicbus::http::detail {

// Which side of the exchange a scanner serves: it names the section in error reasons, and a
// server ignores empty lines before the request line (RFC 9112 section 2.2) while a client
// refuses them before a status line.
enum class Peer { kRequest, kResponse };

enum class FramingError {
  kNone,
  kMalformed,      // the bytes break the grammar (a server answers 400)
  kLimitExceeded,  // a count or byte limit (a server answers 431)
};

// Empties a message body, keeping its room up to 64 KiB: a connection that once carried a
// large body does not hold on to it.
inline void clear_body(std::string& body) {
  if (body.capacity() > 64 * 1024) {
    std::string().swap(body);
  } else {
    body.clear();
  }
}

// Empties a response that is about to be filled again (the server's for the next request, a
// parser's for the next response) keeping the room its fields and body took (clear_body).
inline void clear_for_reuse(HttpResponse& r) {
  r.status = 200;
  r.reason.clear();
  r.headers.clear();
  clear_body(r.body);
}

// The same for a request: empty as a new one (every member as HttpRequest{} has it), keeping
// the room of its strings, of its field list and of its body (clear_body).
inline void clear_for_reuse(HttpRequest& r) {
  r.method.clear();
  r.target.clear();
  r.path.clear();
  r.query.clear();
  r.version_minor = 1;
  r.headers.clear();
  clear_body(r.body);
  r.remote_address.clear();
  r.remote_port = 0;
  r.tls = false;
  r.peer_certificate.reset();
}

// A header field's name and value as llhttp hands them over, in pieces: each part a view of
// the bytes being parsed when it arrived in one piece (the usual case), copied into a buffer
// of its own only when it is split across two reads. keep() must run after each
// llhttp_execute(), before those bytes go away.
class FieldSpans {
 public:
  void add_name(const char* at, std::size_t n) { name_.add(at, n); }
  void add_value(const char* at, std::size_t n) { value_.add(at, n); }
  std::string_view name() const { return name_.view; }
  std::string_view value() const { return value_.view; }
  void keep() {
    name_.keep();
    value_.keep();
  }
  void clear() {
    name_.clear();
    value_.clear();
  }

 private:
  struct Part {
    std::string_view view;
    std::string buffer;
    bool owned = false;  // `view` is `buffer`
    void add(const char* at, std::size_t n) {
      if (!owned && view.empty()) {
        view = std::string_view(at, n);
        return;
      }
      keep();
      buffer.append(at, n);
      view = buffer;
    }
    void keep() {
      if (owned || view.empty()) return;
      buffer.assign(view);
      view = buffer;
      owned = true;
    }
    void clear() {
      view = {};
      if (owned) buffer.clear();
      owned = false;
    }
  };
  Part name_;
  Part value_;
};

// What both scanners report after an error.
class FramingFindings {
 public:
  FramingError error() const { return error_; }
  const std::string& reason() const { return reason_; }

 protected:
  // Records the finding; returns `at`, the bytes before the one at fault.
  std::size_t fail(FramingError error, std::string reason, std::size_t at);
  void clear_findings();

 private:
  FramingError error_ = FramingError::kNone;
  std::string reason_;
};

class HeadScanner : public FramingFindings {
 public:
  // Checks the start line (without its CRLF) once it is complete.
  using StartLineCheck = bool (*)(std::string_view line);

  HeadScanner(Peer peer, std::size_t max_header_count, std::size_t max_header_bytes,
              StartLineCheck valid_start_line);

  // Scans header-section bytes; returns how many belong to the head (up to its end
  // inclusive, or up to the byte at fault).
  std::size_t scan(std::string_view data);
  // For the next message (a new request on the connection, or after a 1xx response).
  void reset();

  // Bytes of the head seen so far (empty lines before a request line included).
  std::size_t bytes() const { return bytes_; }
  // The empty line that ends the header section has been scanned.
  bool done() const { return done_; }

 private:
  Peer peer_;
  std::size_t max_header_count_;
  std::size_t max_header_bytes_;
  StartLineCheck valid_start_line_;

  std::size_t bytes_ = 0;
  std::size_t field_count_ = 0;
  std::size_t line_index_ = 0;  // 0: the start line
  bool line_empty_ = true;
  bool in_name_ = false;
  bool prev_cr_ = false;
  bool done_ = false;
  std::string start_line_;
};

class ChunkScanner : public FramingFindings {
 public:
  // The trailer section counts against the same byte limit as the header section.
  ChunkScanner(Peer peer, std::size_t max_trailer_bytes);

  // Scans chunked-body bytes: checks the framing llhttp 8 does not (the CRLF after chunk
  // data, extensions, trailer lines) and returns how many bytes belong to the message.
  std::size_t scan(std::string_view data);
  void reset();

 private:
  enum class State {
    kSize,
    kExt,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerLineStart,
    kTrailerLine,
    kTrailerLf,
    kEndLf,
    kDone
  };

  Peer peer_;
  std::size_t max_trailer_bytes_;

  State state_ = State::kSize;
  std::uint64_t size_ = 0;
  std::size_t digits_ = 0;
  std::size_t trailer_bytes_ = 0;
};

// Appends the field line "name: value\r\n" to `out` (one resize and two copies).
inline void append_field_line(std::string& out, std::string_view name, std::string_view value) {
  const std::size_t at = out.size();
  out.resize(at + name.size() + value.size() + 4);
  char* p = out.data() + at;
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  p[0] = ':';
  p[1] = ' ';
  std::memcpy(p + 2, value.data(), value.size());
  p += 2 + value.size();
  p[0] = '\r';
  p[1] = '\n';
}

// Writes a message head into `out` a block at a time: lines are put together in a buffer on
// the stack and appended when it fills and at the end (flush(), or the destructor), one
// append per block instead of four per "name: value" line, each of which checks the room and
// calls memcpy. size() counts what is buffered; view_from() and truncate() flush first, for a
// writer that checks what it wrote (count_breaks) and takes it back.
class FieldWriter {
 public:
  explicit FieldWriter(std::string& out) : out_(out) {}
  FieldWriter(const FieldWriter&) = delete;
  FieldWriter& operator=(const FieldWriter&) = delete;
  ~FieldWriter() { flush(); }

  // "name: value\r\n". Inlined, like text(), at every use: most names and many texts are
  // constants, whose copies then compile to a word move or two.
  [[gnu::always_inline]] void field(std::string_view name, std::string_view value) {
    char* p = room(name.size() + value.size() + 4);
    if (p == nullptr) {
      append_field_line(out_, name, value);
      return;
    }
    p = put(p, name);
    p[0] = ':';
    p[1] = ' ';
    p = put(p + 2, value);
    p[0] = '\r';
    p[1] = '\n';
  }
  // Bytes as they are.
  [[gnu::always_inline]] void text(std::string_view s) {
    char* p = room(s.size());
    if (p == nullptr) {
      out_.append(s);
    } else {
      put(p, s);
    }
  }
  void flush() {
    if (used_ != 0) out_.append(buffer_, used_);
    used_ = 0;
  }
  std::size_t size() const { return out_.size() + used_; }
  std::string_view view_from(std::size_t start) {
    flush();
    return std::string_view(out_).substr(start);
  }
  void truncate(std::size_t start) {
    flush();
    out_.resize(start);
  }

 private:
  static constexpr std::size_t kRoom = 2048;

  // Where the next `n` bytes go in the buffer, which counts them as written (flushed first
  // when they do not fit), or null when `n` is larger than the whole buffer (flushed: the
  // caller appends to `out_` itself).
  [[gnu::always_inline]] char* room(std::size_t n) {
    if (n > kRoom - used_) {
      flush();
      if (n > kRoom) return nullptr;
    }
    char* p = buffer_ + used_;
    used_ += n;
    return p;
  }
  // Copies s to p and returns the end: up to 16 bytes in two overlapping moves of a word each
  // (names and most values are that short), longer ones with memcpy.
  [[gnu::always_inline]] static char* put(char* p, std::string_view s) {
    const std::size_t n = s.size();
    if (n >= 8 && n <= 16) {
      copy_ends<std::uint64_t>(p, s.data(), n);
    } else if (n >= 4 && n < 8) {
      copy_ends<std::uint32_t>(p, s.data(), n);
    } else if (n < 4) {
      for (std::size_t i = 0; i < n; ++i) p[i] = s[i];
    } else {
      std::memcpy(p, s.data(), n);
    }
    return p + n;
  }
  // n bytes (sizeof(Word) <= n <= 2 * sizeof(Word)) as the word at the start and the word at
  // the end, which overlap when n is less than two words.
  template <class Word>
  static void copy_ends(char* p, const char* src, std::size_t n) {
    Word a;
    Word b;
    std::memcpy(&a, src, sizeof a);
    std::memcpy(&b, src + n - sizeof b, sizeof b);
    std::memcpy(p, &a, sizeof a);
    std::memcpy(p + n - sizeof b, &b, sizeof b);
  }

  std::string& out_;
  std::size_t used_ = 0;
  char buffer_[kRoom];
};

// Header names compared ignoring ASCII case, inline, for the lookups every field of every
// message meets (equals_ignore_case() in the public header is the same comparison behind a
// call). Lengths first, then eight bytes at a time (the last word overlapping the one
// before), folding case only for words that differ.
//
// Each byte of `w` with 'A'..'Z' made 'a'..'z', eight at once: a byte's high bit is set in
// `from_a` when its low seven bits are 'A' or more, in `past_z` when they are past 'Z'
// (neither sum carries into the next byte); a byte of 0x80 or more is left as it is.
// Forced inline: with a literal on one side (the usual lookup) its loads and its folding are
// constants, and a comparison costs a handful of instructions; as a call it costs ten times
// that (measured in the gateway's per-request instruction count).
#if defined(__GNUC__) || defined(__clang__)
#define CIVICBUS_HTTP_INLINE inline __attribute__((always_inline))
#else
#define CIVICBUS_HTTP_INLINE inline
#endif

CIVICBUS_HTTP_INLINE std::uint64_t fold_case(std::uint64_t w) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  const std::uint64_t low7 = w & (0x7f * kOnes);
  const std::uint64_t from_a = low7 + (0x80 - 'A') * kOnes;
  const std::uint64_t past_z = low7 + (0x7f - 'Z') * kOnes;
  const std::uint64_t upper = from_a & ~past_z & ~w & (0x80 * kOnes);
  return w | (upper >> 2);  // 0x80 >> 2 is 0x20, the case bit, in the same byte
}

CIVICBUS_HTTP_INLINE bool same_folded_word(std::uint64_t a, std::uint64_t b) {
  return a == b || fold_case(a) == fold_case(b);
}

CIVICBUS_HTTP_INLINE std::uint64_t load_word(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// The first and last half of a name of 2 to 7 bytes as one word (the halves may overlap,
// which compares some bytes twice).
CIVICBUS_HTTP_INLINE std::uint64_t load_short_name(const char* p, std::size_t n) {
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

CIVICBUS_HTTP_INLINE bool same_name(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* pa = a.data();
  const char* pb = b.data();
  if (n >= 8) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      if (!same_folded_word(load_word(pa + i), load_word(pb + i))) return false;
    }
    return i == n || same_folded_word(load_word(pa + n - 8), load_word(pb + n - 8));
  }
  if (n >= 2) return same_folded_word(load_short_name(pa, n), load_short_name(pb, n));
  return n == 0 ||
         same_folded_word(static_cast<unsigned char>(pa[0]), static_cast<unsigned char>(pb[0]));
}

// token characters (RFC 9110 section 5.6.2).
bool is_tchar(char c);
// 1*tchar: a method, a field name.
bool is_token(std::string_view s);
// No CR, LF or NUL: text that cannot split a message when written into a field or status line.
bool is_safe_field_text(std::string_view s);
// How many CR, LF and NUL bytes `s` holds. A writer that appended `n` field lines, each with
// its own CRLF, checks them all at once: the count is 2 * n exactly when no name or value
// holds one of these bytes (one pass over the lines instead of a check per name and value).
std::size_t count_breaks(std::string_view s);
// Content-Length, Transfer-Encoding or Connection: fields the server and client write
// themselves and never copy from a caller.
bool is_framing_field(std::string_view name);
// Without leading and trailing spaces and tabs.
std::string_view trim_ows(std::string_view s);
// 1*DIGIT that fits in uint64; nothing else (no sign, no inner space, no list).
bool parse_content_length(std::string_view text, std::uint64_t& out);
// The codings of every Transfer-Encoding field, in order, each trimmed (empty ones kept, for
// the caller to refuse).
std::vector<std::string_view> split_codings(const std::vector<std::string_view>& fields);

}  // namespace civicbus::http::detail

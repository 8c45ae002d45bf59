#include "core/json_schema_formats.hpp"

#include <array>
#include <cstdint>

#include "core/ecma_regex.hpp"
#include "core/json_text.hpp"

namespace civicbus::detail {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Reads exactly `n` ASCII digits at `pos` as a number.
bool read_digits(std::string_view s, std::size_t& pos, std::size_t n, int& out) {
  if (s.size() - pos < n) return false;
  out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!is_digit(s[pos + i])) return false;
    out = out * 10 + (s[pos + i] - '0');
  }
  pos += n;
  return true;
}

bool expect(std::string_view s, std::size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

// ---- Dates and times (RFC 3339 §5.6) ----------------------------------------------------

bool leap_year(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool parse_full_date(std::string_view s, std::size_t& pos) {
  int year = 0, month = 0, day = 0;
  if (!read_digits(s, pos, 4, year) || !expect(s, pos, '-') || !read_digits(s, pos, 2, month) ||
      !expect(s, pos, '-') || !read_digits(s, pos, 2, day)) {
    return false;
  }
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1) return false;
  const int max_day =
      month == 2 && leap_year(year) ? 29 : kDays[static_cast<std::size_t>(month - 1)];
  return day <= max_day;
}

bool parse_full_time(std::string_view s, std::size_t& pos) {
  int hour = 0, minute = 0, second = 0;
  if (!read_digits(s, pos, 2, hour) || !expect(s, pos, ':') || !read_digits(s, pos, 2, minute) ||
      !expect(s, pos, ':') || !read_digits(s, pos, 2, second)) {
    return false;
  }
  if (hour > 23 || minute > 59 || second > 60) return false;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    if (pos == start) return false;
  }
  if (pos >= s.size()) return false;  // the offset is required
  int offset_minutes = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    const int sign = s[pos] == '+' ? 1 : -1;
    ++pos;
    int oh = 0, om = 0;
    if (!read_digits(s, pos, 2, oh) || !expect(s, pos, ':') || !read_digits(s, pos, 2, om)) {
      return false;
    }
    if (oh > 23 || om > 59) return false;
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return false;
  }
  if (second == 60) {
    // A leap second happens at 23:59:60 UTC only.
    int utc = (hour * 60 + minute - offset_minutes) % (24 * 60);
    if (utc < 0) utc += 24 * 60;
    if (utc != 23 * 60 + 59) return false;
  }
  return true;
}

bool is_date(std::string_view s) {
  std::size_t pos = 0;
  return parse_full_date(s, pos) && pos == s.size();
}

bool is_time(std::string_view s) {
  std::size_t pos = 0;
  return parse_full_time(s, pos) && pos == s.size();
}

bool is_date_time(std::string_view s) {
  std::size_t pos = 0;
  if (!parse_full_date(s, pos)) return false;
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't')) return false;
  ++pos;
  return parse_full_time(s, pos) && pos == s.size();
}

// RFC 3339 Appendix A: P[nY[nM[nD]]] / P[nM[nD]] / P[nD] with an optional T part, or PnW.
bool is_duration(std::string_view s) {
  if (s.size() < 2 || s[0] != 'P') return false;
  std::size_t pos = 1;
  auto read_components = [&](std::string_view units, bool& any) {
    std::size_t next_unit = 0;  // units must appear in order, without gaps once started
    bool started = false;
    while (pos < s.size() && is_digit(s[pos])) {
      while (pos < s.size() && is_digit(s[pos])) ++pos;
      if (pos >= s.size()) return false;
      const std::size_t unit = units.find(s[pos], next_unit);
      if (unit == std::string_view::npos) return false;
      if (started && unit != next_unit) return false;
      started = true;
      next_unit = unit + 1;
      ++pos;
      any = true;
    }
    return true;
  };
  if (s.back() == 'W') {
    std::size_t i = 1;
    while (i + 1 < s.size() && is_digit(s[i])) ++i;
    return i == s.size() - 1 && i > 1;
  }
  bool date_any = false;
  if (!read_components("YMD", date_any)) return false;
  bool time_any = false;
  if (pos < s.size() && s[pos] == 'T') {
    ++pos;
    if (!read_components("HMS", time_any) || !time_any) return false;
  }
  return pos == s.size() && (date_any || time_any);
}

// ---- Network names and addresses --------------------------------------------------------

bool is_ipv4(std::string_view s) {
  std::size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0 && !expect(s, pos, '.')) return false;
    const std::size_t start = pos;
    int value = 0;
    while (pos < s.size() && is_digit(s[pos]) && pos - start < 3)
      value = value * 10 + (s[pos++] - '0');
    const std::size_t length = pos - start;
    if (length == 0 || value > 255 || (length > 1 && s[start] == '0')) return false;
  }
  return pos == s.size();
}

bool is_ipv6(std::string_view s) {
  if (s.empty()) return false;
  int groups = 0;
  bool compressed = false;
  std::size_t pos = 0;
  if (s.starts_with("::")) {
    compressed = true;
    pos = 2;
    if (pos == s.size()) return true;
  } else if (s[0] == ':') {
    return false;
  }
  while (pos < s.size()) {
    // An embedded IPv4 address ends the address and counts as two groups.
    const std::size_t next_colon = s.find(':', pos);
    const std::string_view rest = s.substr(pos);
    if (next_colon == std::string_view::npos && rest.find('.') != std::string_view::npos) {
      if (!is_ipv4(rest)) return false;
      groups += 2;
      pos = s.size();
      break;
    }
    const std::size_t start = pos;
    while (pos < s.size() && is_hex(s[pos]) && pos - start < 5) ++pos;
    const std::size_t length = pos - start;
    if (length == 0 || length > 4) return false;
    ++groups;
    if (pos == s.size()) break;
    if (s[pos] != ':') return false;
    ++pos;
    if (pos < s.size() && s[pos] == ':') {
      if (compressed) return false;
      compressed = true;
      ++pos;
      if (pos == s.size()) break;
    } else if (pos == s.size()) {
      return false;  // a single trailing colon
    }
  }
  return compressed ? groups < 8 : groups == 8;
}

bool is_hostname_label(std::string_view label, bool international) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (unsigned char c : label) {
    if (c >= 0x80 && international) continue;
    if (!is_alpha(static_cast<char>(c)) && !is_digit(static_cast<char>(c)) && c != '-') {
      return false;
    }
  }
  // "--" in the third and fourth positions is reserved for A-labels ("xn--").
  if (label.size() >= 4 && label[2] == '-' && label[3] == '-') {
    const bool xn = (label[0] == 'x' || label[0] == 'X') && (label[1] == 'n' || label[1] == 'N');
    if (!xn) return false;
  }
  return true;
}

bool is_hostname(std::string_view s, bool international = false) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = s.find('.', start);
    const std::string_view label =
        s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!is_hostname_label(label, international)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// RFC 5321 Mailbox: dot-string or quoted-string, then a domain or an address literal.
bool is_email(std::string_view s, bool international) {
  const std::size_t at = s.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= s.size()) return false;
  const std::string_view local = s.substr(0, at);
  const std::string_view domain = s.substr(at + 1);
  if (local.front() == '"') {
    if (local.size() < 2 || local.back() != '"') return false;
    for (std::size_t i = 1; i + 1 < local.size(); ++i) {
      const auto c = static_cast<unsigned char>(local[i]);
      if (c == '\\') {
        ++i;
        if (i + 1 >= local.size()) return false;
        continue;
      }
      if (c == '"' || (c < 0x20 && c != '\t') || c == 0x7F) return false;
      if (c >= 0x80 && !international) return false;
    }
  } else {
    static constexpr std::string_view kAtext = "!#$%&'*+-/=?^_`{|}~";
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
      return false;
    }
    for (unsigned char c : local) {
      if (c >= 0x80) {
        if (!international) return false;
        continue;
      }
      const char ch = static_cast<char>(c);
      if (!is_alpha(ch) && !is_digit(ch) && ch != '.' &&
          kAtext.find(ch) == std::string_view::npos) {
        return false;
      }
    }
  }
  if (domain.front() == '[') {
    if (domain.back() != ']') return false;
    const std::string_view literal = domain.substr(1, domain.size() - 2);
    if (literal.starts_with("IPv6:")) return is_ipv6(literal.substr(5));
    return is_ipv4(literal);
  }
  return is_hostname(domain, international);
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

// ---- URIs and IRIs (RFC 3986, RFC 3987) -------------------------------------------------

constexpr std::string_view kSubDelims = "!$&'()*+,;=";

bool is_unreserved(char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool is_sub_delim(char c) {
  return kSubDelims.find(c) != std::string_view::npos;
}

// Checks that every character of `part` is unreserved, a sub-delim, a valid %XX, one of
// `extra`, or (for IRIs) a non-ASCII character.
bool valid_chars(std::string_view part, std::string_view extra, bool iri) {
  for (std::size_t i = 0; i < part.size(); ++i) {
    const char c = part[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      if (!iri) return false;
      const std::size_t length = utf8_sequence_length(part.data() + i, part.data() + part.size());
      if (length == 0) return false;
      i += length - 1;
      continue;
    }
    if (c == '%') {
      if (i + 2 >= part.size() || !is_hex(part[i + 1]) || !is_hex(part[i + 2])) return false;
      i += 2;
      continue;
    }
    if (is_unreserved(c) || is_sub_delim(c) || extra.find(c) != std::string_view::npos) continue;
    return false;
  }
  return true;
}

bool valid_ip_literal(std::string_view inside) {
  if (!inside.empty() && (inside[0] == 'v' || inside[0] == 'V')) {
    const std::size_t dot = inside.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 >= inside.size()) return false;
    for (std::size_t i = 1; i < dot; ++i) {
      if (!is_hex(inside[i])) return false;
    }
    return valid_chars(inside.substr(dot + 1), ":", false);
  }
  return is_ipv6(inside);
}

bool valid_authority(std::string_view authority, bool iri) {
  const std::size_t at = authority.find('@');
  if (at != std::string_view::npos) {
    if (!valid_chars(authority.substr(0, at), ":", iri)) return false;
    authority.remove_prefix(at + 1);
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    if (!valid_ip_literal(authority.substr(1, close - 1))) return false;
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    std::string_view host = authority;
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (!valid_chars(host, "", iri)) return false;
  }
  for (char c : port) {
    if (!is_digit(c)) return false;
  }
  return true;
}

bool is_uri(std::string_view s, bool allow_relative, bool iri) {
  std::string_view fragment;
  bool has_fragment = false;
  if (const std::size_t hash = s.find('#'); hash != std::string_view::npos) {
    fragment = s.substr(hash + 1);
    has_fragment = true;
    s = s.substr(0, hash);
  }
  std::string_view query;
  bool has_query = false;
  if (const std::size_t q = s.find('?'); q != std::string_view::npos) {
    query = s.substr(q + 1);
    has_query = true;
    s = s.substr(0, q);
  }
  bool has_scheme = false;
  const std::size_t colon = s.find(':');
  const std::size_t slash = s.find('/');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon < slash)) {
    const std::string_view scheme = s.substr(0, colon);
    bool valid_scheme = !scheme.empty() && is_alpha(scheme[0]);
    for (char c : scheme) {
      valid_scheme =
          valid_scheme && (is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.');
    }
    if (!valid_scheme) return false;  // also: a colon in a relative path's first segment
    has_scheme = true;
    s = s.substr(colon + 1);
  }
  if (!has_scheme && !allow_relative) return false;
  std::string_view path = s;
  if (s.starts_with("//")) {
    const std::size_t end = s.find('/', 2);
    const std::string_view authority = s.substr(2, end == std::string_view::npos ? end : end - 2);
    if (!valid_authority(authority, iri)) return false;
    path = end == std::string_view::npos ? std::string_view() : s.substr(end);
  }
  if (!valid_chars(path, ":@/", iri)) return false;
  if (has_query && !valid_chars(query, ":@/?", iri)) return false;
  if (has_fragment && !valid_chars(fragment, ":@/?", iri)) return false;
  return true;
}

// ---- Pointers, templates ----------------------------------------------------------------

bool is_json_pointer(std::string_view s) {
  if (s.empty()) return true;
  if (s.front() != '/') return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '~') continue;
    if (i + 1 >= s.size() || (s[i + 1] != '0' && s[i + 1] != '1')) return false;
    ++i;
  }
  return true;
}

bool is_relative_json_pointer(std::string_view s) {
  std::size_t pos = 0;
  while (pos < s.size() && is_digit(s[pos])) ++pos;
  if (pos == 0 || (pos > 1 && s[0] == '0')) return false;
  const std::string_view rest = s.substr(pos);
  return rest == "#" || is_json_pointer(rest);
}

// RFC 6570 level 4 syntax.
bool is_uri_template(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '{') {
      const std::size_t close = s.find('}', i);
      if (close == std::string_view::npos) return false;
      std::string_view expression = s.substr(i + 1, close - i - 1);
      i = close;
      if (!expression.empty() &&
          std::string_view("+#./;?&").find(expression[0]) != std::string_view::npos) {
        expression.remove_prefix(1);
      }
      if (expression.empty()) return false;
      std::size_t start = 0;
      while (true) {
        const std::size_t comma = expression.find(',', start);
        std::string_view varspec =
            expression.substr(start, comma == std::string_view::npos ? comma : comma - start);
        if (varspec.ends_with('*')) {
          varspec.remove_suffix(1);
        } else if (const std::size_t colon = varspec.find(':'); colon != std::string_view::npos) {
          const std::string_view length = varspec.substr(colon + 1);
          if (length.empty() || length.size() > 4 || length[0] == '0') return false;
          for (char d : length) {
            if (!is_digit(d)) return false;
          }
          varspec = varspec.substr(0, colon);
        }
        if (varspec.empty() || varspec.front() == '.' || varspec.back() == '.' ||
            varspec.find("..") != std::string_view::npos) {
          return false;
        }
        for (std::size_t k = 0; k < varspec.size(); ++k) {
          const char v = varspec[k];
          if (v == '%') {
            if (k + 2 >= varspec.size() || !is_hex(varspec[k + 1]) || !is_hex(varspec[k + 2])) {
              return false;
            }
            k += 2;
          } else if (!is_alpha(v) && !is_digit(v) && v != '_' && v != '.') {
            return false;
          }
        }
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
      continue;
    }
    if (c == '%') {
      if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
      i += 2;
      continue;
    }
    if (c >= 0x80) {
      const std::size_t length = utf8_sequence_length(s.data() + i, s.data() + s.size());
      if (length == 0) return false;
      i += length - 1;
      continue;
    }
    if (c <= 0x20 || c == 0x7F ||
        std::string_view("\"<>\\^`|}").find(static_cast<char>(c)) != std::string_view::npos) {
      return false;
    }
  }
  return true;
}

enum class Format {
  kUnknown,
  kDateTime,
  kDate,
  kTime,
  kDuration,
  kEmail,
  kIdnEmail,
  kHostname,
  kIpv4,
  kIpv6,
  kUri,
  kUriReference,
  kIri,
  kIriReference,
  kUuid,
  kJsonPointer,
  kRelativeJsonPointer,
  kRegex,
  kUriTemplate
};

Format format_of(std::string_view name) {
  static constexpr std::pair<std::string_view, Format> kFormats[] = {
      {"date-time", Format::kDateTime},
      {"date", Format::kDate},
      {"time", Format::kTime},
      {"duration", Format::kDuration},
      {"email", Format::kEmail},
      {"idn-email", Format::kIdnEmail},
      {"hostname", Format::kHostname},
      {"ipv4", Format::kIpv4},
      {"ipv6", Format::kIpv6},
      {"uri", Format::kUri},
      {"uri-reference", Format::kUriReference},
      {"iri", Format::kIri},
      {"iri-reference", Format::kIriReference},
      {"uuid", Format::kUuid},
      {"json-pointer", Format::kJsonPointer},
      {"relative-json-pointer", Format::kRelativeJsonPointer},
      {"regex", Format::kRegex},
      {"uri-template", Format::kUriTemplate},
  };
  for (const auto& [known, format] : kFormats) {
    if (name == known) return format;
  }
  return Format::kUnknown;
}

}  // namespace

bool is_known_format(std::string_view format) {
  return format_of(format) != Format::kUnknown;
}

bool format_matches(std::string_view format, std::string_view value) {
  switch (format_of(format)) {
    case Format::kUnknown:
      return true;
    case Format::kDateTime:
      return is_date_time(value);
    case Format::kDate:
      return is_date(value);
    case Format::kTime:
      return is_time(value);
    case Format::kDuration:
      return is_duration(value);
    case Format::kEmail:
      return is_email(value, false);
    case Format::kIdnEmail:
      return is_email(value, true);
    case Format::kHostname:
      return is_hostname(value);
    case Format::kIpv4:
      return is_ipv4(value);
    case Format::kIpv6:
      return is_ipv6(value);
    case Format::kUri:
      return is_uri(value, false, false);
    case Format::kUriReference:
      return is_uri(value, true, false);
    case Format::kIri:
      return is_uri(value, false, true);
    case Format::kIriReference:
      return is_uri(value, true, true);
    case Format::kUuid:
      return is_uuid(value);
    case Format::kJsonPointer:
      return is_json_pointer(value);
    case Format::kRelativeJsonPointer:
      return is_relative_json_pointer(value);
    case Format::kRegex:
      return EcmaRegex::compile(value).ok();
    case Format::kUriTemplate:
      return is_uri_template(value);
  }
  return true;
}

}  // namespace civicbus::detail

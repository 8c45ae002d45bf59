// TZif (RFC 8536) reader and the POSIX TZ rule of its footer. Debian ships "slim" files that
// stop listing transitions at the last rule change and rely on the footer for everything
// after, so the footer rule is not an optional extra.
#include "civicbus/core/time_zone.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <vector>

#include "core/civil_date.hpp"
#include "core/read_file.hpp"

namespace civicbus {

namespace {

constexpr std::int64_t kDay = 86'400;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

using detail::days_from_civil;
using detail::days_in_month;

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  const detail::CivilDate c = detail::civil_from_days(z);
  y = c.year;
  m = c.month;
  d = c.day;
}

bool is_leap(std::int64_t y) {
  return detail::is_leap_year(y);
}

}  // namespace

CivilTime civil_from_seconds(std::int64_t seconds) {
  const std::int64_t days = floor_div(seconds, kDay);
  const std::int64_t rem = seconds - days * kDay;
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  CivilTime t;
  t.year = static_cast<int>(y);
  t.month = static_cast<int>(m);
  t.day = static_cast<int>(d);
  t.hour = static_cast<int>(rem / 3600);
  t.minute = static_cast<int>(rem / 60 % 60);
  t.second = static_cast<int>(rem % 60);
  t.weekday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  return t;
}

std::int64_t seconds_from_civil(const CivilTime& t) {
  return days_from_civil(t.year, static_cast<unsigned>(t.month), static_cast<unsigned>(t.day)) *
             kDay +
         t.hour * 3600 + t.minute * 60 + t.second;
}

// ----- parsed data -------------------------------------------------------------------------

namespace {

struct LocalType {
  std::int32_t offset = 0;
  bool dst = false;
  std::string abbreviation;
};

// A date in a POSIX TZ rule: "Jn", "n" or "Mm.w.d".
struct RuleDate {
  enum class Kind { kJulianNoLeap, kZeroBased, kMonthWeekDay } kind = Kind::kMonthWeekDay;
  int day = 0;  // Jn: 1..365; n: 0..365
  int month = 0, week = 0, weekday = 0;
  std::int32_t time = 2 * 3600;  // local seconds after midnight; RFC 8536 allows -167..167 h

  // Days since the epoch of this date in `year`.
  std::int64_t day_in(std::int64_t year) const {
    const std::int64_t jan1 = days_from_civil(year, 1, 1);
    switch (kind) {
      case Kind::kJulianNoLeap:
        return jan1 + day - 1 + (is_leap(year) && day >= 60 ? 1 : 0);
      case Kind::kZeroBased:
        return jan1 + day;
      case Kind::kMonthWeekDay: {
        const std::int64_t first = days_from_civil(year, static_cast<unsigned>(month), 1);
        const int first_wd = static_cast<int>(((first % 7) + 11) % 7);
        int mday = 1 + (weekday - first_wd + 7) % 7 + (week - 1) * 7;
        const int len = static_cast<int>(days_in_month(year, static_cast<unsigned>(month)));
        while (mday > len) mday -= 7;  // week 5 means "the last"
        return first + mday - 1;
      }
    }
    return jan1;
  }
};

struct PosixRule {
  LocalType std_type;
  bool has_dst = false;
  LocalType dst_type;
  RuleDate start, end;
};

class PosixParser {
 public:
  explicit PosixParser(std::string_view s) : s_(s) {}

  Result<PosixRule> parse() {
    PosixRule r;
    CIVICBUS_ASSIGN_OR_RETURN(r.std_type.abbreviation, name());
    CIVICBUS_ASSIGN_OR_RETURN(std::int32_t std_off, offset());
    r.std_type.offset = -std_off;  // POSIX counts west of Greenwich as positive
    if (done()) return r;
    r.has_dst = true;
    r.dst_type.dst = true;
    CIVICBUS_ASSIGN_OR_RETURN(r.dst_type.abbreviation, name());
    r.dst_type.offset = r.std_type.offset + 3600;
    if (!done() && peek() != ',') {
      CIVICBUS_ASSIGN_OR_RETURN(std::int32_t dst_off, offset());
      r.dst_type.offset = -dst_off;
    }
    if (done()) {
      // No rule given: POSIX leaves it to the implementation; glibc uses the US rule.
      r.start = RuleDate{RuleDate::Kind::kMonthWeekDay, 0, 3, 2, 0, 7200};
      r.end = RuleDate{RuleDate::Kind::kMonthWeekDay, 0, 11, 1, 0, 7200};
      return r;
    }
    if (!eat(',')) return error("expected ',' before the DST start rule");
    CIVICBUS_ASSIGN_OR_RETURN(r.start, date());
    if (!eat(',')) return error("expected ',' before the DST end rule");
    CIVICBUS_ASSIGN_OR_RETURN(r.end, date());
    if (!done()) return error("unexpected text after the DST end rule");
    return r;
  }

 private:
  bool done() const { return i_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[i_]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  Status error(std::string_view what) const {
    return data_loss(fmt::format("TZ rule \"{}\" at position {}: {}", s_, i_, what));
  }

  Result<std::string> name() {
    std::string out;
    if (eat('<')) {
      while (!done() && peek() != '>') out += s_[i_++];
      if (!eat('>')) return error("unterminated '<' in a zone abbreviation");
    } else {
      while (!done() && std::isalpha(static_cast<unsigned char>(peek()))) out += s_[i_++];
    }
    if (out.size() < 3) return error("zone abbreviation shorter than 3 characters");
    return out;
  }

  Result<int> number(int max) {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) return error("expected a digit");
    int v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      v = v * 10 + (s_[i_++] - '0');
      if (v > max) return error("number out of range");
    }
    return v;
  }

  // [+-]hh[:mm[:ss]] in seconds; `max_hours` is 24 for offsets and 167 for rule times.
  Result<std::int32_t> hms(int max_hours) {
    int sign = 1;
    if (eat('-')) {
      sign = -1;
    } else {
      eat('+');
    }
    CIVICBUS_ASSIGN_OR_RETURN(int h, number(max_hours));
    int m = 0, sec = 0;
    if (eat(':')) {
      CIVICBUS_ASSIGN_OR_RETURN(m, number(59));
      if (eat(':')) {
        CIVICBUS_ASSIGN_OR_RETURN(sec, number(59));
      }
    }
    return sign * (h * 3600 + m * 60 + sec);
  }
  Result<std::int32_t> offset() { return hms(24); }

  Result<RuleDate> date() {
    RuleDate d;
    if (eat('J')) {
      d.kind = RuleDate::Kind::kJulianNoLeap;
      CIVICBUS_ASSIGN_OR_RETURN(d.day, number(365));
      if (d.day < 1) return error("Julian day must be 1..365");
    } else if (eat('M')) {
      d.kind = RuleDate::Kind::kMonthWeekDay;
      CIVICBUS_ASSIGN_OR_RETURN(d.month, number(12));
      if (!eat('.')) return error("expected '.' after the month");
      CIVICBUS_ASSIGN_OR_RETURN(d.week, number(5));
      if (!eat('.')) return error("expected '.' after the week");
      CIVICBUS_ASSIGN_OR_RETURN(d.weekday, number(6));
      if (d.month < 1 || d.week < 1) return error("month must be 1..12 and week 1..5");
    } else {
      d.kind = RuleDate::Kind::kZeroBased;
      CIVICBUS_ASSIGN_OR_RETURN(d.day, number(365));
    }
    if (eat('/')) {
      CIVICBUS_ASSIGN_OR_RETURN(d.time, hms(167));
    }
    return d;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

struct TimeZone::Data {
  std::string name;
  std::vector<std::int64_t> transitions;      // UTC seconds, ascending
  std::vector<std::uint8_t> transition_type;  // index into types
  std::vector<LocalType> types;               // never empty
  bool has_rule = false;
  PosixRule rule;

  // The two footer-rule transitions of `year` (UTC instant, type after it).
  using RuleTransition = std::pair<std::int64_t, const LocalType*>;
  void rule_transitions(std::int64_t year, RuleTransition* out) const {
    out[0] = {rule.start.day_in(year) * kDay + rule.start.time - rule.std_type.offset,
              &rule.dst_type};
    out[1] = {rule.end.day_in(year) * kDay + rule.end.time - rule.dst_type.offset, &rule.std_type};
  }

  const LocalType& from_rule(std::int64_t t) const {
    if (!rule.has_dst) return rule.std_type;
    const std::int64_t year = civil_from_seconds(t + rule.std_type.offset).year;
    std::array<RuleTransition, 6> ts;
    for (int i = 0; i < 3; ++i)
      rule_transitions(year - 1 + i, &ts[static_cast<std::size_t>(2 * i)]);
    // On equal instants (permanent DST written as "0/0,J365/25") the DST start wins.
    std::sort(ts.begin(), ts.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second->dst < b.second->dst;
    });
    const LocalType* current = &rule.std_type;
    for (const auto& [at, type] : ts) {
      if (at > t) break;
      current = type;
    }
    return *current;
  }

  const LocalType& type_at(std::int64_t t) const {
    if (transitions.empty()) return has_rule ? from_rule(t) : types[0];
    if (t < transitions.front()) return types[0];
    if (t >= transitions.back() && has_rule) return from_rule(t);
    const auto it = std::upper_bound(transitions.begin(), transitions.end(), t);
    return types[transition_type[static_cast<std::size_t>(it - transitions.begin()) - 1]];
  }
};

// ----- TZif --------------------------------------------------------------------------------

namespace {

struct Reader {
  std::string_view bytes;
  std::size_t pos = 0;
  bool has(std::size_t n) const { return bytes.size() - pos >= n; }
  std::int64_t be(std::size_t n) {  // signed big-endian of n = 4 or 8 bytes
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[pos + i]);
    pos += n;
    if (n == 4) return static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
    return static_cast<std::int64_t>(v);
  }
};

struct Header {
  char version = 0;
  std::int64_t isutcnt = 0, isstdcnt = 0, leapcnt = 0, timecnt = 0, typecnt = 0, charcnt = 0;
  std::size_t block_size(std::size_t time_size) const {
    return static_cast<std::size_t>(
        timecnt * static_cast<std::int64_t>(time_size) + timecnt + typecnt * 6 + charcnt +
        leapcnt * static_cast<std::int64_t>(time_size + 4) + isstdcnt + isutcnt);
  }
};

Result<Header> read_header(Reader& r) {
  if (!r.has(44) || r.bytes.substr(r.pos, 4) != "TZif") return data_loss("not a TZif file");
  Header h;
  h.version = r.bytes[r.pos + 4];
  r.pos += 20;
  h.isutcnt = r.be(4);
  h.isstdcnt = r.be(4);
  h.leapcnt = r.be(4);
  h.timecnt = r.be(4);
  h.typecnt = r.be(4);
  h.charcnt = r.be(4);
  if (h.isutcnt < 0 || h.isstdcnt < 0 || h.leapcnt < 0 || h.timecnt < 0 || h.typecnt < 1 ||
      h.typecnt > 256 || h.charcnt < 0) {
    return data_loss("TZif header has invalid counts");
  }
  return h;
}

Status read_block(Reader& r, const Header& h, std::size_t time_size, TimeZone::Data& z) {
  if (!r.has(h.block_size(time_size))) return data_loss("TZif data block is truncated");
  z.transitions.resize(static_cast<std::size_t>(h.timecnt));
  for (auto& t : z.transitions) t = r.be(time_size);
  z.transition_type.resize(static_cast<std::size_t>(h.timecnt));
  for (auto& t : z.transition_type) {
    t = static_cast<std::uint8_t>(r.bytes[r.pos++]);
    if (t >= h.typecnt) return data_loss("TZif transition names a missing local time type");
  }
  std::vector<std::uint8_t> abbr_index(static_cast<std::size_t>(h.typecnt));
  z.types.resize(static_cast<std::size_t>(h.typecnt));
  for (std::size_t i = 0; i < z.types.size(); ++i) {
    z.types[i].offset = static_cast<std::int32_t>(r.be(4));
    z.types[i].dst = r.bytes[r.pos++] != 0;
    abbr_index[i] = static_cast<std::uint8_t>(r.bytes[r.pos++]);
  }
  const std::string_view chars = r.bytes.substr(r.pos, static_cast<std::size_t>(h.charcnt));
  r.pos += static_cast<std::size_t>(h.charcnt);
  for (std::size_t i = 0; i < z.types.size(); ++i) {
    if (abbr_index[i] >= chars.size()) return data_loss("TZif abbreviation index out of range");
    const std::string_view rest = chars.substr(abbr_index[i]);
    z.types[i].abbreviation = std::string(rest.substr(0, rest.find('\0')));
  }
  // Leap-second records and the standard/UT indicators are not needed for civil time.
  r.pos += static_cast<std::size_t>(h.leapcnt) * (time_size + 4) +
           static_cast<std::size_t>(h.isstdcnt + h.isutcnt);
  for (std::size_t i = 1; i < z.transitions.size(); ++i) {
    if (z.transitions[i] <= z.transitions[i - 1]) {
      return data_loss("TZif transition times are not ascending");
    }
  }
  return Status();
}

Status parse_tzif(std::string_view bytes, TimeZone::Data& z) {
  Reader r{bytes};
  CIVICBUS_ASSIGN_OR_RETURN(Header v1, read_header(r));
  if (v1.version == '\0') return read_block(r, v1, 4, z);
  // Version 2+: skip the 32-bit block, read the 64-bit one and the footer.
  if (!r.has(v1.block_size(4))) return data_loss("TZif version 1 data block is truncated");
  r.pos += v1.block_size(4);
  CIVICBUS_ASSIGN_OR_RETURN(Header v2, read_header(r));
  CIVICBUS_RETURN_IF_ERROR(read_block(r, v2, 8, z));
  if (!r.has(1) || r.bytes[r.pos] != '\n') return data_loss("TZif footer is missing");
  const std::size_t end = r.bytes.find('\n', r.pos + 1);
  if (end == std::string_view::npos) return data_loss("TZif footer is not terminated");
  const std::string_view tz = r.bytes.substr(r.pos + 1, end - r.pos - 1);
  if (!tz.empty()) {
    auto rule = PosixParser(tz).parse();
    if (!rule.ok()) return rule.status();
    z.rule = std::move(rule).value();
    z.has_rule = true;
  }
  return Status();
}

bool valid_zone_name(std::string_view name) {
  if (name.empty() || name.front() == '/' || name.size() > 255) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '_' && c != '+' &&
        c != '-' && c != '.') {
      return false;
    }
  }
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t slash = std::min(name.find('/', start), name.size());
    const std::string_view part = name.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

// ----- TimeZone ----------------------------------------------------------------------------

TimeZone TimeZone::utc() {
  static const std::shared_ptr<const Data> kUtc = [] {
    auto d = std::make_shared<Data>();
    d->name = "UTC";
    d->types.push_back(LocalType{0, false, "UTC"});
    return d;
  }();
  return TimeZone(kUtc);
}

Result<TimeZone> TimeZone::load(std::string_view name) {
  return load(name, "/usr/share/zoneinfo");
}

Result<TimeZone> TimeZone::load(std::string_view name, std::string_view zoneinfo_dir) {
  if (!valid_zone_name(name)) {
    return invalid_argument(fmt::format(
        "time zone '{}' is not a valid IANA name (like 'America/Toronto'); absolute paths, "
        "'..' and characters outside [A-Za-z0-9/_+-.] are refused",
        name));
  }
  const std::string path = fmt::format("{}/{}", zoneinfo_dir, name);
  auto bytes = read_text_file(path);
  if (!bytes.ok()) {
    if (name == "UTC" || name == "Etc/UTC") return utc();
    return not_found(
        fmt::format("time zone '{}' is unknown: cannot read '{}' (is the tzdata "
                    "package installed?)",
                    name, path));
  }
  auto zone = from_tzif(name, *bytes);
  if (!zone.ok()) {
    return Status(zone.status().code(),
                  fmt::format("time zone '{}' from '{}': {}", name, path, zone.status().message()));
  }
  return zone;
}

Result<TimeZone> TimeZone::from_tzif(std::string_view name, std::string_view tzif_bytes) {
  auto d = std::make_shared<Data>();
  d->name = std::string(name);
  CIVICBUS_RETURN_IF_ERROR(parse_tzif(tzif_bytes, *d));
  return TimeZone(std::move(d));
}

const std::string& TimeZone::name() const {
  return data_->name;
}

int TimeZone::offset_at(std::int64_t utc_seconds) const {
  return data_->type_at(utc_seconds).offset;
}

bool TimeZone::is_dst(std::int64_t utc_seconds) const {
  return data_->type_at(utc_seconds).dst;
}

std::string TimeZone::abbreviation(std::int64_t utc_seconds) const {
  return data_->type_at(utc_seconds).abbreviation;
}

LocalTimeResolution TimeZone::from_local(std::int64_t local_seconds, Disambiguation d) const {
  // Offsets in effect a day either side of the local time cover every real transition (no
  // zone changes its offset twice within two days).
  const int before = offset_at(local_seconds - kDay);
  const int after = offset_at(local_seconds + kDay);
  std::int64_t found[3];
  int n = 0;
  for (int o : {before, offset_at(local_seconds), after}) {
    const std::int64_t u = local_seconds - o;
    if (offset_at(u) != o) continue;
    if (std::find(found, found + n, u) == found + n) found[n++] = u;
  }
  // At most three values: sorted by hand (GCC 12 warns, wrongly, about std::sort here).
  for (int i = 1; i < n; ++i) {
    for (int j = i; j > 0 && found[j] < found[j - 1]; --j) std::swap(found[j], found[j - 1]);
  }
  if (n == 1) return {found[0], LocalTimeKind::kUnique};
  if (n >= 2) {
    return {d == Disambiguation::kEarlier ? found[0] : found[n - 1], LocalTimeKind::kRepeated};
  }
  return {d == Disambiguation::kEarlier ? local_seconds - after : local_seconds - before,
          LocalTimeKind::kSkipped};
}

std::int64_t TimeZone::start_of_local_date(std::int64_t local_day_start) const {
  const LocalTimeResolution r = from_local(local_day_start, Disambiguation::kEarlier);
  if (r.kind != LocalTimeKind::kSkipped) return r.utc_seconds;
  // Midnight was skipped: the day starts at the transition that skipped it. Search between
  // the two resolutions, where the offset changes once.
  std::int64_t lo = r.utc_seconds;  // before the transition
  std::int64_t hi = from_local(local_day_start, Disambiguation::kLater).utc_seconds;
  const int lo_offset = offset_at(lo);
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    (offset_at(mid) == lo_offset ? lo : hi) = mid;
  }
  return hi;
}

std::int64_t TimeZone::start_of_local_day(std::int64_t utc_ms) const {
  const std::int64_t s = floor_div(utc_ms, 1000);
  const std::int64_t local = s + offset_at(s);
  return start_of_local_date(floor_div(local, kDay) * kDay) * 1000;
}

std::int64_t TimeZone::next_local_midnight(std::int64_t utc_ms) const {
  const std::int64_t s = floor_div(utc_ms, 1000);
  const std::int64_t local = s + offset_at(s);
  return start_of_local_date(floor_div(local, kDay) * kDay + kDay) * 1000;
}

}  // namespace civicbus

#include "civicbus/core/cron.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "core/ascii.hpp"
#include "core/civil_date.hpp"

namespace civicbus {
namespace {

constexpr std::int64_t kDay = 86'400;

struct FieldSpec {
  std::string_view name;
  int min;
  int max;
};

constexpr FieldSpec kSecondField{"second", 0, 59};
constexpr FieldSpec kMinuteField{"minute", 0, 59};
constexpr FieldSpec kHourField{"hour", 0, 23};
constexpr FieldSpec kDayField{"day-of-month", 1, 31};
constexpr FieldSpec kMonthField{"month", 1, 12};
constexpr FieldSpec kWeekdayField{"day-of-week", 0, 7};  // 0 and 7 are Sunday

constexpr std::string_view kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::string_view kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct Macro {
  std::string_view name;
  std::string_view fields;
};
constexpr Macro kMacros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

int weekday_of_days(std::int64_t days) {
  const std::int64_t r = (days + 4) % 7;  // 1970-01-01 was a Thursday
  return static_cast<int>(r < 0 ? r + 7 : r);
}

int weekday_of(std::int64_t year, unsigned month, unsigned day) {
  return weekday_of_days(detail::days_from_civil(year, month, day));
}

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_blanks(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_blank(s[i])) ++i;
    const std::size_t start = i;
    while (i < s.size() && !is_blank(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A token of at most 9 digits (longer ones are reported as out of range without overflowing).
std::optional<int> small_number(std::string_view s) {
  if (!all_digits(s) || s.size() > 9) return std::nullopt;
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

std::uint64_t bit(int n) {
  return std::uint64_t{1} << n;
}

// The lowest set bit at or above `from`, or -1.
int next_bit(std::uint64_t mask, int from) {
  if (from >= 64) return -1;
  const std::uint64_t rest = mask & (~std::uint64_t{0} << from);
  return rest == 0 ? -1 : std::countr_zero(rest);
}

// Parses one field's text into `Fields`-style bit sets; errors name the field and the token.
class FieldParser {
 public:
  FieldParser(std::string_view expr, const FieldSpec& spec) : expr_(expr), spec_(spec) {}

  Status error(std::string_view problem) const {
    return invalid_argument(fmt::format("cron field '{}' {} in '{}'", spec_.name, problem, expr_));
  }

  // A number or, in the month and day-of-week fields, a three-letter name.
  Result<int> value(std::string_view token) const {
    if (all_digits(token)) {
      const auto v = small_number(token);
      if (!v || *v < spec_.min || *v > spec_.max) {
        return error(fmt::format("value {} is out of range {}-{}", token, spec_.min, spec_.max));
      }
      return *v;
    }
    const std::string lower = ascii_lower(token);
    if (&spec_ == &kMonthField || &spec_ == &kWeekdayField) {
      const bool months = &spec_ == &kMonthField;
      const std::string_view* names = months ? kMonthNames : kDayNames;
      const int count = months ? 12 : 7;
      for (int i = 0; i < count; ++i) {
        if (lower == names[i]) return months ? i + 1 : i;
      }
      return error(fmt::format("value '{}' is not a {} name ({})", token, months ? "month" : "day",
                               months ? "JAN-DEC" : "SUN-SAT"));
    }
    return error(fmt::format("has an invalid token '{}'", token));
  }

  // `*`, `a`, `a-b`, with an optional `/step`. In day-of-week, 7 folds onto 0 (Sunday).
  Result<std::uint64_t> range(std::string_view item) const {
    std::string_view base = item;
    int step = 1;
    bool stepped = false;
    if (const auto slash = item.find('/'); slash != std::string_view::npos) {
      base = item.substr(0, slash);
      const std::string_view step_text = item.substr(slash + 1);
      const auto s = small_number(step_text);
      if (!s) return error(fmt::format("step '{}' in '{}' is not a number", step_text, item));
      if (*s == 0) return error(fmt::format("step 0 in '{}' must be at least 1", item));
      step = *s;
      stepped = true;
    }
    // '*' over day-of-week is 0-6: 7 would only repeat Sunday.
    const int max = &spec_ == &kWeekdayField ? 6 : spec_.max;
    int lo = spec_.min;
    int hi = max;
    if (base.empty()) return error(fmt::format("has an invalid token '{}'", item));
    if (base != "*") {
      if (const auto dash = base.find('-'); dash != std::string_view::npos) {
        const std::string_view a = base.substr(0, dash);
        const std::string_view b = base.substr(dash + 1);
        if (a.empty() || b.empty()) return error(fmt::format("has an invalid token '{}'", item));
        CIVICBUS_ASSIGN_OR_RETURN(lo, value(a));
        CIVICBUS_ASSIGN_OR_RETURN(hi, value(b));
        if (lo > hi) {
          return error(fmt::format(
              "range '{}' runs backwards (write a wrapping range as two: '{}-{},{}-{}')", base, a,
              spec_.max, spec_.min, b));
        }
      } else {
        CIVICBUS_ASSIGN_OR_RETURN(lo, value(base));
        hi = stepped ? max : lo;  // "a/n": from a to the end of the field
      }
    }
    std::uint64_t mask = 0;
    for (int v = lo; v <= hi; v += step) mask |= bit(&spec_ == &kWeekdayField && v == 7 ? 0 : v);
    return mask;
  }

 private:
  std::string_view expr_;
  const FieldSpec& spec_;
};

Result<std::vector<std::string_view>> list_items(std::string_view text, const FieldParser& p) {
  std::vector<std::string_view> items;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) return p.error(fmt::format("has an empty list item in '{}'", text));
    items.push_back(item);
    if (comma == std::string_view::npos) return items;
    start = comma + 1;
  }
}

// Seconds, minutes, hours and months: lists of ranges only.
Result<std::uint64_t> parse_plain(std::string_view expr, std::string_view text,
                                  const FieldSpec& spec) {
  const FieldParser p(expr, spec);
  CIVICBUS_ASSIGN_OR_RETURN(auto items, list_items(text, p));
  std::uint64_t mask = 0;
  for (std::string_view item : items) {
    if (item == "?") {
      return p.error("has '?', which only day-of-month and day-of-week accept");
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t m, p.range(item));
    mask |= m;
  }
  return mask;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

}  // namespace

Result<CronSchedule> CronSchedule::parse(std::string_view expr, std::string_view zone_name) {
  CIVICBUS_ASSIGN_OR_RETURN(TimeZone zone, TimeZone::load(zone_name));
  return parse(expr, zone);
}

Result<CronSchedule> CronSchedule::parse(std::string_view expr_in, const TimeZone& zone) {
  const std::string_view expr = trim(expr_in);
  if (expr.empty()) {
    return invalid_argument(
        "cron expression is empty; expected 5 fields (minute hour day-of-month month "
        "day-of-week), 6 (second first) or a macro such as @daily");
  }
  std::string_view body = expr;
  if (expr.front() == '@') {
    const std::string name = ascii_lower(expr);
    if (name == "@reboot") {
      return invalid_argument(
          "cron macro '@reboot' is not a time schedule (it means 'when cron starts'); run the "
          "task when your module starts instead");
    }
    const auto it = std::find_if(std::begin(kMacros), std::end(kMacros),
                                 [&](const Macro& m) { return m.name == name; });
    if (it == std::end(kMacros)) {
      return invalid_argument(fmt::format(
          "unknown cron macro '{}'; expected @yearly, @annually, @monthly, @weekly, @daily, "
          "@midnight or @hourly",
          expr));
    }
    body = it->fields;
  }

  const std::vector<std::string_view> parts = split_blanks(body);
  if (parts.size() != 5 && parts.size() != 6) {
    return invalid_argument(fmt::format(
        "cron expression '{}' has {} fields; expected 5 (minute hour day-of-month month "
        "day-of-week) or 6 (second minute hour day-of-month month day-of-week)",
        expr, parts.size()));
  }
  const bool with_seconds = parts.size() == 6;
  const std::size_t o = with_seconds ? 1 : 0;

  Fields f;
  if (with_seconds) {
    CIVICBUS_ASSIGN_OR_RETURN(f.seconds, parse_plain(expr, parts[0], kSecondField));
  } else {
    f.seconds = 1;  // second 0
  }
  CIVICBUS_ASSIGN_OR_RETURN(f.minutes, parse_plain(expr, parts[o], kMinuteField));
  CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t hours, parse_plain(expr, parts[o + 1], kHourField));
  CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t months, parse_plain(expr, parts[o + 3], kMonthField));
  f.hours = static_cast<std::uint32_t>(hours);
  f.months = static_cast<std::uint32_t>(months);

  // Day of month: ranges, L, L-n, LW, nW.
  {
    const std::string_view text = parts[o + 2];
    const FieldParser p(expr, kDayField);
    f.any_day = text == "*" || text == "?";
    if (!f.any_day) {
      CIVICBUS_ASSIGN_OR_RETURN(auto items, list_items(text, p));
      for (std::string_view item : items) {
        const std::string u = upper(item);
        if (u == "?") return p.error("has '?' inside a list; '?' stands alone");
        if (u == "L") {
          f.days_before_last |= 1;
        } else if (u == "LW") {
          f.last_weekday_of_month = true;
        } else if (u.starts_with("L-")) {
          const std::string_view n = item.substr(2);
          const auto v = small_number(n);
          if (!v || *v > 30) {
            return p.error(
                fmt::format("offset '{}' in '{}' is not a number of days 0-30", n, item));
          }
          f.days_before_last |= static_cast<std::uint32_t>(bit(*v));
        } else if (u.size() > 1 && u.back() == 'W') {
          CIVICBUS_ASSIGN_OR_RETURN(int day, p.value(item.substr(0, item.size() - 1)));
          f.nearest_weekday |= static_cast<std::uint32_t>(bit(day));
        } else {
          CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t m, p.range(item));
          f.days |= static_cast<std::uint32_t>(m);
        }
      }
    }
  }

  // Day of week: ranges, dL (last d of the month), d#k (k-th d of the month).
  {
    const std::string_view text = parts[o + 4];
    const FieldParser p(expr, kWeekdayField);
    f.any_weekday = text == "*" || text == "?";
    if (!f.any_weekday) {
      CIVICBUS_ASSIGN_OR_RETURN(auto items, list_items(text, p));
      for (std::string_view item : items) {
        const std::string u = upper(item);
        if (u == "?") return p.error("has '?' inside a list; '?' stands alone");
        if (u == "L") {
          return p.error(
              "has 'L' alone, which is ambiguous; write 6 (or SAT) for Saturday, or dL for the "
              "last weekday d of the month (5L: the last Friday)");
        }
        if (const auto hash = item.find('#'); hash != std::string_view::npos) {
          CIVICBUS_ASSIGN_OR_RETURN(int day, p.value(item.substr(0, hash)));
          const std::string_view k = item.substr(hash + 1);
          const auto n = small_number(k);
          if (!n || *n < 1 || *n > 5) {
            return p.error(fmt::format("occurrence '{}' in '{}' is out of range 1-5", k, item));
          }
          f.nth_of_weekday[day % 7] |= static_cast<std::uint32_t>(bit(*n));
        } else if (u.size() > 1 && u.back() == 'L') {
          CIVICBUS_ASSIGN_OR_RETURN(int day, p.value(item.substr(0, item.size() - 1)));
          f.last_of_weekday |= static_cast<std::uint32_t>(bit(day % 7));
        } else {
          CIVICBUS_ASSIGN_OR_RETURN(std::uint64_t m, p.range(item));
          f.weekdays |= static_cast<std::uint32_t>(m);
        }
      }
    }
  }

  return CronSchedule(std::string(expr), zone, f);
}

bool CronSchedule::day_matches(std::int64_t year, unsigned month, unsigned day, int weekday) const {
  const Fields& f = fields_;
  if (f.any_day && f.any_weekday) return true;
  const unsigned dim = detail::days_in_month(year, month);

  const auto dom = [&] {
    if ((f.days >> day) & 1) return true;
    if ((f.days_before_last >> (dim - day)) & 1) return true;
    if (f.last_weekday_of_month) {
      const int last = weekday_of(year, month, dim);
      const unsigned target = last == 6 ? dim - 1 : last == 0 ? dim - 2 : dim;
      if (day == target) return true;
    }
    // nW: the weekday nearest day n, without leaving the month. Only n within two days of
    // `day` can land on it.
    for (unsigned n = day > 2 ? day - 2 : 1; n <= std::min(day + 2, dim); ++n) {
      if (!((f.nearest_weekday >> n) & 1)) continue;
      const int wd = weekday_of(year, month, n);
      unsigned target = n;
      if (wd == 6) target = n == 1 ? 3 : n - 1;        // Saturday: Friday, or Monday the 3rd
      if (wd == 0) target = n == dim ? n - 2 : n + 1;  // Sunday: Monday, or the Friday before
      if (target == day) return true;
    }
    return false;
  };
  const auto dow = [&] {
    if ((f.weekdays >> weekday) & 1) return true;
    if (((f.last_of_weekday >> weekday) & 1) && day + 7 > dim) return true;
    return ((f.nth_of_weekday[weekday] >> ((day - 1) / 7 + 1)) & 1) != 0;
  };
  if (f.any_day) return dow();
  if (f.any_weekday) return dom();
  return dom() || dow();  // Vixie cron: both restricted means either
}

std::optional<std::int64_t> CronSchedule::next_local_match(std::int64_t local) const {
  const Fields& f = fields_;
  std::int64_t days = floor_div(local, kDay);
  std::int64_t second_of_day = local - days * kDay;
  detail::CivilDate date = detail::civil_from_days(days);
  const std::int64_t last_year = date.year + kHorizonYears;
  while (date.year <= last_year) {
    if (!((f.months >> date.month) & 1)) {
      const int next = next_bit(f.months, static_cast<int>(date.month) + 1);
      date = next > 0 ? detail::CivilDate{date.year, static_cast<unsigned>(next), 1}
                      : detail::CivilDate{date.year + 1,
                                          static_cast<unsigned>(next_bit(f.months, 1)), 1};
      days = detail::days_from_civil(date.year, date.month, 1);
      second_of_day = 0;
      continue;
    }
    if (day_matches(date.year, date.month, date.day, weekday_of_days(days))) {
      const int h0 = static_cast<int>(second_of_day / 3600);
      const int m0 = static_cast<int>(second_of_day / 60 % 60);
      const int s0 = static_cast<int>(second_of_day % 60);
      for (int h = next_bit(f.hours, h0); h >= 0; h = next_bit(f.hours, h + 1)) {
        for (int m = next_bit(f.minutes, h == h0 ? m0 : 0); m >= 0;
             m = next_bit(f.minutes, m + 1)) {
          const int s = next_bit(f.seconds, h == h0 && m == m0 ? s0 : 0);
          if (s >= 0) return days * kDay + h * 3600 + m * 60 + s;
        }
      }
    }
    ++days;
    date = detail::civil_from_days(days);
    second_of_day = 0;
  }
  return std::nullopt;
}

std::optional<SystemTime> CronSchedule::next_after(SystemTime t) const {
  using std::chrono::seconds;
  const std::int64_t after = std::chrono::floor<seconds>(t.time_since_epoch()).count();
  const std::int64_t latest =
      std::chrono::floor<seconds>(SystemTime::max().time_since_epoch()).count();
  if (after >= latest) return std::nullopt;
  const std::int64_t first = after + 1;  // whole seconds strictly after t
  // Start from the wall time just after `after`: when `first` ends a spring-forward gap, the
  // skipped times (which fire at `first`) lie between the two.
  std::int64_t local = std::min(zone_.to_local(first - 1) + 1, zone_.to_local(first));
  // Wall times whose first occurrence is before `first` (the repeated hour's second pass) are
  // skipped one by one: at most an hour's worth of matches.
  for (int guard = 0; guard < 1'000'000; ++guard) {
    const auto wall = next_local_match(local);
    if (!wall) return std::nullopt;
    const LocalTimeResolution r = zone_.from_local(*wall, Disambiguation::kEarlier);
    std::int64_t fire = r.utc_seconds;
    if (r.kind == LocalTimeKind::kSkipped) {
      // The first instant after the gap: between the instant before the shift (kEarlier) and
      // the one after it (kLater) the offset changes once.
      std::int64_t lo = r.utc_seconds;
      std::int64_t hi = zone_.from_local(*wall, Disambiguation::kLater).utc_seconds;
      const int lo_offset = zone_.offset_at(lo);
      while (hi - lo > 1) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        (zone_.offset_at(mid) == lo_offset ? lo : hi) = mid;
      }
      fire = hi;
    }
    if (fire >= first) {
      if (fire > latest) return std::nullopt;
      return SystemTime{std::chrono::duration_cast<SystemTime::duration>(seconds{fire})};
    }
    local = *wall + 1;
  }
  return std::nullopt;
}

}  // namespace civicbus

#include "civicbus/core/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <iterator>
#include <limits>

namespace civicbus {
namespace {

// std::atomic<double>::fetch_add is C++20 but not in every standard library we target;
// a relaxed CAS loop is what it compiles to anyway.
void atomic_add(std::atomic<double>& a, double by) {
  double current = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(current, current + by, std::memory_order_relaxed,
                                  std::memory_order_relaxed)) {
  }
}

// ---- Internal log-linear buckets ----
// Each power of two [2^e, 2^(e+1)) is cut into 32 equal sub-buckets read straight from the
// top five mantissa bits, so a bucket is at most 1/32 of its lower edge wide and its midpoint
// is within 1.6% of any value in it. 2^-24 (6e-8) to 2^24 (1.7e7) covers latencies in seconds
// from tens of nanoseconds and sizes up to megabytes; values outside land in an underflow or
// overflow bucket.
constexpr int kSubBucketBits = 5;
constexpr std::size_t kSubBuckets = std::size_t{1} << kSubBucketBits;
constexpr int kMinExponent = -24;
constexpr int kMaxExponent = 23;
constexpr std::size_t kLinearBuckets =
    static_cast<std::size_t>(kMaxExponent - kMinExponent + 1) * kSubBuckets;
constexpr std::size_t kInternalBuckets = kLinearBuckets + 2;  // + underflow + overflow
constexpr std::size_t kOverflowBucket = kInternalBuckets - 1;
const double kLowestTracked = std::ldexp(1.0, kMinExponent);
const double kHighestTracked = std::ldexp(1.0, kMaxExponent + 1);

std::size_t internal_bucket(double v) {
  if (v < kLowestTracked) return 0;
  if (v >= kHighestTracked) return kOverflowBucket;
  const auto bits = std::bit_cast<std::uint64_t>(v);
  const int exponent = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  const std::size_t sub = (bits >> (52 - kSubBucketBits)) & (kSubBuckets - 1);
  return 1 + static_cast<std::size_t>(exponent - kMinExponent) * kSubBuckets + sub;
}

// The value reported for a quantile that falls in `bucket`.
double bucket_midpoint(std::size_t bucket) {
  if (bucket == 0) return 0.0;  // mostly exact zeros (empty queues, no lag)
  if (bucket == kOverflowBucket) return kHighestTracked;
  const std::size_t k = bucket - 1;
  const int exponent = static_cast<int>(k / kSubBuckets) + kMinExponent;
  const double sub = static_cast<double>(k % kSubBuckets);
  return std::ldexp(1.0 + (sub + 0.5) / static_cast<double>(kSubBuckets), exponent);
}

std::vector<double> clean_bounds(std::vector<double> bounds) {
  // +Inf is implicit in every Prometheus histogram; NaN has no place in an ordering.
  bounds.erase(
      std::remove_if(bounds.begin(), bounds.end(), [](double b) { return !std::isfinite(b); }),
      bounds.end());
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  return bounds;
}

// ---- Exposition format helpers ----

enum Kind : int { kCounterKind = 0, kGaugeKind = 1, kHistogramKind = 2 };

const char* kind_name(int kind) {
  switch (kind) {
    case kCounterKind:
      return "counter";
    case kGaugeKind:
      return "gauge";
    default:
      return "histogram";
  }
}

bool valid_name_char(char c, bool first, bool allow_colon) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  const bool digit = c >= '0' && c <= '9';
  return alpha || (allow_colon && c == ':') || (!first && digit);
}

// A name from code that breaks the grammar is a bug (asserted in debug builds); release builds
// repair it rather than write an exposition Prometheus would reject as a whole.
std::string checked_name(std::string_view name, bool allow_colon) {
  bool changed = name.empty() || (name[0] >= '0' && name[0] <= '9');
  std::string out = changed ? "_" : "";
  out.append(name);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!valid_name_char(out[i], i == 0, allow_colon)) {
      out[i] = '_';
      changed = true;
    }
  }
  assert(!changed && "metric or label name does not match [a-zA-Z_:][a-zA-Z0-9_:]*");
  (void)changed;
  return out;
}

Labels canonical_labels(const Labels& labels) {
  Labels out;
  out.reserve(labels.size());
  for (const auto& [k, v] : labels) out.emplace_back(checked_name(k, false), v);
  std::sort(out.begin(), out.end());
  assert(std::adjacent_find(out.begin(), out.end(),
                            [](const auto& a, const auto& b) { return a.first == b.first; }) ==
             out.end() &&
         "a label name appears twice");
  return out;
}

void append_escaped(std::string& out, std::string_view s, bool escape_quotes) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        if (escape_quotes) {
          out += "\\\"";
          break;
        }
        [[fallthrough]];
      default:
        out.push_back(c);
    }
  }
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);  // shortest text that reads back exactly
  }
}

void append_labels(std::string& out, const Labels& labels, const char* le = nullptr,
                   double le_value = 0) {
  if (labels.empty() && le == nullptr) return;
  out.push_back('{');
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out.push_back(',');
    first = false;
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out.push_back('"');
  }
  if (le != nullptr) {
    if (!first) out.push_back(',');
    out += "le=\"";
    if (std::isinf(le_value)) {
      out += "+Inf";
    } else {
      append_value(out, le_value);
    }
    out.push_back('"');
  }
  out.push_back('}');
}

}  // namespace

// ---- Counter, Gauge ----

void Counter::inc(double by) {
  assert(by >= 0 && "a counter only goes up");
  if (!(by >= 0)) return;  // also drops NaN, which would stick forever
  atomic_add(value_, by);
}

void Gauge::inc(double by) {
  atomic_add(value_, by);
}

// ---- Histogram ----
// buckets_ holds the export buckets (one per bound, then +Inf; not cumulative) followed by the
// internal log-linear buckets. The export buckets are counted exactly, because a Prometheus
// `le` bound is an exact boundary that the log-linear buckets do not generally fall on.

Histogram::Histogram(std::vector<double> export_bounds)
    : export_bounds_(clean_bounds(std::move(export_bounds))),
      buckets_(new std::atomic<std::uint64_t>[export_bounds_.size() + 1 + kInternalBuckets]) {
  reset();
}

void Histogram::observe(double v) {
  if (!(v >= 0)) v = 0;  // negatives and NaN
  const std::size_t export_index = static_cast<std::size_t>(
      std::lower_bound(export_bounds_.begin(), export_bounds_.end(), v) - export_bounds_.begin());
  const std::size_t base = export_bounds_.size() + 1;
  buckets_[export_index].fetch_add(1, std::memory_order_relaxed);
  buckets_[base + internal_bucket(v)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

std::uint64_t Histogram::count() const {
  return count_.load(std::memory_order_relaxed);
}

double Histogram::sum() const {
  return sum_.load(std::memory_order_relaxed);
}

double Histogram::quantile(double q) const {
  if (!(q >= 0)) q = 0;
  if (q > 1) q = 1;
  const std::atomic<std::uint64_t>* internal = buckets_.get() + export_bounds_.size() + 1;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < kInternalBuckets; ++i) {
    total += internal[i].load(std::memory_order_relaxed);
  }
  if (total == 0) return 0.0;
  // The smallest observation with at least q * total observations at or below it.
  const auto rank = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total))));
  std::uint64_t seen = 0;
  std::size_t last_nonempty = 0;
  for (std::size_t i = 0; i < kInternalBuckets; ++i) {
    const std::uint64_t n = internal[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    last_nonempty = i;
    seen += n;
    if (seen >= rank) return bucket_midpoint(i);
  }
  return bucket_midpoint(last_nonempty);  // buckets were reset while we read them
}

std::vector<std::uint64_t> Histogram::cumulative_counts() const {
  std::vector<std::uint64_t> out(export_bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

void Histogram::reset() {
  const std::size_t n = export_bounds_.size() + 1 + kInternalBuckets;
  for (std::size_t i = 0; i < n; ++i) buckets_[i].store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0.0, std::memory_order_relaxed);
}

std::vector<double> default_latency_bounds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
}

// ---- MetricsRegistry ----

struct MetricsRegistry::Family {
  struct Series {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Callback {
    Labels labels;
    std::function<double()> read;
  };

  std::string name;
  std::string help;
  int kind = 0;
  std::map<Labels, Series> series;  // keyed by the sorted label set
  std::map<std::uint64_t, Callback> callbacks;
  // Metrics handed out for a name that already had another kind (a bug, asserted in debug
  // builds). They work but are not exported, so the exposition stays valid.
  std::vector<Series> orphans;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::family(std::string_view name, std::string_view help,
                                                 int kind) {
  std::string checked = checked_name(name, true);
  auto it = families_.find(checked);
  if (it == families_.end()) {
    auto f = std::make_unique<Family>();
    f->name = checked;
    f->help = std::string(help);
    f->kind = kind;
    it = families_.emplace(std::move(checked), std::move(f)).first;
  }
  return *it->second;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const Labels& labels) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, kCounterKind);
  assert(f.kind == kCounterKind && "metric name already registered with another kind");
  if (f.kind != kCounterKind) {
    f.orphans.emplace_back().counter = std::make_unique<Counter>();
    return *f.orphans.back().counter;
  }
  auto& s = f.series[canonical_labels(labels)];
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, kGaugeKind);
  assert(f.kind == kGaugeKind && "metric name already registered with another kind");
  if (f.kind != kGaugeKind) {
    f.orphans.emplace_back().gauge = std::make_unique<Gauge>();
    return *f.orphans.back().gauge;
  }
  auto& s = f.series[canonical_labels(labels)];
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      const Labels& labels, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, kHistogramKind);
  assert(f.kind == kHistogramKind && "metric name already registered with another kind");
  if (f.kind != kHistogramKind) {
    f.orphans.emplace_back().histogram = std::make_unique<Histogram>(std::move(bounds));
    return *f.orphans.back().histogram;
  }
  Labels key = canonical_labels(labels);
  assert(std::none_of(key.begin(), key.end(), [](const auto& l) { return l.first == "le"; }) &&
         "'le' is reserved for histogram buckets");
  auto& s = f.series[std::move(key)];
  // A second call with other bounds gets the first histogram: one series, one set of buckets.
  if (!s.histogram) s.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *s.histogram;
}

MetricsRegistry::CallbackHandle MetricsRegistry::gauge_callback(std::string_view name,
                                                                std::string_view help,
                                                                const Labels& labels,
                                                                std::function<double()> read) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, kGaugeKind);
  assert(f.kind == kGaugeKind && "metric name already registered with another kind");
  const std::uint64_t id = next_callback_id_++;
  if (f.kind == kGaugeKind)
    f.callbacks[id] = Family::Callback{canonical_labels(labels), std::move(read)};
  return CallbackHandle(this, id);
}

void MetricsRegistry::remove_callback(std::uint64_t id) {
  std::lock_guard lock(mu_);
  for (auto& [name, f] : families_) {
    if (f->callbacks.erase(id) > 0) return;
  }
}

MetricsRegistry::CallbackHandle::CallbackHandle(CallbackHandle&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), id_(std::exchange(other.id_, 0)) {}

MetricsRegistry::CallbackHandle& MetricsRegistry::CallbackHandle::operator=(
    CallbackHandle&& other) noexcept {
  if (this != &other) {
    if (registry_ != nullptr) registry_->remove_callback(id_);
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

MetricsRegistry::CallbackHandle::~CallbackHandle() {
  if (registry_ != nullptr) registry_->remove_callback(id_);
}

std::string MetricsRegistry::prometheus_text() const {
  // Callbacks run under the lock: that is what lets a CallbackHandle's destructor guarantee
  // that `read` is no longer called once it returns.
  std::lock_guard lock(mu_);
  std::string out;
  std::vector<std::pair<const Labels*, double>> rows;
  for (const auto& [name, f] : families_) {
    rows.clear();
    bool has_samples = !f->callbacks.empty();
    for (const auto& [labels, s] : f->series) {
      if ((f->kind == kCounterKind && s.counter) || (f->kind == kGaugeKind && s.gauge) ||
          (f->kind == kHistogramKind && s.histogram)) {
        has_samples = true;
        break;
      }
    }
    if (!has_samples) continue;

    out += "# HELP ";
    out += name;
    out.push_back(' ');
    append_escaped(out, f->help, false);
    out += "\n# TYPE ";
    out += name;
    out.push_back(' ');
    out += kind_name(f->kind);
    out.push_back('\n');

    if (f->kind == kHistogramKind) {
      for (const auto& [labels, s] : f->series) {
        if (!s.histogram) continue;
        const Histogram& h = *s.histogram;
        const auto& bounds = h.export_bounds();
        const std::vector<std::uint64_t> cumulative = h.cumulative_counts();
        for (std::size_t i = 0; i < cumulative.size(); ++i) {
          out += name;
          out += "_bucket";
          append_labels(out, labels, "le",
                        i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity());
          fmt::format_to(std::back_inserter(out), " {}\n", cumulative[i]);
        }
        out += name;
        out += "_sum";
        append_labels(out, labels);
        out.push_back(' ');
        append_value(out, h.sum());
        out.push_back('\n');
        // _count is the +Inf bucket read above, so the two always agree in one scrape.
        out += name;
        out += "_count";
        append_labels(out, labels);
        fmt::format_to(std::back_inserter(out), " {}\n", cumulative.back());
      }
      continue;
    }

    for (const auto& [labels, s] : f->series) {
      if (f->kind == kCounterKind && s.counter) rows.emplace_back(&labels, s.counter->value());
      if (f->kind == kGaugeKind && s.gauge) rows.emplace_back(&labels, s.gauge->value());
    }
    for (const auto& [id, cb] : f->callbacks) rows.emplace_back(&cb.labels, cb.read());
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return *a.first < *b.first; });
    for (const auto& [labels, value] : rows) {
      out += name;
      append_labels(out, *labels);
      out.push_back(' ');
      append_value(out, value);
      out.push_back('\n');
    }
  }
  return out;
}

}  // namespace civicbus

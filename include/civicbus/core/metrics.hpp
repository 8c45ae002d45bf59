// MetricsRegistry: the one place counters, gauges and histograms live, exported in the
// Prometheus text exposition format (version 0.0.4). Metric objects are owned by the registry
// and stay valid as long as it does; updating them is lock-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/export.hpp"

namespace civicbus {

// Label pairs, e.g. {{"topic", "permit.issued"}, {"group", "gis"}}. Order does not matter.
using Labels = std::vector<std::pair<std::string, std::string>>;

class CIVICBUS_EXPORT Counter {
 public:
  void inc(double by = 1.0);  // by >= 0
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class CIVICBUS_EXPORT Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1.0);
  void dec(double by = 1.0) { inc(-by); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Records observations in fixed log-linear buckets (relative error under 2%) so that
// quantiles can be estimated at any time; exported as a Prometheus histogram over
// `export_bounds`, plus a `<name>_quantile{quantile="0.99"}` gauge family is NOT emitted:
// Prometheus computes quantiles from buckets. quantile() is for benchmarks, logs and the API.
class CIVICBUS_EXPORT Histogram {
 public:
  explicit Histogram(std::vector<double> export_bounds);
  void observe(double v);  // v >= 0; negative values count as 0
  std::uint64_t count() const;
  double sum() const;
  // q in [0, 1]; 0 when empty.
  double quantile(double q) const;
  const std::vector<double>& export_bounds() const { return export_bounds_; }
  // Cumulative counts for each export bound (the last is +Inf).
  std::vector<std::uint64_t> cumulative_counts() const;
  void reset();

 private:
  std::vector<double> export_bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
};

// Default bounds for latencies in seconds: 100 us .. 10 s.
CIVICBUS_EXPORT std::vector<double> default_latency_bounds();

class CIVICBUS_EXPORT MetricsRegistry {
 public:
  // Both out of line: Family is complete only in metrics.cpp.
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Returns the metric for (name, labels), creating it on first use. `name` must match
  // [a-zA-Z_:][a-zA-Z0-9_:]*; asking for an existing name with another kind is a bug.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, const Labels& labels = {},
                       std::vector<double> bounds = default_latency_bounds());

  // A gauge whose value is read from `read` at export time (lag, queue sizes). The returned
  // handle unregisters it when destroyed; `read` must stay callable until then.
  class CallbackHandle {
   public:
    CallbackHandle() = default;
    CallbackHandle(CallbackHandle&&) noexcept;
    CallbackHandle& operator=(CallbackHandle&&) noexcept;
    ~CallbackHandle();

   private:
    friend class MetricsRegistry;
    CallbackHandle(MetricsRegistry* registry, std::uint64_t id) : registry_(registry), id_(id) {}
    MetricsRegistry* registry_ = nullptr;
    std::uint64_t id_ = 0;
  };
  [[nodiscard]] CallbackHandle gauge_callback(std::string_view name, std::string_view help,
                                              const Labels& labels, std::function<double()> read);

  // Prometheus text format, families sorted by name, with # HELP and # TYPE lines.
  std::string prometheus_text() const;

 private:
  struct Family;
  Family& family(std::string_view name, std::string_view help, int kind);
  void remove_callback(std::uint64_t id);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
  std::uint64_t next_callback_id_ = 1;
};

}  // namespace civicbus

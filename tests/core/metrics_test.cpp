#include "civicbus/core/metrics.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

namespace civicbus {
namespace {

// A small reader for the text exposition format, strict enough to catch malformed output.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
struct Exposition {
  std::map<std::string, std::string> help;  // unescaped
  std::map<std::string, std::string> type;
  std::vector<Sample> samples;
  std::vector<std::string> family_order;

  const Sample* find(std::string_view name,
                     const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples) {
      if (s.name == name && s.labels == labels) return &s;
    }
    return nullptr;
  }
  double value(std::string_view name, const std::map<std::string, std::string>& labels = {}) const {
    const Sample* s = find(name, labels);
    REQUIRE_MESSAGE(s != nullptr, name);
    return s->value;
  }
};

bool is_name_char(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
         (!first && std::isdigit(static_cast<unsigned char>(c)));
}

double parse_value(const std::string& text) {
  if (text == "+Inf") return INFINITY;
  if (text == "-Inf") return -INFINITY;
  if (text == "NaN") return NAN;
  std::size_t used = 0;
  const double v = std::stod(text, &used);
  REQUIRE_MESSAGE(used == text.size(), text);
  return v;
}

Exposition parse_exposition(const std::string& text) {
  Exposition e;
  REQUIRE((text.empty() || text.back() == '\n'));
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    REQUIRE_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const auto sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      std::string help;
      for (std::size_t i = sp + 1; i < rest.size(); ++i) {
        if (rest[i] == '\\') {
          REQUIRE(i + 1 < rest.size());
          const char n = rest[++i];
          REQUIRE((n == '\\' || n == 'n'));
          help.push_back(n == 'n' ? '\n' : '\\');
        } else {
          help.push_back(rest[i]);
        }
      }
      e.help[rest.substr(0, sp)] = help;
      e.family_order.push_back(rest.substr(0, sp));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const auto sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      REQUIRE(e.help.count(rest.substr(0, sp)) == 1);  // HELP comes first
      e.type[rest.substr(0, sp)] = rest.substr(sp + 1);
      continue;
    }
    REQUIRE(line[0] != '#');
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && is_name_char(line[i], i == 0)) s.name.push_back(line[i++]);
    REQUIRE(!s.name.empty());
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        std::string key;
        while (i < line.size() && is_name_char(line[i], key.empty())) key.push_back(line[i++]);
        REQUIRE(!key.empty());
        REQUIRE(line.substr(i, 2) == "=\"");
        i += 2;
        std::string value;
        while (true) {
          REQUIRE(i < line.size());
          const char c = line[i++];
          if (c == '"') break;
          if (c == '\\') {
            REQUIRE(i < line.size());
            const char n = line[i++];
            REQUIRE((n == '\\' || n == '"' || n == 'n'));
            value.push_back(n == 'n' ? '\n' : n);
          } else {
            value.push_back(c);
          }
        }
        REQUIRE(s.labels.emplace(key, value).second);
        REQUIRE(i < line.size());
        if (line[i] == '}') {
          ++i;
          break;
        }
        REQUIRE(line[i] == ',');
        ++i;
      }
    }
    REQUIRE(i < line.size());
    REQUIRE(line[i] == ' ');
    s.value = parse_value(line.substr(i + 1));
    e.samples.push_back(std::move(s));
  }
  return e;
}

TEST_CASE("metrics: counters and gauges") {
  Counter c;
  c.inc();
  c.inc(2.5);
  CHECK(c.value() == 3.5);
  Gauge g;
  g.set(10);
  g.inc(2);
  g.dec(0.5);
  CHECK(g.value() == 11.5);
  g.dec(20);
  CHECK(g.value() == -8.5);
}

TEST_CASE("metrics: histogram export buckets count exactly, with inclusive bounds") {
  Histogram h({0.01, 0.1, 1.0});
  for (double v : {0.0, 0.005, 0.01, 0.0100001, 0.1, 0.5, 1.0, 2.0, 100.0, -3.0}) h.observe(v);
  CHECK(h.count() == 10);
  CHECK(h.sum() == doctest::Approx(0.005 + 0.01 + 0.0100001 + 0.1 + 0.5 + 1.0 + 2.0 + 100.0));
  const auto cumulative = h.cumulative_counts();
  REQUIRE(cumulative.size() == 4);
  CHECK(cumulative[0] == 4);  // 0, 0.005, 0.01 and the negative counted as 0
  CHECK(cumulative[1] == 6);  // + 0.0100001, 0.1
  CHECK(cumulative[2] == 8);  // + 0.5, 1.0
  CHECK(cumulative[3] == 10);
  h.reset();
  CHECK(h.count() == 0);
  CHECK(h.sum() == 0);
  CHECK(h.quantile(0.5) == 0);
  CHECK(h.cumulative_counts() == std::vector<std::uint64_t>{0, 0, 0, 0});

  // Bounds are sorted, deduplicated, and +Inf is implicit.
  Histogram messy({1.0, 0.1, INFINITY, 1.0, NAN});
  CHECK(messy.export_bounds() == std::vector<double>{0.1, 1.0});
  CHECK(messy.cumulative_counts().size() == 3);
}

TEST_CASE("metrics: quantiles are within 2% across the tracked range") {
  // A single value anywhere from 1e-7 to 1e4 comes back within 2%.
  for (double v = 1e-7; v <= 1e4; v *= 1.0137) {
    Histogram h(default_latency_bounds());
    h.observe(v);
    for (double q : {0.0, 0.5, 1.0}) {
      const double est = h.quantile(q);
      REQUIRE_MESSAGE(std::abs(est - v) / v < 0.02, "v=" << v << " est=" << est);
    }
  }
  Histogram zeros(default_latency_bounds());
  zeros.observe(0.0);
  zeros.observe(0.0);
  CHECK(zeros.quantile(0.99) == 0.0);
}

void check_distribution(const char* name, std::vector<double> values) {
  Histogram h(default_latency_bounds());
  for (double v : values) h.observe(v);
  std::sort(values.begin(), values.end());
  for (double q : {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0}) {
    // The exact answer: the smallest value with at least q*n values at or below it.
    const auto rank =
        std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(q * values.size())));
    const double exact = values[rank - 1];
    const double est = h.quantile(q);
    CHECK_MESSAGE(std::abs(est - exact) / exact < 0.02,
                  name << " q=" << q << " exact=" << exact << " estimate=" << est);
  }
}

TEST_CASE("metrics: quantile accuracy on known distributions") {
  std::mt19937_64 rng(42);
  std::vector<double> uniform, exponential, lognormal, bimodal;
  std::uniform_real_distribution<double> u(0.001, 1.0);
  std::exponential_distribution<double> ex(200.0);  // mean 5 ms
  std::lognormal_distribution<double> ln(std::log(0.002), 1.5);
  std::normal_distribution<double> fast(0.0005, 0.00005), slow(2.0, 0.1);
  for (int i = 0; i < 200000; ++i) {
    uniform.push_back(u(rng));
    exponential.push_back(ex(rng) + 1e-6);
    lognormal.push_back(ln(rng));
    bimodal.push_back(i % 10 == 0 ? std::abs(slow(rng)) : std::abs(fast(rng)));
  }
  check_distribution("uniform", uniform);
  check_distribution("exponential", exponential);
  check_distribution("lognormal", lognormal);
  check_distribution("bimodal", bimodal);
}

TEST_CASE("metrics: Prometheus text round-trips through a parser") {
  MetricsRegistry registry;
  registry
      .counter("civicbus_events_published_total", "Events accepted by the broker.",
               {{"topic", "permit.issued"}})
      .inc(3);
  registry
      .counter("civicbus_events_published_total", "ignored: the first help wins",
               {{"topic", "311.request"}})
      .inc();
  // Label order does not matter: the same series comes back.
  registry
      .gauge("civicbus_consumer_lag", "Events not yet acknowledged.",
             {{"group", "gis"}, {"topic", "a"}})
      .set(7);
  registry.gauge("civicbus_consumer_lag", "", {{"topic", "a"}, {"group", "gis"}}).inc();
  registry
      .gauge("civicbus_consumer_lag", "",
             {{"topic", "weird \"quoted\"\\path\nline"}, {"group", "x"}})
      .set(-1.5);
  registry.counter("aaa_first", "Help with a backslash \\ and a\nnewline.").inc(0.25);
  auto& h = registry.histogram("civicbus_publish_seconds", "Publish latency.", {{"topic", "t"}},
                               {0.001, 0.01, 0.1});
  for (double v : {0.0005, 0.001, 0.002, 0.05, 0.5}) h.observe(v);
  // A histogram with no observations still exports its zero buckets.
  registry.histogram("civicbus_empty_seconds", "Nothing yet.");

  const std::string text = registry.prometheus_text();
  INFO(text);
  const Exposition e = parse_exposition(text);

  // Families sorted by name, each with HELP and TYPE.
  CHECK(std::is_sorted(e.family_order.begin(), e.family_order.end()));
  CHECK(e.family_order.size() == 5);
  CHECK(e.type.at("civicbus_events_published_total") == "counter");
  CHECK(e.type.at("civicbus_consumer_lag") == "gauge");
  CHECK(e.type.at("civicbus_publish_seconds") == "histogram");
  CHECK(e.help.at("civicbus_events_published_total") == "Events accepted by the broker.");
  CHECK(e.help.at("aaa_first") == "Help with a backslash \\ and a\nnewline.");

  CHECK(e.value("civicbus_events_published_total", {{"topic", "permit.issued"}}) == 3);
  CHECK(e.value("civicbus_events_published_total", {{"topic", "311.request"}}) == 1);
  CHECK(e.value("aaa_first") == 0.25);
  CHECK(e.value("civicbus_consumer_lag", {{"group", "gis"}, {"topic", "a"}}) == 8);
  CHECK(e.value("civicbus_consumer_lag",
                {{"group", "x"}, {"topic", "weird \"quoted\"\\path\nline"}}) == -1.5);
  // Label sets are written in sorted order.
  CHECK(text.find("civicbus_consumer_lag{group=\"gis\",topic=\"a\"} 8\n") != std::string::npos);

  const std::map<std::string, std::string> t{{"topic", "t"}};
  auto with_le = [&](const char* le) {
    auto labels = t;
    labels["le"] = le;
    return labels;
  };
  CHECK(e.value("civicbus_publish_seconds_bucket", with_le("0.001")) == 2);
  CHECK(e.value("civicbus_publish_seconds_bucket", with_le("0.01")) == 3);
  CHECK(e.value("civicbus_publish_seconds_bucket", with_le("0.1")) == 4);
  CHECK(e.value("civicbus_publish_seconds_bucket", with_le("+Inf")) == 5);
  CHECK(e.value("civicbus_publish_seconds_count", t) == 5);
  CHECK(e.value("civicbus_publish_seconds_sum", t) == doctest::Approx(0.5535));
  // The le label comes after the others; buckets are in increasing order.
  CHECK(text.find("civicbus_publish_seconds_bucket{topic=\"t\",le=\"0.001\"} 2\n"
                  "civicbus_publish_seconds_bucket{topic=\"t\",le=\"0.01\"} 3\n") !=
        std::string::npos);
  CHECK(e.value("civicbus_empty_seconds_bucket", {{"le", "0.0001"}}) == 0);
  CHECK(e.value("civicbus_empty_seconds_bucket", {{"le", "10"}}) == 0);
  CHECK(e.value("civicbus_empty_seconds_count") == 0);
  // Every default bound is exported, and cumulative counts never go down.
  std::size_t empty_buckets = 0;
  for (const auto& s : e.samples) {
    if (s.name == "civicbus_empty_seconds_bucket") ++empty_buckets;
  }
  CHECK(empty_buckets == default_latency_bounds().size() + 1);
}

TEST_CASE("metrics: callback gauges are read at export and removed by their handle") {
  MetricsRegistry registry;
  double queue = 4;
  {
    auto handle = registry.gauge_callback("civicbus_queue_depth", "Queued events.",
                                          {{"queue", "outbox"}}, [&] { return queue; });
    registry.gauge("civicbus_queue_depth", "", {{"queue", "inbox"}}).set(1);
    auto e = parse_exposition(registry.prometheus_text());
    CHECK(e.value("civicbus_queue_depth", {{"queue", "outbox"}}) == 4);
    CHECK(e.value("civicbus_queue_depth", {{"queue", "inbox"}}) == 1);
    // Callback and plain series are merged in label order.
    const std::string text = registry.prometheus_text();
    CHECK(text.find("inbox") < text.find("outbox"));
    queue = 9;
    CHECK(parse_exposition(registry.prometheus_text())
              .value("civicbus_queue_depth", {{"queue", "outbox"}}) == 9);

    // Moving the handle keeps the registration alive.
    MetricsRegistry::CallbackHandle moved = std::move(handle);
    MetricsRegistry::CallbackHandle assigned;
    assigned = std::move(moved);
    CHECK(parse_exposition(registry.prometheus_text())
              .find("civicbus_queue_depth", {{"queue", "outbox"}}) != nullptr);
  }
  auto e = parse_exposition(registry.prometheus_text());
  CHECK(e.find("civicbus_queue_depth", {{"queue", "outbox"}}) == nullptr);
  CHECK(e.find("civicbus_queue_depth", {{"queue", "inbox"}}) != nullptr);

  // A family whose only series was a callback disappears with it.
  {
    auto only = registry.gauge_callback("civicbus_only_callback", "x", {}, [] { return 1.0; });
    CHECK(registry.prometheus_text().find("civicbus_only_callback 1\n") != std::string::npos);
  }
  CHECK(registry.prometheus_text().find("civicbus_only_callback") == std::string::npos);
}

TEST_CASE("metrics: values are written so that they read back exactly") {
  MetricsRegistry registry;
  registry.gauge("g", "", {{"v", "a"}}).set(0.1);
  registry.gauge("g", "", {{"v", "b"}}).set(1e-7);
  registry.gauge("g", "", {{"v", "c"}}).set(123456789.0);
  registry.gauge("g", "", {{"v", "d"}}).set(INFINITY);
  registry.gauge("g", "", {{"v", "e"}}).set(NAN);
  registry.gauge("g", "", {{"v", "f"}}).set(-INFINITY);
  const auto e = parse_exposition(registry.prometheus_text());
  CHECK(e.value("g", {{"v", "a"}}) == 0.1);
  CHECK(e.value("g", {{"v", "b"}}) == 1e-7);
  CHECK(e.value("g", {{"v", "c"}}) == 123456789.0);
  CHECK(e.value("g", {{"v", "d"}}) == INFINITY);
  CHECK(std::isnan(e.value("g", {{"v", "e"}})));
  CHECK(e.value("g", {{"v", "f"}}) == -INFINITY);
}

#ifdef NDEBUG
TEST_CASE("metrics: misuse in release builds keeps the exposition valid") {
  MetricsRegistry registry;
  registry.counter("dual", "a counter").inc();
  Gauge& orphan = registry.gauge("dual", "now a gauge?");  // a bug: another kind, same name
  orphan.set(5);
  CHECK(orphan.value() == 5);
  registry.counter("bad-name.x", "").inc();
  registry.counter("ok", "", {{"bad-label", "v"}}).inc();
  Counter& c = registry.counter("c", "");
  c.inc(-1);  // counters never go down
  c.inc(NAN);
  CHECK(c.value() == 0);
  const std::string text = registry.prometheus_text();
  const auto e = parse_exposition(text);
  CHECK(e.type.at("dual") == "counter");
  CHECK(e.value("dual") == 1);
  CHECK(e.value("bad_name_x") == 1);
  CHECK(e.value("ok", {{"bad_label", "v"}}) == 1);
}
#endif

TEST_CASE("metrics: updates from four threads lose nothing") {
  MetricsRegistry registry;
  Counter& counter = registry.counter("ops_total", "");
  Gauge& gauge = registry.gauge("in_flight", "");
  Histogram& hist = registry.histogram("latency_seconds", "", {}, {0.001, 0.01});
  constexpr int kPerThread = 250000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.inc();
        gauge.inc(2);
        gauge.dec();
        hist.observe((i % 4) * 0.0078125);  // 0, 1/128, 2/128, 3/128: sums stay exact
        if (t == 0 && i % 50000 == 0) (void)registry.prometheus_text();  // export meanwhile
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(counter.value() == 4.0 * kPerThread);
  CHECK(gauge.value() == 4.0 * kPerThread);
  CHECK(hist.count() == 4u * kPerThread);
  CHECK(hist.sum() == 4.0 * kPerThread / 4 * (0 + 1 + 2 + 3) * 0.0078125);
  const auto cumulative = hist.cumulative_counts();
  CHECK(cumulative[0] == static_cast<std::uint64_t>(kPerThread));      // the zeros
  CHECK(cumulative[1] == static_cast<std::uint64_t>(2 * kPerThread));  // + 1/128
  CHECK(cumulative[2] == static_cast<std::uint64_t>(4 * kPerThread));
  CHECK(hist.quantile(0.5) == doctest::Approx(0.0078125).epsilon(0.02));
  CHECK(hist.quantile(1.0) == doctest::Approx(3 * 0.0078125).epsilon(0.02));
}

TEST_CASE("metrics: registry lookups from many threads return one metric per series") {
  MetricsRegistry registry;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        registry.counter("req_total", "", {{"route", std::to_string(i % 10)}}).inc();
        auto handle =
            registry.gauge_callback("cb", "", {{"t", std::to_string(t)}}, [] { return 1.0; });
        if (i % 500 == 0) (void)registry.prometheus_text();
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto e = parse_exposition(registry.prometheus_text());
  for (int r = 0; r < 10; ++r) CHECK(e.value("req_total", {{"route", std::to_string(r)}}) == 800);
  CHECK(e.type.count("cb") == 0);
}

}  // namespace
}  // namespace civicbus

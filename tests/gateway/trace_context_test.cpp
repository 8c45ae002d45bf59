#include "gateway/trace_context.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

namespace civicbus::gateway {
namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Bytes that are all zero for the first `zeros` draws, then counting up.
class ZerosFirst : public RandomSource {
 public:
  explicit ZerosFirst(int zeros) : zeros_(zeros) {}
  void fill(void* out, std::size_t n) override {
    auto* p = static_cast<unsigned char*>(out);
    if (zeros_ > 0) {
      --zeros_;
      std::memset(p, 0, n);
      return;
    }
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(++next_);
  }

 private:
  int zeros_;
  unsigned char next_ = 0;
};

TEST_CASE("trace context: a valid traceparent is parsed into its fields") {
  const auto t = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(t);
  CHECK(t->trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(t->parent_id() == "00f067aa0ba902b7");
  CHECK(t->flags() == "01");
  CHECK(t->to_string() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

TEST_CASE("trace context: malformed values are refused") {
  for (std::string_view bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     // short
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // 00 with more
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero parent id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // separator
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",    // flags not hex
       }) {
    CAPTURE(bad);
    CHECK_FALSE(parse_traceparent(bad));
  }
}

TEST_CASE("trace context: a later version keeps its first four fields and only the sampled bit") {
  const auto t = parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b-extra");
  REQUIRE(t);
  CHECK(t->to_string() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  const auto u = parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe");
  REQUIRE(u);
  CHECK(u->flags() == "00");
}

TEST_CASE("trace context: the next hop keeps the trace and its flags and gets a new span id") {
  SeededRandom random(7);
  const auto in = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  REQUIRE(in);
  const TraceParent next = next_traceparent(in, random);
  CHECK(next.trace_id() == in->trace_id());
  CHECK(next.flags() == "00");
  CHECK(next.parent_id() != in->parent_id());
  CHECK(lower_hex(next.parent_id()));
  CHECK(parse_traceparent(next.to_string()));
}

TEST_CASE("trace context: a new trace is sampled, well formed and never all zeros") {
  ZerosFirst random(3);  // the first draws are all zero and must be drawn again
  const TraceParent t = next_traceparent(std::nullopt, random);
  CHECK(t.to_string().size() == 55);
  CHECK(t.flags() == "01");
  CHECK(lower_hex(t.trace_id()));
  CHECK(lower_hex(t.parent_id()));
  CHECK(t.trace_id() != std::string(32, '0'));
  CHECK(t.parent_id() != std::string(16, '0'));
  CHECK(parse_traceparent(t.to_string()));
  SeededRandom seeded(11);
  CHECK(next_traceparent(std::nullopt, seeded).trace_id() !=
        next_traceparent(std::nullopt, seeded).trace_id());
}

}  // namespace
}  // namespace civicbus::gateway

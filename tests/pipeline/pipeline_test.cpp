#include "civicbus/pipeline/pipeline.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "civicbus/connect/connector.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::connect;
using namespace civicbus::pipeline;

namespace {

// A source of `rows` generated permits in id order, checkpointing {"cursor": last id} after
// each of its own batches (which are smaller than the pipeline's, as real sources' are).
class PermitSource final : public Connector {
 public:
  PermitSource() {
    spec_.name = "permits_gen";
    spec_.config_schema =
        Json::parse(R"({"type":"object","properties":{"rows":{"type":"integer"}}})").value();
  }
  const ConnectorSpec& spec() const override { return spec_; }
  Status check(const ConnectorContext&) override { return Status(); }
  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    StreamSpec s;
    s.name = "permits";
    s.cursor_field = "id";
    return std::vector<StreamSpec>{s};
  }
  Status read(const ConnectorContext& ctx, const ReadRequest& request,
              RecordEmitter& out) override {
    std::int64_t rows = ctx.config.get_int("rows", 100);
    std::int64_t start = 0;
    if (const Json* st = request.stream_state("permits")) start = st->get_int("cursor");
    RecordBatch batch("permits", {"id", "issued", "fee", "status"});
    for (std::int64_t id = start + 1; id <= rows; ++id) {
      // Every 10th row has a bad date, every 25th an unknown status code.
      std::string issued = id % 10 == 0 ? "31/02/2020" : "15/06/2020";
      std::string status = id % 25 == 0 ? "ZZ" : (id % 2 ? "iss" : "FIN");
      batch.records.push_back(
          {{Json(id), Json(issued), Json(std::to_string(id) + ".50"), Json(status)}, id + 1});
      if (batch.size() == 7 || id == rows) {
        CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(batch)));
        batch = RecordBatch("permits", {"id", "issued", "fee", "status"});
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint("permits", Json::object({{"cursor", id}})));
      }
    }
    return Status();
  }

 private:
  ConnectorSpec spec_;
};

// The sqlite sink, failing once on a chosen batch: before writing (the sink is down) or
// after writing (the acknowledgement is lost, as in a crash between load and checkpoint).
struct FlakyPlan {
  std::atomic<int> fail_on_call{-1};
  bool after_write = false;
  std::atomic<int> calls{0};
};

class FlakySink final : public Connector {
 public:
  explicit FlakySink(FlakyPlan& plan)
      : plan_(plan), inner_(ConnectorCatalog::builtin().create("sqlite").value()) {
    spec_ = inner_->spec();
    spec_.name = "flaky_sqlite";
  }
  const ConnectorSpec& spec() const override { return spec_; }
  Status check(const ConnectorContext& c) override { return inner_->check(c); }
  Result<std::vector<StreamSpec>> discover(const ConnectorContext& c) override {
    return inner_->discover(c);
  }
  Result<WriteResult> write(const ConnectorContext& c, const WriteRequest& w,
                            const RecordBatch& b) override {
    int call = plan_.calls++;
    if (call == plan_.fail_on_call && !plan_.after_write) return unavailable("sink down");
    auto r = inner_->write(c, w, b);
    if (call == plan_.fail_on_call && plan_.after_write) return unavailable("acknowledgement lost");
    return r;
  }

 private:
  FlakyPlan& plan_;
  std::unique_ptr<Connector> inner_;
  ConnectorSpec spec_;
};

PipelineOptions permit_options(const testing::TempDir& dir, std::int64_t rows) {
  PipelineOptions o;
  o.name = "permits";
  o.source = {"permits_gen", Json::object({{"rows", rows}}), "permits"};
  o.sink = {"flaky_sqlite", Json::object({{"path", dir.file("target.db")}}), "permits"};
  o.stages.push_back({"types", "types",
                      Json::parse(R"({"fields":{"issued":{"type":"date","formats":["%d/%m/%Y"]},
                                                 "fee":{"type":"number"}}})")
                          .value()});
  o.stages.push_back(
      {"map_codes", "status codes",
       Json::parse(R"({"fields":{"status":{"table":{"ISS":"issued","FIN":"final"}}}})").value()});
  o.batch_size = 20;
  o.error_report_dir = dir.file("report");
  return o;
}

std::int64_t count_rows(const std::string& path,
                        const std::string& sql = "SELECT COUNT(*) FROM permits") {
  storage::SqliteOptions so;
  so.path = path;
  auto db = storage::open_sqlite(so);
  REQUIRE(db.ok());
  return (*db)->query_int(sql)->value_or(-1);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Fixture {
  testing::TempDir dir;
  FlakyPlan plan;
  ConnectorCatalog catalog;
  Fixture() {
    REQUIRE(catalog.add([] { return std::make_unique<PermitSource>(); }).ok());
    REQUIRE(catalog.add([this] { return std::make_unique<FlakySink>(plan); }).ok());
  }
  PipelineEnv env() {
    PipelineEnv e;
    e.catalog = &catalog;
    return e;
  }
};

// Runs `stages` over one batch in a pipeline from a one-batch source to a sink that keeps
// what it is given; returns the batches written and the errors reported.
std::vector<RecordBatch> run_stages(std::vector<StageOptions> stages, RecordBatch in,
                                    const testing::TempDir& dir, std::vector<ErrorEntry>& errors) {
  struct OneBatch final : Connector {
    RecordBatch b;
    ConnectorSpec s;
    explicit OneBatch(RecordBatch x) : b(std::move(x)) { s.name = "one"; }
    const ConnectorSpec& spec() const override { return s; }
    Status check(const ConnectorContext&) override { return Status(); }
    Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
      return std::vector<StreamSpec>{};
    }
    Status read(const ConnectorContext&, const ReadRequest&, RecordEmitter& out) override {
      return out.emit(b);
    }
  };
  struct Keep final : Connector {
    ConnectorSpec s;
    std::vector<RecordBatch>* out;
    explicit Keep(std::vector<RecordBatch>* o) : out(o) {
      s.name = "keep";
      s.is_source = false;
      s.is_sink = true;
    }
    const ConnectorSpec& spec() const override { return s; }
    Status check(const ConnectorContext&) override { return Status(); }
    Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
      return std::vector<StreamSpec>{};
    }
    Result<WriteResult> write(const ConnectorContext&, const WriteRequest&,
                              const RecordBatch& batch) override {
      out->push_back(batch);
      return WriteResult{static_cast<std::int64_t>(batch.size()), {}};
    }
  };
  std::vector<RecordBatch> written;
  ConnectorCatalog catalog;
  REQUIRE(catalog.add([in] { return std::make_unique<OneBatch>(in); }).ok());
  REQUIRE(catalog.add([&written] { return std::make_unique<Keep>(&written); }).ok());
  PipelineOptions o;
  o.name = "stages";
  o.source = {"one", Json::object(), ""};
  o.sink = {"keep", Json::object(), ""};
  o.stages = std::move(stages);
  o.error_report_dir = dir.file("stages");
  PipelineEnv e;
  e.catalog = &catalog;
  auto p = Pipeline::create(o, e);
  REQUIRE(p.ok());
  auto run = (*p)->run();
  REQUIRE(run.ok());
  errors = run->errors;
  return written;
}

}  // namespace

TEST_CASE("pipeline: failing rows land in the report while the rest of each batch loads") {
  Fixture f;
  std::vector<Progress> progress;
  PipelineEnv env = f.env();
  env.on_progress = [&](const Progress& p) { progress.push_back(p); };
  auto options = permit_options(f.dir, 100);
  options.expected_rows = 100;
  auto p = Pipeline::create(options, std::move(env));
  REQUIRE(p.ok());
  auto report = (*p)->run();
  REQUIRE(report.ok());
  // 10 bad dates (ids 10..100 step 10), 4 unknown codes (25, 75; 50 and 100 are bad dates).
  CHECK(report->rows_read == 100);
  CHECK(report->rows_failed == 12);
  CHECK(report->rows_loaded == 88);
  CHECK(report->batches == 5);
  CHECK(report->success_rate() == doctest::Approx(0.88));
  CHECK(count_rows(f.dir.file("target.db")) == 88);
  CHECK(count_rows(f.dir.file("target.db"),
                   "SELECT COUNT(*) FROM permits WHERE issued = '2020-06-15' AND status IN "
                   "('issued','final')") == 88);

  std::string csv = slurp(report->error_csv_path);
  CHECK(csv.rfind("batch,stage,line,field,value,reason\n", 0) == 0);
  CHECK(csv.find(",types,11,issued,31/02/2020,not a date in the format %d/%m/%Y") !=
        std::string::npos);
  CHECK(csv.find("status codes,26,status,ZZ,code not in the lookup table") != std::string::npos);
  auto json = Json::parse(slurp(report->error_json_path));
  REQUIRE(json.ok());
  CHECK(json->size() == 12);
  CHECK(json->as_array()[0].get_int("line") == 11);

  REQUIRE(progress.size() == 5);
  CHECK(progress.back().rows_read == 100);
  CHECK(progress.back().eta.has_value());
  CHECK(progress[1].rows_loaded + progress[1].rows_failed == 40);

  // A second run of a completed pipeline starts again from the source's beginning state.
  auto again = Pipeline::create(options, f.env());
  REQUIRE(again.ok());
  auto second = (*again)->run();
  REQUIRE(second.ok());
  CHECK_FALSE(second->resumed);
}

TEST_CASE("pipeline: a run stopped by a failing sink resumes after its last committed batch") {
  Fixture f;
  f.plan.fail_on_call = 2;  // the third batch
  auto options = permit_options(f.dir, 100);
  {
    auto p = Pipeline::create(options, f.env());
    REQUIRE(p.ok());
    auto r = (*p)->run();
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kUnavailable);
    CHECK(r.status().message().find("batch 3") != std::string::npos);
  }
  CHECK(count_rows(f.dir.file("target.db")) < 88);
  f.plan.fail_on_call = -1;
  auto p = Pipeline::create(options, f.env());
  REQUIRE(p.ok());
  auto r = (*p)->run();
  REQUIRE(r.ok());
  CHECK(r->resumed);
  CHECK(r->resumed_after_rows == 40);
  CHECK(r->rows_read == 60);
  CHECK(count_rows(f.dir.file("target.db")) == 88);
  // Nothing loaded twice; every id once.
  CHECK(count_rows(f.dir.file("target.db"), "SELECT COUNT(DISTINCT id) FROM permits") == 88);
  // The report holds the errors of both attempts once each.
  auto json = Json::parse(slurp(r->error_json_path));
  REQUIRE(json.ok());
  CHECK(json->size() == 12);
}

TEST_CASE("pipeline: a batch whose acknowledgement was lost is not loaded twice") {
  Fixture f;
  f.plan.fail_on_call = 1;
  f.plan.after_write = true;  // batch 2 is written, then the sink reports a failure
  auto options = permit_options(f.dir, 100);
  options.stages.clear();
  {
    auto p = Pipeline::create(options, f.env());
    REQUIRE(p.ok());
    CHECK_FALSE((*p)->run().ok());
  }
  CHECK(count_rows(f.dir.file("target.db")) == 40);  // batch 2 is in, uncommitted by us
  f.plan.fail_on_call = -1;
  auto p = Pipeline::create(options, f.env());
  REQUIRE(p.ok());
  auto r = (*p)->run();
  REQUIRE(r.ok());
  // Append mode, no key: only the batch id keeps batch 2 from loading twice.
  CHECK(count_rows(f.dir.file("target.db")) == 100);
  CHECK(count_rows(f.dir.file("target.db"), "SELECT COUNT(DISTINCT id) FROM permits") == 100);
}

TEST_CASE("pipeline: options and stages are checked before a run") {
  Fixture f;
  auto options = permit_options(f.dir, 10);
  options.stages.push_back({"frobnicate", "", Json::object()});
  auto p = Pipeline::create(options, f.env());
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().message().find("stage 3") != std::string::npos);
  CHECK(p.status().message().find("unknown stage type 'frobnicate'") != std::string::npos);

  options = permit_options(f.dir, 10);
  options.write_mode = WriteMode::kUpsert;
  CHECK(Pipeline::create(options, f.env()).status().message().find("names no key") !=
        std::string::npos);

  options = permit_options(f.dir, 10);
  options.sink.connector = "permits_gen";
  CHECK(Pipeline::create(options, f.env()).status().message().find("cannot be a sink") !=
        std::string::npos);

  options = permit_options(f.dir, 10);
  options.stages[0].config = Json::parse(R"({"fields":{"fee":{"type":"money"}}})").value();
  CHECK(Pipeline::create(options, f.env()).status().message().find("unknown type 'money'") !=
        std::string::npos);
}

TEST_CASE("pipeline: custom C++ stages registered by type and added in code") {
  Fixture f;
  struct Upper final : Stage {
    std::string_view name() const override { return "upper"; }
    Status process(RecordBatch& b, std::vector<RowError>&) override {
      int c = b.column_index("status");
      for (auto& r : b.records) {
        Json& v = r.values[static_cast<std::size_t>(c)];
        if (v.is_string()) {
          for (auto& ch : v.as_string())
            ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        }
      }
      return Status();
    }
  };
  struct Fails final : Stage {
    std::string_view name() const override { return "fails"; }
    Status process(RecordBatch&, std::vector<RowError>&) override { return internal_error("boom"); }
  };
  PipelineEnv env = f.env();
  env.stage_types["upper"] = [](const StageOptions&) -> Result<std::unique_ptr<Stage>> {
    return std::unique_ptr<Stage>(std::make_unique<Upper>());
  };
  auto options = permit_options(f.dir, 30);
  options.stages.clear();
  options.stages.push_back({"upper", "", Json::object()});
  auto p = Pipeline::create(options, env);
  REQUIRE(p.ok());
  REQUIRE((*p)->run().ok());
  CHECK(count_rows(f.dir.file("target.db"), "SELECT COUNT(*) FROM permits WHERE status = 'ISS'") ==
        14);  // 15 odd ids, 25 is "ZZ"

  options.name = "failing";
  auto q = Pipeline::create(options, env);
  REQUIRE(q.ok());
  (*q)->add_stage(std::make_unique<Fails>());
  auto r = (*q)->run();
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("stage 'fails' on batch 1: boom") != std::string::npos);
}

TEST_CASE("pipeline: types stage conversions") {
  Fixture f;
  StageOptions s{"types", "t",
                 Json::parse(R"({"time_zone":"America/Toronto","fields":{
      "n":{"type":"integer","thousands_separator":","},
      "x":{"type":"number"},
      "b":{"type":"boolean"},
      "d":{"type":"date","formats":["%Y%m%d","%d %b %Y"]},
      "ts":{"type":"timestamp","formats":["%Y-%m-%d %H:%M"]},
      "e":{"type":"enum","values":["Issued","Final"]},
      "r":{"type":"string","required":true}}})")
                     .value()};
  RecordBatch b("x", {"n", "x", "b", "d", "ts", "e", "r"});
  b.records.push_back({{Json("1,234"), Json("-2.5"), Json("Oui"), Json("20240229"),
                        Json("2026-07-01 09:30"), Json("issued"), Json("a")},
                       1});
  b.records.push_back(
      {{Json("12x"), Json(""), Json("y"), Json("1 Mar 2024"), Json(), Json("final"), Json("a")},
       2});
  b.records.push_back(
      {{Json("5"), Json("1"), Json("maybe"), Json("20240229"), Json(), Json("final"), Json("a")},
       3});
  b.records.push_back(
      {{Json("5"), Json("1"), Json("n"), Json("20230229"), Json(), Json("final"), Json("a")}, 4});
  b.records.push_back(
      {{Json("5"), Json("1"), Json("n"), Json("20240101"), Json(), Json("draft"), Json("a")}, 5});
  b.records.push_back(
      {{Json("5"), Json("1"), Json("n"), Json("20240101"), Json(), Json("final"), Json("  ")}, 6});
  b.records.push_back({{Json("5"), Json("1"), Json("n"), Json("20240101"), Json("2026-03-08 02:30"),
                        Json("final"), Json("a")},
                       7});
  testing::TempDir reports;
  std::vector<ErrorEntry> errors;
  auto written = run_stages({s}, b, reports, errors);
  REQUIRE(written.size() == 1);
  const RecordBatch& out = written[0];
  REQUIRE(out.size() == 2);
  CHECK(out.records[0].values[0].as_int() == 1234);
  CHECK(out.records[0].values[1].as_double() == -2.5);
  CHECK(out.records[0].values[2].as_bool());
  CHECK(out.records[0].values[3].as_string() == "2024-02-29");
  CHECK(out.records[0].values[4].as_string() == "2026-07-01T13:30:00.000000Z");
  CHECK(out.records[0].values[5].as_string() == "Issued");
  // A local time inside the spring-forward gap resolves to the instant after it.
  CHECK(out.records[1].position == 7);
  CHECK(out.records[1].values[4].as_string() == "2026-03-08T07:30:00.000000Z");
  std::vector<std::string> reasons;
  for (const auto& err : errors) reasons.push_back(err.error.field + ": " + err.error.reason);
  REQUIRE(reasons.size() == 5);
  CHECK(reasons[0] == "n: not an integer");
  CHECK(reasons[1] == "b: not a boolean (true/false, yes/no, y/n, 1/0, oui/non)");
  CHECK(reasons[2] == "d: not a date in the formats %Y%m%d, %d %b %Y");
  CHECK(reasons[3] == "e: not one of the allowed values");
  CHECK(reasons[4] == "r: required field is empty");
}

TEST_CASE("pipeline: normalize_address stage uses the match engine's Canadian rules") {
  testing::TempDir dir;
  RecordBatch b("x", {"street", "city", "prov", "postal"});
  b.records.push_back(
      {{Json("104-2701 23rd Avenue S.W."), Json("Regina"), Json("Sask."), Json("s4s1e5")}, 2});
  b.records.push_back(
      {{Json("123 rue Principale"), Json("Montréal"), Json("QC"), Json("H3L 1T8")}, 3});
  b.records.push_back({{Json("12 Main St"), Json("Toronto"), Json("BC"), Json("K1A 0B1")}, 4});
  std::vector<ErrorEntry> errors;
  auto out = run_stages({{"normalize_address", "addresses",
                          Json::object({{"street", "street"},
                                        {"municipality", "city"},
                                        {"province", "prov"},
                                        {"postal_code", "postal"}})}},
                        b, dir, errors);
  REQUIRE(out.size() == 1);
  const RecordBatch& r = out[0];
  REQUIRE(r.size() == 2);
  auto col = [&](std::string_view c) { return r.column_index(c); };
  CHECK(RecordBatch::value(r.records[0], col("street")).as_string() == "104-2701 23RD AVE SW");
  CHECK(RecordBatch::value(r.records[0], col("prov")).as_string() == "SK");
  CHECK(RecordBatch::value(r.records[0], col("postal")).as_string() == "S4S 1E5");
  CHECK(RecordBatch::value(r.records[0], col("address_unit")).as_string() == "104");
  CHECK(RecordBatch::value(r.records[0], col("address_street_type")).as_string() == "AVE");
  CHECK(RecordBatch::value(r.records[1], col("address_street_type")).as_string() == "RUE");
  CHECK(RecordBatch::value(r.records[1], col("address_one_line")).as_string() ==
        "123 RUE PRINCIPALE MONTRÉAL QC  H3L 1T8");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].error.position == 4);
  CHECK(errors[0].error.field == "street");
  CHECK(errors[0].error.reason.find("Ontario") != std::string::npos);
}

TEST_CASE("pipeline: lines a source cannot read go to the error report while the rest load") {
  testing::TempDir dir;
  testing::write_file(dir.file("permits.ndjson"),
                      "{\"id\": 1, \"status\": \"ISS\"}\n"
                      "{\"id\": 2, \"status\": \"FIN\"\n"  // cut short
                      "[3, \"ISS\"]\n"                     // JSON, not an object
                      "{\"id\": 4, \"status\": \"ISS\"}\n");
  PipelineOptions o;
  o.name = "ndjson";
  o.source = {"json", Json::object({{"path", dir.file("permits.ndjson")}, {"format", "ndjson"}}),
              ""};
  o.sink = {"sqlite", Json::object({{"path", dir.file("out.db")}}), "permits"};
  o.error_report_dir = dir.file("report");
  auto p = Pipeline::create(o);
  REQUIRE_MESSAGE(p.ok(), p.status().to_string());
  auto r = (*p)->run();
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->rows_read == 4);
  CHECK(r->rows_loaded == 2);
  CHECK(r->rows_failed == 2);
  REQUIRE(r->errors.size() == 2);
  CHECK(r->errors[0].stage == "source");
  CHECK(r->errors[0].error.position == 2);
  CHECK(r->errors[0].error.reason.find("not valid JSON") != std::string::npos);
  CHECK(r->errors[1].error.position == 3);
  CHECK(count_rows(dir.file("out.db")) == 2);
}

// pipeline_bench: the Pipeline engine on generated municipal permit rows.
//
//   five_stage  parse CSV -> types (integer, number, date) -> Canadian address normalisation
//               -> status code map -> SQLite upsert by key, over --rows rows (1,000,000).
//               The issue asks at least 10,000,000 rows per minute on 2 cores (the spec's
//               users asked for 100,000). No peer program runs this workload, so BENCH only.
//   hub         connector hub overhead: N connections on cron schedules with a source that
//               emits one record and checkpoints, run_due() driven over simulated minutes by
//               a ManualClock (the cron, discover, drift check, state commit and run record of
//               every run, no connector work); CPU time per run and what 10,000 runs an hour
//               cost as a share of one core (the issue asks under 1%). --hub-runs N (3000).
//   mapping     the hub's field mapping alone: 10,000 records of 10 fields renamed and
//               converted, CPU time per batch (no file, no peer: BENCH only).
//   csv_load    the same CSV loaded as text into an SQLite table (csv source -> sqlite sink,
//               no stages) against the sqlite3 command line's `.import` of the same file into
//               the same table, same pragmas, same run: VS line, ratio ours/peer.
//
// Flags: --rows N (1000000)  --only five_stage|csv_load|hub|mapping  --batch N (100000)
//        --hub-runs N
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include "bench_common.hpp"
#include "civicbus/connect/connector.hpp"
#include "civicbus/connect/field_mapping.hpp"
#include "civicbus/connect/hub.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/storage/database.hpp"

using namespace civicbus;
using namespace civicbus::bench;

namespace {

double seconds_since(std::int64_t start_ns) {
  return static_cast<double>(steady_now_ns() - start_ns) / 1e9;
}

struct Flags {
  std::int64_t rows = 1'000'000;
  std::size_t batch = 100'000;
  std::int64_t hub_runs = 3000;
  std::string only;
};

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--rows") {
      f.rows = std::stoll(v);
    } else if (k == "--batch") {
      f.batch = std::stoul(v);
    } else if (k == "--hub-runs") {
      f.hub_runs = std::stoll(v);
    } else if (k == "--only") {
      f.only = v;
    } else {
      throw std::runtime_error("unknown flag " + k);
    }
  }
  return f;
}

template <typename T>
T check(Result<T> r, std::string_view what) {
  if (!r.ok()) throw std::runtime_error(fmt::format("{}: {}", what, r.status().to_string()));
  return std::move(r).value();
}

// Permit rows as a legacy export gives them: dd/mm/yyyy dates, amounts as text, status
// codes, addresses in mixed case in English and French forms.
void write_permits_csv(const std::filesystem::path& path, std::int64_t rows) {
  static const char* kStreets[] = {
      "Main Street",    "23rd Ave SW", "rue Principale",    "King St W", "Boul. René-Lévesque O",
      "Maple Crescent", "ch. du Lac",  "Queen Street East", "Dundas St", "Wellington Rd"};
  static const char* kCities[][3] = {{"Toronto", "ON", "M5V 2T6"},
                                     {"Regina", "SK", "S4S 1E5"},
                                     {"Montréal", "QC", "H3L 1T8"},
                                     {"Ottawa", "Ont.", "k1a0b1"},
                                     {"Halifax", "NS", "B3H 1A1"}};
  static const char* kStatus[] = {"ISS", "fin", "APP", "REJ", "EXP"};
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) throw std::runtime_error("cannot write " + path.string());
  std::fputs("permit_id,roll_number,issued_on,fee,status,street,city,province,postal_code\n", out);
  for (std::int64_t i = 1; i <= rows; ++i) {
    const auto& city = kCities[i % 5];
    std::string street = i % 7 == 0
                             ? fmt::format("{}-{} {}", i % 300 + 1, i % 9000 + 10, kStreets[i % 10])
                             : fmt::format("{} {}", i % 9000 + 10, kStreets[i % 10]);
    std::string line =
        fmt::format("{},{:019},{:02}/{:02}/{},{}.{:02},{},\"{}\",{},{},{}\n", i,
                    1901000000000000000 + i, i % 28 + 1, i % 12 + 1, 2010 + i % 15, i % 5000,
                    i % 100, kStatus[i % 5], street, city[0], city[1], city[2]);
    std::fwrite(line.data(), 1, line.size(), out);
  }
  std::fclose(out);
}

pipeline::PipelineOptions base_options(const std::filesystem::path& dir, const std::string& name,
                                       const std::filesystem::path& csv,
                                       const std::filesystem::path& db, std::size_t batch,
                                       std::int64_t rows) {
  pipeline::PipelineOptions o;
  o.name = name;
  o.source = {"csv", Json::object({{"path", csv.string()}, {"stream", "permits"}}), "permits"};
  o.sink = {"sqlite", Json::object({{"path", db.string()}}), "permits"};
  o.batch_size = batch;
  o.expected_rows = rows;
  o.error_report_dir = (dir / (name + "-report")).string();
  return o;
}

void five_stage(const Flags& f, const TempDir& dir, const std::filesystem::path& csv) {
  auto o = base_options(dir.path(), "five_stage", csv, dir.path() / "five.db", f.batch, f.rows);
  o.write_mode = connect::WriteMode::kUpsert;
  o.key = {"permit_id"};
  o.stages.push_back({"types", "types",
                      check(Json::parse(R"({"fields":{
      "permit_id":{"type":"integer","required":true},
      "issued_on":{"type":"date","formats":["%d/%m/%Y"]},
      "fee":{"type":"number"}}})"),
                            "types config")});
  o.stages.push_back({"normalize_address", "addresses",
                      check(Json::parse(R"({
      "street":"street","municipality":"city","province":"province","postal_code":"postal_code"})"),
                            "address config")});
  o.stages.push_back({"map_codes", "status",
                      check(Json::parse(R"({"fields":{"status":{"table":{
      "ISS":"issued","FIN":"final","APP":"applied","REJ":"rejected","EXP":"expired"}}}})"),
                            "map config")});
  auto p = check(pipeline::Pipeline::create(o), "five-stage pipeline");
  const std::int64_t t0 = steady_now_ns();
  auto report = check(p->run(), "five-stage run");
  const double secs = seconds_since(t0);
  const double per_minute = static_cast<double>(report.rows_read) / secs * 60.0;
  print_bench("pipeline_five_stage", {{"rows", report.rows_read},
                                      {"loaded", report.rows_loaded},
                                      {"failed", report.rows_failed},
                                      {"batch", f.batch},
                                      {"seconds", secs},
                                      {"rows_per_minute", per_minute},
                                      {"target_rows_per_minute", 10'000'000}});
  if (report.rows_failed > 0 && !report.errors.empty()) {
    std::fprintf(stderr, "# first failure: line %lld %s: %s\n",
                 static_cast<long long>(report.errors[0].error.position),
                 report.errors[0].error.field.c_str(), report.errors[0].error.reason.c_str());
  }
}

constexpr const char* kTableDdl =
    "CREATE TABLE permits (permit_id TEXT, roll_number TEXT, issued_on TEXT, fee TEXT, status "
    "TEXT, street TEXT, city TEXT, province TEXT, postal_code TEXT)";

void csv_load(const Flags& f, const TempDir& dir, const std::filesystem::path& csv) {
  // Ours: the same table, created first, the CSV's fields loaded as text.
  const auto ours_db = dir.path() / "ours.db";
  {
    storage::SqliteOptions so;
    so.path = ours_db.string();
    auto db = check(storage::open_sqlite(so), "open");
    if (Status s = db->execute_script(kTableDdl); !s.ok()) throw std::runtime_error(s.to_string());
  }
  auto o = base_options(dir.path(), "csv_load", csv, ours_db, f.batch, f.rows);
  o.source.config.set("infer_types", false);
  auto p = check(pipeline::Pipeline::create(o), "csv load pipeline");
  const std::int64_t t0 = steady_now_ns();
  auto report = check(p->run(), "csv load run");
  const double secs = seconds_since(t0);
  const double ours = static_cast<double>(report.rows_loaded) / secs;
  print_bench("pipeline_csv_load",
              {{"rows", report.rows_loaded}, {"seconds", secs}, {"rows_per_s", ours}});

  auto sqlite3 = find_program("sqlite3");
  if (!sqlite3) {
    std::fprintf(stderr, "# pipeline_csv_load sqlite3: not installed\n");
    return;
  }
  const auto script = dir.path() / "import.sql";
  {
    std::ofstream out(script);
    // The pragmas the sqlite sink uses: WAL, synchronous=FULL.
    out << "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=FULL;\n"
        << kTableDdl << ";\n"
        << ".import --csv --skip 1 " << csv.string() << " permits\n";
  }
  const std::int64_t p0 = steady_now_ns();
  const std::string cmd = fmt::format("{} {} < {} > /dev/null", sqlite3->string(),
                                      (dir.path() / "peer.db").string(), script.string());
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("sqlite3 .import failed");
  const double psecs = seconds_since(p0);
  const double peer = static_cast<double>(f.rows) / psecs;
  print_bench(
      "pipeline_csv_load",
      {{"peer", "sqlite3_import"}, {"rows", f.rows}, {"seconds", psecs}, {"rows_per_s", peer}});
  print_vs("pipeline_csv_load", ours, peer, "sqlite3_import", "rows/s", true);
}

// A source with nothing to do: one record and a checkpoint per run.
class TickSource final : public connect::Connector {
 public:
  TickSource() { spec_.name = "tick"; }
  const connect::ConnectorSpec& spec() const override { return spec_; }
  Status check(const connect::ConnectorContext&) override { return Status(); }
  Result<std::vector<connect::StreamSpec>> discover(const connect::ConnectorContext&) override {
    connect::StreamSpec s;
    s.name = "ticks";
    s.fields = {{"n", connect::FieldType::kInteger, false}};
    s.cursor_field = "n";
    return std::vector<connect::StreamSpec>{s};
  }
  Status read(const connect::ConnectorContext&, const connect::ReadRequest& request,
              connect::RecordEmitter& out) override {
    std::int64_t n = 1;
    if (const Json* st = request.stream_state("ticks")) n = st->get_int("cursor") + 1;
    connect::RecordBatch b("ticks", {"n"});
    b.records.push_back({{Json(n)}, n});
    CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(b)));
    return out.checkpoint("ticks", Json::object({{"cursor", n}}));
  }

 private:
  connect::ConnectorSpec spec_;
};

void hub_overhead(const Flags& f, const TempDir& dir) {
  // One connection per minute of the hour's 10,000 runs: 167 connections firing every minute.
  constexpr int kConnections = 167;
  storage::SqliteOptions so;
  so.path = (dir.path() / "hub.db").string();
  auto db = check(storage::open_sqlite(so), "hub db");
  connect::ConnectorCatalog catalog;
  if (Status s = catalog.add([] { return std::make_unique<TickSource>(); }); !s.ok()) {
    throw std::runtime_error(s.to_string());
  }
  ManualClock clock(SystemTime{std::chrono::seconds{1'780'000'000}});
  connect::HubOptions ho;
  ho.data_dir = (dir.path() / "hub").string();
  connect::HubDeps deps;
  deps.db = db.get();
  deps.master_key = std::string(32, '\x33');
  deps.catalog = &catalog;
  deps.clock = &clock;
  auto hub = check(connect::ConnectorHub::open(ho, deps), "hub");
  for (int i = 0; i < kConnections; ++i) {
    connect::ConnectionOptions c;
    c.name = fmt::format("tick-{:03}", i);
    c.connector = "tick";
    c.schedule = "* * * * *";
    if (Status s = hub->add(c); !s.ok()) throw std::runtime_error(s.to_string());
  }
  std::int64_t runs = 0;
  const double c0 = self_cpu_seconds();
  const std::int64_t t0 = steady_now_ns();
  while (runs < f.hub_runs) {
    clock.advance(std::chrono::minutes(1));
    runs += hub->run_due();
  }
  const double cpu = self_cpu_seconds() - c0;
  const double wall = seconds_since(t0);
  const double cpu_ms_per_run = cpu * 1000.0 / static_cast<double>(runs);
  const double share_at_10k = cpu_ms_per_run * 10'000.0 / 1000.0 / 3600.0 * 100.0;
  print_bench("pipeline_hub_overhead", {{"connections", kConnections},
                                        {"runs", runs},
                                        {"cpu_seconds", cpu},
                                        {"wall_seconds", wall},
                                        {"cpu_ms_per_run", cpu_ms_per_run},
                                        {"core_percent_at_10k_runs_per_hour", share_at_10k},
                                        {"target_core_percent", 1}});
}

}  // namespace

// Field mapping alone: 10,000 records of 10 string fields renamed and converted (integer,
// number, string in turn), the batch mapped 30 times; records per second of this thread's CPU
// time, best and median. (The connect tests asserted at least 1,000,000 records/s until that
// floor failed on a slower machine: a speed is a figure of this bench, not of a test.)
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void field_mapping() {
  using namespace civicbus::connect;
  StreamSpec spec;
  spec.name = "readings";
  std::string fields;
  for (int i = 0; i < 10; ++i) {
    const std::string type = i % 3 == 0 ? "integer" : i % 3 == 1 ? "number" : "string";
    spec.fields.push_back({fmt::format("SRC_{}", i), FieldType::kString, true});
    if (!fields.empty()) fields += ",";
    fields += fmt::format(R"js("field_{}": {{"from": "SRC_{}", "type": "{}"}})js", i, i, type);
  }
  const Json mapping = check(Json::parse("{\"fields\": {" + fields + "}}"), "mapping JSON");
  const FieldMapping m = check(FieldMapping::compile(mapping, {spec}), "mapping");
  RecordBatch batch("readings", {});
  for (const FieldSpec& f : spec.fields) batch.columns.push_back(f.name);
  constexpr int kRecords = 10'000;
  for (int r = 0; r < kRecords; ++r) {
    Record record;
    record.position = r + 1;
    for (int i = 0; i < 10; ++i) {
      if (i % 3 == 0) {
        record.values.emplace_back(std::to_string(r * 10 + i));
      } else if (i % 3 == 1) {
        record.values.emplace_back(fmt::format("{}.5", r));
      } else {
        record.values.emplace_back(fmt::format("v{}", r));
      }
    }
    batch.records.push_back(std::move(record));
  }
  std::vector<double> rates;
  for (int round = 0; round < 30; ++round) {
    const double start = thread_cpu_seconds();
    const MappedBatch out = m.apply(batch);
    const double seconds = thread_cpu_seconds() - start;
    if (!out.errors.empty() || out.batch.size() != static_cast<std::size_t>(kRecords)) {
      throw std::runtime_error("field mapping: records were refused");
    }
    if (seconds > 0) rates.push_back(kRecords / seconds);
  }
  std::sort(rates.begin(), rates.end());
  if (rates.empty()) throw std::runtime_error("field mapping: no CPU time measured");
  print_bench("pipeline_field_mapping", {{"records", kRecords},
                                         {"fields", 10},
                                         {"rounds", rates.size()},
                                         {"records_per_s_cpu_best", rates.back()},
                                         {"records_per_s_cpu_median", rates[rates.size() / 2]}});
}

int main(int argc, char** argv) {
  try {
    Flags f = parse(argc, argv);
    TempDir dir("civicbus-pipeline-bench");
    const auto csv = dir.path() / "permits.csv";
    const bool needs_csv = f.only.empty() || f.only == "five_stage" || f.only == "csv_load";
    if (needs_csv) write_permits_csv(csv, f.rows);
    if (needs_csv)
      print_bench("pipeline_workload", {{"rows", f.rows},
                                        {"csv_bytes", std::filesystem::file_size(csv)},
                                        {"cores", std::thread::hardware_concurrency()}});
    if (f.only.empty() || f.only == "five_stage") five_stage(f, dir, csv);
    if (f.only.empty() || f.only == "csv_load") csv_load(f, dir, csv);
    if (f.only.empty() || f.only == "hub") hub_overhead(f, dir);
    if (f.only.empty() || f.only == "mapping") field_mapping();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline_bench: %s\n", e.what());
    return 1;
  }
}

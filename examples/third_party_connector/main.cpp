// A connector written by a third party against the public headers alone: it reads the
// nightly export of a (fictional) legacy parking-ticket system, a fixed-width text file, and
// offers it as a stream that reads incrementally by ticket number. The program registers it
// in a catalog beside the built-in connectors, then uses it twice: through a pipeline (with a
// code map, into SQLite) and through the connector hub (with a field mapping, on a schedule,
// its state committed after the sink acknowledged).
//
//   ticket(8) issued(8, YYYYMMDD) plate(8) offence(4) fine(7, cents)
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "civicbus/connect/connector.hpp"
#include "civicbus/connect/hub.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/storage/database.hpp"

using namespace civicbus;
namespace fs = std::filesystem;

namespace {

class ParkingTicketsConnector final : public connect::Connector {
 public:
  ParkingTicketsConnector() {
    spec_.name = "parking_tickets";
    spec_.title = "Legacy parking-ticket export (fixed width)";
    spec_.format_source = "the vendor's export layout, version 3";
    spec_.config_schema = Json::parse(R"({
      "type": "object", "required": ["path"],
      "properties": {"path": {"type": "string", "minLength": 1}},
      "additionalProperties": false})")
                              .value();
  }

  const connect::ConnectorSpec& spec() const override { return spec_; }

  Status check(const connect::ConnectorContext& context) override {
    std::string path = context.config.get_string("path");
    if (!fs::is_regular_file(path)) return not_found("no export file at '" + path + "'");
    return Status();
  }

  Result<std::vector<connect::StreamSpec>> discover(const connect::ConnectorContext&) override {
    connect::StreamSpec s;
    s.name = "tickets";
    s.fields = {{"ticket", connect::FieldType::kInteger, false},
                {"issued", connect::FieldType::kDate, false},
                {"plate", connect::FieldType::kString, false},
                {"offence", connect::FieldType::kString, false},
                {"fine_cents", connect::FieldType::kInteger, false}};
    s.primary_key = {"ticket"};
    s.cursor_field = "ticket";
    return std::vector<connect::StreamSpec>{s};
  }

  Status read(const connect::ConnectorContext& context, const connect::ReadRequest& request,
              connect::RecordEmitter& out) override {
    std::ifstream in(context.config.get_string("path"));
    if (!in) return unavailable("cannot open the export");
    std::int64_t after = 0;
    if (const Json* state = request.stream_state("tickets")) after = state->get_int("cursor");
    connect::RecordBatch batch("tickets", {"ticket", "issued", "plate", "offence", "fine_cents"});
    std::string line;
    std::int64_t number = 0, last = after;
    while (std::getline(in, line)) {
      ++number;
      if (line.size() < 35) {
        return data_loss("line " + std::to_string(number) + " is " + std::to_string(line.size()) +
                         " characters; the layout has 35");
      }
      std::int64_t ticket = std::stoll(line.substr(0, 8));
      if (ticket <= after) continue;
      std::string d = line.substr(8, 8);
      batch.records.push_back(
          {{Json(ticket), Json(d.substr(0, 4) + "-" + d.substr(4, 2) + "-" + d.substr(6, 2)),
            Json(line.substr(16, 8)), Json(line.substr(24, 4)),
            Json(std::stoll(line.substr(28, 7)))},
           number});
      last = ticket;
      if (batch.size() == request.batch_size) {
        CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(batch)));
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint("tickets", Json::object({{"cursor", last}})));
        batch =
            connect::RecordBatch("tickets", {"ticket", "issued", "plate", "offence", "fine_cents"});
      }
    }
    CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(batch)));
    return out.checkpoint("tickets", Json::object({{"cursor", last}}));
  }

 private:
  connect::ConnectorSpec spec_;
};

void write_export(const fs::path& path, int from, int to) {
  std::ofstream out(path, std::ios::app);
  for (int t = from; t <= to; ++t) {
    char line[64];
    std::snprintf(line, sizeof line, "%08d2026%02d%02d%-8s%-4s%07d\n", t, 1 + t % 12, 1 + t % 28,
                  ("ON" + std::to_string(1000 + t)).c_str(), t % 4 == 0 ? "NOPK" : "EXPM",
                  t % 4 == 0 ? 5000 : 3500);
    out << line;
  }
}

int fail(const Status& s) {
  std::fprintf(stderr, "example failed: %s\n", s.to_string().c_str());
  return 1;
}

}  // namespace

int main() {
  fs::path dir = fs::temp_directory_path() / ("civicbus-example-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path export_file = dir / "tickets.txt";
  write_export(export_file, 1, 40);

  connect::ConnectorCatalog catalog = connect::ConnectorCatalog::builtin();
  if (Status s = catalog.add([] { return std::make_unique<ParkingTicketsConnector>(); }); !s.ok()) {
    return fail(s);
  }

  // 1. A pipeline: the offence codes mapped to their bylaw names, loaded into SQLite.
  pipeline::PipelineOptions p;
  p.name = "tickets";
  p.source = {"parking_tickets", Json::object({{"path", export_file.string()}}), "tickets"};
  p.stages = {{"map_codes", "offences",
               Json::parse(R"json({"fields": {"offence": {"target": "bylaw",
                   "table": {"NOPK": "No parking (s. 7)", "EXPM": "Expired meter (s. 12)"}}}})json")
                   .value()}};
  p.sink = {"sqlite", Json::object({{"path", (dir / "city.db").string()}}), "tickets"};
  p.write_mode = connect::WriteMode::kUpsert;
  p.key = {"ticket"};
  p.error_report_dir = (dir / "report").string();
  pipeline::PipelineEnv env;
  env.catalog = &catalog;
  auto pipe = pipeline::Pipeline::create(p, env);
  if (!pipe.ok()) return fail(pipe.status());
  auto report = (*pipe)->run();
  if (!report.ok()) return fail(report.status());
  std::printf(
      "pipeline: read %lld, loaded %lld, failed %lld\n", static_cast<long long>(report->rows_read),
      static_cast<long long>(report->rows_loaded), static_cast<long long>(report->rows_failed));

  // 2. The hub: the same connector on a schedule, its fines mapped to dollars.
  storage::SqliteOptions so;
  so.path = (dir / "node.db").string();
  auto db = storage::open_sqlite(so);
  if (!db.ok()) return fail(db.status());
  ManualClock clock;
  connect::HubOptions ho;
  ho.data_dir = dir.string();
  connect::HubDeps deps;
  deps.db = db->get();
  deps.master_key = std::string(32, '\x11');  // a node reads its master key file
  deps.catalog = &catalog;
  deps.clock = &clock;
  auto hub = connect::ConnectorHub::open(ho, deps);
  if (!hub.ok()) return fail(hub.status());
  connect::ConnectionOptions sink;
  sink.name = "city";
  sink.connector = "sqlite";
  sink.config = Json::object({{"path", (dir / "city.db").string()}});
  connect::ConnectionOptions tickets;
  tickets.name = "tickets";
  tickets.connector = "parking_tickets";
  tickets.config = Json::object({{"path", export_file.string()}});
  tickets.schedule = "0 3 * * *";
  tickets.destination = "city";
  tickets.destination_stream = "fines";
  tickets.write_mode = connect::WriteMode::kUpsert;
  tickets.key = {"ticket"};
  tickets.mapping = Json::parse(R"json({"fields": {"ticket": {"from": "ticket", "required": true},
      "plate": {"expr": "trim(plate)"}, "dollars": {"expr": "fine_cents / 100"}}})json")
                        .value();
  for (const auto& c : {sink, tickets}) {
    if (Status s = (*hub)->add(c); !s.ok()) return fail(s);
  }
  auto first = (*hub)->sync("tickets");
  if (!first.ok()) return fail(first.status());
  write_export(export_file, 41, 45);        // tomorrow's export has five more
  auto next = (*hub)->next_run("tickets");  // 03:00 Toronto time
  if (!next.ok()) return fail(next.status());
  clock.set(*next + std::chrono::seconds(1));
  int ran = (*hub)->run_due();
  auto status = (*hub)->status("tickets");
  if (!status.ok()) return fail(status.status());
  std::printf("hub: first sync wrote %lld; the scheduled run ran %d sync(s); cursor now %s\n",
              static_cast<long long>(first->records_written), ran, status->state.dump().c_str());
  const bool ok = report->rows_loaded == 40 && first->records_written == 40 && ran == 1 &&
                  status->state.at_pointer("/tickets/cursor")->as_int() == 45;
  fs::remove_all(dir);
  if (!ok) {
    std::fprintf(stderr, "example failed: unexpected counts\n");
    return 1;
  }
  return 0;
}

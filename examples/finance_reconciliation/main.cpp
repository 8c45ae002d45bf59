// finance_reconciliation: the spec's "Cross-System Financial Reconciliation" scenario with the
// built-in municipal connectors. The payment engine publishes payment.completed events; an ERP
// consumer group posts each as a balanced journal through the `erp_gl` connector (the ERP's GL
// import file), which is read back as the ERP sees it. The bank's BAI2 statement (written here as
// the bank would send it) is read by the `bai2` connector and reconciled against the payments by
// reference and amount: matches are published as settlement.matched, and the differences (a
// payment still in transit, an amount that differs, a bank fee) are reported. The month's payroll
// remittance summary is produced by the `cra_remittance` connector. Exits non-zero when an
// outcome differs from the scenario's.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/node/node.hpp"

using namespace civicbus;
namespace fs = std::filesystem;

namespace {

struct Payment {
  const char* id;
  const char* kind;  // what was paid: picks the revenue account
  std::int64_t cents;
};
constexpr Payment kPayments[] = {
    {"PAY-1001", "property_tax", 125000}, {"PAY-1002", "water", 8640},
    {"PAY-1003", "permit_fee", 45000},    {"PAY-1004", "property_tax", 98025},
    {"PAY-1005", "parking_fine", 7500},   {"PAY-1006", "water", 11210}};
const std::map<std::string, std::string> kRevenueAccount = {{"property_tax", "100-4000-4010"},
                                                            {"water", "200-4100-4110"},
                                                            {"permit_fee", "100-4200-4210"},
                                                            {"parking_fine", "100-4300-4310"}};

// The bank's BAI2 statement for the city's account: what settled (PAY-1004 short by 25 cents,
// PAY-1006 not yet) and a service fee. Control totals and record counts as BAI2 defines them.
std::string bank_statement() {
  const std::vector<std::string> details = {"16,165,125000,0,B001,PAY-1001,ONLINE TAX PAYMENT",
                                            "16,165,8640,0,B002,PAY-1002,WATER BILL",
                                            "16,165,45000,0,B003,PAY-1003,PERMIT FEES",
                                            "16,165,98000,0,B004,PAY-1004,TAX PAD",
                                            "16,165,7500,0,B005,PAY-1005,PARKING FINE",
                                            "16,698,1250,0,B006,,MONTHLY SERVICE FEE"};
  const std::int64_t total = 125000 + 8640 + 45000 + 98000 + 7500 + 1250;
  const std::int64_t n = static_cast<std::int64_t>(details.size());
  std::string text =
      "01,CITYBANK,CITYOFOTTAWA,260201,0600,1,,,2/\n"    // file header
      "02,CITYOFOTTAWA,CITYBANK,1,260131,2400,CAD,2/\n"  // group: January 31
      "03,10001234,CAD/\n";                              // the city's account
  for (const auto& d : details) text += d + "\n";
  text += "49," + std::to_string(total) + "," + std::to_string(n + 2) + "/\n";
  text += "98," + std::to_string(total) + ",1," + std::to_string(n + 4) + "/\n";
  text += "99," + std::to_string(total) + ",1," + std::to_string(n + 6) + "/\n";
  return text;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "finance_reconciliation: %s\n", what.c_str());
  return 1;
}

std::unique_ptr<connect::Connector> connector(const char* name) {
  return connect::ConnectorCatalog::builtin().create(name).value();
}

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("civicbus-fin-" + std::to_string(::getpid()));
  NodeOptions node_options;
  node_options.data_dir = dir.string();
  node_options.worker_threads = 2;
  node_options.generate_master_key = true;
  node_options.logging.level = LogLevel::kWarn;
  for (const char* topic : {"payment.completed", "settlement.matched"}) {
    broker::TopicOptions t;
    t.name = topic;
    t.owner = "finance";
    node_options.topics.push_back(t);
  }
  auto node = Node::create(node_options);
  if (!node.ok()) return fail("creating the node: " + node.status().to_string());
  broker::Broker& bus = (*node)->broker();

  // 2. The ERP connector: each payment becomes a journal (cash debited, revenue credited).
  // Delivery is at least once: an ERP import that must never post twice keys on journal_id.
  connect::ConnectorContext erp;
  erp.config = Json::object({{"path", (dir / "gl-import.csv").string()}});
  auto erp_gl = connector("erp_gl");
  connect::WriteRequest journal_lines;
  journal_lines.stream = "journal_lines";
  std::mutex erp_mu;
  std::atomic<int> posted{0};
  broker::ConsumerGroupOptions gl_posting;
  gl_posting.group = "erp-gl-posting";
  gl_posting.topics = {"payment.completed"};
  gl_posting.start_from = broker::StartFrom::kEarliest;
  auto posting = bus.subscribe(gl_posting, [&](const broker::DeliveredEvent& e) -> Status {
    const Json& p = e.event.data();
    const double amount = static_cast<double>(p.get_int("amount_cents")) / 100;
    connect::RecordBatch journal("journal_lines", {"journal_id", "date", "account", "debit",
                                                   "credit", "description", "reference"});
    const std::string id = "JE-" + p.get_string("payment_id");
    journal.records.push_back(
        {{id, "2026-01-31", "100-1000-1010", amount, Json(), "cash", p.get_string("payment_id")}});
    journal.records.push_back({{id, "2026-01-31", kRevenueAccount.at(p.get_string("kind")), Json(),
                                amount, p.get_string("kind"), p.get_string("payment_id")}});
    std::lock_guard lock(erp_mu);
    CIVICBUS_ASSIGN_OR_RETURN(auto written, erp_gl->write(erp, journal_lines, journal));
    if (!written.rejected.empty()) return invalid_argument(written.rejected[0].reason);
    ++posted;
    return Status();
  });
  if (!posting.ok()) return fail(posting.status().to_string());

  // 1. The payment engine publishes its completed payments.
  std::int64_t paid = 0;
  for (const Payment& p : kPayments) {
    broker::CloudEvent event(
        "payment.completed", "/payments/engine",
        Json::object({{"payment_id", p.id}, {"kind", p.kind}, {"amount_cents", p.cents}}));
    event.set_id(p.id);  // a retried publish is recognised and stored once
    if (auto ack = bus.publish(event); !ack.ok()) return fail(ack.status().to_string());
    paid += p.cents;
  }
  for (int i = 0; i < 500 && posted < 6; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  (*posting)->stop();
  // 4. The GL as the ERP reads it: every journal balances (the connector refuses one that does
  // not).
  connect::CollectingEmitter gl;
  if (Status s = erp_gl->read(erp, {}, gl); !s.ok())
    return fail("reading the GL: " + s.to_string());
  std::printf("ERP: %d payments posted as %lld journal lines\n", posted.load(),
              static_cast<long long>(gl.record_count()));
  if (posted != 6 || gl.record_count() != 12) return fail("expected 6 journals of 2 lines");

  // 3. The bank's statement through the bai2 connector, reconciled against the payments.
  std::ofstream(dir / "statement.bai") << bank_statement();
  connect::ConnectorContext bank;
  bank.config = Json::object({{"path", (dir / "statement.bai").string()}});
  connect::CollectingEmitter statement;
  connect::ReadRequest transactions;
  transactions.streams = {"transactions"};
  if (Status s = connector("bai2")->read(bank, transactions, statement); !s.ok()) {
    return fail("reading the BAI2 statement: " + s.to_string());
  }
  std::map<std::string, std::int64_t> open;  // payments not yet matched
  for (const Payment& p : kPayments) open[p.id] = p.cents;
  int matched = 0;
  std::int64_t bank_net = 0;
  for (const auto& batch : statement.batches) {
    for (const auto& record : batch.records) {
      const Json line = batch.to_object(record);
      const std::int64_t cents = line.get_int("amount_cents");
      const std::string ref = line.get_string("customer_reference");
      bank_net += line.get_string("direction") == "credit" ? cents : -cents;
      auto it = open.find(ref);
      if (it == open.end()) {
        std::printf("  bank only: %s %.2f (%s)\n", line.get_string("direction").c_str(),
                    cents / 100.0, line.get_string("text").c_str());
      } else if (it->second != cents) {
        std::printf("  amount differs: %s paid %.2f, settled %.2f\n", ref.c_str(),
                    it->second / 100.0, cents / 100.0);
        open.erase(it);
      } else {
        broker::CloudEvent event(
            "settlement.matched", "/finance/reconciliation",
            Json::object({{"payment_id", ref},
                          {"amount_cents", cents},
                          {"bank_reference", line.get_string("bank_reference")}}));
        event.set_id("settled-" + ref);
        if (auto ack = bus.publish(event); !ack.ok()) return fail(ack.status().to_string());
        ++matched;
        open.erase(it);
      }
    }
  }
  for (const auto& [id, cents] : open)
    std::printf("  in transit: %s %.2f\n", id.c_str(), cents / 100.0);
  const std::int64_t difference = paid - bank_net;
  std::printf("reconciliation: %d matched, payments %.2f, bank net %.2f, difference %.2f\n",
              matched, paid / 100.0, bank_net / 100.0, difference / 100.0);
  // 112.10 in transit + 0.25 short + 12.50 fee.
  if (matched != 4 || open.size() != 1 || difference != 11210 + 25 + 1250) {
    return fail("expected 4 matches and a difference of 124.85");
  }

  // 5. The month's CRA remittance summary (PD7A fields) through the cra_remittance connector.
  connect::ConnectorContext cra;
  cra.config = Json::object({{"path", (dir / "pd7a-{n}.txt").string()},
                             {"payroll_account", "123456789RP0001"},
                             {"employer_name", "CITY OF OTTAWA"}});
  connect::RecordBatch remittance(
      "remittances", {"period_end", "gross_payroll", "employees", "cpp_employee", "cpp_employer",
                      "ei_employee", "ei_employer", "income_tax"});
  remittance.records.push_back(
      {{"2026-01-31", 812345.67, 412, 40000, 40000, 13000.50, 18200.70, 150000}});
  connect::WriteRequest remittances;
  remittances.stream = "remittances";
  auto written = connector("cra_remittance")->write(cra, remittances, remittance);
  if (!written.ok() || written->written != 1) return fail("writing the CRA remittance");
  std::ifstream pd7a(dir / "pd7a-0001.txt");
  std::string header, detail;
  std::getline(pd7a, header);
  std::getline(pd7a, detail);
  const std::string total = detail.substr(83, 13);  // positions 84-96: total remittance, cents
  std::printf("CRA remittance file: period %s, total remitted %s cents\n",
              detail.substr(16, 8).c_str(), total.c_str());
  if (total != "0000026120120") return fail("the remittance total should be 261,201.20");

  // 6. The dashboard's view: events per topic, from the node's metrics.
  const std::string metrics = (*node)->metrics().prometheus_text();
  for (std::size_t at = metrics.find("civicbus_broker_published_total{"); at != std::string::npos;
       at = metrics.find("civicbus_broker_published_total{", at + 1)) {
    std::printf("  %s\n", metrics.substr(at, metrics.find('\n', at) - at).c_str());
  }
  node->reset();
  fs::remove_all(dir);
  std::printf("ok: payments posted to the GL, reconciled with the bank, remittance produced\n");
  return 0;
}

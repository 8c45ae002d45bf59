// The municipal connectors: CPA 005 and BAI2 bank files (every checked total), the CRA
// remittance summary, ERP general-ledger journals, MPAC assessment extracts, GTFS feeds
// (folder and zip) and GTFS-realtime (file and URL). Files are made by generators here, written
// field by field from the layouts, independently of the code under test.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "civicbus/connect/connector.hpp"
#include "civicbus/http/server.hpp"
#include "connect/municipal_formats.hpp"
#include "connect/zip_reader.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

using civicbus::testing::read_file;
using civicbus::testing::TempDir;
using civicbus::testing::write_file;

std::unique_ptr<Connector> make(std::string_view name) {
  auto c = ConnectorCatalog::builtin().create(name);
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  return std::move(c).value();
}

ConnectorContext context(Json config) {
  ConnectorContext c;
  c.config = std::move(config);
  return c;
}

std::vector<Json> rows(const CollectingEmitter& out, std::string_view stream) {
  std::vector<Json> all;
  for (const auto& b : out.batches) {
    if (b.stream != stream) continue;
    for (const auto& r : b.records) all.push_back(b.to_object(r));
  }
  return all;
}

Status read_all(Connector& c, Json config, CollectingEmitter& out, ReadRequest request = {}) {
  return c.read(context(std::move(config)), request, out);
}

// ---------------------------------------------------------------------------------------------
// CPA 005 generator: records put together by position.

std::string num(std::int64_t n, std::size_t width) {
  std::string s = std::to_string(n);
  return std::string(width - s.size(), '0') + s;
}

std::string alpha(std::string s, std::size_t width) {
  s.resize(width, ' ');
  return s;
}

struct GenTxn {
  std::string type = "450";
  std::int64_t cents = 0;
  std::string due = "026045";  // 2026-02-14
  std::string inst = "003", transit = "12345", account = "1234567";
  std::string payee = "JANE RATEPAYER";
  std::string xref = "TAX-0001";
};

std::string gen_segment(const GenTxn& t) {
  std::string s = t.type + num(t.cents, 10) + t.due + "0" + t.inst + t.transit +
                  alpha(t.account, 12) + std::string(22, '0') + "000" + alpha("CITYOFX", 15) +
                  alpha(t.payee, 30) + alpha("CITY OF EXAMPLE", 30) + alpha("0123456789", 10) +
                  alpha(t.xref, 19) + std::string(9, ' ') + std::string(12, ' ') + alpha("", 15) +
                  std::string(22, ' ') + "  " + std::string(11, ' ');
  REQUIRE(s.size() == 240);
  return s;
}

struct Cpa005Gen {
  std::string originator = "0123456789";
  std::string fcn = "0042";
  std::vector<std::pair<char, std::vector<GenTxn>>> records;  // type, up to 6 segments
  std::int64_t debit_total_delta = 0, credit_count_delta = 0;
  bool newline = true;

  std::string head(char type, std::int64_t n) const {
    return std::string(1, type) + num(n, 9) + originator + fcn;
  }
  std::string build() const {
    std::vector<std::string> out;
    out.push_back(alpha(head('A', 1) + "026032" + "86900" + std::string(20, ' ') + "CAD", 1464));
    std::int64_t n = 1, debits = 0, ndebits = 0, credits = 0, ncredits = 0;
    for (const auto& [type, txns] : records) {
      std::string rec = head(type, ++n);
      for (const auto& t : txns) {
        rec += gen_segment(t);
        (type == 'D' ? debits : credits) += t.cents;
        ++(type == 'D' ? ndebits : ncredits);
      }
      out.push_back(alpha(rec, 1464));
    }
    out.push_back(alpha(head('Z', ++n) + num(debits + debit_total_delta, 14) + num(ndebits, 8) +
                            num(credits, 14) + num(ncredits + credit_count_delta, 8) +
                            std::string(44, '0'),
                        1464));
    std::string text;
    for (const auto& r : out) text += r + (newline ? "\r\n" : "");
    return text;
  }
};

Cpa005Gen sample_cpa005() {
  Cpa005Gen g;
  std::vector<GenTxn> credits;
  for (int i = 0; i < 6; ++i) {
    GenTxn t;
    t.cents = 10'000 + i;
    t.payee = "VENDOR " + std::to_string(i);
    t.xref = "AP-" + std::to_string(1000 + i);
    credits.push_back(t);
  }
  g.records.push_back({'C', credits});
  GenTxn last;
  last.cents = 250'00;
  last.account = "99887766";
  g.records.push_back({'C', {last}});
  GenTxn debit;
  debit.type = "430";
  debit.cents = 1'234'56;
  debit.due = "024060";  // 2024-02-29 (leap year)
  debit.payee = "PAD TAXPAYER";
  g.records.push_back({'D', {debit}});
  return g;
}

TEST_CASE("municipal: the catalog registers every municipal connector") {
  auto catalog = ConnectorCatalog::builtin();
  for (const char* name :
       {"cpa005", "bai2", "cra_remittance", "erp_gl", "mpac", "gtfs", "gtfs_rt"}) {
    INFO(name);
    REQUIRE(catalog.contains(name));
    auto c = make(name);
    CHECK(c->spec().name == name);
    CHECK_FALSE(c->spec().format_source.empty());
  }
  CHECK(make("cra_remittance")->spec().is_sink);
  CHECK_FALSE(make("cra_remittance")->spec().is_source);
  CHECK(make("cpa005")->spec().is_sink);
}

TEST_CASE("municipal: cpa005 reads credits and debits with header columns") {
  TempDir dir;
  write_file(dir.file("eft.txt"), sample_cpa005().build());
  auto c = make("cpa005");
  REQUIRE(c->check(context(Json::object({{"path", dir.file("eft.txt")}}))).ok());
  CollectingEmitter out;
  REQUIRE(read_all(*c, Json::object({{"path", dir.file("eft.txt")}}), out).ok());
  auto r = rows(out, "transactions");
  REQUIRE(r.size() == 8);
  CHECK(r[0]["originator_id"] == Json("0123456789"));
  CHECK(r[0]["file_creation_number"] == Json(42));
  CHECK(r[0]["file_creation_date"] == Json("2026-02-01"));
  CHECK(r[0]["destination_data_centre"] == Json("86900"));
  CHECK(r[0]["currency"] == Json("CAD"));
  CHECK(r[0]["record_type"] == Json("C"));
  CHECK(r[0]["amount_cents"] == Json(10000));
  CHECK(r[0]["due_date"] == Json("2026-02-14"));
  CHECK(r[0]["institution"] == Json("003"));
  CHECK(r[0]["transit"] == Json("12345"));
  CHECK(r[0]["account"] == Json("1234567"));
  CHECK(r[0]["payee_name"] == Json("VENDOR 0"));
  CHECK(r[0]["cross_reference"] == Json("AP-1000"));
  CHECK(r[5]["segment"] == Json(6));
  CHECK(r[5]["record_number"] == Json(2));
  CHECK(r[6]["record_number"] == Json(3));
  CHECK(r[6]["account"] == Json("99887766"));
  CHECK(r[7]["record_type"] == Json("D"));
  CHECK(r[7]["transaction_type"] == Json("430"));
  CHECK(r[7]["due_date"] == Json("2024-02-29"));
  CHECK(r[7]["amount_cents"] == Json(123456));

  // The same file without line ends between records.
  auto g = sample_cpa005();
  g.newline = false;
  auto parsed = detail::parse_cpa005(g.build());
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().to_string());
  CHECK(parsed->transactions.size() == 8);
  CHECK(parsed->record_count == 5);
}

TEST_CASE("municipal: cpa005 checks every trailer total and names the record") {
  {
    auto g = sample_cpa005();
    g.debit_total_delta = 1;
    auto p = detail::parse_cpa005(g.build());
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("record 5 (Z trailer)") != std::string::npos);
    CHECK(p.status().message().find("total_value_of_debits") != std::string::npos);
  }
  {
    auto g = sample_cpa005();
    g.credit_count_delta = -1;
    auto p = detail::parse_cpa005(g.build());
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("total_number_of_credits") != std::string::npos);
  }
  auto text = sample_cpa005().build();
  {
    // Credit total: change one credit amount in record 2 (line 2) without touching the Z.
    std::string t = text;
    std::size_t rec2 = 1466;
    t[rec2 + 24 + 3 + 9] = '9';
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("total_value_of_credits") != std::string::npos);
  }
  {
    std::string t = text;
    t[1466 + 9] = '7';  // record 2 says it is record 7
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("cpa005 record 2: field 'logical_record_count'") !=
          std::string::npos);
  }
  {
    std::string t = text;
    t[1466 + 24 + 240 + 5] = 'x';  // amount of segment 2 in record 2
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("record 2 segment 2: field 'amount'") != std::string::npos);
  }
  {
    std::string t = text;
    t.replace(1466 + 24 + 13, 6, "026400");  // day 400
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("field 'due_date'") != std::string::npos);
  }
  {
    std::string t = text.substr(0, text.size() - 1466);  // no trailer
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("Z trailer is missing") != std::string::npos);
  }
  {
    std::string t = text;
    t[1466] = 'E';
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("record 2: logical record type 'E'") != std::string::npos);
  }
  {
    std::string t = text;
    t.replace(1466 + 10, 10, "9999999999");
    auto p = detail::parse_cpa005(t);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().message().find("originator_id") != std::string::npos);
  }
  CHECK_FALSE(detail::parse_cpa005("").ok());
  CHECK_FALSE(detail::parse_cpa005("C000000001").ok());
}

TEST_CASE("municipal: cpa005 sink writes a file that reads back the same") {
  TempDir dir;
  auto c = make("cpa005");
  Json config = Json::object({{"path", dir.file("out-{n}.txt")},
                              {"originator_id", "0123456789"},
                              {"file_creation_number", 7},
                              {"destination_data_centre", "86900"},
                              {"originator_short_name", "CITYOFX"},
                              {"originator_long_name", "CITY OF EXAMPLE"},
                              {"creation_date", "2026-03-01"}});
  REQUIRE(c->check(context(config)).ok());
  RecordBatch batch("payments",
                    {"record_type", "transaction_type", "amount_cents", "due_date", "institution",
                     "transit", "account", "payee_name", "cross_reference"});
  for (int i = 0; i < 8; ++i) {
    batch.records.push_back(
        {{"C", "450", 1000 + i, "2026-03-05", "004", "00123", "5555" + std::to_string(i),
          "PAYEE " + std::to_string(i), "INV-" + std::to_string(i)},
         i + 1});
  }
  batch.records.push_back(
      {{"D", "430", 99999, "2026-12-31", "001", "54321", "777", "TAXPAYER", "ROLL-1"}, 9});
  // Rejected: a transit of four digits.
  batch.records.push_back({{"C", "450", 5, "2026-03-05", "004", "0012", "1", "BAD", ""}, 10});
  auto written = c->write(context(config), WriteRequest{"payments"}, batch);
  REQUIRE_MESSAGE(written.ok(), written.status().to_string());
  CHECK(written->written == 9);
  REQUIRE(written->rejected.size() == 1);
  CHECK(written->rejected[0].position == 10);
  CHECK(written->rejected[0].field == "transit");

  std::string text = read_file(dir.file("out-0007.txt"));
  // A header, two credit records (6 + 2 segments), one debit record, a trailer.
  CHECK(text.size() == 5 * (1464 + 2));
  CHECK(text.substr(0, 35) == "A000000001012345678900070260608690" + std::string("0"));
  auto parsed = detail::parse_cpa005(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().to_string());
  REQUIRE(parsed->transactions.size() == 9);
  for (int i = 0; i < 8; ++i) {
    const auto& t = parsed->transactions[static_cast<std::size_t>(i)];
    CHECK(t.amount_cents == 1000 + i);
    CHECK(t.due_date == "2026-03-05");
    CHECK(t.account == "5555" + std::to_string(i));
    CHECK(t.payee_name == "PAYEE " + std::to_string(i));
    CHECK(t.cross_reference == "INV-" + std::to_string(i));
    CHECK(t.originator_long_name == "CITY OF EXAMPLE");
  }
  CHECK(parsed->transactions[8].record_type == 'D');
  CHECK(parsed->transactions[8].due_date == "2026-12-31");
  CHECK(parsed->header.file_creation_number == 7);
  CHECK(parsed->header.creation_date == "2026-03-01");

  // The next batch goes to the next file creation number.
  RecordBatch second = batch;
  second.records.resize(1);
  auto again = c->write(context(config), WriteRequest{"payments"}, second);
  REQUIRE(again.ok());
  CHECK(std::filesystem::exists(dir.file("out-0008.txt")));

  // And through the source connector: read back the rows.
  CollectingEmitter out;
  REQUIRE(read_all(*make("cpa005"), Json::object({{"path", dir.file("out-0007.txt")}}), out).ok());
  CHECK(out.record_count() == 9);
}

// ---------------------------------------------------------------------------------------------
// BAI2 generator: totals and counts computed as the specification defines them.

struct BaiAccount {
  std::string number;
  std::vector<std::pair<std::string, std::int64_t>> summaries;              // type code, amount
  std::vector<std::tuple<std::string, std::int64_t, std::string>> details;  // type, amount, text
  bool continue_text = false;  // put the first detail's text on an 88 record
};

struct Bai2Gen {
  std::vector<BaiAccount> accounts;
  std::map<std::string, std::int64_t> tweak;  // "49.total", "98.records", ...

  std::string build() const {
    std::vector<std::string> lines;
    lines.push_back("01,021000021,CITYOFX,260301,0600,1,,,2/");
    std::size_t group_start = lines.size();
    lines.push_back("02,CITYOFX,021000021,1,260228,2400,CAD,2/");
    std::int64_t group_total = 0;
    for (const auto& a : accounts) {
      std::size_t start = lines.size();
      std::string l = "03," + a.number + ",CAD";
      std::int64_t total = 0;
      for (const auto& [code, amount] : a.summaries) {
        l += "," + code + "," + std::to_string(amount) + ",,";
        total += amount;
      }
      lines.push_back(l + "/");
      bool first = true;
      for (const auto& [code, amount, text] : a.details) {
        total += amount;
        if (first && a.continue_text) {
          lines.push_back("16," + code + "," + std::to_string(amount) + ",S,100,200,300,BR1,CR1,");
          lines.push_back("88," + text);
        } else {
          lines.push_back("16," + code + "," + std::to_string(amount) + ",0,BR2,CR2," + text);
        }
        first = false;
      }
      std::int64_t n = static_cast<std::int64_t>(lines.size() - start) + 1;
      lines.push_back("49," + std::to_string(total + tweak_of("49.total")) + "," +
                      std::to_string(n + tweak_of("49.records")) + "/");
      group_total += total;
    }
    std::int64_t gn = static_cast<std::int64_t>(lines.size() - group_start) + 1;
    lines.push_back(
        "98," + std::to_string(group_total + tweak_of("98.total")) + "," +
        std::to_string(static_cast<std::int64_t>(accounts.size()) + tweak_of("98.accounts")) + "," +
        std::to_string(gn + tweak_of("98.records")) + "/");
    std::int64_t fn = static_cast<std::int64_t>(lines.size()) + 1;
    lines.push_back("99," + std::to_string(group_total + tweak_of("99.total")) + "," +
                    std::to_string(1 + tweak_of("99.groups")) + "," +
                    std::to_string(fn + tweak_of("99.records")) + "/");
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    return text;
  }
  std::int64_t tweak_of(const std::string& k) const {
    auto it = tweak.find(k);
    return it == tweak.end() ? 0 : it->second;
  }
};

Bai2Gen sample_bai2() {
  Bai2Gen g;
  g.accounts.push_back(
      {"10001234",
       {{"010", 500000}, {"015", 650000}},
       {{"165", 150000, "PROPERTY TAX PAD, BATCH 12"}, {"475", 25000, "CHEQUE 1001"}},
       true});
  g.accounts.push_back(
      {"20005678", {{"040", -1200}}, {{"195", 98765, "WIRE FROM PROVINCE"}}, false});
  return g;
}

TEST_CASE("municipal: bai2 reads summaries, details and continuations") {
  TempDir dir;
  write_file(dir.file("bai.txt"), sample_bai2().build());
  auto c = make("bai2");
  Json config = Json::object({{"path", dir.file("bai.txt")}});
  REQUIRE(c->check(context(config)).ok());
  CollectingEmitter out;
  REQUIRE(read_all(*c, config, out).ok());
  auto tx = rows(out, "transactions");
  REQUIRE(tx.size() == 3);
  CHECK(tx[0]["account_number"] == Json("10001234"));
  CHECK(tx[0]["type_code"] == Json("165"));
  CHECK(tx[0]["direction"] == Json("credit"));
  CHECK(tx[0]["amount_cents"] == Json(150000));
  CHECK(tx[0]["funds_type"] == Json("S"));
  CHECK(tx[0]["bank_reference"] == Json("BR1"));
  CHECK(tx[0]["customer_reference"] == Json("CR1"));
  CHECK(tx[0]["text"] == Json("PROPERTY TAX PAD, BATCH 12"));
  CHECK(tx[0]["as_of_date"] == Json("2026-02-28"));
  CHECK(tx[0]["file_creation_date"] == Json("2026-03-01"));
  CHECK(tx[0]["sender_id"] == Json("021000021"));
  CHECK(tx[1]["direction"] == Json("debit"));
  CHECK(tx[1]["text"] == Json("CHEQUE 1001"));
  CHECK(tx[2]["account_number"] == Json("20005678"));
  auto sums = rows(out, "account_summaries");
  REQUIRE(sums.size() == 3);
  CHECK(sums[0]["type_code"] == Json("010"));
  CHECK(sums[0]["direction"] == Json("status"));
  CHECK(sums[2]["amount_cents"] == Json(-1200));
}

TEST_CASE("municipal: bai2 checks every control total and record count") {
  for (const char* key : {"49.total", "49.records", "98.total", "98.accounts", "98.records",
                          "99.total", "99.groups", "99.records"}) {
    INFO(key);
    auto g = sample_bai2();
    g.tweak[key] = 1;
    auto p = detail::parse_bai2(g.build());
    REQUIRE_FALSE(p.ok());
    std::string trailer = std::string(key).substr(0, 2);
    std::string name = trailer == "49"   ? "49 account trailer"
                       : trailer == "98" ? "98 group trailer"
                                         : "99 file trailer";
    CHECK(p.status().message().find(name) != std::string::npos);
    CHECK(p.status().message().find("bai2 line ") != std::string::npos);
  }
  CHECK(detail::parse_bai2(sample_bai2().build()).ok());
}

TEST_CASE("municipal: bai2 refuses malformed files with the line") {
  std::string good = sample_bai2().build();
  auto fails_with = [](std::string text, std::string needle) {
    auto p = detail::parse_bai2(text);
    REQUIRE_FALSE(p.ok());
    INFO(p.status().message());
    CHECK(p.status().message().find(needle) != std::string::npos);
  };
  fails_with(good.substr(0, good.rfind("99,")), "99 file trailer is missing");
  fails_with("01,A,B,260301,0600,1,,,2/\n77,x/\n", "line 2");
  std::string bad_amount = good;
  bad_amount.replace(bad_amount.find("150000"), 6, "15O000");
  fails_with(bad_amount, "field 'amount'");
  fails_with("16,165,100,0,,,x\n", "01 file header");
  fails_with("01,A,B,261399,0600,1,,,2/\n", "file_creation_date");
  fails_with("88,orphan\n", "continuation");
  fails_with("", "no records");
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("municipal: cra_remittance writes the PD7A summary and rejects bad periods") {
  TempDir dir;
  auto c = make("cra_remittance");
  Json config = Json::object({{"path", dir.file("pd7a-{n}.txt")},
                              {"payroll_account", "123456789RP0001"},
                              {"employer_name", "CITY OF EXAMPLE"}});
  REQUIRE(c->check(context(config)).ok());
  RecordBatch batch("remittances",
                    {"period_end", "gross_payroll", "employees", "cpp_employee", "cpp_employer",
                     "ei_employee", "ei_employer", "income_tax", "total_remittance"});
  batch.records.push_back({{"2026-01-31", "812345.67", 412, "40000.00", "40000.00", "13000.50",
                            "18200.70", "150000.00", 261201.20},
                           1});
  batch.records.push_back(
      {{"2026-02-28", 800000, 410, 39000, 39000, 12000, 16800, 140000, Json()}, 2});
  batch.records.push_back(  // total does not add up
      {{"2026-03-31", 1000, 1, 10, 10, 10, 10, 10, 999}, 3});
  batch.records.push_back({{"2026-13-01", 1000, 1, 0, 0, 0, 0, 0, Json()}, 4});
  auto written = c->write(context(config), WriteRequest{"remittances"}, batch);
  REQUIRE_MESSAGE(written.ok(), written.status().to_string());
  CHECK(written->written == 2);
  REQUIRE(written->rejected.size() == 2);
  CHECK(written->rejected[0].field == "total_remittance");
  CHECK(written->rejected[1].field == "period_end");
  std::string text = read_file(dir.file("pd7a-0001.txt"));
  std::vector<std::string> lines;
  for (std::size_t pos = 0; pos < text.size();) {
    auto end = text.find("\r\n", pos);
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  REQUIRE(lines.size() == 4);
  for (const auto& l : lines) CHECK(l.size() == 120);
  CHECK(lines[0].substr(0, 16) == "H123456789RP0001");
  CHECK(lines[0].substr(24, 15) == "CITY OF EXAMPLE");
  CHECK(lines[1].substr(0, 24) == "D123456789RP000120260131");
  CHECK(lines[1].substr(24, 13) == "0000081234567");  // gross payroll, cents
  CHECK(lines[1].substr(37, 7) == "0000412");         // employees
  CHECK(lines[1].substr(44, 13) == "0000008000000");  // CPP both shares
  CHECK(lines[1].substr(57, 13) == "0000003120120");  // EI both shares
  CHECK(lines[1].substr(70, 13) == "0000015000000");  // income tax
  CHECK(lines[1].substr(83, 13) == "0000026120120");  // total
  CHECK(lines[3].substr(0, 8) == "T0000002");
  CHECK(lines[3].substr(8, 15) == num(81234567 + 80000000, 15));
  CHECK(lines[3].substr(23, 15) == num(26120120 + 24680000, 15));
  // Not a source.
  CollectingEmitter out;
  CHECK(c->read(context(config), {}, out).code() == ErrorCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------------------------

const char* kGl =
    "journal_id,date,account,debit,credit,description,reference\n"
    "JE-1,2026-01-15,100-2100-5110,1500.00,,Road salt,PO-77\n"
    "JE-1,2026-01-15,100-1000-2010,,1500.00,Road salt,PO-77\n"
    "JE-2,2026-01-16,200-3100-4100,,250.5,Permit fees,\n"
    "JE-2,2026-01-16,200-1000-1010,250.50,,Permit fees,\n";

TEST_CASE("municipal: erp_gl reads journals and refuses one that does not balance") {
  TempDir dir;
  write_file(dir.file("gl.csv"), kGl);
  auto c = make("erp_gl");
  CollectingEmitter out;
  REQUIRE(read_all(*c, Json::object({{"path", dir.file("gl.csv")}}), out).ok());
  auto r = rows(out, "journal_lines");
  REQUIRE(r.size() == 4);
  CHECK(r[0]["fund"] == Json("100"));
  CHECK(r[0]["department"] == Json("2100"));
  CHECK(r[0]["object"] == Json("5110"));
  CHECK(r[0]["debit"] == Json(1500.0));
  CHECK(r[2]["credit"] == Json(250.5));
  CHECK(r[0]["line"] == Json(2));

  std::string unbalanced = std::string(kGl) + "JE-3,2026-01-17,100-2100-5110,10.00,,x,\n" +
                           "JE-3,2026-01-17,100-1000-2010,,9.99,x,\n";
  write_file(dir.file("bad.csv"), unbalanced);
  CollectingEmitter bad;
  Status s = read_all(*c, Json::object({{"path", dir.file("bad.csv")}}), bad);
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("journal 'JE-3' does not balance: debits 10.00, credits 9.99") !=
        std::string::npos);

  write_file(dir.file("seg.csv"),
             "journal_id,date,account,debit,credit\nJE-1,2026-01-01,100-2100,1,\n");
  s = read_all(*c, Json::object({{"path", dir.file("seg.csv")}}), bad);
  CHECK(s.message().find("line 2: field 'account'") != std::string::npos);
  write_file(dir.file("amt.csv"),
             "journal_id,date,account,debit,credit\nJE-1,2026-01-01,1-2-3,1.234,\n");
  s = read_all(*c, Json::object({{"path", dir.file("amt.csv")}}), bad);
  CHECK(s.message().find("line 2: field 'debit'") != std::string::npos);
  write_file(dir.file("hdr.csv"), "journal,date\n");
  s = read_all(*c, Json::object({{"path", dir.file("hdr.csv")}}), bad);
  CHECK(s.message().find("no column 'journal_id'") != std::string::npos);
}

TEST_CASE("municipal: erp_gl sink writes balanced journals and rejects the others") {
  TempDir dir;
  auto c = make("erp_gl");
  Json config = Json::object({{"path", dir.file("import.csv")}});
  RecordBatch batch("journal_lines", {"journal_id", "date", "fund", "department", "object", "debit",
                                      "credit", "description"});
  batch.records.push_back({{"A", "2026-02-01", "100", "2100", "5110", 75.25, Json(), "fuel"}, 1});
  batch.records.push_back({{"A", "2026-02-01", "100", "1000", "2010", Json(), "75.25", "fuel"}, 2});
  batch.records.push_back({{"B", "2026-02-02", "100", "2100", "5110", 10, Json(), "x"}, 3});
  batch.records.push_back({{"B", "2026-02-02", "100", "1000", "2010", Json(), 11, "x"}, 4});
  auto w = c->write(context(config), WriteRequest{"journal_lines"}, batch);
  REQUIRE_MESSAGE(w.ok(), w.status().to_string());
  CHECK(w->written == 2);
  REQUIRE(w->rejected.size() == 2);
  CHECK(w->rejected[0].reason.find("journal 'B' does not balance") != std::string::npos);
  // A second batch appends to the same import file.
  RecordBatch more = batch;
  more.records.resize(2);
  more.records[0].values[0] = "C";
  more.records[1].values[0] = "C";
  REQUIRE(c->write(context(config), WriteRequest{"journal_lines"}, more).ok());
  CollectingEmitter out;
  REQUIRE(read_all(*c, config, out).ok());
  auto r = rows(out, "journal_lines");
  REQUIRE(r.size() == 4);
  CHECK(r[0]["account"] == Json("100-2100-5110"));
  CHECK(r[0]["debit"] == Json(75.25));
  CHECK(r[3]["journal_id"] == Json("C"));
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("municipal: mpac validates roll numbers and reads incrementally by extract date") {
  TempDir dir;
  write_file(dir.file("mpac.csv"),
             "Roll Number,Extract Date,Property Code,Tax Class,Street Number,Street Name,"
             "Current Value Assessment,Phased In Value,Ward\n"
             "1901-012-345-67890-0000,2026-01-05,301,RT,12,MAIN ST,450000,440000,3\n"
             "1901012345678910000,2026-01-05,401,CT,99,KING ST,1250000.00,,4\n"
             "19 01 012 345 67892 0001,2026-02-05,340,RT,1A,QUEEN ST,510000,505000,3\n");
  auto c = make("mpac");
  Json config = Json::object({{"path", dir.file("mpac.csv")}});
  auto streams = c->discover(context(config));
  REQUIRE(streams.ok());
  REQUIRE(streams->size() == 1);
  CHECK((*streams)[0].primary_key == std::vector<std::string>{"roll_number"});
  CHECK((*streams)[0].cursor_field == "extract_date");
  CHECK((*streams)[0].field("ward") != nullptr);

  CollectingEmitter out;
  REQUIRE(read_all(*c, config, out).ok());
  auto r = rows(out, "assessments");
  REQUIRE(r.size() == 3);
  CHECK(r[0]["roll_number"] == Json("1901012345678900000"));
  CHECK(r[0]["roll_number_formatted"] == Json("1901-012-345-67890-0000"));
  CHECK(r[0]["county"] == Json("19"));
  CHECK(r[0]["municipality_code"] == Json("01"));
  CHECK(r[0]["parcel"] == Json("67890"));
  CHECK(r[0]["current_value_assessment"] == Json(450000));
  CHECK(r[0]["phased_in_value"] == Json(440000));
  CHECK(r[1]["current_value_assessment"] == Json(1250000));
  CHECK(r[1]["phased_in_value"].is_null());
  CHECK(r[1]["ward"] == Json("4"));
  CHECK(out.states["assessments"]["cursor"] == Json("2026-02-05"));

  ReadRequest next;
  next.state = Json::object({{"assessments", Json::object({{"cursor", "2026-01-05"}})}});
  CollectingEmitter later;
  REQUIRE(read_all(*c, config, later, next).ok());
  REQUIRE(later.record_count() == 1);
  CHECK(rows(later, "assessments")[0]["street_name"] == Json("QUEEN ST"));

  auto fails_with = [&](std::string row, std::string needle) {
    write_file(dir.file("bad.csv"),
               "roll_number,extract_date,property_code,current_value_assessment\n" + row + "\n");
    CollectingEmitter o;
    Status s = read_all(*c, Json::object({{"path", dir.file("bad.csv")}}), o);
    REQUIRE_FALSE(s.ok());
    INFO(s.message());
    CHECK(s.message().find(needle) != std::string::npos);
  };
  fails_with("1901-012-345-6789-0000,2026-01-05,301,1", "line 2: field 'roll_number'");
  fails_with("1901-012-345-67890-000X,2026-01-05,301,1", "field 'roll_number'");
  fails_with("1901012345678900000,2026-01-05,31,1", "field 'property_code'");
  fails_with("1901012345678900000,05/01/2026,301,1", "field 'extract_date'");
  fails_with("1901012345678900000,2026-01-05,301,12.50", "field 'current_value_assessment'");
  fails_with("1901012345678900000,2026-01-05,301,", "field 'current_value_assessment' is empty");
  CHECK(detail::normalize_roll_number("1901 012 345 67890 0000").ok());
}

// ---------------------------------------------------------------------------------------------
// GTFS: a small feed, as a folder and as a zip written here (stored and deflated members).

std::map<std::string, std::string> sample_gtfs() {
  return {
      {"agency.txt",
       "agency_id,agency_name,agency_url,agency_timezone\nCT,City Transit,https://ct.example,"
       "America/Toronto\n"},
      {"stops.txt",
       "\xEF\xBB\xBFstop_id,stop_name,stop_lat,stop_lon,location_type\nS1,Main & King,43.6532,"
       "-79.3832,0\nS2,Queen,43.6500,-79.3800,\n"},
      {"routes.txt", "route_id,agency_id,route_short_name,route_type\nR1,CT,1,3\n"},
      {"trips.txt", "route_id,service_id,trip_id,direction_id\nR1,WK,T1,0\n"},
      {"stop_times.txt",
       "trip_id,arrival_time,departure_time,stop_id,stop_sequence\nT1,08:00:00,08:00:00,S1,1\n"
       "T1,25:10:00,25:10:00,S2,2\n"},
      {"calendar.txt",
       "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
       "WK,1,1,1,1,1,0,0,20260101,20261231\n"},
      {"calendar_dates.txt", "service_id,date,exception_type\nWK,20260216,2\n"},
  };
}

void put16(std::string& s, unsigned v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>((v >> 8) & 0xff);
}
void put32(std::string& s, std::uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}

std::string deflate_raw(const std::string& in) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A zip archive per APPNOTE: local headers, data, central directory, end record.
std::string make_zip(const std::map<std::string, std::string>& files, const std::string& prefix) {
  std::string zip, central;
  std::uint16_t count = 0;
  int i = 0;
  for (const auto& [name, content] : files) {
    bool stored = (i++ % 2) == 1;
    std::string data = stored ? content : deflate_raw(content);
    auto crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(content.data()),
                                                static_cast<uInt>(content.size())));
    std::string full = prefix + name;
    auto offset = static_cast<std::uint32_t>(zip.size());
    put32(zip, 0x04034b50);
    put16(zip, 20);
    put16(zip, 0);
    put16(zip, stored ? 0 : 8);
    put32(zip, 0);
    put32(zip, crc);
    put32(zip, static_cast<std::uint32_t>(data.size()));
    put32(zip, static_cast<std::uint32_t>(content.size()));
    put16(zip, static_cast<unsigned>(full.size()));
    put16(zip, 0);
    zip += full + data;
    put32(central, 0x02014b50);
    put16(central, 20);
    put16(central, 20);
    put16(central, 0);
    put16(central, stored ? 0 : 8);
    put32(central, 0);
    put32(central, crc);
    put32(central, static_cast<std::uint32_t>(data.size()));
    put32(central, static_cast<std::uint32_t>(content.size()));
    put16(central, static_cast<unsigned>(full.size()));
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put32(central, 0);
    put32(central, offset);
    central += full;
    ++count;
  }
  auto cd_offset = static_cast<std::uint32_t>(zip.size());
  zip += central;
  put32(zip, 0x06054b50);
  put16(zip, 0);
  put16(zip, 0);
  put16(zip, count);
  put16(zip, count);
  put32(zip, static_cast<std::uint32_t>(central.size()));
  put32(zip, cd_offset);
  put16(zip, 0);
  return zip;
}

void check_gtfs_rows(const CollectingEmitter& out) {
  auto stops = rows(out, "stops");
  REQUIRE(stops.size() == 2);
  CHECK(stops[0]["stop_id"] == Json("S1"));
  CHECK(stops[0]["stop_lat"] == Json(43.6532));
  CHECK(stops[0]["location_type"] == Json(0));
  CHECK(stops[1]["location_type"].is_null());
  auto routes = rows(out, "routes");
  REQUIRE(routes.size() == 1);
  CHECK(routes[0]["route_type"] == Json(3));
  auto times = rows(out, "stop_times");
  REQUIRE(times.size() == 2);
  CHECK(times[1]["arrival_time"] == Json("25:10:00"));
  CHECK(times[1]["stop_sequence"] == Json(2));
  auto cal = rows(out, "calendar");
  REQUIRE(cal.size() == 1);
  CHECK(cal[0]["start_date"] == Json("2026-01-01"));
  CHECK(cal[0]["saturday"] == Json(0));
  auto dates = rows(out, "calendar_dates");
  REQUIRE(dates.size() == 1);
  CHECK(dates[0]["date"] == Json("2026-02-16"));
  CHECK(dates[0]["exception_type"] == Json(2));
  CHECK(rows(out, "agency").size() == 1);
  CHECK(rows(out, "trips").size() == 1);
}

TEST_CASE("municipal: gtfs reads a feed from a folder and from a zip") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "feed");
  for (const auto& [name, content] : sample_gtfs()) write_file(dir.file("feed/" + name), content);
  auto c = make("gtfs");
  {
    Json config = Json::object({{"path", dir.file("feed")}});
    REQUIRE(c->check(context(config)).ok());
    auto streams = c->discover(context(config));
    REQUIRE(streams.ok());
    CHECK(streams->size() == 7);
    const StreamSpec& stop_times = (*streams)[4];
    CHECK(stop_times.name == "stop_times");
    CHECK(stop_times.primary_key == std::vector<std::string>{"trip_id", "stop_sequence"});
    CHECK(stop_times.field("stop_sequence")->type == FieldType::kInteger);
    CHECK_FALSE(stop_times.field("trip_id")->nullable);
    CHECK((*streams)[1].field("stop_id") != nullptr);  // BOM removed
    CollectingEmitter out;
    REQUIRE(read_all(*c, config, out).ok());
    check_gtfs_rows(out);
  }
  for (const std::string prefix : {"", "feed/"}) {
    write_file(dir.file("feed.zip"), make_zip(sample_gtfs(), prefix));
    Json config = Json::object({{"path", dir.file("feed.zip")}});
    CollectingEmitter out;
    Status s = read_all(*c, config, out);
    REQUIRE_MESSAGE(s.ok(), s.to_string());
    check_gtfs_rows(out);
    ReadRequest only;
    only.streams = {"routes"};
    CollectingEmitter one;
    REQUIRE(read_all(*c, config, one, only).ok());
    CHECK(one.batches.size() == 1);
  }
}

TEST_CASE("municipal: gtfs refuses missing files, bad values and broken zips") {
  TempDir dir;
  auto c = make("gtfs");
  auto files = sample_gtfs();
  files.erase("routes.txt");
  write_file(dir.file("a.zip"), make_zip(files, ""));
  Status s = c->check(context(Json::object({{"path", dir.file("a.zip")}})));
  CHECK(s.message().find("no routes.txt") != std::string::npos);

  files = sample_gtfs();
  files.erase("calendar.txt");
  files.erase("calendar_dates.txt");
  write_file(dir.file("b.zip"), make_zip(files, ""));
  s = c->check(context(Json::object({{"path", dir.file("b.zip")}})));
  CHECK(s.message().find("calendar") != std::string::npos);

  files = sample_gtfs();
  files["stops.txt"] = "stop_id,stop_lat\nS1,north\n";
  write_file(dir.file("c.zip"), make_zip(files, ""));
  CollectingEmitter out;
  s = read_all(*c, Json::object({{"path", dir.file("c.zip")}}), out);
  CHECK(s.message().find("stops.txt line 2, field 'stop_lat'") != std::string::npos);

  files = sample_gtfs();
  files["routes.txt"] = "route_id,route_type\nR1,\n";
  write_file(dir.file("d.zip"), make_zip(files, ""));
  s = read_all(*c, Json::object({{"path", dir.file("d.zip")}}), out);
  CHECK(s.message().find("field 'route_type'") != std::string::npos);

  std::string zip = make_zip(sample_gtfs(), "");
  std::string corrupt = zip;
  corrupt[40] = static_cast<char>(corrupt[40] ^ 0x55);  // inside agency.txt's deflate data
  write_file(dir.file("e.zip"), corrupt);
  s = read_all(*c, Json::object({{"path", dir.file("e.zip")}}), out);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("agency.txt") != std::string::npos);

  write_file(dir.file("f.zip"), "not a zip at all, just some text that is long enough");
  s = c->check(context(Json::object({{"path", dir.file("f.zip")}})));
  CHECK(s.message().find("end-of-central-directory") != std::string::npos);
  CHECK_FALSE(detail::ZipArchive::open(zip.substr(0, zip.size() - 30)).ok());
}

// ---------------------------------------------------------------------------------------------
// GTFS-realtime: a protobuf writer for the test feeds.

struct Pb {
  std::string b;
  Pb& varint(std::uint32_t field, std::uint64_t v) {
    tag(field, 0);
    raw_varint(v);
    return *this;
  }
  Pb& str(std::uint32_t field, std::string_view s) {
    tag(field, 2);
    raw_varint(s.size());
    b += s;
    return *this;
  }
  Pb& msg(std::uint32_t field, const Pb& m) { return str(field, m.b); }
  Pb& f32(std::uint32_t field, float f) {
    tag(field, 5);
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int i = 0; i < 4; ++i) b += static_cast<char>((u >> (8 * i)) & 0xff);
    return *this;
  }
  Pb& f64(std::uint32_t field, double d) {
    tag(field, 1);
    std::uint64_t u;
    std::memcpy(&u, &d, 8);
    for (int i = 0; i < 8; ++i) b += static_cast<char>((u >> (8 * i)) & 0xff);
    return *this;
  }
  void tag(std::uint32_t field, int wire) {
    raw_varint((field << 3) | static_cast<unsigned>(wire));
  }
  void raw_varint(std::uint64_t v) {
    while (v >= 0x80) {
      b += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    b += static_cast<char>(v);
  }
};

std::string sample_feed(std::uint64_t timestamp) {
  Pb header;
  header.str(1, "2.0").varint(2, 0).varint(3, timestamp).str(99, "unknown extension");
  Pb trip;
  trip.str(1, "T1").str(3, "20260301").varint(4, 0).str(5, "R1").varint(6, 1);
  Pb arrival;
  arrival.varint(1, static_cast<std::uint64_t>(-60)).varint(2, 1772380800);  // delay -60 s
  Pb stu1, stu2;
  stu1.varint(1, 1).msg(2, arrival).str(4, "S1").varint(5, 0);
  stu2.varint(1, 2).str(4, "S2").varint(5, 1);
  Pb tu;
  tu.msg(1, trip).msg(2, stu1).msg(2, stu2).msg(3, Pb().str(1, "BUS-42")).varint(4, timestamp);
  Pb position;
  position.f32(1, 43.65f).f32(2, -79.38f).f32(3, 90.0f).f64(4, 12345.5).f32(5, 8.5f);
  Pb vp;
  vp.msg(1, trip)
      .msg(2, position)
      .varint(3, 5)
      .varint(4, 2)
      .varint(5, timestamp - 5)
      .str(7, "S1")
      .msg(8, Pb().str(1, "BUS-42").str(2, "42"))
      .varint(9, 1);
  Pb text;
  text.msg(1, Pb().str(1, "Detour on Main").str(2, "en"));
  Pb al;
  al.msg(1, Pb().varint(1, 1772300000).varint(2, 1772400000))
      .msg(5, Pb().str(2, "R1").varint(3, 3))
      .varint(6, 10)
      .varint(7, 4)
      .msg(10, text)
      .msg(11, Pb().msg(1, Pb().str(1, "Use King St")));
  Pb feed;
  feed.msg(2, Pb().str(1, "e1").msg(3, tu));  // an entity before the header
  feed.msg(1, header);
  feed.msg(2, Pb().str(1, "e2").msg(4, vp));
  feed.msg(2, Pb().str(1, "e3").msg(5, al));
  feed.msg(2, Pb().str(1, "e4").varint(2, 1).msg(4, vp));  // deleted: no row
  feed.varint(15, 7);                                      // unknown field
  return feed.b;
}

void check_feed_rows(const CollectingEmitter& out, std::int64_t ts) {
  auto tu = rows(out, "trip_updates");
  REQUIRE(tu.size() == 2);
  CHECK(tu[0]["entity_id"] == Json("e1"));
  CHECK(tu[0]["trip_id"] == Json("T1"));
  CHECK(tu[0]["route_id"] == Json("R1"));
  CHECK(tu[0]["direction_id"] == Json(1));
  CHECK(tu[0]["vehicle_id"] == Json("BUS-42"));
  CHECK(tu[0]["stop_sequence"] == Json(1));
  CHECK(tu[0]["arrival_delay"] == Json(-60));
  CHECK(tu[0]["arrival_time"] == Json(1772380800));
  CHECK(tu[0]["feed_timestamp"] == Json(ts));
  CHECK(tu[1]["stop_id"] == Json("S2"));
  CHECK(tu[1]["stop_schedule_relationship"] == Json(1));
  auto vp = rows(out, "vehicle_positions");
  REQUIRE(vp.size() == 1);
  CHECK(vp[0]["latitude"].as_double() == doctest::Approx(43.65));
  CHECK(vp[0]["longitude"].as_double() == doctest::Approx(-79.38));
  CHECK(vp[0]["odometer"] == Json(12345.5));
  CHECK(vp[0]["current_status"] == Json(2));
  CHECK(vp[0]["vehicle_label"] == Json("42"));
  CHECK(vp[0]["timestamp"] == Json(ts - 5));
  auto al = rows(out, "alerts");
  REQUIRE(al.size() == 1);
  CHECK(al[0]["header_text"] == Json("Detour on Main"));
  CHECK(al[0]["description_text"] == Json("Use King St"));
  CHECK(al[0]["effect"] == Json(4));
  CHECK(al[0]["active_start"] == Json(1772300000));
  CHECK(al[0]["informed_entities"].as_array()[0]["route_id"] == Json("R1"));
}

TEST_CASE("municipal: gtfs_rt decodes a feed file and skips a feed that is not newer") {
  TempDir dir;
  write_file(dir.file("feed.pb"), sample_feed(1772380000));
  auto c = make("gtfs_rt");
  Json config = Json::object({{"path", dir.file("feed.pb")}});
  REQUIRE(c->check(context(config)).ok());
  CollectingEmitter out;
  REQUIRE(read_all(*c, config, out).ok());
  check_feed_rows(out, 1772380000);
  CHECK(out.states["vehicle_positions"]["cursor"] == Json(1772380000));

  ReadRequest same;
  same.state = out.states;
  CollectingEmitter again;
  REQUIRE(read_all(*c, config, again, same).ok());
  CHECK(again.record_count() == 0);

  write_file(dir.file("feed.pb"), sample_feed(1772380030));
  CollectingEmitter newer;
  REQUIRE(read_all(*c, config, newer, same).ok());
  CHECK(newer.record_count() == 4);
}

TEST_CASE("municipal: gtfs_rt refuses malformed protobuf with the path and offset") {
  std::string feed = sample_feed(100);
  for (std::size_t cut : {feed.size() - 1, feed.size() / 2, std::size_t{1}}) {
    auto r = detail::decode_gtfs_rt(feed.substr(0, cut));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("gtfs-realtime") != std::string::npos);
  }
  auto wrong = detail::decode_gtfs_rt(Pb().msg(1, Pb().str(1, "2.0")).varint(2, 5).b);
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().message().find("FeedMessage.entity (field 2 at offset") !=
        std::string::npos);
  auto group = detail::ProtoReader("\x0b").next();
  REQUIRE_FALSE(group.ok());
  CHECK(group.status().message().find("wire type 3") != std::string::npos);
  auto noid = detail::decode_gtfs_rt(Pb().msg(1, Pb().str(1, "2.0")).msg(2, Pb().varint(2, 0)).b);
  REQUIRE_FALSE(noid.ok());
  CHECK(noid.status().message().find("entity[0]") != std::string::npos);
  auto long_varint = detail::ProtoReader(std::string(11, '\xff')).next();
  CHECK_FALSE(long_varint.ok());
  CHECK_FALSE(detail::decode_gtfs_rt("").ok());  // no header
}

TEST_CASE("municipal: gtfs_rt fetches a feed over HTTP") {
  std::string feed = sample_feed(1772380000);
  http::HttpServer server({}, [&](const http::HttpRequest& r) {
    if (r.path != "/realtime/feed") return http::HttpResponse::text(404, "no");
    http::HttpResponse response;
    response.headers.add("Content-Type", "application/x-protobuf");
    response.body = feed;
    return response;
  });
  auto port = server.start();
  REQUIRE(port.ok());
  auto c = make("gtfs_rt");
  Json config =
      Json::object({{"url", "http://127.0.0.1:" + std::to_string(*port) + "/realtime/feed"}});
  CollectingEmitter out;
  Status s = read_all(*c, config, out);
  REQUIRE_MESSAGE(s.ok(), s.to_string());
  check_feed_rows(out, 1772380000);
  Json missing = Json::object({{"url", "http://127.0.0.1:" + std::to_string(*port) + "/x"}});
  Status m = c->check(context(missing));
  CHECK(m.code() == ErrorCode::kUnavailable);
  CHECK(m.message().find("404") != std::string::npos);
}

TEST_CASE("municipal: the valid fuzz seeds parse, so the fuzzers start past the checks") {
  std::string corpus = std::string(CIVICBUS_SOURCE_DIR) + "/tests/fuzz/corpus/";
  auto cpa = detail::parse_cpa005(read_file(corpus + "cpa005/credits_and_debits.txt"));
  REQUIRE_MESSAGE(cpa.ok(), cpa.status().to_string());
  CHECK(cpa->transactions.size() == 8);
  CHECK(detail::parse_cpa005(read_file(corpus + "cpa005/no_line_ends.txt")).ok());
  CHECK_FALSE(detail::parse_cpa005(read_file(corpus + "cpa005/trailer_mismatch.txt")).ok());
  for (const char* name : {"two_accounts.txt", "crlf.txt", "funds_v.txt"}) {
    INFO(name);
    auto bai = detail::parse_bai2(read_file(corpus + "bai2/" + name));
    CHECK_MESSAGE(bai.ok(), bai.status().to_string());
  }
  auto feed = detail::decode_gtfs_rt(read_file(corpus + "gtfs_rt/full_feed.pb"));
  REQUIRE_MESSAGE(feed.ok(), feed.status().to_string());
  CHECK(feed->trip_updates.size() == 1);
  CHECK(feed->vehicle_positions.size() == 1);
  CHECK(feed->alerts.size() == 1);
}

}  // namespace
}  // namespace civicbus::connect

// `erp_gl`: general-ledger journal lines as the CSV that municipal ERPs import and export
// (one line per posting: journal_id, date, account, debit, credit, description, reference).
// The account is the fund-department-object segment string ("100-2100-5110"). The source
// checks that every journal balances; the sink writes only journals that balance.
#include <map>

#include "builtin_connectors.hpp"
#include "civicbus/core/csv.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

namespace {

const std::vector<std::string>& gl_columns() {
  static const std::vector<std::string> k = {"journal_id", "date",        "account",  "debit",
                                             "credit",     "description", "reference"};
  return k;
}

const std::vector<std::string>& stream_columns() {
  static const std::vector<std::string> k = {"line",   "journal_id",  "date",     "account",
                                             "fund",   "department",  "object",   "debit",
                                             "credit", "description", "reference"};
  return k;
}

struct Segments {
  std::string fund, department, object;
};

std::optional<Segments> split_account(const std::string& account, char separator) {
  auto a = account.find(separator);
  if (a == std::string::npos) return std::nullopt;
  auto b = account.find(separator, a + 1);
  if (b == std::string::npos || account.find(separator, b + 1) != std::string::npos) {
    return std::nullopt;
  }
  Segments s{account.substr(0, a), account.substr(a + 1, b - a - 1), account.substr(b + 1)};
  if (s.fund.empty() || s.department.empty() || s.object.empty()) return std::nullopt;
  return s;
}

struct Line {
  std::int64_t line = 0;
  std::string journal_id, date, account, description, reference;
  Segments segments;
  std::int64_t debit = 0, credit = 0;
};

struct JournalTotals {
  std::int64_t debit = 0, credit = 0, first_line = 0, last_line = 0;
};

std::string unbalanced(const std::string& journal, const JournalTotals& t) {
  return "journal '" + journal + "' does not balance: debits " + format_cents(t.debit) +
         ", credits " + format_cents(t.credit) + " (lines " + std::to_string(t.first_line) + "-" +
         std::to_string(t.last_line) + ")";
}

// Validates one line's fields; the error names the line and field.
Status validate_line(Line& l, char separator) {
  std::string at = "erp_gl line " + std::to_string(l.line);
  if (l.journal_id.empty()) return invalid_argument(at + ": field 'journal_id' is empty");
  if (!parse_iso_date_days(l.date)) {
    return invalid_argument(at + ": field 'date' ('" + l.date + "') is not a date YYYY-MM-DD");
  }
  auto segments = split_account(l.account, separator);
  if (!segments) {
    return invalid_argument(at + ": field 'account' ('" + l.account + "') is not fund" + separator +
                            "department" + separator + "object");
  }
  l.segments = *segments;
  if (l.debit < 0 || l.credit < 0) {
    return invalid_argument(at + ": fields 'debit' and 'credit' must not be negative");
  }
  if (l.debit != 0 && l.credit != 0) {
    return invalid_argument(at + ": a line has a debit or a credit, not both");
  }
  return Status();
}

class ErpGlConnector : public Connector {
 public:
  ErpGlConnector() {
    spec_.name = "erp_gl";
    spec_.title = "ERP general-ledger journal CSV";
    spec_.description =
        "General-ledger journal lines (journal_id, date, account as fund-department-object, "
        "debit, credit, description, reference) as CSV; every journal must balance.";
    spec_.format_source = "RFC 4180 CSV with the civicbus GL column set (docs/connectors.md)";
    spec_.is_sink = true;
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"required", Json::array({"path"})},
        {"properties",
         Json::object({
             {"path", Json::object({{"type", "string"}})},
             {"delimiter", Json::object({{"type", "string"}, {"minLength", 1}, {"maxLength", 1}})},
             {"segment_separator",
              Json::object({{"type", "string"}, {"minLength", 1}, {"maxLength", 1}})},
         })},
    });
  }
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    return load(context).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    StreamSpec s;
    s.name = "journal_lines";
    for (const auto& c : stream_columns()) {
      FieldType t = FieldType::kString;
      if (c == "line") t = FieldType::kInteger;
      if (c == "date") t = FieldType::kDate;
      if (c == "debit" || c == "credit") t = FieldType::kNumber;
      s.fields.push_back({c, t, c == "description" || c == "reference"});
    }
    s.primary_key = {"journal_id", "line"};
    return std::vector<StreamSpec>{s};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    if (!wants_stream(request, "journal_lines")) return Status();
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<Line> lines, load(context));
    std::vector<Record> rows;
    for (const auto& l : lines) {
      Record r;
      r.position = l.line;
      r.values = {l.line,
                  l.journal_id,
                  l.date,
                  l.account,
                  l.segments.fund,
                  l.segments.department,
                  l.segments.object,
                  static_cast<double>(l.debit) / 100.0,
                  static_cast<double>(l.credit) / 100.0,
                  l.description.empty() ? Json() : Json(l.description),
                  l.reference.empty() ? Json() : Json(l.reference)};
      rows.push_back(std::move(r));
    }
    std::int64_t budget = request.max_records;
    return emit_records(out, request, "journal_lines", stream_columns(), std::move(rows), budget,
                        Json());
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest&,
                            const RecordBatch& batch) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    char delimiter = context.config.get_string("delimiter", ",")[0];
    char separator = context.config.get_string("segment_separator", "-")[0];
    WriteResult result;
    std::vector<Line> lines;
    std::vector<std::int64_t> positions;
    for (const auto& record : batch.records) {
      auto get = [&](std::string_view col) {
        return json_text(RecordBatch::value(record, batch.column_index(col)));
      };
      Line l;
      l.line = record.position;
      l.journal_id = get("journal_id");
      l.date = get("date");
      l.account = get("account");
      if (l.account.empty() && !get("fund").empty()) {
        l.account = get("fund") + separator + get("department") + separator + get("object");
      }
      l.description = get("description");
      l.reference = get("reference");
      bool bad_amount = false;
      for (auto [col, target] : {std::pair{"debit", &l.debit}, std::pair{"credit", &l.credit}}) {
        const Json& v = RecordBatch::value(record, batch.column_index(col));
        if (v.is_null() || (v.is_string() && v.as_string().empty())) continue;
        auto cents = json_cents(v);
        if (!cents) {
          result.rejected.push_back({record.position, col, json_text(v), "not an amount"});
          bad_amount = true;
          break;
        }
        *target = *cents;
      }
      if (bad_amount) continue;
      Status valid = validate_line(l, separator);
      if (!valid.ok()) {
        std::string m = valid.message();
        auto q = m.find("field '");
        std::string f = q == std::string::npos ? "" : m.substr(q + 7, m.find('\'', q + 7) - q - 7);
        result.rejected.push_back({record.position, f, "", m});
        continue;
      }
      lines.push_back(std::move(l));
    }
    // A journal goes in whole or not at all: an ERP refuses an unbalanced import.
    std::map<std::string, JournalTotals> totals;
    for (const auto& l : lines) {
      auto& t = totals[l.journal_id];
      if (t.first_line == 0) t.first_line = l.line;
      t.last_line = l.line;
      t.debit += l.debit;
      t.credit += l.credit;
    }
    std::string text;
    std::int64_t written = 0;
    for (const auto& l : lines) {
      const auto& t = totals[l.journal_id];
      if (t.debit != t.credit) {
        result.rejected.push_back(
            {l.line, "journal_id", l.journal_id, unbalanced(l.journal_id, t)});
        continue;
      }
      std::vector<std::string> fields = {l.journal_id,
                                         l.date,
                                         l.account,
                                         l.debit ? format_cents(l.debit) : "",
                                         l.credit ? format_cents(l.credit) : "",
                                         l.description,
                                         l.reference};
      text += csv_format_record(fields, delimiter);
      ++written;
    }
    std::string path = context.config.get_string("path");
    auto existing = read_file_bytes(path);
    std::string content = existing.ok() ? *existing : "";
    if (content.empty()) content = csv_format_record(gl_columns(), delimiter);
    content += text;
    CIVICBUS_RETURN_IF_ERROR(write_file_atomically(path, content));
    result.written = written;
    return result;
  }

 private:
  Result<std::vector<Line>> load(const ConnectorContext& context) {
    std::string path = context.config.get_string("path");
    char delimiter = context.config.get_string("delimiter", ",")[0];
    char separator = context.config.get_string("segment_separator", "-")[0];
    CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_file_bytes(path));
    CsvOptions options;
    options.delimiter = delimiter;
    auto table = parse_csv(text, options);
    if (!table.ok()) return table.status().with_context("erp_gl '" + path + "'");
    std::map<std::string, int> index;
    for (std::size_t i = 0; i < table->header.size(); ++i) {
      index[table->header[i]] = static_cast<int>(i);
    }
    for (const auto& c : gl_columns()) {
      if (c != "description" && c != "reference" && !index.count(c)) {
        return invalid_argument("erp_gl '" + path + "' line 1: the header has no column '" + c +
                                "'");
      }
    }
    std::vector<Line> lines;
    std::map<std::string, JournalTotals> totals;
    std::vector<std::string> order;
    for (const auto& rec : table->records) {
      auto get = [&](const std::string& c) -> std::string {
        auto it = index.find(c);
        if (it == index.end() || static_cast<std::size_t>(it->second) >= rec.fields.size()) {
          return "";
        }
        return rec.fields[static_cast<std::size_t>(it->second)];
      };
      Line l;
      l.line = static_cast<std::int64_t>(rec.line);
      l.journal_id = get("journal_id");
      l.date = get("date");
      l.account = get("account");
      l.description = get("description");
      l.reference = get("reference");
      for (auto [col, target] : {std::pair{"debit", &l.debit}, std::pair{"credit", &l.credit}}) {
        std::string v = get(col);
        if (v.empty()) continue;
        auto cents = parse_decimal_cents(v);
        if (!cents) {
          return invalid_argument("erp_gl '" + path + "' line " + std::to_string(l.line) +
                                  ": field '" + col + "' ('" + v + "') is not an amount");
        }
        *target = *cents;
      }
      Status valid = validate_line(l, separator);
      if (!valid.ok()) return valid.with_context("'" + path + "'");
      auto& t = totals[l.journal_id];
      if (t.first_line == 0) {
        t.first_line = l.line;
        order.push_back(l.journal_id);
      }
      t.last_line = l.line;
      t.debit += l.debit;
      t.credit += l.credit;
      lines.push_back(std::move(l));
    }
    for (const auto& j : order) {
      if (totals[j].debit != totals[j].credit) {
        return invalid_argument("erp_gl '" + path + "': " + unbalanced(j, totals[j]));
      }
    }
    return lines;
  }

  ConnectorSpec spec_;
};

}  // namespace

std::unique_ptr<Connector> make_erp_gl_connector() {
  return std::make_unique<ErpGlConnector>();
}

}  // namespace civicbus::connect::detail

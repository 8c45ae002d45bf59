// BAI2 (Cash Management Balance Reporting Specifications, version 2): the parser and the
// `bai2` source connector.
//
// Records are comma-separated, end with '/', and start with a record code:
//   01 file header: sender, receiver, creation date YYMMDD, time HHMM, file id, physical
//      record length, block size, version (2)
//   02 group header: ultimate receiver, originator, group status, as-of date, as-of time,
//      currency, as-of-date modifier
//   03 account identifier: account number, currency, then repeated (type code, amount, item
//      count, funds type [+ funds distribution])
//   16 transaction detail: type code, amount, funds type [+ distribution], bank reference,
//      customer reference, text (the rest of the record, not '/'-terminated)
//   88 continuation of the previous record's fields
//   49 account trailer: account control total, number of records (03..49, 88s included)
//   98 group trailer: group control total, number of accounts, number of records (02..98)
//   99 file trailer: file control total, number of groups, number of records (01..99)
// Control totals are algebraic sums of the amounts in 03 and 16 records (account), of the
// account totals (group) and of the group totals (file).
#include "builtin_connectors.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// Where the free text of a 16 record's fields starts: after type code, amount, funds type,
// the funds distribution and the two references.
std::size_t bai2_text_index(const std::vector<std::string>& f) {
  std::size_t extra = 0;
  std::string funds = f.size() > 2 ? f[2] : "";
  if (funds == "S") extra = 3;
  if (funds == "V") extra = 2;
  if (funds == "D") {
    std::size_t n = 0;
    if (f.size() > 3 && !f[3].empty() && f[3].size() < 4 &&
        f[3].find_first_not_of("0123456789") == std::string::npos) {
      n = std::stoul(f[3]);
    }
    extra = 1 + 2 * n;
  }
  return 5 + extra;
}

struct Logical {
  std::int64_t line = 0;      // where the record starts
  std::int64_t physical = 1;  // physical records it spans (88s included)
  std::string code;
  std::vector<std::string> fields;  // after the record code
};

std::vector<std::string> split_fields(std::string_view body) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    std::size_t comma = body.find(',', pos);
    out.emplace_back(
        trim(body.substr(pos, comma == std::string_view::npos ? body.npos : comma - pos)));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::string at(const Logical& r, std::string_view what) {
  return "bai2 line " + std::to_string(r.line) + " (" + std::string(what) + ")";
}

Result<std::optional<std::int64_t>> amount(const std::string& value, std::string_view name,
                                           const Logical& r, std::string_view what) {
  if (value.empty()) return std::optional<std::int64_t>();
  std::string_view v = value;
  bool negative = false;
  if (v.front() == '+' || v.front() == '-') {
    negative = v.front() == '-';
    v.remove_prefix(1);
  }
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string_view::npos) {
    return invalid_argument(at(r, what) + ": field '" + std::string(name) + "' ('" + value +
                            "') is not an amount in minor units");
  }
  std::int64_t n = std::stoll(std::string(v));
  return std::optional<std::int64_t>(negative ? -n : n);
}

Result<std::int64_t> count(const std::string& value, std::string_view name, const Logical& r,
                           std::string_view what) {
  CIVICBUS_ASSIGN_OR_RETURN(auto n, amount(value, name, r, what));
  if (!n || *n < 0) {
    return invalid_argument(at(r, what) + ": field '" + std::string(name) + "' ('" + value +
                            "') is not a count");
  }
  return *n;
}

// Skips the funds-type distribution that follows funds types S, V and D; returns the index
// of the first field after it.
Result<std::size_t> skip_funds(const std::vector<std::string>& f, std::size_t i,
                               const std::string& funds, const Logical& r, std::string_view what) {
  auto need = [&](std::size_t n) -> Status {
    if (i + n > f.size()) {
      return invalid_argument(at(r, what) + ": funds type '" + funds + "' needs " +
                              std::to_string(n) + " more fields");
    }
    return Status();
  };
  if (funds == "S") {
    CIVICBUS_RETURN_IF_ERROR(need(3));
    return i + 3;
  }
  if (funds == "V") {
    CIVICBUS_RETURN_IF_ERROR(need(2));
    return i + 2;
  }
  if (funds == "D") {
    CIVICBUS_RETURN_IF_ERROR(need(1));
    CIVICBUS_ASSIGN_OR_RETURN(std::int64_t n, count(f[i], "distribution_count", r, what));
    if (n > 1000) return invalid_argument(at(r, what) + ": too many funds distributions");
    CIVICBUS_RETURN_IF_ERROR(need(1 + static_cast<std::size_t>(n) * 2));
    return i + 1 + static_cast<std::size_t>(n) * 2;
  }
  return i;
}

std::string yymmdd(const std::string& value, std::string_view name, const Logical& r,
                   std::string_view what, Status& error) {
  if (value.empty()) return "";
  if (value.size() != 6 || value.find_first_not_of("0123456789") != std::string::npos) {
    error = invalid_argument(at(r, what) + ": field '" + std::string(name) + "' ('" + value +
                             "') is not a date YYMMDD");
    return "";
  }
  std::string iso = "20" + value.substr(0, 2) + "-" + value.substr(2, 2) + "-" + value.substr(4, 2);
  if (!parse_iso_date_days(iso)) {
    error = invalid_argument(at(r, what) + ": field '" + std::string(name) + "' ('" + value +
                             "') is not a valid date");
    return "";
  }
  return iso;
}

Status check_total(const Logical& r, std::string_view what, std::string_view name,
                   std::int64_t stated, std::int64_t actual, std::string_view of) {
  if (stated == actual) return Status();
  return invalid_argument(at(r, what) + ": " + std::string(name) + " is " + std::to_string(stated) +
                          " but " + std::string(of) + " " + std::to_string(actual));
}

}  // namespace

std::string_view bai2_direction(std::string_view type_code) {
  if (type_code.size() != 3 || type_code.find_first_not_of("0123456789") != type_code.npos) {
    return "custom";
  }
  int code = std::stoi(std::string(type_code));
  if (code < 100) return "status";
  if (code < 400) return code % 100 < 10 ? "summary" : "credit";
  if (code < 700) return code % 100 < 10 ? "summary" : "debit";
  return "custom";
}

Result<Bai2File> parse_bai2(std::string_view text) {
  // Joins 88 continuations to the records they continue.
  std::vector<Logical> records;
  std::int64_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = trim(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty()) continue;
    if (line.size() < 2 || (line.size() > 2 && line[2] != ',' && line[2] != '/')) {
      return invalid_argument("bai2 line " + std::to_string(line_no) +
                              ": does not start with a two-digit record code and a comma");
    }
    std::string code(line.substr(0, 2));
    std::string_view body = line.size() > 3 ? line.substr(3) : std::string_view();
    if (code == "88") {
      if (records.empty()) {
        return invalid_argument("bai2 line " + std::to_string(line_no) +
                                ": a continuation (88) with no record before it");
      }
      Logical& prev = records.back();
      ++prev.physical;
      if (prev.code == "16" && prev.fields.size() > bai2_text_index(prev.fields)) {
        // The text of a 16 record goes on: 88 adds to it rather than adding fields.
        std::string& t = prev.fields.back();
        if (!t.empty() && !body.empty()) t += ' ';
        t += std::string(trim(body));
        continue;
      }
      if (!prev.fields.empty() && prev.fields.back() == "/") prev.fields.pop_back();
      for (auto& f : split_fields(body)) prev.fields.push_back(std::move(f));
      continue;
    }
    Logical r;
    r.line = line_no;
    r.code = code;
    r.fields = split_fields(body);
    records.push_back(std::move(r));
  }
  if (records.empty()) return invalid_argument("bai2: the file has no records");

  Bai2File file;
  // State of the enclosing group and account while reading.
  std::string originator, group_status, as_of_date;
  std::string account, currency, group_currency;
  bool in_group = false, in_account = false, file_ended = false;
  std::int64_t account_total = 0, account_records = 0;
  std::int64_t group_total = 0, group_records = 0, group_accounts = 0;
  std::int64_t file_total = 0, file_records = 0;

  for (auto& r : records) {
    // Drops the '/' terminator from the last field (not from 16 text, which has none).
    if (!r.fields.empty()) {
      std::string& last = r.fields.back();
      if (r.code != "16" && !last.empty() && last.back() == '/') last.pop_back();
      if (r.code == "16" && r.fields.size() <= bai2_text_index(r.fields) && !last.empty() &&
          last.back() == '/') {
        last.pop_back();
      }
    }
    const auto& f = r.fields;
    auto field = [&](std::size_t i) -> std::string { return i < f.size() ? f[i] : ""; };
    if (file_ended) return invalid_argument(at(r, r.code) + ": a record after the 99 trailer");
    file_records += r.physical;
    if (in_group) group_records += r.physical;
    if (in_account) account_records += r.physical;
    Status date_error;
    if (r.code == "01") {
      if (&r != &records.front()) return invalid_argument(at(r, "01 file header") + ": not first");
      file.sender_id = field(0);
      file.receiver_id = field(1);
      file.file_creation_date =
          yymmdd(field(2), "file_creation_date", r, "01 file header", date_error);
      CIVICBUS_RETURN_IF_ERROR(date_error);
      file.file_creation_time = field(3);
      file.file_id = field(4);
      if (!field(7).empty() && field(7) != "2") {
        return invalid_argument(at(r, "01 file header") + ": field 'version_number' is '" +
                                field(7) + "', expected 2");
      }
    } else if (records.front().code != "01") {
      return invalid_argument(at(records.front(), records.front().code) +
                              ": the file must start with an 01 file header");
    } else if (r.code == "02") {
      if (in_group)
        return invalid_argument(at(r, "02 group header") + ": previous group has no 98");
      in_group = true;
      group_records = r.physical;
      group_total = 0;
      group_accounts = 0;
      originator = field(1);
      group_status = field(2);
      as_of_date = yymmdd(field(3), "as_of_date", r, "02 group header", date_error);
      CIVICBUS_RETURN_IF_ERROR(date_error);
      group_currency = field(5);
      ++file.groups;
    } else if (r.code == "03") {
      if (!in_group) return invalid_argument(at(r, "03 account identifier") + ": outside a group");
      if (in_account) {
        return invalid_argument(at(r, "03 account identifier") + ": previous account has no 49");
      }
      in_account = true;
      account_records = r.physical;
      account_total = 0;
      account = field(0);
      if (account.empty()) {
        return invalid_argument(at(r, "03 account identifier") +
                                ": field 'account_number' is empty");
      }
      currency = field(1).empty() ? group_currency : field(1);
      ++file.accounts;
      ++group_accounts;
      for (std::size_t i = 2; i < f.size();) {
        if (f[i].empty() && (i + 1 >= f.size() || f[i + 1].empty())) {
          i += 4;  // an empty summary slot
          continue;
        }
        Bai2Summary s;
        s.line = r.line;
        s.account_number = account;
        s.currency = currency;
        s.type_code = f[i];
        CIVICBUS_ASSIGN_OR_RETURN(s.amount_cents,
                                  amount(field(i + 1), "amount", r, "03 account identifier"));
        if (!field(i + 2).empty()) {
          CIVICBUS_ASSIGN_OR_RETURN(s.item_count,
                                    count(field(i + 2), "item_count", r, "03 account identifier"));
        }
        s.funds_type = field(i + 3);
        CIVICBUS_ASSIGN_OR_RETURN(i,
                                  skip_funds(f, i + 4, s.funds_type, r, "03 account identifier"));
        if (s.amount_cents) account_total += *s.amount_cents;
        file.summaries.push_back(std::move(s));
      }
    } else if (r.code == "16") {
      if (!in_account)
        return invalid_argument(at(r, "16 transaction detail") + ": outside an account");
      Bai2Transaction t;
      t.line = r.line;
      t.sender_id = file.sender_id;
      t.receiver_id = file.receiver_id;
      t.file_creation_date = file.file_creation_date;
      t.file_id = file.file_id;
      t.originator_id = originator;
      t.group_status = group_status;
      t.as_of_date = as_of_date;
      t.account_number = account;
      t.currency = currency;
      t.type_code = field(0);
      if (t.type_code.empty()) {
        return invalid_argument(at(r, "16 transaction detail") + ": field 'type_code' is empty");
      }
      CIVICBUS_ASSIGN_OR_RETURN(t.amount_cents,
                                amount(field(1), "amount", r, "16 transaction detail"));
      t.funds_type = field(2);
      CIVICBUS_ASSIGN_OR_RETURN(std::size_t i,
                                skip_funds(f, 3, t.funds_type, r, "16 transaction detail"));
      t.bank_reference = field(i);
      t.customer_reference = field(i + 1);
      // The text is the rest of the record, commas included.
      std::string text_field;
      for (std::size_t k = i + 2; k < f.size(); ++k) {
        if (k > i + 2) text_field += ',';
        text_field += f[k];
      }
      if (!text_field.empty() && text_field.back() == '/') text_field.pop_back();
      t.text = std::string(trim(text_field));
      if (t.amount_cents) account_total += *t.amount_cents;
      file.transactions.push_back(std::move(t));
    } else if (r.code == "49") {
      const char* what = "49 account trailer";
      if (!in_account) return invalid_argument(at(r, what) + ": no account to end");
      CIVICBUS_ASSIGN_OR_RETURN(auto total, amount(field(0), "account_control_total", r, what));
      CIVICBUS_ASSIGN_OR_RETURN(auto n, count(field(1), "number_of_records", r, what));
      CIVICBUS_RETURN_IF_ERROR(
          check_total(r, what, "account control total", total.value_or(0), account_total,
                      "account " + account + "'s 03 and 16 amounts add up to"));
      CIVICBUS_RETURN_IF_ERROR(check_total(r, what, "number of records", n, account_records,
                                           "account " + account + " has"));
      group_total += account_total;
      in_account = false;
    } else if (r.code == "98") {
      const char* what = "98 group trailer";
      if (!in_group || in_account) {
        return invalid_argument(
            at(r, what) + (in_account ? ": an account has no 49 trailer" : ": no group to end"));
      }
      CIVICBUS_ASSIGN_OR_RETURN(auto total, amount(field(0), "group_control_total", r, what));
      CIVICBUS_ASSIGN_OR_RETURN(auto accounts, count(field(1), "number_of_accounts", r, what));
      CIVICBUS_ASSIGN_OR_RETURN(auto n, count(field(2), "number_of_records", r, what));
      CIVICBUS_RETURN_IF_ERROR(check_total(r, what, "group control total", total.value_or(0),
                                           group_total, "the group's account totals add up to"));
      CIVICBUS_RETURN_IF_ERROR(
          check_total(r, what, "number of accounts", accounts, group_accounts, "the group has"));
      CIVICBUS_RETURN_IF_ERROR(
          check_total(r, what, "number of records", n, group_records, "the group has"));
      file_total += group_total;
      in_group = false;
    } else if (r.code == "99") {
      const char* what = "99 file trailer";
      if (in_group) return invalid_argument(at(r, what) + ": a group has no 98 trailer");
      CIVICBUS_ASSIGN_OR_RETURN(auto total, amount(field(0), "file_control_total", r, what));
      CIVICBUS_ASSIGN_OR_RETURN(auto groups, count(field(1), "number_of_groups", r, what));
      CIVICBUS_ASSIGN_OR_RETURN(auto n, count(field(2), "number_of_records", r, what));
      CIVICBUS_RETURN_IF_ERROR(check_total(r, what, "file control total", total.value_or(0),
                                           file_total, "the group totals add up to"));
      CIVICBUS_RETURN_IF_ERROR(
          check_total(r, what, "number of groups", groups, file.groups, "the file has"));
      CIVICBUS_RETURN_IF_ERROR(
          check_total(r, what, "number of records", n, file_records, "the file has"));
      file_ended = true;
    } else {
      return invalid_argument(at(r, r.code) + ": unknown record code '" + r.code +
                              "' (01, 02, 03, 16, 88, 49, 98, 99)");
    }
  }
  if (!file_ended) {
    return invalid_argument("bai2 line " + std::to_string(line_no + 1) +
                            ": the 99 file trailer is missing (the file is truncated?)");
  }
  file.physical_records = file_records;
  return file;
}

namespace {

Json opt(const std::string& s) {
  return s.empty() ? Json() : Json(s);
}
Json opt(const std::optional<std::int64_t>& n) {
  return n ? Json(*n) : Json();
}

const std::vector<std::string>& transaction_columns() {
  static const std::vector<std::string> k = {"line",
                                             "sender_id",
                                             "receiver_id",
                                             "file_creation_date",
                                             "file_id",
                                             "originator_id",
                                             "group_status",
                                             "as_of_date",
                                             "account_number",
                                             "currency",
                                             "type_code",
                                             "direction",
                                             "amount_cents",
                                             "funds_type",
                                             "bank_reference",
                                             "customer_reference",
                                             "text"};
  return k;
}

const std::vector<std::string>& summary_columns() {
  static const std::vector<std::string> k = {"line",       "account_number", "currency",
                                             "type_code",  "direction",      "amount_cents",
                                             "item_count", "funds_type"};
  return k;
}

StreamSpec make_stream(std::string name, const std::vector<std::string>& columns) {
  StreamSpec s;
  s.name = std::move(name);
  for (const auto& c : columns) {
    FieldType t = FieldType::kString;
    if (c == "line" || c == "amount_cents" || c == "item_count") t = FieldType::kInteger;
    if (c == "file_creation_date" || c == "as_of_date") t = FieldType::kDate;
    s.fields.push_back({c, t, c != "line"});
  }
  s.primary_key = {"line"};
  return s;
}

class Bai2Connector : public Connector {
 public:
  Bai2Connector() {
    spec_.name = "bai2";
    spec_.title = "BAI2 bank balance and transaction report";
    spec_.description =
        "Reads BAI version 2 cash management files: account summaries (03) and transaction "
        "details (16, with 88 continuations); 49/98/99 control totals and record counts are "
        "checked.";
    spec_.format_source = "BAI Cash Management Balance Reporting Specifications, version 2";
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"required", Json::array({"path"})},
        {"properties", Json::object({{"path", Json::object({{"type", "string"}})}})},
    });
  }
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    return load(context).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    return std::vector<StreamSpec>{make_stream("transactions", transaction_columns()),
                                   make_stream("account_summaries", summary_columns())};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    CIVICBUS_ASSIGN_OR_RETURN(Bai2File file, load(context));
    std::int64_t budget = request.max_records;
    if (wants_stream(request, "transactions")) {
      std::vector<Record> rows;
      for (const auto& t : file.transactions) {
        Record r;
        r.position = t.line;
        r.values = {t.line,
                    opt(t.sender_id),
                    opt(t.receiver_id),
                    opt(t.file_creation_date),
                    opt(t.file_id),
                    opt(t.originator_id),
                    opt(t.group_status),
                    opt(t.as_of_date),
                    t.account_number,
                    opt(t.currency),
                    t.type_code,
                    std::string(bai2_direction(t.type_code)),
                    opt(t.amount_cents),
                    opt(t.funds_type),
                    opt(t.bank_reference),
                    opt(t.customer_reference),
                    opt(t.text)};
        rows.push_back(std::move(r));
      }
      CIVICBUS_RETURN_IF_ERROR(emit_records(out, request, "transactions", transaction_columns(),
                                            std::move(rows), budget, Json()));
    }
    if (wants_stream(request, "account_summaries")) {
      std::vector<Record> rows;
      for (const auto& s : file.summaries) {
        Record r;
        r.position = s.line;
        r.values = {s.line,
                    s.account_number,
                    opt(s.currency),
                    s.type_code,
                    std::string(bai2_direction(s.type_code)),
                    opt(s.amount_cents),
                    opt(s.item_count),
                    opt(s.funds_type)};
        rows.push_back(std::move(r));
      }
      CIVICBUS_RETURN_IF_ERROR(emit_records(out, request, "account_summaries", summary_columns(),
                                            std::move(rows), budget, Json()));
    }
    return Status();
  }

 private:
  Result<Bai2File> load(const ConnectorContext& context) {
    std::string path = context.config.get_string("path");
    CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_file_bytes(path));
    auto parsed = parse_bai2(text);
    if (!parsed.ok()) return parsed.status().with_context("'" + path + "'");
    return parsed;
  }
  ConnectorSpec spec_;
};

}  // namespace

std::unique_ptr<Connector> make_bai2_connector() {
  return std::make_unique<Bai2Connector>();
}

}  // namespace civicbus::connect::detail

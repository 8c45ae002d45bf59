// `cra_remittance`: a sink that writes the payroll source-deduction remittance summary a
// municipality keeps, prints or uploads to its bank's bill-payment service: per remitting
// period the fields of the CRA's PD7A remittance voucher (payroll program account, period end,
// gross payroll, number of employees, CPP, EI and income tax withheld, amount remitted).
//
// This is a generation format derived from the PD7A fields, not a CRA transmission format:
// the CRA publishes no bulk electronic remittance file (remittances are paid through a bank,
// My Business Account or a voucher). The layout (fixed width, 120 bytes a line, CRLF) is ours
// and documented in docs/connectors.md:
//   H  1 'H' | 2-16 payroll account (123456789RP0001) | 17-24 created YYYYMMDD |
//      25-84 employer name | filler
//   D  1 'D' | 2-16 payroll account | 17-24 period end YYYYMMDD | 25-37 gross payroll |
//      38-44 employees | 45-57 CPP (employee + employer) | 58-70 EI (employee + employer) |
//      71-83 income tax | 84-96 total remittance | filler        (amounts in cents, zero-filled)
//   T  1 'T' | 2-8 detail count | 9-23 total gross payroll | 24-38 total remittance | filler
#include <map>

#include "builtin_connectors.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

namespace {

constexpr std::size_t kLineWidth = 120;

std::string zero_pad(std::int64_t n, std::size_t width) {
  std::string s = std::to_string(n);
  return std::string(width > s.size() ? width - s.size() : 0, '0') + s;
}

bool valid_payroll_account(const std::string& a) {
  if (a.size() != 15) return false;
  for (std::size_t i = 0; i < 15; ++i) {
    bool digit = a[i] >= '0' && a[i] <= '9';
    if ((i < 9 || i >= 11) ? !digit : false) return false;
  }
  return a.substr(9, 2) == "RP";
}

class CraRemittanceConnector : public Connector {
 public:
  CraRemittanceConnector() {
    spec_.name = "cra_remittance";
    spec_.title = "CRA payroll remittance summary (PD7A fields)";
    spec_.description =
        "Writes a fixed-width payroll source-deduction remittance summary per remitting period "
        "(gross payroll, employees, CPP, EI, income tax, total). A civicbus generation format "
        "derived from the PD7A voucher fields; the CRA defines no bulk remittance file.";
    spec_.format_source = "CRA PD7A remittance voucher fields; layout in docs/connectors.md";
    spec_.is_source = false;
    spec_.is_sink = true;
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"required", Json::array({"path"})},
        {"properties", Json::object({
                           {"path", Json::object({{"type", "string"}})},
                           {"payroll_account", Json::object({{"type", "string"},
                                                             {"pattern", "^[0-9]{9}RP[0-9]{4}$"}})},
                           {"employer_name", Json::object({{"type", "string"}, {"maxLength", 60}})},
                       })},
    });
  }
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    return validate_config(spec_, context.config);
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    StreamSpec s;
    s.name = "remittances";
    s.fields = {{"payroll_account", FieldType::kString, true},
                {"period_end", FieldType::kDate, false},
                {"gross_payroll", FieldType::kNumber, false},
                {"employees", FieldType::kInteger, false},
                {"cpp_employee", FieldType::kNumber, false},
                {"cpp_employer", FieldType::kNumber, false},
                {"ei_employee", FieldType::kNumber, false},
                {"ei_employer", FieldType::kNumber, false},
                {"income_tax", FieldType::kNumber, false},
                {"total_remittance", FieldType::kNumber, true}};
    s.primary_key = {"payroll_account", "period_end"};
    return std::vector<StreamSpec>{s};
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest&,
                            const RecordBatch& batch) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    const Json& c = context.config;
    WriteResult result;
    std::string details;
    std::map<std::string, std::int64_t> periods;  // account|period → position, for duplicates
    std::int64_t count = 0, total_gross = 0, total_remitted = 0;
    std::string first_account;
    for (const auto& record : batch.records) {
      auto value = [&](std::string_view col) -> const Json& {
        return RecordBatch::value(record, batch.column_index(col));
      };
      auto reject = [&](std::string field, std::string why) {
        result.rejected.push_back({record.position, field, json_text(value(field)), why});
      };
      std::string account = json_text(value("payroll_account"));
      if (account.empty()) account = c.get_string("payroll_account");
      if (!valid_payroll_account(account)) {
        reject("payroll_account", "not a payroll program account (9-digit BN + RP + 4 digits)");
        continue;
      }
      std::string period = json_text(value("period_end"));
      auto days = parse_iso_date_days(period);
      if (!days) {
        reject("period_end", "not a date YYYY-MM-DD");
        continue;
      }
      const Json& employees = value("employees");
      if (!employees.is_integral() || employees.as_double() < 0) {
        reject("employees", "not a whole number of employees");
        continue;
      }
      std::map<std::string, std::int64_t> cents;
      bool bad = false;
      for (const char* f : {"gross_payroll", "cpp_employee", "cpp_employer", "ei_employee",
                            "ei_employer", "income_tax"}) {
        auto v = json_cents(value(f));
        if (!v || *v < 0) {
          reject(f, "not an amount of at least 0.00");
          bad = true;
          break;
        }
        cents[f] = *v;
      }
      if (bad) continue;
      std::int64_t cpp = cents["cpp_employee"] + cents["cpp_employer"];
      std::int64_t ei = cents["ei_employee"] + cents["ei_employer"];
      std::int64_t total = cpp + ei + cents["income_tax"];
      if (!value("total_remittance").is_null()) {
        auto stated = json_cents(value("total_remittance"));
        if (!stated || *stated != total) {
          reject("total_remittance",
                 "differs from CPP + EI + income tax (" + format_cents(total) + ")");
          continue;
        }
      }
      std::string key = account + "|" + period;
      if (periods.count(key)) {
        reject("period_end", "a second remittance for the same account and period");
        continue;
      }
      periods[key] = record.position;
      std::string ymd = period.substr(0, 4) + period.substr(5, 2) + period.substr(8, 2);
      std::string line =
          "D" + account + ymd + zero_pad(cents["gross_payroll"], 13) +
          zero_pad(employees.is_int() ? employees.as_int()
                                      : static_cast<std::int64_t>(employees.as_double()),
                   7) +
          zero_pad(cpp, 13) + zero_pad(ei, 13) + zero_pad(cents["income_tax"], 13) +
          zero_pad(total, 13);
      if (line.size() > kLineWidth) {
        reject("total_remittance", "an amount does not fit its 13-digit field");
        continue;
      }
      line.resize(kLineWidth, ' ');
      details += line + "\r\n";
      if (first_account.empty()) first_account = account;
      ++count;
      total_gross += cents["gross_payroll"];
      total_remitted += total;
    }
    if (count == 0) return result;
    auto today = std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(context.now())};
    std::string created =
        format_date(static_cast<int>(today.year()), static_cast<unsigned>(today.month()),
                    static_cast<unsigned>(today.day()));
    created.erase(7, 1);
    created.erase(4, 1);
    std::string header_account = c.get_string("payroll_account", first_account);
    std::string h = "H" + header_account + created + c.get_string("employer_name");
    h.resize(kLineWidth, ' ');
    std::string t =
        "T" + zero_pad(count, 7) + zero_pad(total_gross, 15) + zero_pad(total_remitted, 15);
    t.resize(kLineWidth, ' ');
    ++files_;
    std::string path = expand_sequence(c.get_string("path"), files_, 4);
    CIVICBUS_RETURN_IF_ERROR(write_file_atomically(path, h + "\r\n" + details + t + "\r\n"));
    result.written = count;
    return result;
  }

 private:
  ConnectorSpec spec_;
  std::int64_t files_ = 0;
};

}  // namespace

std::unique_ptr<Connector> make_cra_remittance_connector() {
  return std::make_unique<CraRemittanceConnector>();
}

}  // namespace civicbus::connect::detail

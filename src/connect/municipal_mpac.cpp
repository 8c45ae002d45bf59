// `mpac`: an MPAC (Ontario Municipal Property Assessment Corporation) assessment extract, read
// as CSV with a header row. MPAC's own products (EAIROL, the year-end tax file, the MCP DBF)
// have licensed layouts that are not public; municipalities export them to CSV, so the
// connector reads the column set documented in docs/connectors.md and passes other columns
// through as strings.
//
// The roll number has 19 digits: county (2), municipality (2), map area (3), map division
// (3), parcel (5), sub-parcel/primary-subordinate (4). It is accepted with or without
// separators and emitted both as 19 digits and formatted "CCMM-AAA-DDD-PPPPP-SSSS".
#include <algorithm>
#include <cctype>
#include <map>

#include "builtin_connectors.hpp"
#include "civicbus/core/csv.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

namespace {

struct Column {
  const char* name;
  FieldType type;
  bool required;
};

// The known columns, in output order.
constexpr Column kColumns[] = {
    {"roll_number", FieldType::kString, true},
    {"extract_date", FieldType::kDate, true},
    {"property_code", FieldType::kString, true},
    {"tax_class", FieldType::kString, false},
    {"unit_number", FieldType::kString, false},
    {"street_number", FieldType::kString, false},
    {"street_name", FieldType::kString, false},
    {"municipality", FieldType::kString, false},
    {"postal_code", FieldType::kString, false},
    {"current_value_assessment", FieldType::kInteger, true},
    {"prior_value_assessment", FieldType::kInteger, false},
    {"phased_in_value", FieldType::kInteger, false},
    {"tax_year", FieldType::kInteger, false},
};

const std::vector<std::string>& derived_columns() {
  static const std::vector<std::string> k = {
      "roll_number_formatted", "county", "municipality_code", "map_area",
      "map_division",          "parcel", "sub_parcel"};
  return k;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (char& c : s) {
    if (c == ' ' || c == '-') c = '_';
  }
  return s;
}

}  // namespace

// Exposed for the tests: 19 digits from a roll number written with or without separators.
Result<std::string> normalize_roll_number(std::string_view text) {
  std::string digits;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (c != '-' && c != ' ' && c != '.') {
      return invalid_argument("'" + std::string(text) + "' has a character that is not a digit");
    }
  }
  if (digits.size() != 19) {
    return invalid_argument("'" + std::string(text) + "' has " + std::to_string(digits.size()) +
                            " digits; a roll number has 19 (county 2, municipality 2, map area "
                            "3, map division 3, parcel 5, sub-parcel 4)");
  }
  return digits;
}

namespace {

class MpacConnector : public Connector {
 public:
  MpacConnector() {
    spec_.name = "mpac";
    spec_.title = "MPAC property assessment extract";
    spec_.description =
        "Ontario property assessment extract as CSV: roll number (validated, 19 digits), "
        "property code, tax class, address, current value assessment and phase-in values; "
        "incremental by extract date.";
    spec_.format_source =
        "MPAC assessment roll fields (Assessment Act, Ontario); CSV layout in docs/connectors.md";
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"required", Json::array({"path"})},
        {"properties",
         Json::object({{"path", Json::object({{"type", "string"}})},
                       {"delimiter",
                        Json::object({{"type", "string"}, {"minLength", 1}, {"maxLength", 1}})}})},
    });
  }
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    return load(context, nullptr).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    CIVICBUS_ASSIGN_OR_RETURN(Loaded loaded, load(context, nullptr));
    return std::vector<StreamSpec>{loaded.stream};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    if (!wants_stream(request, "assessments")) return Status();
    std::string after;
    if (const Json* state = request.stream_state("assessments")) {
      after = state->get_string("cursor");
    }
    CIVICBUS_ASSIGN_OR_RETURN(Loaded loaded, load(context, &after));
    std::string cursor = after;
    int date_column = 1;
    for (const auto& r : loaded.records) {
      const std::string& d = r.values[static_cast<std::size_t>(date_column)].as_string();
      cursor = std::max(cursor, d);
    }
    std::vector<std::string> columns;
    for (const auto& f : loaded.stream.fields) columns.push_back(f.name);
    std::int64_t budget = request.max_records;
    Json state = cursor.empty() ? Json() : Json::object({{"cursor", cursor}});
    return emit_records(out, request, "assessments", columns, std::move(loaded.records), budget,
                        std::move(state));
  }

 private:
  struct Loaded {
    StreamSpec stream;
    std::vector<Record> records;
  };

  // Reads and validates the extract; with `after`, keeps only rows extracted after it.
  Result<Loaded> load(const ConnectorContext& context, const std::string* after) {
    std::string path = context.config.get_string("path");
    CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_file_bytes(path));
    CsvOptions options;
    options.delimiter = context.config.get_string("delimiter", ",")[0];
    auto table = parse_csv(text, options);
    if (!table.ok()) return table.status().with_context("mpac '" + path + "'");
    std::map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < table->header.size(); ++i) index[lower(table->header[i])] = i;
    Loaded loaded;
    loaded.stream.name = "assessments";
    loaded.stream.primary_key = {"roll_number"};
    loaded.stream.cursor_field = "extract_date";
    std::vector<std::optional<std::size_t>> source;  // CSV index of each output column
    for (const auto& c : kColumns) {
      auto it = index.find(c.name);
      if (it == index.end() && c.required) {
        return invalid_argument("mpac '" + path + "' line 1: the header has no column '" + c.name +
                                "'");
      }
      loaded.stream.fields.push_back({c.name, c.type, !c.required});
      source.push_back(it == index.end() ? std::nullopt : std::optional(it->second));
    }
    for (const auto& d : derived_columns()) {
      loaded.stream.fields.push_back({d, FieldType::kString, false});
    }
    // Columns we do not know pass through as strings.
    std::vector<std::size_t> extra;
    for (std::size_t i = 0; i < table->header.size(); ++i) {
      std::string name = lower(table->header[i]);
      if (loaded.stream.field(name) != nullptr) continue;
      loaded.stream.fields.push_back({name, FieldType::kString, true});
      extra.push_back(i);
    }
    std::map<std::string, std::size_t> seen;  // roll number + date → line
    for (const auto& rec : table->records) {
      std::string at = "mpac '" + path + "' line " + std::to_string(rec.line);
      Record r;
      r.position = static_cast<std::int64_t>(rec.line);
      auto raw = [&](std::size_t k) -> std::string {
        if (!source[k] || *source[k] >= rec.fields.size()) return "";
        return rec.fields[*source[k]];
      };
      std::string roll;
      for (std::size_t k = 0; k < std::size(kColumns); ++k) {
        const Column& c = kColumns[k];
        std::string v = raw(k);
        auto bad = [&](std::string why) {
          return invalid_argument(at + ": field '" + c.name + "' ('" + v + "') " + why);
        };
        if (v.empty()) {
          if (c.required) return invalid_argument(at + ": field '" + c.name + "' is empty");
          r.values.emplace_back();
          continue;
        }
        if (k == 0) {
          auto normalized = normalize_roll_number(v);
          if (!normalized.ok()) {
            return invalid_argument(at + ": field 'roll_number' " + normalized.status().message());
          }
          roll = *normalized;
          r.values.emplace_back(roll);
        } else if (c.type == FieldType::kDate) {
          if (!parse_iso_date_days(v)) return bad("is not a date YYYY-MM-DD");
          r.values.emplace_back(v);
        } else if (c.type == FieldType::kInteger) {
          // Assessed values are whole dollars; "1234.00" is accepted, cents are not.
          auto cents = parse_decimal_cents(v);
          if (!cents || *cents % 100 != 0) return bad("is not a whole number");
          r.values.emplace_back(*cents / 100);
        } else if (std::string_view(c.name) == "property_code") {
          if (v.size() != 3 || v.find_first_not_of("0123456789") != std::string::npos) {
            return bad("is not a 3-digit MPAC property code");
          }
          r.values.emplace_back(v);
        } else if (std::string_view(c.name) == "tax_class") {
          // RTC/RTQ: a 2-letter realty tax class and a 1- or 2-letter qualifier ("RT", "CTN").
          bool ok = v.size() >= 2 && v.size() <= 4 &&
                    std::all_of(v.begin(), v.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
          if (!ok) return bad("is not a tax class (RTC/RTQ such as 'RT' or 'CTN')");
          r.values.emplace_back(v);
        } else {
          r.values.emplace_back(v);
        }
      }
      const std::string date = r.values[1].as_string();  // a copy: values grows below
      auto key = roll + "@" + date;
      if (auto it = seen.find(key); it != seen.end()) {
        return invalid_argument(at + ": field 'roll_number' ('" + roll +
                                "') appears twice for extract date " + date + " (also line " +
                                std::to_string(it->second) + ")");
      }
      seen[key] = rec.line;
      std::string formatted = roll.substr(0, 4) + "-" + roll.substr(4, 3) + "-" +
                              roll.substr(7, 3) + "-" + roll.substr(10, 5) + "-" +
                              roll.substr(15, 4);
      for (const auto& part : {formatted, roll.substr(0, 2), roll.substr(2, 2), roll.substr(4, 3),
                               roll.substr(7, 3), roll.substr(10, 5), roll.substr(15, 4)}) {
        r.values.emplace_back(part);
      }
      for (std::size_t i : extra) {
        r.values.emplace_back(i < rec.fields.size() ? Json(rec.fields[i]) : Json());
      }
      if (after != nullptr && !after->empty() && date <= *after) continue;
      loaded.records.push_back(std::move(r));
    }
    return loaded;
  }

  ConnectorSpec spec_;
};

}  // namespace

std::unique_ptr<Connector> make_mpac_connector() {
  return std::make_unique<MpacConnector>();
}

}  // namespace civicbus::connect::detail

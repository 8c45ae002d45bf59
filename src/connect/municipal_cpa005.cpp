// Payments Canada Standard 005 (CPA 005) automated funds transfer files: the parser, the
// writer and the `cpa005` connector (source and sink).
//
// Layout (1464-byte logical records; positions 1-based):
//   all records   1 type (A, C, D, Z) | 2-10 logical record count | 11-20 originator id |
//                 21-24 file creation number
//   A header      25-30 creation date 0YYDDD | 31-35 destination data centre |
//                 36-55 reserved | 56-58 currency | filler
//   C/D detail    six 240-byte segments from position 25, each:
//                 1-3 transaction type | 4-13 amount (cents) | 14-19 due date 0YYDDD |
//                 20-28 institution id (0 + 3-digit institution + 5-digit transit) |
//                 29-40 account | 41-62 item trace | 63-65 stored transaction type |
//                 66-80 originator short name | 81-110 payee name | 111-140 originator long
//                 name | 141-150 originator user id | 151-169 cross reference |
//                 170-178 return institution id | 179-190 return account | 191-205 sundry |
//                 206-227 filler | 228-229 settlement code | 230-240 invalid data element
//   Z trailer     25-38 total value of debits | 39-46 number of debits | 47-60 total value of
//                 credits | 61-68 number of credits | 69-82, 83-90, 91-104, 105-112 the same
//                 for error corrections E and F (not supported here: must be zero)
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "builtin_connectors.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool all_blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ') return false;
  }
  return true;
}

// 1-based positions, as the standard numbers them.
std::string_view field(std::string_view record, std::size_t from, std::size_t to) {
  return record.substr(from - 1, to - from + 1);
}

std::string where(std::int64_t record, int segment = 0) {
  std::string w = "cpa005 record " + std::to_string(record);
  if (segment > 0) w += " segment " + std::to_string(segment);
  return w;
}

Result<std::int64_t> numeric(std::string_view value, std::string_view name, const std::string& at) {
  if (!all_digits(value)) {
    return invalid_argument(at + ": field '" + std::string(name) + "' ('" + std::string(value) +
                            "') is not numeric");
  }
  return static_cast<std::int64_t>(std::stoll(std::string(value)));
}

// 0YYDDD: century digit 0 (2000-2099), two-digit year, day of the year.
Result<std::string> julian_to_iso(std::string_view value, std::string_view name,
                                  const std::string& at) {
  auto bad = [&](std::string why) {
    return invalid_argument(at + ": field '" + std::string(name) + "' ('" + std::string(value) +
                            "') is not a date 0YYDDD: " + why);
  };
  if (value.size() != 6 || !all_digits(value)) return bad("expected six digits");
  if (value[0] != '0') return bad("century digit must be 0");
  int year = 2000 + std::stoi(std::string(value.substr(1, 2)));
  int doy = std::stoi(std::string(value.substr(3, 3)));
  bool leap = std::chrono::year{year}.is_leap();
  if (doy < 1 || doy > (leap ? 366 : 365)) return bad("day of the year out of range");
  std::chrono::sys_days days =
      std::chrono::sys_days(std::chrono::year{year} / std::chrono::January / 1) +
      std::chrono::days{doy - 1};
  std::chrono::year_month_day ymd{days};
  return format_date(static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                     static_cast<unsigned>(ymd.day()));
}

Result<std::string> iso_to_julian(const std::string& iso, std::string_view name,
                                  const std::string& at) {
  auto days = parse_iso_date_days(iso);
  if (!days) {
    return invalid_argument(at + ": field '" + std::string(name) + "' ('" + iso +
                            "') is not a date YYYY-MM-DD");
  }
  std::chrono::sys_days d{std::chrono::days{*days}};
  std::chrono::year_month_day ymd{d};
  int year = static_cast<int>(ymd.year());
  if (year < 2000 || year > 2099) {
    return invalid_argument(at + ": field '" + std::string(name) + "' ('" + iso +
                            "') is outside 2000-2099, which 0YYDDD cannot express");
  }
  auto doy = (d - std::chrono::sys_days(ymd.year() / std::chrono::January / 1)).count() + 1;
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%02d%03d", year % 100, static_cast<int>(doy));
  return std::string(buf);
}

// Splits the text into logical records: by line when it has line ends, else by 1464 bytes.
Result<std::vector<std::string>> split_records(std::string_view text) {
  std::vector<std::string> out;
  if (text.find('\n') != std::string_view::npos) {
    std::size_t pos = 0;
    std::int64_t line = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view l = text.substr(pos, end - pos);
      pos = end + 1;
      ++line;
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      if (trim(l).empty()) continue;
      if (l.size() > kCpa005RecordSize) {
        return invalid_argument("cpa005 line " + std::to_string(line) + ": " +
                                std::to_string(l.size()) + " bytes, longer than a " +
                                std::to_string(kCpa005RecordSize) + "-byte logical record");
      }
      std::string r(l);
      r.resize(kCpa005RecordSize, ' ');
      out.push_back(std::move(r));
    }
  } else {
    for (std::size_t pos = 0; pos < text.size(); pos += kCpa005RecordSize) {
      std::string r(text.substr(pos, kCpa005RecordSize));
      if (trim(r).empty()) continue;
      r.resize(kCpa005RecordSize, ' ');
      out.push_back(std::move(r));
    }
  }
  return out;
}

Status parse_segment(std::string_view seg, const std::string& at, Cpa005Transaction& t) {
  t.transaction_type = std::string(trim(field(seg, 1, 3)));
  if (t.transaction_type.size() != 3 || !all_digits(t.transaction_type)) {
    return invalid_argument(at + ": field 'transaction_type' ('" + std::string(field(seg, 1, 3)) +
                            "') is not a 3-digit transaction code");
  }
  CIVICBUS_ASSIGN_OR_RETURN(t.amount_cents, numeric(field(seg, 4, 13), "amount", at));
  CIVICBUS_ASSIGN_OR_RETURN(t.due_date, julian_to_iso(field(seg, 14, 19), "due_date", at));
  std::string_view inst = field(seg, 20, 28);
  if (!all_digits(inst)) {
    return invalid_argument(at + ": field 'institution_id' ('" + std::string(inst) +
                            "') is not numeric (0 + institution + transit)");
  }
  t.institution = std::string(inst.substr(1, 3));
  t.transit = std::string(inst.substr(4, 5));
  t.account = std::string(trim(field(seg, 29, 40)));
  if (t.account.empty()) return invalid_argument(at + ": field 'account' is blank");
  t.item_trace = std::string(trim(field(seg, 41, 62)));
  t.originator_short_name = std::string(trim(field(seg, 66, 80)));
  t.payee_name = std::string(trim(field(seg, 81, 110)));
  if (t.payee_name.empty()) return invalid_argument(at + ": field 'payee_name' is blank");
  t.originator_long_name = std::string(trim(field(seg, 111, 140)));
  t.originator_user_id = std::string(trim(field(seg, 141, 150)));
  t.cross_reference = std::string(trim(field(seg, 151, 169)));
  std::string_view rinst = trim(field(seg, 170, 178));
  if (!rinst.empty()) {
    if (rinst.size() != 9 || !all_digits(rinst)) {
      return invalid_argument(at + ": field 'return_institution_id' ('" + std::string(rinst) +
                              "') is not 9 digits");
    }
    t.return_institution = std::string(rinst.substr(1, 3));
    t.return_transit = std::string(rinst.substr(4, 5));
  }
  t.return_account = std::string(trim(field(seg, 179, 190)));
  t.sundry = std::string(trim(field(seg, 191, 205)));
  return Status();
}

// Pads or refuses: alphanumeric fields are left-justified and blank-filled, numeric fields
// right-justified and zero-filled, as the standard has them.
Status put_alpha(std::string& rec, std::size_t from, std::size_t to, std::string_view value,
                 std::string_view name, const std::string& at) {
  std::size_t width = to - from + 1;
  if (value.size() > width) {
    return invalid_argument(at + ": field '" + std::string(name) + "' ('" + std::string(value) +
                            "') is longer than " + std::to_string(width) + " characters");
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      return invalid_argument(at + ": field '" + std::string(name) +
                              "' has a character outside printable ASCII");
    }
  }
  rec.replace(from - 1, value.size(), value);
  return Status();
}

Status put_number(std::string& rec, std::size_t from, std::size_t to, std::int64_t value,
                  std::string_view name, const std::string& at) {
  std::size_t width = to - from + 1;
  std::string digits = std::to_string(value);
  if (value < 0 || digits.size() > width) {
    return invalid_argument(at + ": field '" + std::string(name) + "' (" + digits +
                            ") does not fit " + std::to_string(width) + " digits");
  }
  rec.replace(from - 1, width, std::string(width - digits.size(), '0') + digits);
  return Status();
}

Status put_digits(std::string& rec, std::size_t from, std::size_t to, std::string_view value,
                  std::string_view name, const std::string& at) {
  std::size_t width = to - from + 1;
  if (!all_digits(value) || value.size() > width) {
    return invalid_argument(at + ": field '" + std::string(name) + "' ('" + std::string(value) +
                            "') is not a number of at most " + std::to_string(width) + " digits");
  }
  rec.replace(from - 1, width, std::string(width - value.size(), '0') + std::string(value));
  return Status();
}

std::string blank_record(char type, std::int64_t count, const Cpa005Header& h) {
  std::string rec(kCpa005RecordSize, ' ');
  rec[0] = type;
  char buf[24];  // room for any int64, so the formats cannot truncate
  std::snprintf(buf, sizeof buf, "%09lld", static_cast<long long>(count));
  rec.replace(1, 9, buf);
  rec.replace(10, h.originator_id.size(), h.originator_id);
  std::snprintf(buf, sizeof buf, "%04lld", static_cast<long long>(h.file_creation_number));
  rec.replace(20, 4, buf);
  return rec;
}

}  // namespace

Result<Cpa005File> parse_cpa005(std::string_view text) {
  CIVICBUS_ASSIGN_OR_RETURN(std::vector<std::string> records, split_records(text));
  if (records.empty()) return invalid_argument("cpa005: the file has no records");
  Cpa005File file;
  std::int64_t debits = 0, debit_count = 0, credits = 0, credit_count = 0;
  bool trailer_seen = false;
  for (std::size_t i = 0; i < records.size(); ++i) {
    std::string_view rec = records[i];
    auto number = static_cast<std::int64_t>(i + 1);
    std::string at = where(number);
    char type = rec[0];
    if (trailer_seen) return invalid_argument(at + ": a record follows the Z trailer");
    if (i == 0 && type != 'A') {
      return invalid_argument(at + ": the first record must be the A header, not '" +
                              std::string(1, type) + "'");
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::int64_t count,
                              numeric(field(rec, 2, 10), "logical_record_count", at));
    if (count != number) {
      return invalid_argument(at + ": field 'logical_record_count' is " + std::to_string(count) +
                              ", expected " + std::to_string(number));
    }
    std::string originator(trim(field(rec, 11, 20)));
    CIVICBUS_ASSIGN_OR_RETURN(std::int64_t fcn,
                              numeric(field(rec, 21, 24), "file_creation_number", at));
    if (type == 'A') {
      if (i != 0) return invalid_argument(at + ": a second A header");
      file.header.originator_id = originator;
      file.header.file_creation_number = fcn;
      CIVICBUS_ASSIGN_OR_RETURN(file.header.creation_date,
                                julian_to_iso(field(rec, 25, 30), "creation_date", at));
      file.header.destination_data_centre = std::string(trim(field(rec, 31, 35)));
      file.header.currency = std::string(trim(field(rec, 56, 58)));
      if (originator.empty()) return invalid_argument(at + ": field 'originator_id' is blank");
      continue;
    }
    if (originator != file.header.originator_id) {
      return invalid_argument(at + ": field 'originator_id' ('" + originator +
                              "') differs from the header's ('" + file.header.originator_id + "')");
    }
    if (fcn != file.header.file_creation_number) {
      return invalid_argument(at + ": field 'file_creation_number' (" + std::to_string(fcn) +
                              ") differs from the header's (" +
                              std::to_string(file.header.file_creation_number) + ")");
    }
    if (type == 'C' || type == 'D') {
      int used = 0;
      for (int s = 0; s < 6; ++s) {
        std::string_view seg =
            rec.substr(24 + static_cast<std::size_t>(s) * kCpa005SegmentSize, kCpa005SegmentSize);
        // Unused segments are blank, or zero-filled by some originators.
        if (all_blank(seg) ||
            (s > 0 && all_blank(field(seg, 1, 3)) &&
             trim(field(seg, 4, 13)).find_first_not_of('0') == std::string_view::npos)) {
          continue;
        }
        Cpa005Transaction t;
        t.record_type = type;
        t.record_number = number;
        t.segment = s + 1;
        CIVICBUS_RETURN_IF_ERROR(parse_segment(seg, where(number, s + 1), t));
        (type == 'C' ? credits : debits) += t.amount_cents;
        ++(type == 'C' ? credit_count : debit_count);
        file.transactions.push_back(std::move(t));
        ++used;
      }
      if (used == 0)
        return invalid_argument(at + ": a " + std::string(1, type) +
                                " record with no transaction in any segment");
      continue;
    }
    if (type == 'Z') {
      trailer_seen = true;
      struct Total {
        std::size_t from, to;
        const char* name;
        std::int64_t expected;
      };
      const Total totals[] = {
          {25, 38, "total_value_of_debits", debits},
          {39, 46, "total_number_of_debits", debit_count},
          {47, 60, "total_value_of_credits", credits},
          {61, 68, "total_number_of_credits", credit_count},
          {69, 82, "total_value_of_error_corrections_e", 0},
          {83, 90, "total_number_of_error_corrections_e", 0},
          {91, 104, "total_value_of_error_corrections_f", 0},
          {105, 112, "total_number_of_error_corrections_f", 0},
      };
      for (const auto& total : totals) {
        std::string_view raw = field(rec, total.from, total.to);
        // Blank E/F totals are common in files from originators that never send them.
        if (total.from >= 69 && all_blank(raw)) continue;
        CIVICBUS_ASSIGN_OR_RETURN(std::int64_t value, numeric(raw, total.name, at));
        if (value != total.expected) {
          return invalid_argument(at + " (Z trailer): field '" + std::string(total.name) + "' is " +
                                  std::to_string(value) + " but the detail records add up to " +
                                  std::to_string(total.expected));
        }
      }
      continue;
    }
    return invalid_argument(at + ": logical record type '" + std::string(1, type) +
                            "' is not supported (A, C, D, Z)");
  }
  if (!trailer_seen) {
    return invalid_argument("cpa005 record " + std::to_string(records.size() + 1) +
                            ": the Z trailer is missing (the file is truncated?)");
  }
  file.record_count = static_cast<std::int64_t>(records.size());
  return file;
}

Result<std::string> write_cpa005(const Cpa005Header& header,
                                 const std::vector<Cpa005Transaction>& transactions) {
  const std::string hat = "cpa005 header";
  if (header.originator_id.empty() || header.originator_id.size() > 10) {
    return invalid_argument(hat + ": field 'originator_id' must be 1 to 10 characters");
  }
  if (header.file_creation_number < 1 || header.file_creation_number > 9999) {
    return invalid_argument(hat + ": field 'file_creation_number' must be 1-9999");
  }
  std::string out;
  std::int64_t count = 1;
  {
    std::string a = blank_record('A', count, header);
    CIVICBUS_RETURN_IF_ERROR(put_alpha(a, 11, 20, header.originator_id, "originator_id", hat));
    CIVICBUS_ASSIGN_OR_RETURN(std::string date,
                              iso_to_julian(header.creation_date, "creation_date", hat));
    a.replace(24, 6, date);
    CIVICBUS_RETURN_IF_ERROR(
        put_digits(a, 31, 35, header.destination_data_centre, "destination_data_centre", hat));
    CIVICBUS_RETURN_IF_ERROR(put_alpha(a, 56, 58, header.currency, "currency", hat));
    out += a + "\r\n";
  }
  std::int64_t debits = 0, debit_count = 0, credits = 0, credit_count = 0;
  std::string rec;
  int segments = 0;
  char rec_type = 0;
  auto flush = [&] {
    if (segments > 0) out += rec + "\r\n";
    segments = 0;
  };
  for (std::size_t i = 0; i < transactions.size(); ++i) {
    const auto& t = transactions[i];
    std::string at = "cpa005 transaction " + std::to_string(i);
    if (t.record_type != 'C' && t.record_type != 'D') {
      return invalid_argument(at + ": field 'record_type' must be C or D");
    }
    if (segments == 6 || (segments > 0 && rec_type != t.record_type)) flush();
    if (segments == 0) {
      rec = blank_record(t.record_type, ++count, header);
      rec_type = t.record_type;
    }
    std::string seg(kCpa005SegmentSize, ' ');
    if (t.transaction_type.size() != 3 || !all_digits(t.transaction_type)) {
      return invalid_argument(at + ": field 'transaction_type' ('" + t.transaction_type +
                              "') is not a 3-digit transaction code");
    }
    seg.replace(0, 3, t.transaction_type);
    if (t.amount_cents <= 0) {
      return invalid_argument(at + ": field 'amount_cents' must be positive");
    }
    CIVICBUS_RETURN_IF_ERROR(put_number(seg, 4, 13, t.amount_cents, "amount_cents", at));
    CIVICBUS_ASSIGN_OR_RETURN(std::string due, iso_to_julian(t.due_date, "due_date", at));
    seg.replace(13, 6, due);
    if (t.institution.size() != 3 || !all_digits(t.institution)) {
      return invalid_argument(at + ": field 'institution' ('" + t.institution +
                              "') is not 3 digits");
    }
    if (t.transit.size() != 5 || !all_digits(t.transit)) {
      return invalid_argument(at + ": field 'transit' ('" + t.transit + "') is not 5 digits");
    }
    seg.replace(19, 9, "0" + t.institution + t.transit);
    if (t.account.empty()) return invalid_argument(at + ": field 'account' is empty");
    CIVICBUS_RETURN_IF_ERROR(put_alpha(seg, 29, 40, t.account, "account", at));
    seg.replace(40, 25, std::string(25, '0'));  // item trace and stored type: filled by the bank
    CIVICBUS_RETURN_IF_ERROR(
        put_alpha(seg, 66, 80, t.originator_short_name, "originator_short_name", at));
    if (t.payee_name.empty()) return invalid_argument(at + ": field 'payee_name' is empty");
    CIVICBUS_RETURN_IF_ERROR(put_alpha(seg, 81, 110, t.payee_name, "payee_name", at));
    CIVICBUS_RETURN_IF_ERROR(
        put_alpha(seg, 111, 140, t.originator_long_name, "originator_long_name", at));
    CIVICBUS_RETURN_IF_ERROR(put_alpha(
        seg, 141, 150, t.originator_user_id.empty() ? header.originator_id : t.originator_user_id,
        "originator_user_id", at));
    CIVICBUS_RETURN_IF_ERROR(put_alpha(seg, 151, 169, t.cross_reference, "cross_reference", at));
    if (!t.return_institution.empty() || !t.return_transit.empty()) {
      if (t.return_institution.size() != 3 || !all_digits(t.return_institution) ||
          t.return_transit.size() != 5 || !all_digits(t.return_transit)) {
        return invalid_argument(at +
                                ": fields 'return_institution' and 'return_transit' must "
                                "be 3 and 5 digits");
      }
      seg.replace(169, 9, "0" + t.return_institution + t.return_transit);
    }
    CIVICBUS_RETURN_IF_ERROR(put_alpha(seg, 179, 190, t.return_account, "return_account", at));
    CIVICBUS_RETURN_IF_ERROR(put_alpha(seg, 191, 205, t.sundry, "sundry", at));
    rec.replace(24 + static_cast<std::size_t>(segments) * kCpa005SegmentSize, kCpa005SegmentSize,
                seg);
    ++segments;
    if (t.record_type == 'C') {
      credits += t.amount_cents;
      ++credit_count;
    } else {
      debits += t.amount_cents;
      ++debit_count;
    }
  }
  flush();
  std::string z = blank_record('Z', ++count, header);
  const std::string zat = "cpa005 trailer";
  CIVICBUS_RETURN_IF_ERROR(put_number(z, 25, 38, debits, "total_value_of_debits", zat));
  CIVICBUS_RETURN_IF_ERROR(put_number(z, 39, 46, debit_count, "total_number_of_debits", zat));
  CIVICBUS_RETURN_IF_ERROR(put_number(z, 47, 60, credits, "total_value_of_credits", zat));
  CIVICBUS_RETURN_IF_ERROR(put_number(z, 61, 68, credit_count, "total_number_of_credits", zat));
  z.replace(68, 44, std::string(44, '0'));
  out += z + "\r\n";
  return out;
}

namespace {

const std::vector<std::string>& transaction_columns() {
  static const std::vector<std::string> kColumns = {"originator_id",
                                                    "file_creation_number",
                                                    "file_creation_date",
                                                    "destination_data_centre",
                                                    "currency",
                                                    "record_number",
                                                    "segment",
                                                    "record_type",
                                                    "transaction_type",
                                                    "amount_cents",
                                                    "due_date",
                                                    "institution",
                                                    "transit",
                                                    "account",
                                                    "item_trace",
                                                    "originator_short_name",
                                                    "payee_name",
                                                    "originator_long_name",
                                                    "originator_user_id",
                                                    "cross_reference",
                                                    "return_institution",
                                                    "return_transit",
                                                    "return_account",
                                                    "sundry"};
  return kColumns;
}

StreamSpec transaction_stream() {
  StreamSpec s;
  s.name = "transactions";
  for (const auto& c : transaction_columns()) {
    FieldType type = FieldType::kString;
    if (c == "file_creation_number" || c == "record_number" || c == "segment" ||
        c == "amount_cents") {
      type = FieldType::kInteger;
    } else if (c == "file_creation_date" || c == "due_date") {
      type = FieldType::kDate;
    }
    s.fields.push_back({c, type, !(c == "amount_cents" || c == "record_type")});
  }
  s.primary_key = {"originator_id", "file_creation_number", "record_number", "segment"};
  return s;
}

Json opt(const std::string& s) {
  return s.empty() ? Json() : Json(s);
}

class Cpa005Connector : public Connector {
 public:
  Cpa005Connector() {
    spec_.name = "cpa005";
    spec_.title = "CPA 005 automated funds transfer file";
    spec_.description =
        "Reads and writes Payments Canada Standard 005 EFT files (A header, C credits, D "
        "debits, Z trailer; 1464-byte records of six 240-byte segments). Trailer totals are "
        "checked on read and computed on write.";
    spec_.format_source = "Payments Canada Standard 005";
    spec_.is_source = true;
    spec_.is_sink = true;
    spec_.config_schema = Json::object({
        {"type", "object"},
        {"required", Json::array({"path"})},
        {"properties",
         Json::object({
             {"path", Json::object({{"type", "string"},
                                    {"description",
                                     "File to read, or to write ('{n}' is replaced by the "
                                     "file creation number)"}})},
             {"originator_id", Json::object({{"type", "string"}, {"maxLength", 10}})},
             {"file_creation_number",
              Json::object({{"type", "integer"}, {"minimum", 1}, {"maximum", 9999}})},
             {"destination_data_centre", Json::object({{"type", "string"}})},
             {"currency", Json::object({{"type", "string"}, {"maxLength", 3}})},
             {"originator_short_name", Json::object({{"type", "string"}, {"maxLength", 15}})},
             {"originator_long_name", Json::object({{"type", "string"}, {"maxLength", 30}})},
             {"creation_date", Json::object({{"type", "string"}, {"format", "date"}})},
         })},
    });
  }

  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    std::string path = context.config.get_string("path");
    std::error_code ec;
    bool exists = path.find("{n}") == std::string::npos && std::filesystem::exists(path, ec);
    // A sink's config names an originator and a file that may not exist yet.
    if (!exists && !context.config.get_string("originator_id").empty()) return Status();
    CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_file_bytes(path));
    auto parsed = parse_cpa005(text);
    if (!parsed.ok()) return parsed.status().with_context("'" + path + "'");
    return Status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    return std::vector<StreamSpec>{transaction_stream()};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    if (!wants_stream(request, "transactions")) return Status();
    std::string path = context.config.get_string("path");
    CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_file_bytes(path));
    auto parsed = parse_cpa005(text);
    if (!parsed.ok()) return parsed.status().with_context("'" + path + "'");
    const Cpa005File& f = *parsed;
    std::vector<Record> records;
    for (const auto& t : f.transactions) {
      Record r;
      r.position = t.record_number;
      r.values = {f.header.originator_id,
                  f.header.file_creation_number,
                  f.header.creation_date,
                  opt(f.header.destination_data_centre),
                  opt(f.header.currency),
                  t.record_number,
                  t.segment,
                  std::string(1, t.record_type),
                  t.transaction_type,
                  t.amount_cents,
                  t.due_date,
                  t.institution,
                  t.transit,
                  t.account,
                  opt(t.item_trace),
                  opt(t.originator_short_name),
                  t.payee_name,
                  opt(t.originator_long_name),
                  opt(t.originator_user_id),
                  opt(t.cross_reference),
                  opt(t.return_institution),
                  opt(t.return_transit),
                  opt(t.return_account),
                  opt(t.sundry)};
      records.push_back(std::move(r));
    }
    std::int64_t budget = request.max_records;
    return emit_records(out, request, "transactions", transaction_columns(), std::move(records),
                        budget, Json());
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest&,
                            const RecordBatch& batch) override {
    CIVICBUS_RETURN_IF_ERROR(validate_config(spec_, context.config));
    const Json& c = context.config;
    Cpa005Header header;
    header.originator_id = c.get_string("originator_id");
    if (header.originator_id.empty()) {
      return invalid_argument("cpa005 sink needs 'originator_id' in its config");
    }
    header.file_creation_number =
        next_file_number_ > 0 ? next_file_number_ : c.get_int("file_creation_number", 1);
    header.destination_data_centre = c.get_string("destination_data_centre", "00000");
    header.currency = c.get_string("currency", "CAD");
    header.creation_date = c.get_string("creation_date");
    if (header.creation_date.empty()) {
      auto days = std::chrono::floor<std::chrono::days>(context.now());
      std::chrono::year_month_day ymd{days};
      header.creation_date =
          format_date(static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                      static_cast<unsigned>(ymd.day()));
    }
    WriteResult result;
    std::vector<Cpa005Transaction> accepted;
    for (const auto& record : batch.records) {
      auto get = [&](std::string_view col) {
        return json_text(RecordBatch::value(record, batch.column_index(col)));
      };
      Cpa005Transaction t;
      std::string type = get("record_type");
      t.record_type = type.empty() ? 'C' : type[0];
      t.transaction_type = get("transaction_type");
      const Json& amount = RecordBatch::value(record, batch.column_index("amount_cents"));
      if (amount.is_int()) {
        t.amount_cents = amount.as_int();
      } else if (auto cents =
                     json_cents(RecordBatch::value(record, batch.column_index("amount")))) {
        t.amount_cents = *cents;
      } else {
        result.rejected.push_back(
            {record.position, "amount_cents", json_text(amount), "not an integer amount in cents"});
        continue;
      }
      t.due_date = get("due_date");
      t.institution = get("institution");
      t.transit = get("transit");
      t.account = get("account");
      t.payee_name = get("payee_name");
      t.cross_reference = get("cross_reference");
      t.originator_short_name = get("originator_short_name");
      if (t.originator_short_name.empty()) {
        t.originator_short_name = c.get_string("originator_short_name");
      }
      t.originator_long_name = get("originator_long_name");
      if (t.originator_long_name.empty()) {
        t.originator_long_name = c.get_string("originator_long_name");
      }
      t.return_institution = get("return_institution");
      t.return_transit = get("return_transit");
      t.return_account = get("return_account");
      t.sundry = get("sundry");
      // Validates the one transaction by writing it alone, so a bad record is rejected with
      // its field while the others go into the file.
      auto alone = write_cpa005(header, {t});
      if (!alone.ok()) {
        std::string message = alone.status().message();
        std::string field_name;
        auto q = message.find("field '");
        if (q != std::string::npos) {
          auto e = message.find('\'', q + 7);
          field_name = message.substr(q + 7, e - q - 7);
        }
        result.rejected.push_back({record.position, field_name, "", message});
        continue;
      }
      accepted.push_back(std::move(t));
    }
    if (accepted.empty()) return result;
    CIVICBUS_ASSIGN_OR_RETURN(std::string text, write_cpa005(header, accepted));
    std::string path = expand_sequence(c.get_string("path"), header.file_creation_number, 4);
    CIVICBUS_RETURN_IF_ERROR(write_file_atomically(path, text));
    // The next file of this connection gets the next number (9999 wraps to 1).
    next_file_number_ = header.file_creation_number % 9999 + 1;
    result.written = static_cast<std::int64_t>(accepted.size());
    return result;
  }

 private:
  ConnectorSpec spec_;
  std::int64_t next_file_number_ = 0;
};

}  // namespace

std::unique_ptr<Connector> make_cpa005_connector() {
  return std::make_unique<Cpa005Connector>();
}

}  // namespace civicbus::connect::detail

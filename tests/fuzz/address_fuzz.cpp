// Fuzz target: the Canadian address normaliser (include/civicbus/match/address.hpp), which
// the match engine's address comparisons and the pipeline's normalize_address stage run on
// every record.
//
// The input is read twice: as one line ("104-2701 23rd Ave SW, Regina SK S4S1E5") and as
// fields split on '|' (street | municipality | province | postal code; a fifth '|' and what
// follows stay in the postal code). Nothing may crash; an error is kInvalidArgument with a
// message. An address that normalises has a non-empty one_line(), a province that is one of
// the 13 codes, a postal code of the form A1A 1A1 without D F I O Q U and not starting with W
// or Z, whose first letter belongs to the province (a missing province is only left missing
// for X, which NT and NU share); turning off record_corrections changes nothing but the
// corrections; and normalising one_line() again keeps the postal code and the province (for
// field-wise input, normalising the address's own fields again does; see check()).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/match/address.hpp"

namespace {

using civicbus::ErrorCode;
using civicbus::Result;
using civicbus::match::Address;
using civicbus::match::AddressNormalizer;
using civicbus::match::AddressNormalizerOptions;
using civicbus::match::AddressParts;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "address fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

const AddressNormalizer& normalizer(bool record_corrections) {
  static const AddressNormalizer with = [] {
    auto n = AddressNormalizer::create();
    if (!n.ok()) fail("the built-in rules do not load", n.status().to_string());
    return *n;
  }();
  static const AddressNormalizer without = [] {
    AddressNormalizerOptions options;
    options.record_corrections = false;
    auto n = AddressNormalizer::create(options);
    if (!n.ok()) fail("the built-in rules do not load", n.status().to_string());
    return *n;
  }();
  return record_corrections ? with : without;
}

// A province code and the first letters of its postal codes (data/match/address_rules.json).
struct Province {
  std::string_view code;
  std::string_view postal_letters;
};
constexpr Province kProvinces[] = {
    {"NL", "A"}, {"NS", "B"}, {"PE", "C"}, {"NB", "E"}, {"QC", "GHJ"}, {"ON", "KLMNP"}, {"MB", "R"},
    {"SK", "S"}, {"AB", "T"}, {"BC", "V"}, {"NT", "X"}, {"NU", "X"},   {"YT", "Y"},
};

const Province* find_province(std::string_view code) {
  for (const Province& p : kProvinces) {
    if (p.code == code) return &p;
  }
  return nullptr;
}

bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool unused_letter(char c) {
  return std::string_view("DFIOQU").find(c) != std::string_view::npos;
}

// "K1A 0B1": letter digit letter, one space, digit letter digit; no letter Canada Post never
// uses, and no W or Z first.
bool canonical_postal_code(std::string_view p) {
  if (p.size() != 7 || p[3] != ' ') return false;
  for (std::size_t i : {0, 2, 5}) {
    if (!is_upper(p[i]) || unused_letter(p[i])) return false;
  }
  for (std::size_t i : {1, 4, 6}) {
    if (!is_digit(p[i])) return false;
  }
  return p[0] != 'W' && p[0] != 'Z';
}

// Everything but the corrections.
bool same_but_corrections(Address a, Address b) {
  a.corrections.clear();
  b.corrections.clear();
  return a == b;
}

void check_error(const civicbus::Status& status, std::string_view input) {
  if (status.code() != ErrorCode::kInvalidArgument) {
    fail("an error that is not invalid_argument",
         status.to_string() + "\ninput: " + std::string(input));
  }
  if (status.message().empty()) fail("an error without a message", input);
}

// `first` and `second` are the same input normalised with and without recorded corrections;
// `fields` says whether it was given as fields.
void check(const Result<Address>& first, const Result<Address>& second, std::string_view input,
           bool fields) {
  if (first.ok() != second.ok()) {
    fail("record_corrections = false changes whether the address is accepted", input);
  }
  if (!first.ok()) {
    check_error(first.status(), input);
    check_error(second.status(), input);
    return;
  }
  const Address& a = *first;
  if (!same_but_corrections(a, *second)) {
    fail("record_corrections = false changes more than the corrections", input);
  }
  if (!second->corrections.empty()) fail("corrections recorded although turned off", input);
  const std::string line = a.one_line();
  if (line.empty()) fail("an accepted address with an empty one_line()", input);

  const Province* province = nullptr;
  if (!a.province.empty()) {
    province = find_province(a.province);
    if (province == nullptr) fail("a province that is not one of the 13 codes", line);
  }
  if (!a.postal_code.empty()) {
    if (!canonical_postal_code(a.postal_code)) {
      fail("a postal code not of the form A1A 1A1 with Canada Post's letters", line);
    }
    if (province != nullptr &&
        province->postal_letters.find(a.postal_code[0]) == std::string_view::npos) {
      fail("a postal code whose first letter belongs to another province", line);
    }
    // infer_province_from_postal_code is on: only X (NT or NU) leaves the province unknown.
    if (province == nullptr && a.postal_code[0] != 'X') {
      fail("a postal code whose province was not inferred", line);
    }
  }

  // The canonical line read again: the last line is unambiguous, so the postal code and the
  // province stay (a one-line reader may split some street names otherwise, docs/match.md).
  const Result<Address> again = normalizer(true).normalize(line);
  if (!again.ok()) {
    check_error(again.status(), line);
  } else if (!fields) {
    if (again->postal_code != a.postal_code) {
      fail("one_line() read again changes the postal code", line);
    }
    if (again->province != a.province) fail("one_line() read again changes the province", line);
  }
  if (!fields) return;
  // A field-wise street line is delimited, so all of it is street: "1 Main St, Ottawa ON K1P
  // 1J1" in the street column is a street named MAIN ST OTTAWA ON K1P 1J1, whose one_line()
  // a one-line reader ends with a province and a postal code. Field-wise addresses are read
  // again as fields (as the address table does for its idem=fields rows).
  const std::string street = a.street_line();
  const AddressParts parts{street, a.municipality, a.province, a.postal_code};
  const Result<Address> fields_again = normalizer(true).normalize(parts);
  if (!fields_again.ok()) {
    check_error(fields_again.status(), line);
    return;
  }
  if (fields_again->postal_code != a.postal_code) {
    fail("the fields read again change the postal code", line);
  }
  if (fields_again->province != a.province) fail("the fields read again change the province", line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Inputs are at most 512 bytes (longer ones are refused); a little more exercises that.
  if (size > 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  check(normalizer(true).normalize(text), normalizer(false).normalize(text), text, false);

  std::string_view field[4];
  std::string_view rest = text;
  for (int i = 0; i < 3; ++i) {
    const std::size_t bar = rest.find('|');
    if (bar == std::string_view::npos) {
      field[i] = rest;
      rest = {};
      break;
    }
    field[i] = rest.substr(0, bar);
    rest.remove_prefix(bar + 1);
  }
  field[3] = rest;
  const AddressParts parts{field[0], field[1], field[2], field[3]};
  check(normalizer(true).normalize(parts), normalizer(false).normalize(parts), text, true);
  return 0;
}

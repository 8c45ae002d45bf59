// Canadian civic address normalisation, English and French, after Canada Post's addressing
// guidelines. The rules (street types, directions, unit designators, provinces and their
// postal-code letters) are data (data/match/address_rules.json, built into the library); the
// parser here only knows the shape of an address line.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::match {

namespace detail {
struct AddressRules;
}  // namespace detail

// The language an address is written in, guessed from its words (street type before or after
// the name, unit designator, direction, ordinal, French particles such as DE, DU, LA).
enum class AddressLanguage { kUnknown, kEnglish, kFrench };

// "en", "fr" or "" (unknown).
CIVICBUS_EXPORT std::string_view address_language_code(AddressLanguage language);

// One normalised Canadian address. Every field is upper case, in Canada Post's symbols (ST,
// BOUL, MONTÉE, SW, QC), accents kept where Canada Post keeps them; empty when absent.
struct CIVICBUS_EXPORT Address {
  std::string unit;                      // "104": printed before the civic number with a hyphen
  std::string unit_designator;           // "APT", "BUREAU"... as given; not printed (Canada Post)
  std::string civic_number;              // "2701"
  std::string civic_suffix;              // "A" (printed attached) or "1/2" (printed after a space)
  std::string street_name;               // "23RD", "PRINCIPALE", "DE LA MONTAGNE"
  std::string street_type;               // "AVE", "RUE"
  bool street_type_before_name = false;  // French types precede the name: "RUE PRINCIPALE"
  std::string street_direction;          // "SW", "O"
  std::string delivery;                  // non-civic delivery: "PO BOX 6001", "CP 123", "RR 6"
  std::string municipality;
  std::string province;     // two-letter code: "QC"
  std::string postal_code;  // "H3L 1T8"
  AddressLanguage language = AddressLanguage::kUnknown;
  // What normalisation changed, one sentence each ("abbreviated street type 'Street' to
  // 'ST'", "postal code 'k1a0b1' formatted as 'K1A 0B1'"). Empty when the input was already
  // canonical.
  std::vector<std::string> corrections;

  // "104-2701 23RD AVE SW" (unit-civic, then type and direction in Canada Post's order).
  std::string street_line() const;
  // "REGINA SK  S4S 1E5": one space before the province, two before the postal code.
  std::string last_line() const;
  // street_line() and last_line() joined by one space; normalising it again gives the same
  // address (for street names the parser can delimit; see docs/match.md).
  std::string one_line() const;

  friend bool operator==(const Address&, const Address&) = default;
};

// An address already split into columns, as in a CSV file. Empty fields are absent.
struct AddressParts {
  std::string_view street_line;  // "104-2701 23rd Ave SW", "123 rue Principale app 3"
  std::string_view municipality;
  std::string_view province;  // code or name, English or French
  std::string_view postal_code;
};

struct AddressNormalizerOptions {
  // A street line must start with a civic number (or be a PO BOX / RR line). When false, a
  // line such as "RUE PRINCIPALE" is accepted with an empty civic number.
  bool require_civic_number = true;
  // A missing province is filled from the postal code's first letter when that letter belongs
  // to exactly one province (recorded as a correction).
  bool infer_province_from_postal_code = true;
  // Describe each correction in Address::corrections. Bulk callers that do not show them
  // (the pipeline's normalize_address stage) turn it off: formatting them costs more than
  // the parse.
  bool record_corrections = true;
};

// Parses and normalises addresses against a set of rules. Immutable once created, so one
// normaliser may be shared by any number of threads; copies share the rules.
class CIVICBUS_EXPORT AddressNormalizer {
 public:
  // With the built-in rules (data/match/address_rules.json).
  static Result<AddressNormalizer> create(AddressNormalizerOptions options = {});
  // With rules of the same shape as data/match/address_rules.json; errors name the entry and
  // the field that is wrong.
  static Result<AddressNormalizer> from_rules(const Json& rules,
                                              AddressNormalizerOptions options = {});

  // One address on one line ("104-2701 23rd Avenue S.W., Regina, Sask. S4S1E5"). Commas, when
  // present, separate the street line from the municipality. kInvalidArgument names what is
  // wrong ("postal code 'D1A 1A1' uses letter D, which Canada Post never uses").
  Result<Address> normalize(std::string_view text) const;
  // The same for an address already split into columns; the street line is parsed alone, so
  // multi-word street names need no delimiter.
  Result<Address> normalize(const AddressParts& parts) const;

  const AddressNormalizerOptions& options() const { return options_; }

 private:
  AddressNormalizer(std::shared_ptr<const detail::AddressRules> rules,
                    AddressNormalizerOptions options)
      : rules_(std::move(rules)), options_(options) {}

  std::shared_ptr<const detail::AddressRules> rules_;
  AddressNormalizerOptions options_;
};

}  // namespace civicbus::match

// The address rule tables (data/match/address_rules.json) in the form normalize() reads: every
// spelling of a street type, direction, unit designator, delivery designator and province is a
// key of a flat hash table, folded (upper case, accents and periods removed, hyphens as
// spaces), so a token costs one hash and one comparison.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::match {

// The text of data/match/address_rules.json as built into the library.
std::string_view builtin_address_rules_json();

namespace detail {

enum class Lang : std::uint8_t { kBoth, kEnglish, kFrench };

// Writes the lookup key of `text` to `out` (upper case ASCII, Latin-1 accents dropped, Œ as
// OE, periods removed, hyphens as spaces). Returns the key's length, or 0 when it would not
// fit in `capacity` or has no letter or digit.
std::size_t fold_key(std::string_view text, char* out, std::size_t capacity);

// Upper-cases ASCII and the Latin-1 letters of UTF-8 text (é -> É, œ -> Œ), same length.
void upper_utf8(std::string_view text, char* out);

// An open-addressing table from folded keys to small values; built once, then read-only.
template <typename V>
class KeyTable {
 public:
  // The value for `key`, inserted default-constructed when absent.
  V& get_or_insert(std::string_view key);
  const V* find(std::string_view key) const;
  std::size_t size() const { return entries_.size(); }

 private:
  static std::uint32_t hash(std::string_view key);
  void grow();

  struct Slot {
    std::uint32_t hash = 0;
    std::int32_t entry = -1;
  };
  std::vector<Slot> slots_;
  std::vector<std::pair<std::string, V>> entries_;
};

// One spelling of a rule entry: which entry, whether it was the long form ("AVENUE"), and
// the language the spelling itself shows ("OUEST" is French even though O is the only code).
struct Spelling {
  std::int16_t entry = -1;
  bool is_long = false;
  Lang lang = Lang::kBoth;
};

// A street-type key may name an English type (AVENUE -> AVE, after the name) and a French one
// (AVENUE -> AV, before the name); the parser picks by position.
struct TypeSpellings {
  Spelling english;
  Spelling french;
};

struct RuleEntry {
  std::string code;  // the Canada Post symbol, accents kept: "MONTÉE", "SW", "APP"
  Lang lang = Lang::kBoth;
  bool before_name = false;  // street types only
};

struct Province {
  std::string code;          // "ON"
  std::string display_name;  // "Ontario", for messages
  std::string letters;       // postal-code first letters: "KLMNP"
};

struct AddressRules {
  std::vector<RuleEntry> street_types;
  std::vector<RuleEntry> directions;
  std::vector<RuleEntry> unit_designators;
  std::vector<RuleEntry> delivery_designators;
  std::vector<RuleEntry> installation_designators;  // STN, SUCC...: after a PO BOX or RR number
  std::vector<Province> provinces;

  KeyTable<TypeSpellings> street_type_keys;
  KeyTable<Spelling> direction_keys;
  KeyTable<Spelling> unit_keys;
  KeyTable<Spelling> delivery_keys;
  KeyTable<Spelling> installation_keys;
  KeyTable<Spelling> province_keys;
  KeyTable<Spelling> particle_keys;  // French articles inside names: DE, DU, LA, L'...
  KeyTable<Spelling> joiner_keys;    // SAINT, STE...: never the last word of a name

  // Longest key, in words, of the multi-word tables (a lookup tries at most this many).
  int max_direction_words = 1;
  int max_delivery_words = 1;
  int max_installation_words = 1;
  int max_province_words = 1;

  // Index 0..25 for A..Z: the province owning that first letter, -1 none, -2 several.
  std::array<std::int8_t, 26> province_by_letter{};
  std::array<bool, 26> unused_letter{};
  std::array<bool, 26> unused_first_letter{};
};

// Builds the tables; errors name the section, the entry and the field
// ("address rules: street_types #4 'AVE': 'position' must be 'before' or 'after'").
Result<AddressRules> build_address_rules(const Json& rules);

}  // namespace detail
}  // namespace civicbus::match

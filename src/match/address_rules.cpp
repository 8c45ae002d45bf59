#include "match/address_rules.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace civicbus::match::detail {
namespace {

// Base letters of U+00C0..U+00DF (and, 0x20 higher, their lower-case forms): À..Þ, ß.
// 0 marks × and ÷, which are not letters.
constexpr char kLatin1Base[32] = {'A', 'A', 'A', 'A', 'A', 'A', 'A', 'C', 'E', 'E', 'E',
                                  'E', 'I', 'I', 'I', 'I', 'D', 'N', 'O', 'O', 'O', 'O',
                                  'O', 0,   'O', 'U', 'U', 'U', 'U', 'Y', 'T', 'S'};

bool is_ascii_alnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int count_words(std::string_view key) {
  return 1 + static_cast<int>(std::count(key.begin(), key.end(), ' '));
}

std::string title_case(std::string_view upper) {
  std::string out;
  bool start = true;
  for (std::size_t i = 0; i < upper.size(); ++i) {
    char c = upper[i];
    if (c == ' ' || c == '-') {
      start = true;
      out += c;
      continue;
    }
    out += (!start && c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    start = false;
  }
  // "Newfoundland And Labrador" reads wrong; English names have no other small words.
  if (auto pos = out.find(" And "); pos != std::string::npos) out.replace(pos, 5, " and ");
  return out;
}

Result<Lang> parse_lang(const Json& entry, std::string_view where) {
  const std::string lang = entry.get_string("lang");
  if (lang == "en") return Lang::kEnglish;
  if (lang == "fr") return Lang::kFrench;
  if (lang == "both") return Lang::kBoth;
  return invalid_argument(
      fmt::format("address rules: {}: 'lang' must be 'en', 'fr' or 'both', not '{}'", where, lang));
}

Result<std::vector<std::string>> string_list(const Json& entry, std::string_view field,
                                             std::string_view where) {
  std::vector<std::string> out;
  const Json* list = entry.find(field);
  if (list == nullptr || list->is_null()) return out;
  if (!list->is_array()) {
    return invalid_argument(
        fmt::format("address rules: {}: '{}' must be an array of strings", where, field));
  }
  for (const Json& item : list->as_array()) {
    if (!item.is_string() || item.as_string().empty()) {
      return invalid_argument(
          fmt::format("address rules: {}: '{}' must hold non-empty strings only", where, field));
    }
    out.push_back(item.as_string());
  }
  return out;
}

Result<std::string> folded(std::string_view text, std::string_view where) {
  char buf[64];
  std::size_t n = fold_key(text, buf, sizeof buf);
  if (n == 0) {
    return invalid_argument(fmt::format(
        "address rules: {}: '{}' is not a usable spelling (no letter or digit, or over 64 bytes)",
        where, text));
  }
  return std::string(buf, n);
}

// Adds one spelling of entry `index` to `table`; two entries may not share a spelling.
Status add_spelling(KeyTable<Spelling>& table, std::string_view text, std::int16_t index,
                    bool is_long, Lang lang, const std::vector<RuleEntry>& entries,
                    std::string_view where, int& max_words) {
  CIVICBUS_ASSIGN_OR_RETURN(std::string key, folded(text, where));
  Spelling& s = table.get_or_insert(key);
  if (s.entry >= 0 && s.entry != index) {
    return invalid_argument(fmt::format("address rules: {}: '{}' is already a spelling of '{}'",
                                        where, text, entries[s.entry].code));
  }
  if (s.entry < 0 || is_long) s = Spelling{index, is_long, lang};
  max_words = std::max(max_words, count_words(key));
  return Status();
}

// Reads a section of {code, lang, long, variants} entries (directions, units, deliveries).
Status load_simple_section(const Json& rules, std::string_view section,
                           std::vector<RuleEntry>& entries, KeyTable<Spelling>& table,
                           int& max_words) {
  const Json* list = rules.find(section);
  if (list == nullptr || !list->is_array()) {
    return invalid_argument(fmt::format("address rules: '{}' must be an array", section));
  }
  for (std::size_t i = 0; i < list->as_array().size(); ++i) {
    const Json& item = list->as_array()[i];
    const std::string code = item.get_string("code");
    const std::string where = fmt::format("{} #{} '{}'", section, i, code);
    if (code.empty()) {
      return invalid_argument(
          fmt::format("address rules: {}: 'code' must be a non-empty string", where));
    }
    CIVICBUS_ASSIGN_OR_RETURN(Lang lang, parse_lang(item, where));
    entries.push_back(RuleEntry{code, lang, false});
    const auto index = static_cast<std::int16_t>(entries.size() - 1);
    CIVICBUS_ASSIGN_OR_RETURN(auto longs, string_list(item, "long", where));
    CIVICBUS_ASSIGN_OR_RETURN(auto variants, string_list(item, "variants", where));
    CIVICBUS_RETURN_IF_ERROR(
        add_spelling(table, code, index, false, lang, entries, where, max_words));
    for (const auto& v : variants) {
      CIVICBUS_RETURN_IF_ERROR(
          add_spelling(table, v, index, false, lang, entries, where, max_words));
    }
    // A long form says its language even where the code is shared: OUEST is French.
    for (const auto& l : longs) {
      Lang spelled = lang;
      if (lang == Lang::kBoth) {
        // Directions list English words first, then French ones (NORTH, NORD).
        CIVICBUS_ASSIGN_OR_RETURN(std::string key, folded(l, where));
        static constexpr std::string_view kFrench[] = {"NORD", "SUD", "EST", "OUEST"};
        spelled = Lang::kEnglish;
        for (auto f : kFrench) {
          if (key.rfind(f, 0) == 0) spelled = Lang::kFrench;
        }
      }
      CIVICBUS_RETURN_IF_ERROR(
          add_spelling(table, l, index, true, spelled, entries, where, max_words));
    }
  }
  return Status();
}

Status load_street_types(const Json& rules, AddressRules& out) {
  const Json* list = rules.find("street_types");
  if (list == nullptr || !list->is_array() || list->as_array().empty()) {
    return invalid_argument("address rules: 'street_types' must be a non-empty array");
  }
  for (std::size_t i = 0; i < list->as_array().size(); ++i) {
    const Json& item = list->as_array()[i];
    const std::string code = item.get_string("code");
    const std::string where = fmt::format("street_types #{} '{}'", i, code);
    if (code.empty()) {
      return invalid_argument(
          fmt::format("address rules: {}: 'code' must be a non-empty string", where));
    }
    CIVICBUS_ASSIGN_OR_RETURN(Lang lang, parse_lang(item, where));
    if (lang == Lang::kBoth) {
      return invalid_argument(fmt::format(
          "address rules: {}: a street type is 'en' or 'fr'; list a shared word under both",
          where));
    }
    const std::string position = item.get_string("position");
    if (position != "before" && position != "after") {
      return invalid_argument(fmt::format(
          "address rules: {}: 'position' must be 'before' or 'after', not '{}'", where, position));
    }
    out.street_types.push_back(RuleEntry{code, lang, position == "before"});
    const auto index = static_cast<std::int16_t>(out.street_types.size() - 1);
    CIVICBUS_ASSIGN_OR_RETURN(auto longs, string_list(item, "long", where));
    CIVICBUS_ASSIGN_OR_RETURN(auto variants, string_list(item, "variants", where));
    auto add = [&](std::string_view text, bool is_long) -> Status {
      CIVICBUS_ASSIGN_OR_RETURN(std::string key, folded(text, where));
      TypeSpellings& t = out.street_type_keys.get_or_insert(key);
      Spelling& s = lang == Lang::kEnglish ? t.english : t.french;
      if (s.entry >= 0 && s.entry != index) {
        return invalid_argument(fmt::format(
            "address rules: {}: '{}' is already a spelling of the {} type '{}'", where, text,
            lang == Lang::kEnglish ? "English" : "French", out.street_types[s.entry].code));
      }
      if (s.entry < 0 || is_long) s = Spelling{index, is_long, lang};
      return Status();
    };
    CIVICBUS_RETURN_IF_ERROR(add(code, false));
    for (const auto& v : variants) CIVICBUS_RETURN_IF_ERROR(add(v, false));
    for (const auto& l : longs) CIVICBUS_RETURN_IF_ERROR(add(l, true));
  }
  return Status();
}

Status load_provinces(const Json& rules, AddressRules& out) {
  const Json* list = rules.find("provinces");
  if (list == nullptr || !list->is_array() || list->as_array().empty()) {
    return invalid_argument("address rules: 'provinces' must be a non-empty array");
  }
  out.province_by_letter.fill(-1);
  for (std::size_t i = 0; i < list->as_array().size(); ++i) {
    const Json& item = list->as_array()[i];
    const std::string code = item.get_string("code");
    const std::string where = fmt::format("provinces #{} '{}'", i, code);
    if (code.size() != 2) {
      return invalid_argument(
          fmt::format("address rules: {}: 'code' must be a two-letter code", where));
    }
    const std::string en = item.get_string("en");
    const std::string fr = item.get_string("fr");
    const std::string letters = item.get_string("postal_letters");
    if (en.empty() || fr.empty()) {
      return invalid_argument(
          fmt::format("address rules: {}: 'en' and 'fr' names are required", where));
    }
    if (letters.empty()) {
      return invalid_argument(
          fmt::format("address rules: {}: 'postal_letters' must list at least one letter", where));
    }
    out.provinces.push_back(Province{code, title_case(en), letters});
    const auto index = static_cast<std::int16_t>(out.provinces.size() - 1);
    for (char c : letters) {
      if (c < 'A' || c > 'Z') {
        return invalid_argument(fmt::format(
            "address rules: {}: 'postal_letters' must be upper-case letters A-Z", where));
      }
      std::int8_t& slot = out.province_by_letter[c - 'A'];
      slot = slot == -1 ? static_cast<std::int8_t>(index) : static_cast<std::int8_t>(-2);
    }
    // Provinces are one list for messages, but English and French names are both keys.
    std::vector<RuleEntry> as_entries;
    for (const auto& p : out.provinces) as_entries.push_back(RuleEntry{p.code, Lang::kBoth});
    auto add = [&](std::string_view text, bool is_long, Lang lang) {
      return add_spelling(out.province_keys, text, index, is_long, lang, as_entries, where,
                          out.max_province_words);
    };
    CIVICBUS_RETURN_IF_ERROR(add(code, false, Lang::kBoth));
    CIVICBUS_RETURN_IF_ERROR(add(en, true, Lang::kEnglish));
    if (fr != en) CIVICBUS_RETURN_IF_ERROR(add(fr, true, Lang::kFrench));
    CIVICBUS_ASSIGN_OR_RETURN(auto variants, string_list(item, "variants", where));
    for (const auto& v : variants) CIVICBUS_RETURN_IF_ERROR(add(v, false, Lang::kBoth));
  }
  return Status();
}

Status load_postal_letters(const Json& rules, AddressRules& out) {
  const Json* postal = rules.find("postal_code");
  if (postal == nullptr || !postal->is_object()) {
    return invalid_argument("address rules: 'postal_code' must be an object");
  }
  for (char c : postal->get_string("unused_letters")) {
    if (c < 'A' || c > 'Z') {
      return invalid_argument("address rules: postal_code.unused_letters must be letters A-Z");
    }
    out.unused_letter[c - 'A'] = true;
  }
  for (char c : postal->get_string("unused_first_letters")) {
    if (c < 'A' || c > 'Z') {
      return invalid_argument(
          "address rules: postal_code.unused_first_letters must be letters A-Z");
    }
    out.unused_first_letter[c - 'A'] = true;
  }
  for (const auto& p : out.provinces) {
    for (char c : p.letters) {
      if (out.unused_letter[c - 'A'] || out.unused_first_letter[c - 'A']) {
        return invalid_argument(fmt::format(
            "address rules: province '{}' has postal letter {}, which is listed as unused", p.code,
            c));
      }
    }
  }
  return Status();
}

}  // namespace

std::size_t fold_key(std::string_view text, char* out, std::size_t capacity) {
  std::size_t n = 0;
  bool has_alnum = false;
  auto put = [&](char c) {
    if (n >= capacity) return false;
    out[n++] = c;
    return true;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '.') continue;
    if (c == '-' || c == ' ') {
      if (n > 0 && out[n - 1] != ' ' && !put(' ')) return 0;
      continue;
    }
    if (c < 0x80) {
      has_alnum |= is_ascii_alnum(static_cast<char>(c));
      if (!put(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : static_cast<char>(c))) return 0;
      continue;
    }
    if (c == 0xC3 && i + 1 < text.size()) {
      const auto d = static_cast<unsigned char>(text[i + 1]);
      if (d >= 0x80 && d <= 0xBF) {
        char base = d == 0xBF ? 'Y' : kLatin1Base[(d - 0x80) & 0x1F];
        ++i;
        if (base == 0) continue;
        has_alnum = true;
        if (!put(base)) return 0;
        if ((d & 0xDF) == 0x86 && !put('E')) return 0;  // Æ -> AE
        continue;
      }
    }
    if (c == 0xC5 && i + 1 < text.size() &&
        (static_cast<unsigned char>(text[i + 1]) == 0x92 ||
         static_cast<unsigned char>(text[i + 1]) == 0x93)) {
      ++i;
      has_alnum = true;
      if (!put('O') || !put('E')) return 0;
      continue;
    }
    if (!put(static_cast<char>(c))) return 0;
  }
  while (n > 0 && out[n - 1] == ' ') --n;
  return has_alnum ? n : 0;
}

void upper_utf8(std::string_view text, char* out) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 'a' && c <= 'z') {
      out[i] = static_cast<char>(c - 32);
    } else if (c == 0xC3 && i + 1 < text.size()) {
      const auto d = static_cast<unsigned char>(text[i + 1]);
      out[i] = text[i];
      // à..þ -> À..Þ, except ÷ (0xB7); ÿ has its capital in another block and stays.
      out[i + 1] =
          (d >= 0xA0 && d <= 0xBE && d != 0xB7) ? static_cast<char>(d - 0x20) : text[i + 1];
      ++i;
    } else if (c == 0xC5 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) == 0x93) {
      out[i] = text[i];
      out[i + 1] = static_cast<char>(0x92);  // œ -> Œ
      ++i;
    } else {
      out[i] = text[i];
    }
  }
}

template <typename V>
std::uint32_t KeyTable<V>::hash(std::string_view key) {
  std::uint32_t h = 2166136261u;  // FNV-1a: keys are a few bytes, this is enough
  for (char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

template <typename V>
void KeyTable<V>::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
  const std::size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.entry < 0) continue;
    std::size_t i = s.hash & mask;
    while (slots_[i].entry >= 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

template <typename V>
V& KeyTable<V>::get_or_insert(std::string_view key) {
  if ((entries_.size() + 1) * 2 > slots_.size()) grow();
  const std::uint32_t h = hash(key);
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = h & mask;
  while (slots_[i].entry >= 0) {
    if (slots_[i].hash == h && entries_[slots_[i].entry].first == key) {
      return entries_[slots_[i].entry].second;
    }
    i = (i + 1) & mask;
  }
  slots_[i] = Slot{h, static_cast<std::int32_t>(entries_.size())};
  entries_.emplace_back(std::string(key), V{});
  return entries_.back().second;
}

template <typename V>
const V* KeyTable<V>::find(std::string_view key) const {
  if (slots_.empty()) return nullptr;
  const std::uint32_t h = hash(key);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask; slots_[i].entry >= 0; i = (i + 1) & mask) {
    if (slots_[i].hash == h && entries_[slots_[i].entry].first == key) {
      return &entries_[slots_[i].entry].second;
    }
  }
  return nullptr;
}

template class KeyTable<Spelling>;
template class KeyTable<TypeSpellings>;

Result<AddressRules> build_address_rules(const Json& rules) {
  if (!rules.is_object()) return invalid_argument("address rules: must be a JSON object");
  AddressRules out;
  CIVICBUS_RETURN_IF_ERROR(load_street_types(rules, out));
  int unused_words = 1;
  CIVICBUS_RETURN_IF_ERROR(load_simple_section(rules, "directions", out.directions,
                                               out.direction_keys, out.max_direction_words));
  CIVICBUS_RETURN_IF_ERROR(load_simple_section(rules, "unit_designators", out.unit_designators,
                                               out.unit_keys, unused_words));
  CIVICBUS_RETURN_IF_ERROR(load_simple_section(rules, "delivery_designators",
                                               out.delivery_designators, out.delivery_keys,
                                               out.max_delivery_words));
  // Optional, so rule documents written before it still load.
  if (rules.find("installation_designators") != nullptr) {
    CIVICBUS_RETURN_IF_ERROR(
        load_simple_section(rules, "installation_designators", out.installation_designators,
                            out.installation_keys, out.max_installation_words));
  }
  CIVICBUS_RETURN_IF_ERROR(load_provinces(rules, out));
  CIVICBUS_RETURN_IF_ERROR(load_postal_letters(rules, out));
  CIVICBUS_ASSIGN_OR_RETURN(auto particles,
                            string_list(rules, "french_particles", "french_particles"));
  for (const auto& p : particles) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string key, folded(p, "french_particles"));
    out.particle_keys.get_or_insert(key) = Spelling{0, false, Lang::kFrench};
  }
  CIVICBUS_ASSIGN_OR_RETURN(auto joiners, string_list(rules, "name_joiners", "name_joiners"));
  for (const auto& j : joiners) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string key, folded(j, "name_joiners"));
    out.joiner_keys.get_or_insert(key) = Spelling{0, false, Lang::kBoth};
  }
  return out;
}

}  // namespace civicbus::match::detail

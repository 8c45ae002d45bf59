#include "civicbus/match/address.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <string>
#include <vector>

#include "match/address_rules.hpp"

namespace civicbus::match {
namespace {

const AddressNormalizer& normalizer() {
  static const AddressNormalizer n = [] {
    auto created = AddressNormalizer::create();
    REQUIRE_MESSAGE(created.ok(), created.status().to_string());
    return *created;
  }();
  return n;
}

Address ok(std::string_view text) {
  auto r = normalizer().normalize(text);
  INFO("input: ", std::string(text));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return *r;
}

Status fails(std::string_view text) {
  auto r = normalizer().normalize(text);
  INFO("input: ", std::string(text));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  return r.status();
}

bool has_correction(const Address& a, std::string_view text) {
  return std::any_of(a.corrections.begin(), a.corrections.end(),
                     [&](const std::string& c) { return c == text; });
}

std::string corrections_of(const Address& a) {
  std::string out;
  for (const auto& c : a.corrections) out += c + "\n";
  return out;
}

// Normalising a canonical line again changes nothing and corrects nothing.
void check_idempotent(const Address& a) {
  const std::string line = a.one_line();
  auto again = normalizer().normalize(line);
  INFO("canonical: ", line);
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(again->one_line() == line);
  CHECK(again->unit == a.unit);
  CHECK(again->civic_number == a.civic_number);
  CHECK(again->civic_suffix == a.civic_suffix);
  CHECK(again->street_name == a.street_name);
  CHECK(again->street_type == a.street_type);
  CHECK(again->street_direction == a.street_direction);
  CHECK(again->municipality == a.municipality);
  CHECK(again->province == a.province);
  CHECK(again->postal_code == a.postal_code);
  CHECK(again->language == a.language);
  CHECK_MESSAGE(again->corrections.empty(), corrections_of(*again));
}

TEST_CASE("address: Canada Post's own examples are already canonical") {
  struct Case {
    const char* text;
    const char* unit;
    const char* civic;
    const char* name;
    const char* type;
    const char* dir;
    const char* municipality;
    const char* province;
    const char* postal;
  };
  const Case cases[] = {
      {"104-2701 23RD AVE SW REGINA SK  S4S 1E5", "104", "2701", "23RD", "AVE", "SW", "REGINA",
       "SK", "S4S 1E5"},
      {"11D JESSOME ST GLACE BAY NS  B1A 5H9", "", "11", "JESSOME", "ST", "", "GLACE BAY", "NS",
       "B1A 5H9"},
      {"225 RUE FLEURY O MONTREAL QC  H3L 1T8", "", "225", "FLEURY", "RUE", "O", "MONTREAL", "QC",
       "H3L 1T8"},
      {"123 MAIN ST OTTAWA ON  K1A 0B1", "", "123", "MAIN", "ST", "", "OTTAWA", "ON", "K1A 0B1"},
      {"10 KING ST E TORONTO ON  M5C 1C3", "", "10", "KING", "ST", "E", "TORONTO", "ON", "M5C 1C3"},
  };
  for (const auto& c : cases) {
    Address a = ok(c.text);
    CHECK(a.unit == c.unit);
    CHECK(a.civic_number == c.civic);
    CHECK(a.street_name == c.name);
    CHECK(a.street_type == c.type);
    CHECK(a.street_direction == c.dir);
    CHECK(a.municipality == c.municipality);
    CHECK(a.province == c.province);
    CHECK(a.postal_code == c.postal);
    CHECK(a.one_line() == c.text);
    CHECK_MESSAGE(a.corrections.empty(), corrections_of(a));
  }
}

TEST_CASE("address: English addresses in everyday spellings") {
  SUBCASE("long street type, lower case, postal code without space") {
    Address a = ok("123 Main Street, Ottawa, Ontario k1a0b1");
    CHECK(a.one_line() == "123 MAIN ST OTTAWA ON  K1A 0B1");
    CHECK(has_correction(a, "abbreviated street type 'Street' to 'ST'"));
    CHECK(has_correction(a, "wrote province 'Ontario' as 'ON'"));
    CHECK(has_correction(a, "postal code 'k1a0b1' formatted as 'K1A 0B1'"));
    CHECK(a.language == AddressLanguage::kEnglish);
    check_idempotent(a);
  }
  SUBCASE("unit after the street with a designator moves before the civic number") {
    Address a = ok("2701 23rd Avenue SW Unit 104, Regina, SK S4S 1E5");
    CHECK(a.unit == "104");
    CHECK(a.unit_designator == "UNIT");
    CHECK(a.street_direction == "SW");
    CHECK(a.one_line() == "104-2701 23RD AVE SW REGINA SK  S4S 1E5");
    CHECK(has_correction(a, "moved unit 'Unit 104' before the civic number as '104-2701'"));
    check_idempotent(a);
  }
  SUBCASE("unit after the street without commas") {
    Address a = ok("415 HERITAGE CRES UNIT 102 SASKATOON SK S7H 5M5");
    CHECK(a.street_name == "HERITAGE");
    CHECK(a.street_type == "CRES");
    CHECK(a.unit == "102");
    CHECK(a.municipality == "SASKATOON");
    CHECK(a.one_line() == "102-415 HERITAGE CRES SASKATOON SK  S7H 5M5");
    check_idempotent(a);
  }
  SUBCASE("apartment, periods and a spelled-out direction") {
    Address a = ok("55 Queen St. West, Apt. 4B, Toronto, Ont. M5H 2M4");
    CHECK(a.street_name == "QUEEN");
    CHECK(a.street_type == "ST");
    CHECK(a.street_direction == "W");
    CHECK(a.unit == "4B");
    CHECK(a.unit_designator == "APT");
    CHECK(a.one_line() == "4B-55 QUEEN ST W TORONTO ON  M5H 2M4");
    CHECK(has_correction(a, "abbreviated direction 'West' to 'W'"));
    CHECK(has_correction(a, "wrote province 'Ont.' as 'ON'"));
    check_idempotent(a);
  }
  SUBCASE("suite before the street, hash unit, multi-word names") {
    Address a = ok("Suite 200, 1500 West Georgia Street, Vancouver, British Columbia V6G 2Z6");
    CHECK(a.unit == "200");
    CHECK(a.unit_designator == "SUITE");
    CHECK(a.street_name == "WEST GEORGIA");
    CHECK(a.province == "BC");
    CHECK(a.one_line() == "200-1500 WEST GEORGIA ST VANCOUVER BC  V6G 2Z6");
    Address b = ok("#12 350 Lakeshore Road East, Oakville ON L6J 1J3");
    CHECK(b.unit == "12");
    CHECK(b.street_name == "LAKESHORE");
    CHECK(b.street_type == "RD");
    CHECK(b.street_direction == "E");
    CHECK(b.one_line() == "12-350 LAKESHORE RD E OAKVILLE ON  L6J 1J3");
  }
  SUBCASE("ordinals are written Canada Post's way") {
    Address a = ok("2701 23 rd Ave, Regina SK S4S 1E5");
    CHECK(a.street_name == "23RD");
    CHECK(has_correction(a, "joined ordinal '23 rd' as '23RD'"));
    Address b = ok("10 21th Street, Saskatoon, SK S7K 0A1");
    CHECK(b.street_name == "21ST");
    CHECK(has_correction(b, "corrected ordinal '21th' to '21ST'"));
    Address c = ok("7 11ST AVE CALGARY AB T2P 0A1");
    CHECK(c.street_name == "11TH");
    Address d = ok("1 112nd St NW, Edmonton AB T6G 2R3");
    CHECK(d.street_name == "112TH");
    CHECK(d.street_direction == "NW");
  }
  SUBCASE("numeric street names: 16 AVE is a name, 304 1234 a unit and a civic number") {
    Address a = ok("123 16 Ave NW, Calgary AB T2M 0H4");
    CHECK(a.unit.empty());
    CHECK(a.civic_number == "123");
    CHECK(a.street_name == "16");
    CHECK(a.one_line() == "123 16 AVE NW CALGARY AB  T2M 0H4");
    Address b = ok("304 1234 Main Street, Vancouver BC V6A 2W3");
    CHECK(b.unit == "304");
    CHECK(b.civic_number == "1234");
    CHECK(has_correction(b, "joined unit '304' to the civic number as '304-1234'"));
    check_idempotent(b);
  }
  SUBCASE("civic number suffixes") {
    Address a = ok("123A Elm St, Halifax NS B3H 1A1");
    CHECK(a.civic_number == "123");
    CHECK(a.civic_suffix == "A");
    CHECK(a.one_line() == "123A ELM ST HALIFAX NS  B3H 1A1");
    Address b = ok("123 1/2 Elm St, Halifax NS B3H 1A1");
    CHECK(b.civic_suffix == "1/2");
    CHECK(b.one_line() == "123 1/2 ELM ST HALIFAX NS  B3H 1A1");
    check_idempotent(b);
    Address c = ok("123\xC2\xBD Elm St, Halifax NS B3H 1A1");  // 123½
    CHECK(c.civic_suffix == "1/2");
    Address d = ok("123 B Elm St, Halifax NS B3H 1A1");
    CHECK(d.civic_suffix == "B");
    CHECK(has_correction(d, "joined civic suffix 'B' to the civic number as '123B'"));
    Address e = ok("123-B Elm St, Halifax NS B3H 1A1");
    CHECK(e.civic_suffix == "B");
    CHECK(e.unit.empty());
  }
  SUBCASE("a leading abbreviated direction moves to the end") {
    Address a = ok("100 N Main St, Moose Jaw SK S6H 0W1");
    CHECK(a.street_name == "MAIN");
    CHECK(a.street_direction == "N");
    CHECK(a.one_line() == "100 MAIN ST N MOOSE JAW SK  S6H 0W1");
    CHECK(has_correction(a, "moved direction 'N' to the end of the street line"));
    // Spelled out, it is part of the name (South Service Road exists).
    Address b = ok("5 South Service Rd, Grimsby ON L3M 4E8");
    CHECK(b.street_name == "SOUTH SERVICE");
    CHECK(b.street_direction.empty());
  }
  SUBCASE("a type-like first word is part of the name: Avenue Road, Park Ave, Mount Pleasant Rd") {
    CHECK(ok("1 Avenue Road, Toronto ON M5R 2E8").one_line() == "1 AVENUE RD TORONTO ON  M5R 2E8");
    CHECK(ok("99 Park Avenue, Ottawa ON K2P 1B9").one_line() == "99 PARK AVE OTTAWA ON  K2P 1B9");
    CHECK(ok("500 Mount Pleasant Road Toronto ON M4S 2M5").one_line() ==
          "500 MOUNT PLEASANT RD TORONTO ON  M4S 2M5");
  }
  SUBCASE("a spelled-out direction before the municipality belongs to it when no comma says") {
    Address a = ok("200 Main St North Bay ON P1B 2T8");
    CHECK(a.street_direction.empty());
    CHECK(a.municipality == "NORTH BAY");
    Address b = ok("200 Main St North, Brampton ON L6V 1P3");
    CHECK(b.street_direction == "N");
    CHECK(b.municipality == "BRAMPTON");
  }
}

TEST_CASE("address: French addresses") {
  SUBCASE("type before the name, accents kept, French direction") {
    Address a = ok("1000, rue Sherbrooke Ouest, Montréal (Québec) H3A 3G4");
    CHECK(a.civic_number == "1000");
    CHECK(a.street_type == "RUE");
    CHECK(a.street_type_before_name);
    CHECK(a.street_name == "SHERBROOKE");
    CHECK(a.street_direction == "O");
    CHECK(a.municipality == "MONTRÉAL");
    CHECK(a.province == "QC");
    CHECK(a.language == AddressLanguage::kFrench);
    CHECK(a.one_line() == "1000 RUE SHERBROOKE O MONTRÉAL QC  H3A 3G4");
    CHECK(has_correction(a, "abbreviated direction 'Ouest' to 'O'"));
    CHECK(has_correction(a, "wrote province 'Québec' as 'QC'"));
    check_idempotent(a);
  }
  SUBCASE("chemin, boulevard, montée, avenue before the name") {
    Address a = ok("45 chemin du Lac, Magog QC J1X 3W2");
    CHECK(a.street_type == "CH");
    CHECK(a.street_name == "DU LAC");
    CHECK(a.one_line() == "45 CH DU LAC MAGOG QC  J1X 3W2");
    CHECK(has_correction(a, "abbreviated street type 'chemin' to 'CH'"));
    check_idempotent(a);

    Address b = ok("1500 boulevard René-Lévesque Est Québec QC G1R 5R9");
    CHECK(b.street_type == "BOUL");
    CHECK(b.street_name == "RENÉ-LÉVESQUE");
    CHECK(b.street_direction == "E");
    CHECK(b.municipality == "QUÉBEC");
    CHECK(b.one_line() == "1500 BOUL RENÉ-LÉVESQUE E QUÉBEC QC  G1R 5R9");
    check_idempotent(b);

    Address c = ok("12 Montee Sainte-Julie, Varennes QC J3X 1P7");
    CHECK(c.street_type == "MONTÉE");
    CHECK(has_correction(c, "wrote street type 'Montee' as 'MONTÉE'"));
    CHECK(c.one_line() == "12 MONTÉE SAINTE-JULIE VARENNES QC  J3X 1P7");

    Address d = ok("3400 avenue des Pins, Montréal QC H3A 0B8");
    CHECK(d.street_type == "AV");
    CHECK(d.street_name == "DES PINS");
    CHECK(d.language == AddressLanguage::kFrench);
    CHECK(d.one_line() == "3400 AV DES PINS MONTRÉAL QC  H3A 0B8");
    check_idempotent(d);

    Address e = ok("7 côte de la Montagne, Québec QC G1K 4E4");
    CHECK(e.street_type == "CÔTE");
    CHECK(e.street_name == "DE LA MONTAGNE");
  }
  SUBCASE("French units: app, bureau, unité") {
    Address a = ok("123 rue Principale app 3, Granby QC J2G 2V5");
    CHECK(a.unit == "3");
    CHECK(a.unit_designator == "APP");
    CHECK(a.one_line() == "3-123 RUE PRINCIPALE GRANBY QC  J2G 2V5");
    CHECK(a.language == AddressLanguage::kFrench);
    check_idempotent(a);
    Address b = ok("Bureau 200, 1 place Ville-Marie, Montréal QC H3B 2C4");
    CHECK(b.unit == "200");
    CHECK(b.unit_designator == "BUREAU");
    CHECK(b.street_type == "PLACE");
    CHECK(b.one_line() == "200-1 PLACE VILLE-MARIE MONTRÉAL QC  H3B 2C4");
    Address c = ok("55 rue Saint-Jean unité 4, Québec QC G1R 1P1");
    CHECK(c.unit_designator == "UNITÉ");
    CHECK(c.unit == "4");
  }
  SUBCASE("French ordinals put the type after the name") {
    Address a = ok("450 1ère Avenue, Québec QC G1L 3K6");
    CHECK(a.street_name == "1RE");
    CHECK(a.street_type == "AV");
    CHECK_FALSE(a.street_type_before_name);
    CHECK(a.one_line() == "450 1RE AV QUÉBEC QC  G1L 3K6");
    CHECK(has_correction(a, "corrected ordinal '1ère' to '1RE'"));
    check_idempotent(a);
    Address b = ok("25 2e Rue, Shawinigan QC G9N 1A1");
    CHECK(b.one_line() == "25 2E RUE SHAWINIGAN QC  G9N 1A1");
    Address c = ok("25 rue 3ième, Shawinigan QC G9N 1A1");
    CHECK(c.one_line() == "25 3E RUE SHAWINIGAN QC  G9N 1A1");
  }
  SUBCASE("a saint's name without hyphen and a direction spelled out in French") {
    Address a = ok("8 rue St Denis Nord-Ouest, Laval QC H7N 1A1");
    CHECK(a.street_name == "ST DENIS");
    CHECK(a.street_direction == "NO");
    CHECK(a.language == AddressLanguage::kFrench);
  }
}

TEST_CASE("address: every kind of street-type correction") {
  // A variant spelling, not the long form.
  Address a = ok("12 Elm Av, Ottawa ON K1A 0B1");
  CHECK(a.street_type == "AVE");
  CHECK(has_correction(a, "replaced street type 'Av' with 'AVE'"));
  // An English abbreviation before the name becomes the French one.
  Address b = ok("1 Blvd Saint-Laurent, Montréal QC H2X 1Y4");
  CHECK(b.street_type == "BOUL");
  CHECK(b.street_type_before_name);
  CHECK(has_correction(b, "replaced street type 'Blvd' with 'BOUL'"));
  // The same word after the name is English.
  Address c = ok("1 Taschereau Boulevard, Longueuil QC J4K 2V1");
  CHECK(c.street_type == "BLVD");
  CHECK(has_correction(c, "abbreviated street type 'Boulevard' to 'BLVD'"));
  // A French type before an ordinal goes after it.
  Address d = ok("25 rue 3ième, Shawinigan QC G9N 1A1");
  CHECK(has_correction(d,
                       "moved street type 'RUE' after the ordinal street name, as Canada Post "
                       "writes it"));
  CHECK(has_correction(d, "corrected ordinal '3ième' to '3E'"));
  // Canonical input has nothing to correct.
  CHECK(ok("25 3E RUE SHAWINIGAN QC  G9N 1A1").corrections.empty());
}

TEST_CASE("address: postal boxes and rural routes") {
  Address a = ok("PO Box 6001, Victoria BC V8P 5L4");
  CHECK(a.delivery == "PO BOX 6001");
  CHECK(a.civic_number.empty());
  CHECK(a.municipality == "VICTORIA");
  CHECK(a.one_line() == "PO BOX 6001 VICTORIA BC  V8P 5L4");
  Address b = ok("C.P. 123, Rimouski QC G5L 7C1");
  CHECK(b.delivery == "CP 123");
  Address c = ok("Case postale 123, Rimouski QC G5L 7C1");
  CHECK(c.delivery == "CP 123");
  CHECK(has_correction(c, "wrote delivery 'Case postale 123' as 'CP 123'"));
  Address d = ok("1920 BLAIR LAKE RD RR 6 AMHERST NS B4H 3Y4");
  CHECK(d.street_name == "BLAIR LAKE");
  CHECK(d.delivery == "RR 6");
  CHECK(d.municipality == "AMHERST");
  CHECK(d.one_line() == "1920 BLAIR LAKE RD RR 6 AMHERST NS  B4H 3Y4");
  check_idempotent(d);
}

TEST_CASE("address: postal-code letter rules") {
  SUBCASE("letters Canada Post never uses") {
    for (char bad : std::string("DFIOQU")) {
      const std::string code = fmt::format("{}1A 1A1", bad);
      Status st = fails(fmt::format("1 Main St, Town  {}", code));
      CHECK(
          st.message() ==
          fmt::format("postal code '{}' uses letter {}, which Canada Post never uses", code, bad));
    }
    CHECK(fails("1 Main St, Ottawa ON K1D 0B1").message() ==
          "postal code 'K1D 0B1' uses letter D, which Canada Post never uses");
    CHECK(fails("1 Main St, Ottawa ON K1A 0U1").message() ==
          "postal code 'K1A 0U1' uses letter U, which Canada Post never uses");
  }
  SUBCASE("W and Z never come first, but may come later") {
    CHECK(fails("1 Main St, Town W1A 1A1").message() ==
          "postal code 'W1A 1A1' starts with W, which Canada Post never uses as a first letter");
    CHECK(fails("1 Main St, Town Z1A 1A1").message() ==
          "postal code 'Z1A 1A1' starts with Z, which Canada Post never uses as a first letter");
    CHECK(ok("1 Main St, Toronto ON M5W 1E6").postal_code == "M5W 1E6");
    CHECK(ok("1 Main St, Toronto ON M4Z 1A1").postal_code == "M4Z 1A1");
  }
  SUBCASE("the first letter must belong to the province") {
    CHECK(fails("1 Main St, Vancouver BC K1A 0B1").message() ==
          "postal code 'K1A 0B1' starts with K, which belongs to Ontario, not BC");
    CHECK(fails("1 rue Principale, Gatineau QC K1A 0B1").message() ==
          "postal code 'K1A 0B1' starts with K, which belongs to Ontario, not QC");
    CHECK(fails("1 Main St, Iqaluit NU Y1A 1A1").message() ==
          "postal code 'Y1A 1A1' starts with Y, which belongs to Yukon, not NU");
    CHECK(fails("1 Main St, Whitehorse YT X1A 1A1").message() ==
          "postal code 'X1A 1A1' starts with X, which belongs to Northwest Territories or "
          "Nunavut, not YT");
    // Every province accepts each of its letters.
    const std::pair<const char*, const char*> ok_pairs[] = {
        {"NL", "A1C 5M2"}, {"NS", "B3H 1A1"}, {"PE", "C1A 4P3"}, {"NB", "E1C 4M3"},
        {"QC", "G1R 5R9"}, {"QC", "H2X 1Y4"}, {"QC", "J8Y 6T3"}, {"ON", "K1A 0B1"},
        {"ON", "L5B 1M2"}, {"ON", "M5V 2T6"}, {"ON", "N6A 3K7"}, {"ON", "P3E 2C6"},
        {"MB", "R3C 4T3"}, {"SK", "S4P 3Y2"}, {"AB", "T5J 2R7"}, {"BC", "V6B 1A1"},
        {"NT", "X1A 2L9"}, {"NU", "X0A 0H0"}, {"YT", "Y1A 2C6"}};
    for (const auto& [prov, code] : ok_pairs) {
      Address a = ok(fmt::format("1 Main St, Town {} {}", prov, code));
      CHECK(a.province == prov);
      CHECK(a.postal_code == code);
    }
  }
  SUBCASE("a missing province comes from the postal code when only one owns the letter") {
    Address a = ok("1 Main St, Ottawa K1A 0B1");
    CHECK(a.province == "ON");
    CHECK(has_correction(a, "added province 'ON' from postal code 'K1A 0B1'"));
    Address x = ok("1 Main St, Iqaluit X0A 0H0");
    CHECK(x.province.empty());  // X is shared by the Northwest Territories and Nunavut
  }
  SUBCASE("postal code spellings") {
    CHECK(ok("1 Main St, Ottawa ON k1a-0b1").postal_code == "K1A 0B1");
    CHECK(ok("1 Main St, Ottawa ON K1A0B1").postal_code == "K1A 0B1");
    CHECK(ok("1 Main St, Ottawa ON k1a 0b1").postal_code == "K1A 0B1");
    Address a = ok("1 Main St, Ottawa ON K1A 0B1, Canada");
    CHECK(a.postal_code == "K1A 0B1");
    CHECK(has_correction(a, "removed 'Canada', which domestic addresses leave out"));
  }
}

TEST_CASE("address: errors name what is wrong") {
  CHECK(fails("").message() == "address is empty");
  CHECK(fails("   , ").message() == "address is empty");
  CHECK(fails(std::string(600, 'A')).message() ==
        "address is 600 bytes long; at most 512 are accepted");
  CHECK(fails("Main Street, Ottawa ON K1A 0B1").message() ==
        "street line 'Main Street' has no civic number; Canada Post expects it before the "
        "street name (or a PO BOX / RR line)");
  CHECK(fails("123, Ottawa ON K1A 0B1").message() ==
        "street line '123' has a civic number but no street name");
  CHECK(fails("104-2701 23rd Ave Unit 5, Regina SK").message() ==
        "street line has two unit numbers ('104' and '5')");
  std::string many = "1 Main St";
  for (int i = 0; i < 70; ++i) many += " X";
  CHECK(fails(many).message() == "address has more than 64 words; is it one address?");
}

TEST_CASE("address: field-wise input from CSV columns") {
  SUBCASE("columns are parsed separately, so long French names need no delimiter") {
    auto r = normalizer().normalize(
        AddressParts{"1234 boul Robert Bourassa bureau 500", "Montréal", "Québec", "h3b 3a7"});
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    CHECK(r->street_name == "ROBERT BOURASSA");
    CHECK(r->street_type == "BOUL");
    CHECK(r->unit == "500");
    CHECK(r->province == "QC");
    CHECK(r->postal_code == "H3B 3A7");
    CHECK(r->one_line() == "500-1234 BOUL ROBERT BOURASSA MONTRÉAL QC  H3B 3A7");
    CHECK(r->language == AddressLanguage::kFrench);
  }
  SUBCASE("English columns") {
    auto r = normalizer().normalize(
        AddressParts{"2701 23rd Avenue South West", "Regina", "Saskatchewan", "S4S1E5"});
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    CHECK(r->one_line() == "2701 23RD AVE SW REGINA SK  S4S 1E5");
    CHECK(r->street_direction == "SW");
  }
  SUBCASE("a multi-word name whose last word is a type stays one name") {
    auto r =
        normalizer().normalize(AddressParts{"80 Mount Royal Hill Rd", "Sudbury", "ON", "P3A 1A1"});
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    CHECK(r->street_name == "MOUNT ROYAL HILL");
    CHECK(r->street_type == "RD");
  }
  SUBCASE("column errors") {
    auto bad_province = normalizer().normalize(AddressParts{"1 Main St", "Ottawa", "Ontari", ""});
    REQUIRE_FALSE(bad_province.ok());
    CHECK(bad_province.status().message() ==
          "province 'Ontari' is not a Canadian province or territory; use its two-letter code "
          "(ON, QC, BC...) or its English or French name");
    auto bad_postal = normalizer().normalize(AddressParts{"1 Main St", "Ottawa", "ON", "K1A 0B"});
    REQUIRE_FALSE(bad_postal.ok());
    CHECK(bad_postal.status().message() ==
          "postal code 'K1A 0B' is not of the form A1A 1A1 (letter, digit, letter, space, digit, "
          "letter, digit)");
    auto mismatch = normalizer().normalize(AddressParts{"1 Main St", "Ottawa", "BC", "K1A 0B1"});
    REQUIRE_FALSE(mismatch.ok());
    CHECK(mismatch.status().message() ==
          "postal code 'K1A 0B1' starts with K, which belongs to Ontario, not BC");
    auto empty = normalizer().normalize(AddressParts{"", "Ottawa", "ON", ""});
    REQUIRE_FALSE(empty.ok());
    CHECK(empty.status().message() == "street line is empty");
  }
  SUBCASE("without a civic number when the options allow it") {
    AddressNormalizerOptions options;
    options.require_civic_number = false;
    auto lenient = AddressNormalizer::create(options);
    REQUIRE(lenient.ok());
    auto r = lenient->normalize(AddressParts{"rue Principale", "Granby", "QC", ""});
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    CHECK(r->street_type == "RUE");
    CHECK(r->street_name == "PRINCIPALE");
    CHECK(r->one_line() == "RUE PRINCIPALE GRANBY QC");
  }
}

TEST_CASE("address: language guess") {
  CHECK(ok("10 Elm Street, Ottawa ON K1A 0B1").language == AddressLanguage::kEnglish);
  CHECK(ok("10 rue des Érables, Granby QC J2G 2V5").language == AddressLanguage::kFrench);
  // English street types are used in Montréal too.
  CHECK(ok("1000 Sherbrooke St W, Montreal QC H3A 3G4").language == AddressLanguage::kEnglish);
  CHECK(address_language_code(AddressLanguage::kFrench) == "fr");
  CHECK(address_language_code(AddressLanguage::kEnglish) == "en");
  CHECK(address_language_code(AddressLanguage::kUnknown) == "");
}

TEST_CASE("address: idempotence over a varied sample") {
  const char* samples[] = {
      "104-2701 23rd Ave SW, Regina SK S4S 1E5",
      "2701 23RD AVE UNIT 104 REGINA SK S4S 1E5",
      "415 Heritage Crescent Unit 102, Saskatoon, Saskatchewan S7H 5M5",
      "1000 rue Sherbrooke Ouest, Montréal QC H3A 3G4",
      "45 Chemin du Lac, Magog, Québec J1X 3W2",
      "123 rue Principale app 3, Granby QC J2G 2V5",
      "12 Montée Sainte-Julie, Varennes QC J3X 1P7",
      "55 Queen Street West Apt 4B, Toronto ON M5H 2M4",
      "123A Elm St, Halifax NS B3H 1A1",
      "123 1/2 Elm St, Halifax NS B3H 1A1",
      "1 Avenue Road, Toronto ON M5R 2E8",
      "450 1re Avenue, Québec QC G1L 3K6",
      "PO Box 6001, Victoria BC V8P 5L4",
      "10 Water St, St. John's NL A1C 1A1",
      "2 Broadway, Winnipeg MB R3C 0R6",
  };
  for (const char* s : samples) check_idempotent(ok(s));
}

TEST_CASE("address: rules are data and are validated") {
  SUBCASE("the built-in rules load and know both languages") {
    auto json = Json::parse(builtin_address_rules_json());
    REQUIRE(json.ok());
    auto rules = detail::build_address_rules(*json);
    REQUIRE_MESSAGE(rules.ok(), rules.status().to_string());
    CHECK(rules->provinces.size() == 13);
    CHECK(rules->street_types.size() > 100);
    const auto* avenue = rules->street_type_keys.find("AVENUE");
    REQUIRE(avenue != nullptr);
    CHECK(rules->street_types[avenue->english.entry].code == "AVE");
    CHECK(rules->street_types[avenue->french.entry].code == "AV");
  }
  SUBCASE("custom rules replace the built-in ones") {
    auto json = Json::parse(R"({
      "street_types": [{"code": "ST", "lang": "en", "position": "after", "long": ["STREET"]}],
      "directions": [{"code": "N", "lang": "en", "long": ["NORTH"]}],
      "unit_designators": [{"code": "UNIT", "lang": "en"}],
      "delivery_designators": [{"code": "PO BOX", "lang": "en"}],
      "provinces": [{"code": "ON", "en": "ONTARIO", "fr": "ONTARIO", "postal_letters": "KLMNP"}],
      "postal_code": {"unused_letters": "DFIOQU", "unused_first_letters": "WZ"}
    })");
    REQUIRE(json.ok());
    auto n = AddressNormalizer::from_rules(*json);
    REQUIRE_MESSAGE(n.ok(), n.status().to_string());
    auto a = n->normalize("1 Main Street North, Ottawa Ontario K1A 0B1");
    REQUIRE_MESSAGE(a.ok(), a.status().to_string());
    CHECK(a->one_line() == "1 MAIN ST N OTTAWA ON  K1A 0B1");
    // AVE is not in these rules, so it stays part of the name.
    auto b = n->normalize("1 Main Avenue, Ottawa ON K1A 0B1");
    REQUIRE(b.ok());
    CHECK(b->street_name == "MAIN AVENUE");
  }
  SUBCASE("rule errors name the entry and the field") {
    auto bad = [](const char* text) {
      auto json = Json::parse(text);
      REQUIRE(json.ok());
      auto n = AddressNormalizer::from_rules(*json);
      REQUIRE_FALSE(n.ok());
      return n.status().message();
    };
    const std::string base_tail = R"(,
      "directions": [], "unit_designators": [], "delivery_designators": [],
      "provinces": [{"code": "ON", "en": "ONTARIO", "fr": "ONTARIO", "postal_letters": "K"}],
      "postal_code": {"unused_letters": "D", "unused_first_letters": "W"}})";
    CHECK(
        bad((R"({"street_types": [{"code": "ST", "lang": "en", "position": "middle"}])" + base_tail)
                .c_str()) ==
        "address rules: street_types #0 'ST': 'position' must be 'before' or 'after', not "
        "'middle'");
    CHECK(
        bad((R"({"street_types": [{"code": "ST", "lang": "xx", "position": "after"}])" + base_tail)
                .c_str()) ==
        "address rules: street_types #0 'ST': 'lang' must be 'en', 'fr' or 'both', not 'xx'");
    CHECK(bad((R"({"street_types": [{"code": "ST", "lang": "en", "position": "after"},
                                    {"code": "STR", "lang": "en", "position": "after",
                                     "variants": ["ST"]}])" +
               base_tail)
                  .c_str()) ==
          "address rules: street_types #1 'STR': 'ST' is already a spelling of the English type "
          "'ST'");
    CHECK(bad(R"({"street_types": []})") ==
          "address rules: 'street_types' must be a non-empty array");
  }
}

TEST_CASE("address: normalize costs microseconds") {
  const char* samples[] = {
      "104-2701 23rd Ave SW, Regina SK S4S 1E5",
      "1000 rue Sherbrooke Ouest, Montréal QC H3A 3G4",
      "415 HERITAGE CRES UNIT 102 SASKATOON SK S7H 5M5",
      "123 Main Street, Ottawa, Ontario k1a0b1",
  };
  constexpr int kRounds = 20000;
  std::size_t total = 0;
  // CPU time, not wall time: the machine running the tests may be busy with other work.
  const std::clock_t start = std::clock();
  for (int i = 0; i < kRounds; ++i) {
    auto r = normalizer().normalize(samples[i % 4]);
    total += r.ok() ? r->street_name.size() : 0;
  }
  const double us = 1e6 * static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC / kRounds;
  MESSAGE("normalize: ", us, " us per address (this build)");
  CHECK(total > 0);
  // Generous for debug and sanitizer builds; release builds are far below (docs/match.md).
  CHECK(us < 200.0);
}

}  // namespace
}  // namespace civicbus::match

#include "civicbus/match/compare.hpp"

TEST_CASE("match: Jaro-Winkler and name keys") {
  using civicbus::match::jaro;
  using civicbus::match::jaro_winkler;
  using civicbus::match::name_key;
  // Winkler's published examples.
  CHECK(jaro("MARTHA", "MARHTA") == doctest::Approx(0.944).epsilon(0.001));
  CHECK(jaro_winkler("MARTHA", "MARHTA") == doctest::Approx(0.961).epsilon(0.001));
  CHECK(jaro_winkler("DWAYNE", "DUANE") == doctest::Approx(0.84).epsilon(0.001));
  CHECK(jaro_winkler("DIXON", "DICKSONX") == doctest::Approx(0.813).epsilon(0.001));
  CHECK(jaro_winkler("", "") == 1.0);
  CHECK(jaro_winkler("ABC", "") == 0.0);
  CHECK(jaro_winkler("same", "same") == 1.0);
  // Code points, not bytes: one accented letter is one character.
  CHECK(jaro_winkler("Hélène", "Helene") > jaro_winkler("Hélène", "Hxxxxx"));
  CHECK(name_key("Smith, John") == "JOHN SMITH");
  CHECK(name_key("  john   SMITH ") == "JOHN SMITH");
  CHECK(name_key("Hélène Côté-Tremblay") == "COTE HELENE TREMBLAY");
  CHECK(name_key("O'Neil, J.P.") == "JP ONEIL");
  using civicbus::match::name_similarity;
  CHECK(name_similarity("JOHN SMITH", "JOHN SMITH") == 1.0);
  CHECK(name_similarity("JOHN SMIT", "JOHN SMITH") > 0.95);
  CHECK(name_similarity("JOHN SMITH TREMBLAY", "JOHN SMITH WONG") < 0.9);
  CHECK(name_similarity("MARC MACDONALD", "MARC MACDONALD MARTIN") < 0.7);  // one to one
  CHECK(name_similarity("", "JOHN") == 0.0);
}

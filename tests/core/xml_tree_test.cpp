#include "core/xml_tree.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace civicbus::detail {
namespace {

Json json(std::string_view text) {
  auto parsed = Json::parse(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().message());
  return std::move(parsed).value();
}

struct Capture {
  std::string name;
  Json value;
  std::int64_t line;
};

// Feeds `xml` in pieces of `piece` bytes (the whole at once for 0) and collects what the
// reader hands over.
Status read(std::string_view xml, std::size_t piece, const XmlTreeReader::Capture& capture,
            std::vector<Capture>& out, XmlTreeOptions options = {}) {
  XmlTreeReader reader(std::move(options), capture,
                       [&](std::string name, Json value, std::int64_t line) {
                         out.push_back(Capture{std::move(name), std::move(value), line});
                       });
  if (piece == 0) return reader.feed(xml, true);
  while (xml.size() > piece) {
    CIVICBUS_RETURN_IF_ERROR(reader.feed(xml.substr(0, piece), false));
    xml.remove_prefix(piece);
  }
  return reader.feed(xml, true);
}

bool is_permit(const std::vector<std::string>& open) {
  return open.back() == "permit";
}

constexpr std::string_view kPermits = R"(<?xml version="1.0"?>
<permits city="Laval">
  <permit id="P-1"><fee>12.50</fee><tag>a</tag><tag>b</tag></permit>
  <batch>
    <permit id="P-2">issued <b>late</b></permit>
  </batch>
  <permit/>
</permits>
)";

TEST_CASE("xml tree: captured elements follow the documented convention, whatever the pieces") {
  std::vector<Capture> whole;
  REQUIRE(read(kPermits, 0, is_permit, whole).ok());
  REQUIRE(whole.size() == 3);
  CHECK(whole[0].name == "permit");
  CHECK(whole[0].value == json(R"({"@id":"P-1","fee":"12.50","tag":["a","b"]})"));
  CHECK(whole[0].line == 3);
  // Text beside children is "#text" (whitespace-only segments left out), after the attributes.
  CHECK(whole[1].value == json(R"({"@id":"P-2","#text":"issued ","b":"late"})"));
  CHECK(whole[1].line == 5);
  CHECK(whole[2].value.is_null());
  CHECK(whole[2].line == 7);

  // Split anywhere, even inside a tag or a multi-byte character, the same elements come out.
  for (std::size_t piece = 1; piece < kPermits.size(); piece += 7) {
    std::vector<Capture> split;
    REQUIRE_MESSAGE(read(kPermits, piece, is_permit, split).ok(), piece);
    REQUIRE(split.size() == whole.size());
    for (std::size_t i = 0; i < split.size(); ++i) {
      CHECK(split[i].value == whole[i].value);
      CHECK(split[i].line == whole[i].line);
    }
  }
}

TEST_CASE("xml tree: whole documents, typed values and elements that are always arrays") {
  XmlTreeOptions options;
  options.scalar = [](std::string text) {
    return text == "12.50" ? Json(12.5) : Json(std::move(text));
  };
  options.array_elements = {"batch"};
  auto document = xml_document_to_json(kPermits, std::move(options), "the test document");
  REQUIRE_MESSAGE(document.ok(), document.status().message());
  const Json* root = document->find("permits");
  REQUIRE(root != nullptr);
  CHECK(root->get_string("@city") == "Laval");
  CHECK(root->find("permit")->as_array()[0].find("fee")->as_double() == 12.5);
  REQUIRE(root->find("batch")->is_array());
  CHECK(root->find("batch")->size() == 1);

  auto empty = xml_document_to_json("<?xml version=\"1.0\"?>", {}, "the test document");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.status().message().find("the test document") != std::string::npos);
}

TEST_CASE("xml tree: errors name what and where, and what came before is kept") {
  std::vector<Capture> out;
  Status bad = read("<r>\n<permit/>\n<permit></r>", 0, is_permit, out);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.code() == ErrorCode::kInvalidArgument);
  CHECK(bad.message().find("line 3, column") != std::string::npos);
  CHECK(bad.message().find("not well-formed: mismatched tag") != std::string::npos);
  CHECK(out.size() == 1);

  // A DOCTYPE is refused as it starts: no entity of it is ever defined, let alone expanded.
  for (std::string_view xml : {
           "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><r>&b;</r>",
           "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r/>",
           "<!DOCTYPE r [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]><r/>",
       }) {
    out.clear();
    Status refused = read(xml, 0, &XmlTreeReader::whole_document, out);
    REQUIRE_FALSE_MESSAGE(refused.ok(), xml);
    CHECK(refused.message().find("DOCTYPE") != std::string::npos);
    CHECK(out.empty());
  }

  XmlTreeOptions shallow;
  shallow.max_depth = 3;
  out.clear();
  Status deep = read("<a><b><c><d/></c></b></a>", 0, &XmlTreeReader::whole_document, out, shallow);
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.message().find("deeper than 3 levels at <d>") != std::string::npos);
  out.clear();
  CHECK(read("<a><b><c/></b></a>", 0, &XmlTreeReader::whole_document, out, shallow).ok());

  // After an error the reader reads no more.
  XmlTreeReader reader({}, &XmlTreeReader::whole_document, [](std::string, Json, std::int64_t) {});
  REQUIRE_FALSE(reader.feed("<a></b>", false).ok());
  CHECK_FALSE(reader.feed("<c/>", true).ok());
}

TEST_CASE("xml tree: an encoding named in the options overrides the document's") {
  const std::string latin =
      "<r>Montr\xE9"
      "al</r>";
  std::vector<Capture> out;
  XmlTreeOptions options;
  options.encoding = "ISO-8859-1";
  REQUIRE(read(latin, 0, &XmlTreeReader::whole_document, out, options).ok());
  REQUIRE(out.size() == 1);
  CHECK(out[0].value.as_string() == "Montréal");
  out.clear();
  CHECK_FALSE(read(latin, 0, &XmlTreeReader::whole_document, out).ok());  // not UTF-8
}

}  // namespace
}  // namespace civicbus::detail

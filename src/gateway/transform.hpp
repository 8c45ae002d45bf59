// Body transforms of the API gateway: request and response bodies between JSON, XML and CSV.
// Pure functions over bytes and Json values; they own nothing and keep no state, so any number
// of threads may call them at once. XML is read with libexpat, which never sees a DOCTYPE: a
// document that declares one is refused before any entity is defined, so entity expansion
// ("billion laughs") and external entities cannot happen. The mapping convention, the limits
// and what is refused are described in docs/transforms.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"  // BodyFormat

namespace civicbus::gateway {

// "json", "xml", "csv": for logs and error messages.
std::string_view body_format_name(BodyFormat format);

struct TransformOptions {
  // Bodies longer than this are refused (kResourceExhausted) before any parsing.
  std::size_t max_input_bytes = 8 * 1024 * 1024;
  // A transform whose output would exceed this is stopped (kResourceExhausted): CSV -> JSON
  // repeats the header's names in every row, so a small body can otherwise grow a lot.
  std::size_t max_output_bytes = 32 * 1024 * 1024;
  // Element nesting of XML (the root element is depth 1) and object/array nesting of JSON
  // written as XML; deeper documents are refused (kInvalidArgument).
  std::size_t max_depth = 64;

  // Off (default): XML text and CSV cells stay strings, because the text alone cannot say
  // whether "08123" is a postcode or a number, and guessing changes the data. On: a value
  // becomes a number when it is a JSON number whose own JSON text is exactly the value (so
  // "12" and "1.5" do; "08123", "1.50", "1e3" and "+1" stay strings: nothing is lost) and
  // "true"/"false" become booleans. Applies to XML text and attribute values and CSV cells.
  bool infer_types = false;

  // JSON -> XML: a document that is not an object with exactly one member (an array, a scalar,
  // an object with several members) is wrapped in an element of this name, and the items of a
  // top-level array become elements named `xml_item_name`. XML -> CSV takes the rows from the
  // root's child elements of one name, so CSV -> XML -> CSV keeps its rows.
  std::string xml_root_name = "root";
  std::string xml_item_name = "item";
  // XML -> JSON: elements with these names always become a JSON array, even when one occurs
  // alone (otherwise a single <permit> is an object and two are an array).
  std::vector<std::string> xml_array_elements;
  // JSON -> XML: start with <?xml version="1.0" encoding="UTF-8"?>.
  bool xml_declaration = true;

  // JSON -> CSV: an object or array in a cell is written as its compact JSON text instead of
  // being refused.
  bool csv_nested_as_json = false;
  // JSON -> CSV: records end with CRLF (RFC 4180); false writes LF.
  bool csv_crlf = true;
  // CSV -> JSON: accept a '"' inside an unquoted field (37.8"N) as an ordinary character, as
  // Python's csv module and Go's LazyQuotes do. RFC 4180 does not allow it; off by default.
  bool csv_lenient_quotes = false;
};

// The body format of a Content-Type value ("application/json; charset=utf-8") or the best
// supported format of an Accept value ("application/xml;q=0.9, */*;q=0.1"). Recognised:
// application/json, text/json and any "+json" suffix; application/xml, text/xml and any "+xml"
// suffix; text/csv. In an Accept list the highest q wins (q=0 excludes), the most specific
// range decides a format's q, equal q goes to the range listed first, and wildcards prefer
// JSON, then XML, then CSV. kInvalidArgument when nothing listed is supported.
Result<BodyFormat> body_format_from_media_type(std::string_view content_type_or_accept);

// The media type written in a Content-Type for a format ("application/json", ...).
std::string_view media_type_of(BodyFormat format);

// Transforms `body` from one format to another. The same format on both sides returns the body
// unchanged (it is not parsed). Errors: kInvalidArgument naming what is wrong and where (line
// and column for XML, line for CSV, JSON Pointer for JSON), kResourceExhausted for the limits.
Result<std::string> transform_body(std::string_view body, BodyFormat from, BodyFormat to,
                                   const TransformOptions& options = {});

// The steps of transform_body, for callers that want the Json in between.
//
// {"root-name": value}; see docs/transforms.md for the convention.
Result<Json> xml_to_json(std::string_view xml, const TransformOptions& options = {});
// The inverse of xml_to_json; names that are not XML names are errors naming their JSON path.
Result<std::string> json_to_xml(const Json& document, const TransformOptions& options = {});
// RFC 4180 text with a header row -> an array of objects, one per record.
Result<Json> csv_to_json(std::string_view csv, const TransformOptions& options = {});
// An array of flat objects -> RFC 4180 text with a header row (first-seen key order).
Result<std::string> json_to_csv(const Json& rows, const TransformOptions& options = {});

}  // namespace civicbus::gateway

// XML to JSON trees through expat: the one XML reader of the library, used by the gateway's
// body transforms, the XML file connector and the S3 connector's listings.
//
// Hardened the same way for all of them: any DOCTYPE is refused as it starts, before expat
// has read one declaration in it, so no entity is ever defined ("billion laughs") and nothing
// external is referenced; entity declarations are refused as a second guard; no external
// entity handler is set and parameter entities are never parsed; nesting is bounded.
//
// An element becomes a JSON value by the convention of docs/transforms.md: attributes are
// "@name" members, child elements members by name (repeated names an array, in order), text
// beside attributes or children "#text"; an element with only text is that text, an empty one
// null.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::detail {

struct XmlTreeOptions {
  // Elements open at once, counted from the root.
  std::size_t max_depth = 256;
  // Text and attribute values: strings when empty, else what this makes of them (the
  // gateway's number and boolean inference).
  std::function<Json(std::string)> scalar;
  // Child elements whose value is always an array, even when one stands alone.
  std::unordered_set<std::string> array_elements;
  // An expat encoding name that overrides the document's own ("UTF-8", "ISO-8859-1"); empty
  // to follow the XML declaration or byte order mark.
  std::string encoding;
};

// Reads one XML document fed in pieces and hands over the elements it is asked to capture,
// each as a JSON value once its end tag is read.
class XmlTreeReader {
 public:
  // At each start tag outside a captured element, with the names of the open elements (the
  // root first, the new element last): true captures that element and everything in it.
  using Capture = std::function<bool(const std::vector<std::string>& open)>;
  // A captured element is complete: its name, its value and the line its start tag is on.
  using Captured = std::function<void(std::string name, Json value, std::int64_t line)>;

  XmlTreeReader(XmlTreeOptions options, Capture capture, Captured captured);
  ~XmlTreeReader();
  XmlTreeReader(const XmlTreeReader&) = delete;
  XmlTreeReader& operator=(const XmlTreeReader&) = delete;

  // The next piece of the document; `final` with the last one (which may be empty). A
  // document that is not well-formed, has a DOCTYPE or an entity declaration, or nests too
  // deep gives INVALID_ARGUMENT naming what and where ("line 3, column 7: ..."); elements
  // captured before it have been handed over, and nothing more is read after it.
  Status feed(std::string_view data, bool final);

  // Captures each root: whole documents.
  static bool whole_document(const std::vector<std::string>& open) { return open.size() == 1; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A whole document as {"root name": value}. `what` names the document in errors ("the XML
// body": "the XML body: line 1, column 2: ..."); empty for none.
Result<Json> xml_document_to_json(std::string_view xml, XmlTreeOptions options,
                                  std::string_view what);

}  // namespace civicbus::detail

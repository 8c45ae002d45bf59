#include "core/xml_tree.hpp"

#include <expat.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace civicbus::detail {
namespace {

bool all_xml_space(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

struct XmlTreeReader::Impl {
  // An open element of a captured tree.
  struct Frame {
    std::string name;
    Json::Object members;  // attributes, then child elements in first-seen order
    std::unordered_map<std::string, std::size_t> index;  // child name -> member position
    std::size_t attribute_count = 0;
    std::string text;         // all character data
    std::string significant;  // the segments that are not only whitespace
    std::string segment;      // since the last tag
  };

  XmlTreeOptions options;
  Capture capture;
  Captured captured;
  XML_Parser parser = nullptr;
  // The open elements outside a captured tree, the root first (a captured element stays last
  // while it is open); the elements inside one are only counted, in `depth`.
  std::vector<std::string> open;
  std::size_t depth = 0;     // every open element
  std::vector<Frame> stack;  // the open elements of the captured tree
  std::int64_t capture_line = 0;
  Status error;
  bool finished = false;

  Json scalar(std::string text) const {
    return options.scalar ? options.scalar(std::move(text)) : Json(std::move(text));
  }

  void fail(std::string what) {
    if (!error.ok()) return;
    error = invalid_argument(fmt::format("line {}, column {}: {}", XML_GetCurrentLineNumber(parser),
                                         XML_GetCurrentColumnNumber(parser) + 1, what));
    XML_StopParser(parser, XML_FALSE);
  }

  static void flush_segment(Frame& frame) {
    if (frame.segment.empty()) return;
    if (!all_xml_space(frame.segment)) frame.significant += frame.segment;
    frame.text += frame.segment;
    frame.segment.clear();
  }

  static void XMLCALL on_start(void* data, const XML_Char* name, const XML_Char** attributes) {
    auto& self = *static_cast<Impl*>(data);
    if (!self.error.ok()) return;
    if (self.depth + 1 > self.options.max_depth) {
      self.fail(
          fmt::format("elements nest deeper than {} levels at <{}>", self.options.max_depth, name));
      return;
    }
    ++self.depth;
    if (self.stack.empty()) {
      self.open.emplace_back(name);
      if (!self.capture(self.open)) return;
      self.capture_line = static_cast<std::int64_t>(XML_GetCurrentLineNumber(self.parser));
    } else {
      flush_segment(self.stack.back());
    }
    Frame frame;
    frame.name = name;
    for (const XML_Char** a = attributes; *a != nullptr; a += 2) {
      frame.members.emplace_back(std::string("@") + a[0], self.scalar(a[1]));
    }
    frame.attribute_count = frame.members.size();
    self.stack.push_back(std::move(frame));
  }

  static void XMLCALL on_end(void* data, const XML_Char* /*name*/) {
    auto& self = *static_cast<Impl*>(data);
    if (!self.error.ok()) return;
    --self.depth;
    if (self.stack.empty()) {
      self.open.pop_back();
      return;
    }
    Frame frame = std::move(self.stack.back());
    self.stack.pop_back();
    flush_segment(frame);
    Json value;
    if (frame.members.empty()) {
      // Only text: the text itself, whitespace included; nothing at all: null.
      if (!frame.text.empty()) value = self.scalar(std::move(frame.text));
    } else {
      if (!frame.significant.empty()) {
        frame.members.emplace(
            frame.members.begin() + static_cast<std::ptrdiff_t>(frame.attribute_count), "#text",
            self.scalar(std::move(frame.significant)));
      }
      value = Json(std::move(frame.members));
    }
    if (self.stack.empty()) {
      self.open.pop_back();
      self.captured(std::move(frame.name), std::move(value), self.capture_line);
      return;
    }
    Frame& parent = self.stack.back();
    auto it = parent.index.find(frame.name);
    if (it != parent.index.end()) {
      Json& existing = parent.members[it->second].second;
      // Element values are never arrays themselves, so an array here is the siblings so far.
      if (!existing.is_array()) existing = Json::array({std::move(existing)});
      existing.push_back(std::move(value));
      return;
    }
    if (self.options.array_elements.count(frame.name) != 0) value = Json::array({std::move(value)});
    parent.index.emplace(frame.name, parent.members.size());
    parent.members.emplace_back(std::move(frame.name), std::move(value));
  }

  static void XMLCALL on_text(void* data, const XML_Char* text, int length) {
    auto& self = *static_cast<Impl*>(data);
    if (!self.error.ok() || self.stack.empty()) return;
    self.stack.back().segment.append(text, static_cast<std::size_t>(length));
  }

  static void XMLCALL on_doctype(void* data, const XML_Char* name, const XML_Char* /*sysid*/,
                                 const XML_Char* /*pubid*/, int /*has_internal_subset*/) {
    static_cast<Impl*>(data)->fail(
        fmt::format("the document has a DOCTYPE (<!DOCTYPE {}>); DTDs are refused, so no entity "
                    "is expanded (no \"billion laughs\") and nothing external is loaded",
                    name));
  }

  static void XMLCALL on_entity_decl(void* data, const XML_Char* name, int /*is_parameter*/,
                                     const XML_Char* /*value*/, int /*value_length*/,
                                     const XML_Char* /*base*/, const XML_Char* /*system_id*/,
                                     const XML_Char* /*public_id*/, const XML_Char* /*notation*/) {
    static_cast<Impl*>(data)->fail(fmt::format(
        "the document declares the entity '{}'; entity declarations are refused", name));
  }
};

XmlTreeReader::XmlTreeReader(XmlTreeOptions options, Capture capture, Captured captured)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.options = std::move(options);
  s.capture = std::move(capture);
  s.captured = std::move(captured);
  // No namespace processing: prefixed names ("gml:point", "xmlns:gml") stay as they are
  // written, so they survive the way back to XML.
  s.parser = XML_ParserCreate(s.options.encoding.empty() ? nullptr : s.options.encoding.c_str());
  if (s.parser == nullptr) {
    s.error = internal_error("could not create an XML parser (out of memory)");
    return;
  }
  XML_SetUserData(s.parser, &s);
  XML_SetElementHandler(s.parser, &Impl::on_start, &Impl::on_end);
  XML_SetCharacterDataHandler(s.parser, &Impl::on_text);
  XML_SetStartDoctypeDeclHandler(s.parser, &Impl::on_doctype);
  XML_SetEntityDeclHandler(s.parser, &Impl::on_entity_decl);
  XML_SetParamEntityParsing(s.parser, XML_PARAM_ENTITY_PARSING_NEVER);
}

XmlTreeReader::~XmlTreeReader() {
  if (impl_->parser != nullptr) XML_ParserFree(impl_->parser);
}

Status XmlTreeReader::feed(std::string_view data, bool final) {
  Impl& s = *impl_;
  if (!s.error.ok()) return s.error;
  if (s.finished) return failed_precondition("the XML document was already fed whole");
  // XML_Parse takes an int length: large pieces go in parts.
  constexpr std::size_t kPart = std::size_t{1} << 30;
  do {
    const std::size_t n = std::min(kPart, data.size());
    const bool last = final && n == data.size();
    if (XML_Parse(s.parser, data.data(), static_cast<int>(n), last ? 1 : 0) != XML_STATUS_OK &&
        s.error.ok()) {
      s.error = invalid_argument(fmt::format(
          "line {}, column {}: not well-formed: {}", XML_GetCurrentLineNumber(s.parser),
          XML_GetCurrentColumnNumber(s.parser) + 1, XML_ErrorString(XML_GetErrorCode(s.parser))));
    }
    if (!s.error.ok()) return s.error;
    data.remove_prefix(n);
  } while (!data.empty());
  if (final) s.finished = true;
  return Status::ok_status();
}

Result<Json> xml_document_to_json(std::string_view xml, XmlTreeOptions options,
                                  std::string_view what) {
  Json result;
  bool found = false;
  XmlTreeReader reader(std::move(options), &XmlTreeReader::whole_document,
                       [&](std::string name, Json value, std::int64_t /*line*/) {
                         result = Json::object({{std::move(name), std::move(value)}});
                         found = true;
                       });
  Status s = reader.feed(xml, true);
  if (!s.ok()) return what.empty() ? s : s.with_context(what);
  if (!found) {
    return invalid_argument(
        fmt::format("{} has no root element", what.empty() ? "the document" : what));
  }
  return result;
}

}  // namespace civicbus::detail

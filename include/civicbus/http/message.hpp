// HTTP/1.1 messages as the http area hands them to handlers and takes them back: plain values,
// no parser or socket types. Header names compare case-insensitively (ASCII); the order in
// which fields arrived is kept, and repeated fields stay separate entries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "civicbus/export.hpp"
#include "civicbus/http/tls.hpp"

namespace civicbus::http {

namespace detail {
// equals_ignore_case() for two strings of the same length.
CIVICBUS_EXPORT bool same_length_equals_ignore_case(std::string_view a, std::string_view b);
}  // namespace detail

// ASCII case-insensitive equality, as header names and tokens compare. The lengths are
// compared here, inline: most names a lookup meets differ in length, and cost no call.
inline bool equals_ignore_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && detail::same_length_equals_ignore_case(a, b);
}

// An ordered, case-insensitive multimap of header fields.
class CIVICBUS_EXPORT HttpHeaders {
 public:
  using Field = std::pair<std::string, std::string>;

  // Appends a field (a repeated name adds another entry).
  void add(std::string name, std::string value);
  // The same, the name and value copied from views (a parser's buffers) straight into the
  // new entry.
  void add_copy(std::string_view name, std::string_view value) {
    fields_.emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                         std::forward_as_tuple(value));
  }
  // Replaces every field of that name by one field.
  void set(std::string name, std::string value);
  // Removes every field of that name; returns how many were removed.
  std::size_t remove(std::string_view name);
  // Removes every field for which pred(name, value) is true; returns how many were removed.
  template <class Pred>
  std::size_t remove_if(Pred pred) {
    const auto before = fields_.size();
    std::erase_if(fields_, [&](const Field& f) { return pred(f.first, f.second); });
    return before - fields_.size();
  }
  // Removes every field, keeping the room they took.
  void clear() { fields_.clear(); }
  // Room for `n` fields (a proxy knows how many it is about to add).
  void reserve(std::size_t n) { fields_.reserve(n); }
  // Hands the fields over (to be moved elsewhere) and leaves the headers empty.
  std::vector<Field> take() {
    std::vector<Field> out = std::move(fields_);
    fields_.clear();
    return out;
  }

  // The value of the first field of that name. The view lives as long as the headers are
  // not changed.
  std::optional<std::string_view> get(std::string_view name) const;
  // The values of every field of that name, in arrival order.
  std::vector<std::string_view> get_all(std::string_view name) const;
  // Calls f(value) for every field of that name, in arrival order (get_all without a vector).
  template <class F>
  void for_each(std::string_view name, F f) const {
    for (const Field& field : fields_) {
      if (equals_ignore_case(field.first, name)) f(std::string_view(field.second));
    }
  }
  bool contains(std::string_view name) const { return get(name).has_value(); }
  std::size_t count(std::string_view name) const;

  std::size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }

 private:
  std::vector<Field> fields_;
};

struct HttpRequest {
  std::string method;     // "GET", "POST", ... (case-sensitive, as sent)
  std::string target;     // the request-target as sent: "/permits?page=2"
  std::string path;       // target up to '?' (not percent-decoded)
  std::string query;      // target after '?', without it; empty when there is none
  int version_minor = 1;  // HTTP/1.<minor>
  HttpHeaders headers;
  std::string body;  // decoded: chunked framing removed, trailers dropped
  // Set by HttpServer: the peer's IP address ("127.0.0.1", "::1") and port. Empty and 0 on
  // requests built by hand.
  std::string remote_address;
  std::uint16_t remote_port = 0;
  // Set by an HttpServer with TLS: the connection is TLS, and the certificate the client
  // authenticated with (mutual TLS), shared by every request of the connection.
  bool tls = false;
  std::shared_ptr<const PeerCertificate> peer_certificate;
};

struct CIVICBUS_EXPORT HttpResponse {
  int status = 200;
  std::string reason;  // empty: the standard phrase for `status`
  // Content-Length, Transfer-Encoding and Connection are set by the server; values a handler
  // puts there are replaced. Date and Server are added when absent.
  HttpHeaders headers;
  std::string body;

  static HttpResponse text(int status, std::string body,
                           std::string content_type = "text/plain; charset=utf-8");
};

// The standard reason phrase for a status code ("Not Found"), or "Unknown".
CIVICBUS_EXPORT std::string_view reason_phrase(int status);

}  // namespace civicbus::http

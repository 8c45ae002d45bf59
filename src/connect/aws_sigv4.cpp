// AWS Signature Version 4 (see aws_sigv4.hpp).
#include "connect/aws_sigv4.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "civicbus/core/crypto.hpp"

namespace civicbus::connect::detail {

namespace {

bool is_unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// SigV4 trims a header value and collapses runs of spaces inside it to one.
std::string canonical_header_value(std::string_view value) {
  std::string out;
  bool space = false;
  for (char c : value) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string aws_uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

std::string aws_amz_date(SystemTime time) {
  const std::time_t t = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string aws_signing_key(std::string_view secret, std::string_view date, std::string_view region,
                            std::string_view service) {
  std::string key = crypto::hmac_sha256("AWS4" + std::string(secret), date);
  key = crypto::hmac_sha256(key, region);
  key = crypto::hmac_sha256(key, service);
  return crypto::hmac_sha256(key, "aws4_request");
}

SigV4Signature sign_v4(const SigV4Request& request, const AwsCredentials& credentials,
                       std::string_view region, std::string_view service,
                       std::string_view amz_date) {
  SigV4Signature out;
  // Query: each name and value encoded, then sorted by name (and value for
  // repeats).
  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [name, value] : request.query) {
    query.emplace_back(aws_uri_encode(name, false), aws_uri_encode(value, false));
  }
  std::sort(query.begin(), query.end());
  std::string canonical_query;
  for (const auto& [name, value] : query) {
    if (!canonical_query.empty()) canonical_query += '&';
    canonical_query += name + "=" + value;
  }
  // Headers: lower-case names in order, a repeated name's values joined by ','.
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [name, value] : request.headers) {
    headers.emplace_back(lower(name), canonical_header_value(value));
  }
  std::stable_sort(headers.begin(), headers.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string canonical_headers;
  for (std::size_t i = 0; i < headers.size(); ++i) {
    if (i > 0 && headers[i].first == headers[i - 1].first) {
      canonical_headers.back() = ',';  // replaces the previous '\n'
      canonical_headers += headers[i].second + "\n";
      continue;
    }
    if (!out.signed_headers.empty()) out.signed_headers += ';';
    out.signed_headers += headers[i].first;
    canonical_headers += headers[i].first + ":" + headers[i].second + "\n";
  }
  out.canonical_request =
      fmt::format("{}\n{}\n{}\n{}\n{}\n{}", request.method, request.canonical_uri, canonical_query,
                  canonical_headers, out.signed_headers, request.payload_sha256);
  const std::string_view date = amz_date.substr(0, 8);
  const std::string scope = fmt::format("{}/{}/{}/aws4_request", date, region, service);
  out.string_to_sign = fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", amz_date, scope,
                                   crypto::to_hex(crypto::sha256(out.canonical_request)));
  const std::string key = aws_signing_key(credentials.secret_access_key, date, region, service);
  out.signature = crypto::to_hex(crypto::hmac_sha256(key, out.string_to_sign));
  out.authorization =
      fmt::format("AWS4-HMAC-SHA256 Credential={}/{},SignedHeaders={},Signature={}",
                  credentials.access_key_id, scope, out.signed_headers, out.signature);
  return out;
}

Result<S3Address> s3_address(std::string_view endpoint, std::string_view bucket,
                             std::string_view key, bool virtual_host) {
  const std::size_t scheme_end = endpoint.find("://");
  if (scheme_end == std::string_view::npos ||
      (endpoint.substr(0, scheme_end) != "http" && endpoint.substr(0, scheme_end) != "https")) {
    return invalid_argument(
        fmt::format("s3 endpoint '{}' is not an http(s) URL (\"https://s3.ca-central-1."
                    "amazonaws.com\", \"http://127.0.0.1:9000\")",
                    endpoint));
  }
  const std::string_view scheme = endpoint.substr(0, scheme_end);
  std::string_view host = endpoint.substr(scheme_end + 3);
  while (host.ends_with('/')) host.remove_suffix(1);
  if (host.empty() || host.find_first_of("/?#@") != std::string_view::npos) {
    return invalid_argument(fmt::format(
        "s3 endpoint '{}' must be scheme://host[:port] without a path or user", endpoint));
  }
  // The HTTP layer leaves a default port out of the Host header; the signed host must match.
  if ((scheme == "https" && host.ends_with(":443")) ||
      (scheme == "http" && host.ends_with(":80"))) {
    host = host.substr(0, host.rfind(':'));
  }
  if (bucket.empty()) return invalid_argument("s3 config has no \"bucket\"");
  S3Address address;
  const std::string encoded_key = aws_uri_encode(key, true);
  if (virtual_host) {
    const bool dns_safe = std::all_of(bucket.begin(), bucket.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
    if (!dns_safe) {
      return invalid_argument(
          fmt::format("bucket '{}' cannot be addressed virtual-host style (a host label is "
                      "lower-case letters, digits and '-'); use \"addressing\": \"path\"",
                      bucket));
    }
    address.host = fmt::format("{}.{}", bucket, host);
    address.canonical_uri = "/" + encoded_key;
  } else {
    address.host = std::string(host);
    address.canonical_uri = "/" + aws_uri_encode(bucket, false);
    if (!key.empty()) address.canonical_uri += "/" + encoded_key;
  }
  address.url = fmt::format("{}://{}{}", scheme, address.host, address.canonical_uri);
  return address;
}

}  // namespace civicbus::connect::detail

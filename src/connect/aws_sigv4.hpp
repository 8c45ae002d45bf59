// AWS Signature Version 4 for S3-compatible object storage (AWS S3, MinIO, Ceph
// RGW), and the two ways of addressing a bucket. Private to the connect area:
// the s3 connector signs each request it sends through RestClient with it. The
// steps follow the AWS documentation
// ("Authenticating Requests: Using the Authorization Header", Signature Version
// 4): canonical request, string to sign, HMAC-SHA256 signing key derived from
// the secret per day, region and service.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::connect::detail {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials (STS); sent as
                              // x-amz-security-token
};

// What is signed of one request. Query parameters and header values are raw
// (not encoded); every header listed is signed (host, x-amz-date and
// x-amz-content-sha256 must be among them).
struct SigV4Request {
  std::string method = "GET";
  std::string canonical_uri = "/";  // the path as sent: already URI-encoded, '/' kept
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_sha256;  // lower-case hex, or "UNSIGNED-PAYLOAD"
};

struct SigV4Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;range;x-amz-content-sha256;x-amz-date"
  std::string signature;       // lower-case hex
  std::string authorization;   // the Authorization header's value
};

// URI-encodes as SigV4 asks: every byte but A-Z a-z 0-9 - . _ ~ as %XX
// (upper-case hex), '/' kept when `keep_slash` (object keys in a path).
std::string aws_uri_encode(std::string_view text, bool keep_slash);

// "20130524T000000Z" (ISO 8601 basic, UTC), the x-amz-date value.
std::string aws_amz_date(SystemTime time);

// HMAC-SHA256 chain "AWS4"+secret → date (yyyymmdd) → region → service →
// "aws4_request".
std::string aws_signing_key(std::string_view secret, std::string_view date, std::string_view region,
                            std::string_view service);

// Signs `request` at `amz_date` ("yyyymmddThhmmssZ") for `region` and `service`
// ("s3").
SigV4Signature sign_v4(const SigV4Request& request, const AwsCredentials& credentials,
                       std::string_view region, std::string_view service,
                       std::string_view amz_date);

// Where one request to a bucket goes. Path style: <endpoint>/<bucket>/<key>
// (MinIO, Ceph and any endpoint given by IP address); virtual-host style:
// <bucket>.<endpoint host>/<key> (what AWS recommends and needs for buckets
// created since 2020 in some regions).
struct S3Address {
  std::string url;            // scheme://host[:port]<canonical_uri> (no query)
  std::string host;           // the Host header's value
  std::string canonical_uri;  // the encoded path, as signed
};

// `endpoint` is "http(s)://host[:port]" (a path after it is refused); `key` may
// be empty (the bucket itself, for ListObjectsV2). kInvalidArgument naming the
// endpoint or the bucket when they cannot be combined (a bucket name with dots
// or upper case cannot be a host label).
Result<S3Address> s3_address(std::string_view endpoint, std::string_view bucket,
                             std::string_view key, bool virtual_host);

}  // namespace civicbus::connect::detail

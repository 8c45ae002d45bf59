// The s3 connector and its SigV4 signer: the signer against AWS's documented
// example, the connector against a stand-in S3 server (civicbus
// http::HttpServer on loopback) that keeps objects in memory, pages
// ListObjectsV2 and checks the signature of every request by its own
// recomputation from the SigV4 steps.
#include <doctest/doctest.h>
#include <mbedtls/md5.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/http/server.hpp"
#include "connect/aws_sigv4.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

using http::HttpRequest;
using http::HttpResponse;
using http::HttpServer;
using http::HttpServerOptions;

constexpr std::string_view kAccessKey = "AKIAIOSFODNN7EXAMPLE";
constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr std::string_view kBucket = "drops";

// ---- An independent SigV4 check (the server's side), written from the
// documented steps.

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string uri_encode(std::string_view text, bool is_path) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (is_path && c == '/')) {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string trim(std::string_view v) {
  const auto b = v.find_first_not_of(' ');
  const auto e = v.find_last_not_of(' ');
  return b == std::string_view::npos ? std::string() : std::string(v.substr(b, e - b + 1));
}

// Empty when the request is correctly signed for `secret`; else the S3 error
// code.
std::string verify_sigv4(const HttpRequest& r, std::string_view secret) {
  const std::string auth(r.headers.get("Authorization").value_or(""));
  const std::string prefix = "AWS4-HMAC-SHA256 Credential=";
  if (!auth.starts_with(prefix)) return "AccessDenied";
  const auto c1 = auth.find(",SignedHeaders=");
  const auto c2 = auth.find(",Signature=");
  if (c1 == std::string::npos || c2 == std::string::npos) return "AuthorizationHeaderMalformed";
  const std::string credential = auth.substr(prefix.size(), c1 - prefix.size());
  const std::string signed_headers = auth.substr(c1 + 15, c2 - c1 - 15);
  const std::string signature = auth.substr(c2 + 11);
  // Credential = <key>/<date>/<region>/<service>/aws4_request
  std::vector<std::string> scope;
  for (std::size_t start = 0;;) {
    const auto slash = credential.find('/', start);
    scope.push_back(credential.substr(start, slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (scope.size() != 5 || scope[0] != kAccessKey) return "InvalidAccessKeyId";
  const std::string amz_date(r.headers.get("x-amz-date").value_or(""));
  if (amz_date.substr(0, 8) != scope[1]) return "AuthorizationHeaderMalformed";
  const std::string payload(r.headers.get("x-amz-content-sha256").value_or(""));
  if (payload != crypto::to_hex(crypto::sha256(r.body))) return "XAmzContentSHA256Mismatch";

  std::vector<std::pair<std::string, std::string>> query;
  for (std::size_t start = 0; start < r.query.size();) {
    auto amp = r.query.find('&', start);
    if (amp == std::string::npos) amp = r.query.size();
    const std::string pair = r.query.substr(start, amp - start);
    const auto eq = pair.find('=');
    query.emplace_back(uri_encode(percent_decode(pair.substr(0, eq)), false),
                       eq == std::string::npos
                           ? std::string()
                           : uri_encode(percent_decode(pair.substr(eq + 1)), false));
    start = amp + 1;
  }
  std::sort(query.begin(), query.end());
  std::string canonical_query;
  for (const auto& [k, v] : query)
    canonical_query += (canonical_query.empty() ? "" : "&") + k + "=" + v;
  std::string canonical_headers;
  for (std::size_t start = 0;;) {
    const auto semi = signed_headers.find(';', start);
    const std::string name = signed_headers.substr(start, semi - start);
    canonical_headers += name + ":" + trim(r.headers.get(name).value_or("")) + "\n";
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  const std::string canonical_request = r.method + "\n" + uri_encode(percent_decode(r.path), true) +
                                        "\n" + canonical_query + "\n" + canonical_headers + "\n" +
                                        signed_headers + "\n" + payload;
  const std::string string_to_sign = "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope[1] + "/" +
                                     scope[2] + "/" + scope[3] + "/aws4_request\n" +
                                     crypto::to_hex(crypto::sha256(canonical_request));
  std::string key = crypto::hmac_sha256("AWS4" + std::string(secret), scope[1]);
  key = crypto::hmac_sha256(key, scope[2]);
  key = crypto::hmac_sha256(key, scope[3]);
  key = crypto::hmac_sha256(key, "aws4_request");
  if (crypto::to_hex(crypto::hmac_sha256(key, string_to_sign)) != signature) {
    return "SignatureDoesNotMatch";
  }
  return {};
}

HttpResponse s3_error(int status, std::string_view code, std::string_view message) {
  return HttpResponse::text(status,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" +
                                std::string(code) + "</Code><Message>" + std::string(message) +
                                "</Message></Error>",
                            "application/xml");
}

std::string md5(std::string_view data) {
  unsigned char digest[16];
  mbedtls_md5_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), 16);
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out += c;
  }
  return out;
}

// A stand-in S3 server: one bucket in memory, path-style addressing.
class FakeS3 {
 public:
  struct Object {
    std::string body;
    std::string etag;
    std::string last_modified;
  };

  FakeS3() {
    HttpServerOptions options;
    options.threads = 2;
    server_ =
        std::make_unique<HttpServer>(options, [this](const HttpRequest& r) { return handle(r); });
    auto bound = server_->start();
    REQUIRE(bound.ok());
    port_ = *bound;
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void put(const std::string& key, std::string body) {
    std::lock_guard lock(mutex_);
    store(key, std::move(body));
  }
  std::optional<Object> get(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> keys() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [k, v] : objects_) out.push_back(k);
    return out;
  }

  std::atomic<int> list_requests{0};
  std::atomic<int> get_requests{0};
  std::atomic<int> put_requests{0};
  std::atomic<int> rejected_signatures{0};
  std::atomic<int> slow_downs{0};   // the next requests answered 503 SlowDown
  std::atomic<bool> broken{false};  // every request answered 500 InternalError

 private:
  void store(const std::string& key, std::string body) {
    Object o;
    o.etag = "\"" + crypto::to_hex(md5(body)) + "\"";
    o.last_modified = "2026-12-01T10:00:" + std::to_string(10 + ++clock_ % 50) + ".000Z";
    o.body = std::move(body);
    objects_[key] = std::move(o);
  }

  HttpResponse handle(const HttpRequest& r) {
    if (std::string code = verify_sigv4(r, kSecret); !code.empty()) {
      ++rejected_signatures;
      return s3_error(code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" ? 403 : 400,
                      code,
                      "The request signature we calculated does not match the signature "
                      "you provided.");
    }
    if (broken) return s3_error(500, "InternalError", "We encountered an internal error.");
    if (slow_downs > 0) {
      --slow_downs;
      return s3_error(503, "SlowDown", "Please reduce your request rate.");
    }
    const std::string bucket_path = "/" + std::string(kBucket);
    if (r.path != bucket_path && !r.path.starts_with(bucket_path + "/")) {
      return s3_error(404, "NoSuchBucket", "The specified bucket does not exist");
    }
    const std::string key = r.path.size() > bucket_path.size()
                                ? percent_decode(r.path.substr(bucket_path.size() + 1))
                                : "";
    std::lock_guard lock(mutex_);
    if (r.method == "GET" && key.empty()) return list(r);
    if (r.method == "GET") {
      ++get_requests;
      auto it = objects_.find(key);
      if (it == objects_.end())
        return s3_error(404, "NoSuchKey", "The specified key does not exist.");
      HttpResponse response = HttpResponse::text(200, it->second.body, "application/octet-stream");
      response.headers.set("ETag", it->second.etag);
      return response;
    }
    if (r.method == "PUT" && !key.empty()) {
      ++put_requests;
      if (auto sent = r.headers.get("Content-MD5")) {
        if (std::string(*sent) != crypto::base64_encode(md5(r.body))) {
          return s3_error(400, "BadDigest", "The Content-MD5 you specified did not match.");
        }
      }
      store(key, r.body);
      content_types_[key] = std::string(r.headers.get("Content-Type").value_or(""));
      HttpResponse response = HttpResponse::text(200, "");
      response.headers.set("ETag", objects_[key].etag);
      return response;
    }
    return s3_error(405, "MethodNotAllowed", "The specified method is not allowed.");
  }

  // ListObjectsV2: keys after the continuation token (the last key of the
  // previous page).
  HttpResponse list(const HttpRequest& r) {
    ++list_requests;
    std::map<std::string, std::string> q;
    for (std::size_t start = 0; start < r.query.size();) {
      auto amp = r.query.find('&', start);
      if (amp == std::string::npos) amp = r.query.size();
      const std::string pair = r.query.substr(start, amp - start);
      const auto eq = pair.find('=');
      q[percent_decode(pair.substr(0, eq))] =
          eq == std::string::npos ? "" : percent_decode(pair.substr(eq + 1));
      start = amp + 1;
    }
    if (q["list-type"] != "2") return s3_error(400, "InvalidArgument", "list-type must be 2");
    const std::string prefix = q["prefix"];
    const std::size_t max_keys = q.count("max-keys") ? std::stoul(q["max-keys"]) : 1000;
    std::string after;
    if (q.count("continuation-token"))
      after = crypto::base64_decode(q["continuation-token"]).value();
    std::string contents;
    std::size_t count = 0;
    std::string last;
    bool truncated = false;
    for (const auto& [key, o] : objects_) {
      if (!key.starts_with(prefix) || (!after.empty() && key <= after)) continue;
      if (count == max_keys) {
        truncated = true;
        break;
      }
      ++count;
      last = key;
      contents += "<Contents><Key>" + xml_escape(key) + "</Key><LastModified>" + o.last_modified +
                  "</LastModified><ETag>&quot;" + o.etag.substr(1, o.etag.size() - 2) +
                  "&quot;</ETag><Size>" + std::to_string(o.body.size()) +
                  "</Size><StorageClass>STANDARD</StorageClass></Contents>";
    }
    std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + doctype +
                      "<ListBucketResult "
                      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>" +
                      std::string(kBucket) + "</Name><Prefix>" + xml_escape(prefix) +
                      "</Prefix><KeyCount>" + std::to_string(count) + "</KeyCount><MaxKeys>" +
                      std::to_string(max_keys) + "</MaxKeys><IsTruncated>" +
                      (truncated ? "true" : "false") + "</IsTruncated>" + contents;
    if (truncated) {
      xml += "<NextContinuationToken>" + crypto::base64_encode(last) + "</NextContinuationToken>";
    }
    xml += "</ListBucketResult>";
    return HttpResponse::text(200, xml, "application/xml");
  }

 public:
  std::map<std::string, std::string> content_types_;
  std::string doctype;  // put before the listing's root element (a hostile endpoint)

 private:
  std::unique_ptr<HttpServer> server_;
  std::uint16_t port_ = 0;
  std::mutex mutex_;
  std::map<std::string, Object> objects_;
  int clock_ = 0;
};

std::unique_ptr<Connector> make_s3() {
  auto c = ConnectorCatalog::builtin().create("s3");
  REQUIRE(c.ok());
  return std::move(c).value();
}

ConnectorContext context_for(const FakeS3& s3, Json extra = Json::object()) {
  ConnectorContext context;
  context.config =
      Json::object({{"endpoint", s3.endpoint()},
                    {"region", "us-east-1"},
                    {"bucket", std::string(kBucket)},
                    {"prefix", "permits/"},
                    {"access_key_id", std::string(kAccessKey)},
                    {"secret_access_key", std::string(kSecret)},
                    {"retry", Json::object({{"initial_backoff_ms", 1}, {"max_backoff_ms", 5}})}});
  for (const auto& [k, v] : extra.as_object()) context.config.set(k, v);
  context.timeout = std::chrono::milliseconds(5000);
  return context;
}

std::vector<std::string> values_of(const CollectingEmitter& out, const std::string& column) {
  std::vector<std::string> values;
  for (const RecordBatch& b : out.batches) {
    const int i = b.column_index(column);
    for (const Record& r : b.records) values.push_back(RecordBatch::value(r, i).dump());
  }
  return values;
}

// Counts checkpoints as they come.
class CountingEmitter : public CollectingEmitter {
 public:
  Status checkpoint(std::string_view stream, Json state) override {
    ++checkpoints;
    return CollectingEmitter::checkpoint(stream, std::move(state));
  }
  int checkpoints = 0;
};

}  // namespace

TEST_CASE("sigv4 signer reproduces the AWS documented GET Object example") {
  // "Examples: Signature Calculations in AWS Signature Version 4", Example: GET
  // Object (Amazon S3 API Reference, sig-v4-header-based-auth): the first 10
  // bytes of test.txt.
  detail::SigV4Request request;
  request.method = "GET";
  request.canonical_uri = "/test.txt";
  const std::string empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  request.payload_sha256 = empty_sha;
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"Range", "bytes=0-9"},
                     {"x-amz-content-sha256", empty_sha},
                     {"x-amz-date", "20130524T000000Z"}};
  detail::AwsCredentials credentials{std::string(kAccessKey), std::string(kSecret), ""};
  auto signed_request =
      detail::sign_v4(request, credentials, "us-east-1", "s3", "20130524T000000Z");
  CHECK(signed_request.canonical_request ==
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:" +
            empty_sha +
            "\nx-amz-date:20130524T000000Z\n\n"
            "host;range;x-amz-content-sha256;x-amz-date\n" +
            empty_sha);
  CHECK(signed_request.string_to_sign ==
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  CHECK(signed_request.signature ==
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  CHECK(signed_request.authorization ==
        "AWS4-HMAC-SHA256 "
        "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature="
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  CHECK(detail::aws_amz_date(SystemTime{std::chrono::seconds{1369353600}}) == "20130524T000000Z");
}

TEST_CASE("s3 addressing builds path-style and virtual-host-style URLs") {
  auto path = detail::s3_address("http://127.0.0.1:9000", "drops", "in/a b+c.csv", false);
  REQUIRE(path.ok());
  CHECK(path->url == "http://127.0.0.1:9000/drops/in/a%20b%2Bc.csv");
  CHECK(path->host == "127.0.0.1:9000");
  CHECK(path->canonical_uri == "/drops/in/a%20b%2Bc.csv");
  auto virt =
      detail::s3_address("https://s3.ca-central-1.amazonaws.com", "drops", "in/x.csv", true);
  REQUIRE(virt.ok());
  CHECK(virt->url == "https://drops.s3.ca-central-1.amazonaws.com/in/x.csv");
  CHECK(virt->host == "drops.s3.ca-central-1.amazonaws.com");
  CHECK(virt->canonical_uri == "/in/x.csv");
  auto bucket_only = detail::s3_address("https://s3.amazonaws.com", "drops", "", true);
  REQUIRE(bucket_only.ok());
  CHECK(bucket_only->canonical_uri == "/");
  auto dotted = detail::s3_address("https://s3.amazonaws.com", "My.Bucket", "", true);
  CHECK(dotted.status().code() == ErrorCode::kInvalidArgument);
  CHECK(detail::s3_address("ftp://host", "b", "", false).status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("s3 is in the builtin catalog with its secrets marked") {
  auto catalog = ConnectorCatalog::builtin();
  REQUIRE(catalog.contains("s3"));
  auto c = catalog.create("s3");
  REQUIRE(c.ok());
  auto secrets = (*c)->spec().secret_pointers();
  CHECK(std::find(secrets.begin(), secrets.end(), "/secret_access_key") != secrets.end());
  CHECK(std::find(secrets.begin(), secrets.end(), "/session_token") != secrets.end());
  CHECK((*c)->spec().is_source);
  CHECK((*c)->spec().is_sink);
}

TEST_CASE(
    "s3 source reads new and changed objects across listing pages, "
    "checkpointing each") {
  FakeS3 s3;
  s3.put("permits/2026-11-01.csv", "permit_id,ward\nP-1,3\nP-2,5\n");
  s3.put("permits/2026-11-02.csv", "permit_id,ward\nP-3,1\n");
  s3.put("permits/2026-11-03.csv", "permit_id,ward\nP-4,2\nP-5,2\n");
  s3.put("permits/readme.txt", "not data");
  s3.put("permits/archive/", "");  // a folder marker
  s3.put("other/2026-11-01.csv", "permit_id,ward\nX-1,9\n");
  auto s3c = make_s3();
  // A page of two keys makes three ListObjectsV2 pages for the five keys under
  // the prefix.
  ConnectorContext context =
      context_for(s3, Json::object({{"pattern", "*.csv"}, {"page_size", 2}}));
  REQUIRE(s3c->check(context).ok());

  auto streams = s3c->discover(context);
  REQUIRE(streams.ok());
  REQUIRE(streams->size() == 1);
  CHECK(streams->front().name == "permits");
  REQUIRE(streams->front().field("ward") != nullptr);
  CHECK(streams->front().field("ward")->type == FieldType::kInteger);

  CountingEmitter out;
  const int lists_before = s3.list_requests;
  REQUIRE(s3c->read(context, ReadRequest{}, out).ok());
  CHECK(s3.list_requests - lists_before == 3);
  CHECK(values_of(out, "permit_id") ==
        std::vector<std::string>{"\"P-1\"", "\"P-2\"", "\"P-3\"", "\"P-4\"", "\"P-5\""});
  CHECK(out.checkpoints == 3);  // one per object
  const Json state = *out.states.find("permits");
  const Json* objects = state.find("objects");
  REQUIRE(objects != nullptr);
  CHECK(objects->size() == 3);
  CHECK(objects->find("permits/2026-11-02.csv")->get_string("etag").size() == 32);

  // Nothing new: nothing read, the state stays.
  ReadRequest again;
  again.state = Json::object({{"permits", state}});
  CountingEmitter quiet;
  const int gets_before = s3.get_requests;
  REQUIRE(s3c->read(context, again, quiet).ok());
  CHECK(quiet.record_count() == 0);
  CHECK(s3.get_requests == gets_before);
  CHECK(quiet.checkpoints == 1);

  // A new object and a replaced one: only those two are read.
  s3.put("permits/2026-11-04.csv", "permit_id,ward\nP-6,4\n");
  s3.put("permits/2026-11-02.csv", "permit_id,ward\nP-3,1\nP-3b,1\n");
  CountingEmitter next;
  REQUIRE(s3c->read(context, again, next).ok());
  CHECK(values_of(next, "permit_id") == std::vector<std::string>{"\"P-3\"", "\"P-3b\"", "\"P-6\""});
  CHECK(next.checkpoints == 2);
  CHECK(next.states.find("permits")->find("objects")->size() == 4);
}

TEST_CASE(
    "s3 source parses ndjson and json objects with the file connectors' "
    "parsers") {
  FakeS3 s3;
  s3.put("permits/a.ndjson", "{\"id\":1,\"fee\":12.5}\nnot json\n{\"id\":2,\"fee\":3}\n");
  s3.put("permits/b.json", "[{\"id\":3,\"fee\":1}]");
  auto s3c = make_s3();
  CollectingEmitter out;
  REQUIRE(s3c->read(context_for(s3), ReadRequest{}, out).ok());
  CHECK(values_of(out, "id") == std::vector<std::string>{"1", "2", "3"});

  // A broken object names its key, not the local download.
  s3.put("permits/c.json", "[{\"id\":4},");
  CollectingEmitter broken;
  Status s = s3c->read(context_for(s3), ReadRequest{}, broken);
  CHECK(s.code() == ErrorCode::kInvalidArgument);
  CHECK(s.message().find("s3://drops/permits/c.json") != std::string::npos);
}

TEST_CASE("s3 sink puts each batch as one object named from the template") {
  FakeS3 s3;
  auto s3c = make_s3();
  RecordBatch batch("permits", {"permit_id", "ward"});
  batch.records.push_back(Record{{Json("P-1"), Json(3)}, 1});
  batch.records.push_back(Record{{Json("P-2, annex"), Json()}, 2});
  WriteRequest request;
  request.stream = "permits";
  request.batch_id = "run7:1";

  ConnectorContext csv = context_for(
      s3,
      Json::object({{"format", "csv"}, {"key_template", "out/{stream}/{date}/{batch_id}.{ext}"}}));
  csv.clock = nullptr;
  auto written = s3c->write(csv, request, batch);
  REQUIRE(written.ok());
  CHECK(written->written == 2);
  const auto keys = s3.keys();
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].starts_with("permits/out/permits/20"));
  CHECK(keys[0].ends_with("/run7-1.csv"));
  CHECK(s3.get(keys[0])->body == "permit_id,ward\r\nP-1,3\r\n\"P-2, annex\",\r\n");
  CHECK(s3.content_types_[keys[0]].starts_with("text/csv"));

  // The same batch id replayed overwrites its own object.
  REQUIRE(s3c->write(csv, request, batch).ok());
  CHECK(s3.keys().size() == 1);

  ConnectorContext ndjson =
      context_for(s3, Json::object({{"key_template", "{stream}-{batch_id}.{ext}"}}));
  request.batch_id = "run7:2";
  REQUIRE(s3c->write(ndjson, request, batch).ok());
  auto object = s3.get("permits/permits-run7-2.ndjson");
  REQUIRE(object.has_value());
  CHECK(object->body ==
        "{\"permit_id\":\"P-1\",\"ward\":3}\n{\"permit_id\":"
        "\"P-2, annex\",\"ward\":null}\n");
  CHECK(s3.put_requests == 3);
  CHECK(s3.rejected_signatures == 0);

  request.mode = WriteMode::kUpsert;
  CHECK(s3c->write(ndjson, request, batch).status().code() == ErrorCode::kInvalidArgument);
  auto bad_template = context_for(s3, Json::object({{"key_template", "{stream}/{hour}.ndjson"}}));
  request.mode = WriteMode::kAppend;
  CHECK(s3c->write(bad_template, request, batch).status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("s3 maps a wrong secret to permission denied and 5xx to unavailable") {
  FakeS3 s3;
  s3.put("permits/a.csv", "id\n1\n");
  auto s3c = make_s3();

  ConnectorContext wrong = context_for(s3, Json::object({{"secret_access_key", "not-the-secret"}}));
  Status s = s3c->check(wrong);
  CHECK(s.code() == ErrorCode::kPermissionDenied);
  CHECK(s.message().find("SignatureDoesNotMatch") != std::string::npos);
  CHECK(s3.rejected_signatures >= 1);
  CollectingEmitter none;
  CHECK(s3c->read(wrong, ReadRequest{}, none).code() == ErrorCode::kPermissionDenied);

  // SlowDown twice, then served: the rest layer's retries absorb it.
  s3.slow_downs = 2;
  CollectingEmitter out;
  REQUIRE(s3c->read(context_for(s3), ReadRequest{}, out).ok());
  CHECK(out.record_count() == 1);
  CHECK(s3.slow_downs == 0);

  // SlowDown beyond the retries, and a 500: kUnavailable naming the S3 code.
  s3.slow_downs = 100;
  Status slow = s3c->check(context_for(
      s3,
      Json::object({{"retry", Json::object({{"max_retries", 1}, {"initial_backoff_ms", 1}})}})));
  CHECK(slow.code() == ErrorCode::kUnavailable);
  CHECK(slow.message().find("SlowDown") != std::string::npos);
  s3.slow_downs = 0;
  s3.broken = true;
  Status broken = s3c->check(context_for(s3));
  CHECK(broken.code() == ErrorCode::kUnavailable);
  CHECK(broken.message().find("InternalError") != std::string::npos);
  s3.broken = false;

  auto missing_bucket = context_for(s3, Json::object({{"bucket", "elsewhere"}}));
  CHECK(s3c->check(missing_bucket).code() == ErrorCode::kNotFound);
}

TEST_CASE("s3 refuses a listing with a DOCTYPE before expanding any entity") {
  FakeS3 s3;
  s3.put("permits/a.csv", "id\n1\n");
  // "Billion laughs": each entity ten of the one before; expanded, lol9 would be 3 GB.
  std::string dtd = "<!DOCTYPE ListBucketResult [<!ENTITY lol0 \"lol\">";
  for (int i = 1; i <= 9; ++i) {
    dtd += "<!ENTITY lol" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) dtd += "&lol" + std::to_string(i - 1) + ";";
    dtd += "\">";
  }
  s3.doctype = dtd + "]>\n";
  auto s3c = make_s3();
  CollectingEmitter out;
  const Status s = s3c->read(context_for(s3), ReadRequest{}, out);
  CHECK(s.code() == ErrorCode::kDataLoss);
  CHECK(s.message().find("DOCTYPE") != std::string::npos);
  CHECK(out.record_count() == 0);
}

}  // namespace civicbus::connect

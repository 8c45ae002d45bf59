// The s3 connector: a bucket and prefix of S3-compatible object storage (AWS
// S3, MinIO, Ceph RGW) read like a watched folder, and written one object per
// batch. Requests go through RestClient (its retries on 503 SlowDown and
// connection failures) signed with AWS Signature Version 4 (aws_sigv4.hpp).
// docs/connectors.md ("Object storage and SFTP") describes the configuration.
#include <fmt/format.h>
#include <mbedtls/md5.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>

#include "civicbus/core/crypto.hpp"
#include "connect/aws_sigv4.hpp"
#include "connect/builtin_connectors.hpp"
#include "connect/remote_files.hpp"
#include "connect/rest_client.hpp"
#include "core/xml_tree.hpp"

namespace civicbus::connect::detail {

namespace {

ConnectorSpec s3_spec() {
  ConnectorSpec spec;
  spec.name = "s3";
  spec.title = "S3-compatible object storage";
  spec.description =
      "Reads the objects under a bucket prefix like a watched "
      "folder (new or changed objects "
      "only, CSV, JSON or NDJSON) and writes each batch as one "
      "object; AWS S3, MinIO, Ceph.";
  spec.format_source =
      "Amazon S3 API Reference (ListObjectsV2, GetObject, "
      "PutObject); AWS Signature Version 4";
  spec.is_source = true;
  spec.is_sink = true;
  auto schema = Json::parse(std::string(R"js({
  "type": "object",
  "required": ["bucket", "access_key_id", "secret_access_key"],
  "properties": {
    "endpoint": {"type": "string", "minLength": 1,
                 "description": "http(s)://host[:port]; default https://s3.<region>.amazonaws.com"},
    "region": {"type": "string", "minLength": 1, "default": "us-east-1"},
    "bucket": {"type": "string", "minLength": 1},
    "prefix": {"type": "string", "default": ""},
    "addressing": {"enum": ["path", "virtual"],
                   "description": "default: virtual for AWS, path for a custom endpoint"},
    "access_key_id": {"type": "string", "minLength": 1},
    "secret_access_key": {"type": "string", "minLength": 1, "secret": true},
    "session_token": {"type": "string", "secret": true},
    "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
    "key_template": {"type": "string", "minLength": 1,
                     "default": "{stream}/{date}/{batch_id}.{ext}",
                     "description": "Sink: object key after the prefix"},
    "max_object_bytes": {"type": "integer", "minimum": 1024, "default": 536870912,
                         "description": "Source: the largest object read (held in memory)"},
    "retry": {"type": "object"},)js") +
                            std::string(remote_format_properties()) + R"js(
  }
})js");
  spec.config_schema = schema.ok() ? std::move(schema).value() : Json::object({{"type", "object"}});
  return spec;
}

struct S3Config {
  std::string endpoint;
  std::string region;
  std::string bucket;
  std::string prefix;
  bool virtual_host = false;
  AwsCredentials credentials;
  std::string pattern;
  std::string stream;
  std::int64_t page_size = 1000;
  std::string key_template;
  std::int64_t max_object_bytes = 512ll << 20;
  RetryPolicy retry;
};

Result<S3Config> parse_s3_config(const Json& config) {
  S3Config c;
  c.region = config.get_string("region", "us-east-1");
  c.bucket = config.get_string("bucket");
  if (c.bucket.empty()) return invalid_argument("s3 config has no \"bucket\"");
  c.endpoint = config.get_string("endpoint");
  const bool aws = c.endpoint.empty();
  if (aws) c.endpoint = fmt::format("https://s3.{}.amazonaws.com", c.region);
  const std::string addressing = config.get_string("addressing", aws ? "virtual" : "path");
  if (addressing != "path" && addressing != "virtual") {
    return invalid_argument(
        fmt::format("\"addressing\" must be path or virtual (got '{}')", addressing));
  }
  c.virtual_host = addressing == "virtual";
  c.prefix = config.get_string("prefix");
  c.credentials.access_key_id = config.get_string("access_key_id");
  c.credentials.secret_access_key = config.get_string("secret_access_key");
  c.credentials.session_token = config.get_string("session_token");
  if (c.credentials.access_key_id.empty() || c.credentials.secret_access_key.empty()) {
    return invalid_argument("s3 config needs \"access_key_id\" and \"secret_access_key\"");
  }
  c.pattern = config.get_string("pattern", "*");
  std::string last = c.prefix;
  while (last.ends_with('/')) last.pop_back();
  last = last.substr(last.rfind('/') == std::string::npos ? 0 : last.rfind('/') + 1);
  c.stream = config.get_string("stream", last.empty() ? c.bucket : last);
  c.page_size = std::clamp<std::int64_t>(config.get_int("page_size", 1000), 1, 1000);
  c.key_template = config.get_string("key_template", "{stream}/{date}/{batch_id}.{ext}");
  c.max_object_bytes = config.get_int("max_object_bytes", c.max_object_bytes);
  CIVICBUS_ASSIGN_OR_RETURN(c.retry, RetryPolicy::from_json(config.find("retry")));
  // Validates the endpoint and the bucket once, before any request.
  CIVICBUS_RETURN_IF_ERROR(s3_address(c.endpoint, c.bucket, "", c.virtual_host).status());
  return c;
}

// One object of a listing.
struct S3Object {
  std::string key;
  std::string etag;  // without its quotes
  std::string last_modified;
  std::int64_t size = 0;
};

struct ListPage {
  std::vector<S3Object> objects;
  bool truncated = false;
  std::string next_token;
};

// An S3 answer (a ListBucketResult or an Error document) as a JSON tree, read by the
// library's one XML reader (core/xml_tree.hpp: a DOCTYPE is refused, so no entity is ever
// expanded or loaded).
Result<Json> s3_xml(std::string_view xml) {
  civicbus::detail::XmlTreeOptions options;
  options.encoding = "UTF-8";
  auto document = civicbus::detail::xml_document_to_json(xml, std::move(options), "");
  if (!document.ok()) return data_loss(document.status().message());
  return document;
}

// The member of an element (or the root of a document) named `local`, with or without a
// namespace prefix ("s3:Key").
const Json* s3_member(const Json& element, std::string_view local) {
  if (!element.is_object()) return nullptr;
  for (const auto& [name, value] : element.as_object()) {
    const std::size_t colon = name.rfind(':');
    if (std::string_view(name).substr(colon == std::string::npos ? 0 : colon + 1) == local) {
      return &value;
    }
  }
  return nullptr;
}

// The text of a member; "" when it is missing or empty.
std::string s3_text(const Json& element, std::string_view local) {
  const Json* value = s3_member(element, local);
  return value != nullptr && value->is_string() ? value->as_string() : std::string();
}

std::string strip_quotes(std::string text) {
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
    return text.substr(1, text.size() - 2);
  }
  return text;
}

Result<ListPage> parse_list_page(std::string_view xml, std::string_view bucket) {
  auto document = s3_xml(xml);
  if (!document.ok()) {
    return data_loss(fmt::format("the ListObjectsV2 answer for bucket '{}' is not valid XML: {}",
                                 bucket, document.status().message()));
  }
  const Json* result = s3_member(*document, "ListBucketResult");
  if (result == nullptr) {
    return data_loss(fmt::format(
        "the ListObjectsV2 answer for bucket '{}' is not a ListBucketResult document", bucket));
  }
  ListPage page;
  auto add = [&page](const Json& contents) {
    S3Object object;
    object.key = s3_text(contents, "Key");
    object.etag = strip_quotes(s3_text(contents, "ETag"));
    object.last_modified = s3_text(contents, "LastModified");
    object.size = std::strtoll(s3_text(contents, "Size").c_str(), nullptr, 10);
    page.objects.push_back(std::move(object));
  };
  if (const Json* contents = s3_member(*result, "Contents"); contents != nullptr) {
    if (contents->is_array()) {
      for (const Json& c : contents->as_array()) add(c);
    } else {
      add(*contents);
    }
  }
  page.truncated = s3_text(*result, "IsTruncated") == "true";
  page.next_token = s3_text(*result, "NextContinuationToken");
  if (page.truncated && page.next_token.empty()) {
    return data_loss(
        fmt::format("the ListObjectsV2 answer for bucket '{}' is "
                    "truncated without a continuation token",
                    bucket));
  }
  return page;
}

// The Code and Message of an S3 <Error> body, when there is one.
std::pair<std::string, std::string> s3_error(std::string_view body) {
  auto document = s3_xml(body);
  if (!document.ok()) return {};
  const Json* error = s3_member(*document, "Error");
  if (error == nullptr) return {};
  return {s3_text(*error, "Code"), s3_text(*error, "Message")};
}

// The status of a non-2xx S3 answer to `what` ("GET s3://bucket/key").
Status s3_status(const RestResponse& response, std::string_view what) {
  auto [code, message] = s3_error(response.body);
  const std::string detail =
      fmt::format("{} answered {}{}{}", what, response.status, code.empty() ? "" : " " + code,
                  message.empty() ? "" : ": " + message);
  if (response.status == 401 || response.status == 403) {
    std::string hint;
    if (code == "SignatureDoesNotMatch") {
      hint = " (check \"secret_access_key\", \"region\" and the endpoint's clock)";
    } else if (code == "InvalidAccessKeyId") {
      hint = " (check \"access_key_id\")";
    }
    return permission_denied(detail + hint);
  }
  if (response.status == 404) return not_found(detail);
  if (response.status >= 500) return unavailable(detail);
  return invalid_argument(detail);
}

std::string md5_base64(std::string_view data) {
  unsigned char digest[16];
  mbedtls_md5_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return crypto::base64_encode(std::string_view(reinterpret_cast<char*>(digest), 16));
}

// Signs and sends the requests of one connector call.
class S3Client {
 public:
  static Result<S3Client> create(const ConnectorContext& context, S3Config config) {
    S3Client client;
    CIVICBUS_ASSIGN_OR_RETURN(
        client.rest_, RestClient::create(AuthConfig{}, config.retry, context.timeout,
                                         static_cast<std::size_t>(config.max_object_bytes)));
    client.config_ = std::move(config);
    client.context_ = &context;
    return client;
  }

  // `query` is raw; it goes on the wire in the canonical order and encoding, so
  // what is sent is what was signed.
  Result<RestResponse> send(std::string_view method, std::string_view key, const QueryParams& query,
                            std::string body = {}, std::string content_type = {},
                            bool content_md5 = false) {
    CIVICBUS_ASSIGN_OR_RETURN(
        S3Address address, s3_address(config_.endpoint, config_.bucket, key, config_.virtual_host));
    CIVICBUS_ASSIGN_OR_RETURN(Url url, Url::parse(address.url));
    SigV4Request request;
    request.method = std::string(method);
    request.canonical_uri = address.canonical_uri;
    request.query.assign(query.begin(), query.end());
    request.payload_sha256 = crypto::to_hex(crypto::sha256(body));
    const std::string amz_date = aws_amz_date(context_->now());
    request.headers = {{"host", address.host},
                       {"x-amz-date", amz_date},
                       {"x-amz-content-sha256", request.payload_sha256}};
    if (!config_.credentials.session_token.empty()) {
      request.headers.emplace_back("x-amz-security-token", config_.credentials.session_token);
    }
    if (content_md5) request.headers.emplace_back("content-md5", md5_base64(body));
    if (!content_type.empty()) request.headers.emplace_back("content-type", content_type);
    const SigV4Signature signature =
        sign_v4(request, config_.credentials, config_.region, "s3", amz_date);
    std::vector<std::pair<std::string, std::string>> encoded;
    for (const auto& [name, value] : query) {
      encoded.emplace_back(aws_uri_encode(name, false), aws_uri_encode(value, false));
    }
    std::sort(encoded.begin(), encoded.end());
    for (std::size_t i = 0; i < encoded.size(); ++i) {
      url.target += (i == 0 ? "?" : "&") + encoded[i].first + "=" + encoded[i].second;
    }
    http::HttpHeaders headers;
    for (const auto& [name, value] : request.headers) {
      if (name != "host" && name != "content-type") headers.add(name, value);
    }
    headers.set("Authorization", signature.authorization);
    headers.set("Accept", "application/xml");
    return rest_->send(method, url, {}, std::move(body), std::move(content_type), headers);
  }

  Result<ListPage> list_page(const std::string& token, std::int64_t max_keys) {
    QueryParams query{
        {"list-type", "2"}, {"prefix", config_.prefix}, {"max-keys", std::to_string(max_keys)}};
    if (!token.empty()) query.emplace_back("continuation-token", token);
    CIVICBUS_ASSIGN_OR_RETURN(RestResponse response, send("GET", "", query));
    if (response.status / 100 != 2) {
      return s3_status(response,
                       fmt::format("ListObjectsV2 s3://{}/{}", config_.bucket, config_.prefix));
    }
    return parse_list_page(response.body, config_.bucket);
  }

  // Every object under the prefix whose name after the prefix matches the
  // pattern, by key.
  Result<std::vector<S3Object>> list_all(const RecordEmitter* out) {
    std::vector<S3Object> objects;
    std::string token;
    do {
      if (out != nullptr && out->cancelled()) {
        return cancelled(
            fmt::format("listing of s3://{}/{} cancelled", config_.bucket, config_.prefix));
      }
      CIVICBUS_ASSIGN_OR_RETURN(ListPage page, list_page(token, config_.page_size));
      for (S3Object& o : page.objects) {
        if (o.key.ends_with('/') || !o.key.starts_with(config_.prefix)) continue;  // folders
        if (!glob_matches(config_.pattern, o.key.substr(config_.prefix.size()))) continue;
        objects.push_back(std::move(o));
      }
      token = page.truncated ? page.next_token : std::string();
    } while (!token.empty());
    std::sort(objects.begin(), objects.end(),
              [](const S3Object& a, const S3Object& b) { return a.key < b.key; });
    return objects;
  }

  Result<std::string> get_object(const std::string& key) {
    CIVICBUS_ASSIGN_OR_RETURN(RestResponse response, send("GET", key, {}));
    if (response.status / 100 != 2) {
      return s3_status(response, fmt::format("GetObject s3://{}/{}", config_.bucket, key));
    }
    return std::move(response.body);
  }

  Status put_object(const std::string& key, std::string body, std::string content_type) {
    CIVICBUS_ASSIGN_OR_RETURN(RestResponse response,
                              send("PUT", key, {}, std::move(body), std::move(content_type),
                                   /*content_md5=*/true));
    if (response.status / 100 != 2) {
      return s3_status(response, fmt::format("PutObject s3://{}/{}", config_.bucket, key));
    }
    return Status();
  }

  const S3Config& config() const { return config_; }

 private:
  S3Client() = default;
  std::unique_ptr<RestClient> rest_;
  S3Config config_;
  const ConnectorContext* context_ = nullptr;
};

Status write_file(const std::string& path, std::string_view bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file.close();
  if (!file) return io_error(fmt::format("cannot write download file '{}'", path));
  return Status();
}

class S3Connector final : public Connector {
 public:
  S3Connector() : spec_(s3_spec()) {}
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(S3Config config, parse_s3_config(context.config));
    CIVICBUS_ASSIGN_OR_RETURN(S3Client client, S3Client::create(context, std::move(config)));
    return client.list_page("", 1).status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(S3Config config, parse_s3_config(context.config));
    CIVICBUS_ASSIGN_OR_RETURN(S3Client client, S3Client::create(context, config));
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<S3Object> objects, client.list_all(nullptr));
    if (objects.empty()) return std::vector<StreamSpec>{StreamSpec{config.stream, {}, {}, {}}};
    // The first object stands for the others, as a sample file does for a
    // watched folder.
    const S3Object& first = objects.front();
    CIVICBUS_ASSIGN_OR_RETURN(RemoteFormat format, remote_format(context.config, first.key));
    CIVICBUS_ASSIGN_OR_RETURN(std::string body, client.get_object(first.key));
    CIVICBUS_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::create(context, "s3-download"));
    const std::string local = scratch.file_for(first.key, 0);
    CIVICBUS_RETURN_IF_ERROR(write_file(local, body));
    CIVICBUS_ASSIGN_OR_RETURN(StreamSpec stream,
                              discover_downloaded(context, format, local, config.stream));
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(S3Config config, parse_s3_config(context.config));
    if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                              config.stream) == request.streams.end()) {
      return not_found(fmt::format("connector 's3' has no stream '{}' (it offers '{}')",
                                   request.streams.front(), config.stream));
    }
    CIVICBUS_ASSIGN_OR_RETURN(S3Client client, S3Client::create(context, config));
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<S3Object> objects, client.list_all(&out));

    // As a watched folder: objects new or changed (ETag or LastModified) since
    // the state, in key order, each checkpointed once read. The state keeps
    // only keys still listed.
    const Json* state = request.stream_state(config.stream);
    const Json* known = state != nullptr ? state->find("objects") : nullptr;
    Json seen = Json::object();
    std::vector<const S3Object*> todo;
    for (const S3Object& o : objects) {
      const Json* k = known != nullptr ? known->find(o.key) : nullptr;
      if (k != nullptr && k->get_string("etag") == o.etag &&
          k->get_string("last_modified") == o.last_modified) {
        seen.set(o.key, *k);
      } else {
        todo.push_back(&o);
      }
    }
    auto state_of = [&] { return Json::object({{"objects", seen}}); };
    if (todo.empty()) return out.checkpoint(config.stream, state_of());

    CIVICBUS_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::create(context, "s3-download"));
    std::int64_t emitted = 0;
    std::int64_t index = 0;
    for (const S3Object* o : todo) {
      const bool limited = request.max_records >= 0;
      if (limited && emitted >= request.max_records) break;
      if (out.cancelled()) {
        return cancelled(fmt::format("read of s3://{}/{} cancelled", config.bucket, config.prefix));
      }
      CIVICBUS_ASSIGN_OR_RETURN(RemoteFormat format, remote_format(context.config, o->key));
      CIVICBUS_ASSIGN_OR_RETURN(std::string body, client.get_object(o->key));
      const std::string local = scratch.file_for(o->key, index++);
      CIVICBUS_RETURN_IF_ERROR(write_file(local, body));
      body = {};
      const std::string shown = fmt::format("s3://{}/{}", config.bucket, o->key);
      CIVICBUS_RETURN_IF_ERROR(
          parse_downloaded(context, format, local, shown, config.stream, request.batch_size,
                           limited ? request.max_records - emitted : -1, out, emitted));
      std::remove(local.c_str());
      // An object cut short by the record limit (a test sync's sample) is not
      // marked read.
      if (limited && emitted >= request.max_records) break;
      seen.set(o->key, Json::object({{"etag", o->etag}, {"last_modified", o->last_modified}}));
      CIVICBUS_RETURN_IF_ERROR(out.checkpoint(config.stream, state_of()));
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    if (request.mode == WriteMode::kUpsert) {
      return invalid_argument(
          fmt::format("connector 's3' writes one object per batch; upsert "
                      "(stream '{}') needs a database sink",
                      request.stream));
    }
    CIVICBUS_ASSIGN_OR_RETURN(S3Config config, parse_s3_config(context.config));
    const std::string format_name = context.config.get_string("format", "ndjson");
    if (format_name != "csv" && format_name != "ndjson" && format_name != "auto") {
      return invalid_argument(
          fmt::format("connector 's3' writes csv or ndjson "
                      "objects; \"format\" '{}' is not one",
                      format_name));
    }
    const RemoteFormat format = format_name == "csv" ? RemoteFormat::kCsv : RemoteFormat::kNdjson;
    const std::string delimiter = context.config.get_string("delimiter", ",");
    CIVICBUS_ASSIGN_OR_RETURN(EncodedBatch encoded,
                              encode_batch(batch, format, delimiter.empty() ? ',' : delimiter[0]));
    // The batch id names the object, so a replayed batch overwrites its own
    // object instead of adding a second one.
    std::string batch_id = request.batch_id;
    if (batch_id.empty()) {
      batch_id = fmt::format("{}-{}", aws_amz_date(context.now()), ++unnamed_batches_);
    }
    const std::string stream = request.stream.empty() ? config.stream : request.stream;
    CIVICBUS_ASSIGN_OR_RETURN(std::string name,
                              render_name(config.key_template, stream, batch_id, context.now(),
                                          remote_format_name(format)));
    CIVICBUS_ASSIGN_OR_RETURN(S3Client client, S3Client::create(context, config));
    CIVICBUS_RETURN_IF_ERROR(client.put_object(
        config.prefix + name, std::move(encoded.bytes),
        format == RemoteFormat::kCsv ? "text/csv; charset=utf-8" : "application/x-ndjson"));
    return std::move(encoded.result);
  }

 private:
  ConnectorSpec spec_;
  std::atomic<std::int64_t> unnamed_batches_{0};
};

}  // namespace

Status add_object_storage_connectors(ConnectorCatalog& catalog) {
  CIVICBUS_RETURN_IF_ERROR(catalog.add([] { return std::make_unique<S3Connector>(); }));
  return add_sftp_connector(catalog);
}

}  // namespace civicbus::connect::detail

// The generic REST connector (`http`) and the inbound webhook source
// (`webhook`), and the family's registration.
#include "http_connectors.hpp"

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "builtin_connectors.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/http/server.hpp"
#include "civicbus/storage/database.hpp"
#include "rest_client.hpp"

namespace civicbus::connect::detail {

Result<std::string> required_string(const Json& config, std::string_view key) {
  const Json* v = config.find(key);
  if (v == nullptr || !v->is_string() || v->as_string().empty()) {
    return invalid_argument("config needs '" + std::string(key) + "' (a non-empty string)");
  }
  return v->as_string();
}

Result<std::vector<std::string>> streams_to_read(const ReadRequest& request,
                                                 const std::vector<std::string>& offered,
                                                 std::string_view connector) {
  if (request.streams.empty()) return offered;
  for (const auto& s : request.streams) {
    if (std::find(offered.begin(), offered.end(), s) == offered.end()) {
      std::string list;
      for (const auto& o : offered) list += (list.empty() ? "" : ", ") + o;
      return not_found("connector '" + std::string(connector) + "' has no stream '" + s +
                       "' (it offers: " + list + ")");
    }
  }
  return request.streams;
}

namespace {

Json string_schema(bool secret = false) {
  Json s = Json::object({{"type", "string"}});
  if (secret) s.set("secret", true);
  return s;
}

// Orders cursor values: numbers by value, everything else as text (RFC 3339
// timestamps in one format order as text).
bool cursor_less(const Json& a, const Json& b) {
  if (a.is_null()) return !b.is_null();
  if (b.is_null()) return false;
  if (a.is_number() && b.is_number()) return a.as_double() < b.as_double();
  return scalar_text(a) < scalar_text(b);
}

// ---------------------------------------------------------------------------------------------
// http: a generic REST source and sink.

struct Pagination {
  enum class Type { kNone, kPageNumber, kOffset, kCursor, kNextUrl, kLink };
  Type type = Type::kNone;
  std::string page_param = "page";
  std::int64_t start_page = 1;
  std::string size_param;  // page_number: the page size parameter, if the API takes one
  std::int64_t page_size = 0;
  std::string offset_param = "offset";
  std::string limit_param = "limit";
  std::string cursor_param = "cursor";
  std::string cursor_pointer;    // where the next page's token is in a response
  std::string next_url_pointer;  // where the next page's URL is in a response
  std::int64_t max_pages = 100'000;
};

struct HttpSettings {
  Url base;
  std::string stream = "records";
  QueryParams query;
  http::HttpHeaders headers;
  std::string records_pointer;
  std::vector<std::string> primary_key;
  std::string cursor_field;
  std::string cursor_param;
  Json start_cursor;
  Pagination pagination;
  AuthConfig auth;
  RetryPolicy retry;
  std::string write_method = "POST";
  std::string write_path;
  bool write_batch = false;
};

Result<HttpSettings> parse_http_settings(const Json& config) {
  HttpSettings s;
  CIVICBUS_ASSIGN_OR_RETURN(std::string base_url, required_string(config, "base_url"));
  CIVICBUS_ASSIGN_OR_RETURN(s.base, Url::parse(base_url));
  std::string path = config.get_string("path");
  if (!path.empty()) {
    std::string base_path = s.base.target.substr(0, s.base.target.find('?'));
    if (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
    s.base.target = base_path + (path.front() == '/' ? "" : "/") + path;
  }
  s.stream = config.get_string("stream", s.stream);
  if (const Json* q = config.find("query"); q != nullptr && q->is_object()) {
    for (const auto& [k, v] : q->as_object()) s.query.emplace_back(k, scalar_text(v));
  }
  if (const Json* h = config.find("headers"); h != nullptr && h->is_object()) {
    for (const auto& [k, v] : h->as_object()) s.headers.add(k, scalar_text(v));
  }
  s.records_pointer = config.get_string("records_pointer");
  if (const Json* pk = config.find("primary_key"); pk != nullptr && pk->is_array()) {
    for (const auto& k : pk->as_array()) s.primary_key.push_back(scalar_text(k));
  }
  s.cursor_field = config.get_string("cursor_field");
  s.cursor_param = config.get_string("cursor_param");
  if (!s.cursor_param.empty() && s.cursor_field.empty()) {
    return invalid_argument(
        "'cursor_param' needs 'cursor_field' (the field whose last value it "
        "carries)");
  }
  if (const Json* c = config.find("start_cursor")) s.start_cursor = *c;
  if (const Json* p = config.find("pagination"); p != nullptr && p->is_object()) {
    Pagination& pg = s.pagination;
    std::string type = p->get_string("type", "none");
    if (type == "none") {
      pg.type = Pagination::Type::kNone;
    } else if (type == "page_number") {
      pg.type = Pagination::Type::kPageNumber;
    } else if (type == "offset") {
      pg.type = Pagination::Type::kOffset;
    } else if (type == "cursor") {
      pg.type = Pagination::Type::kCursor;
    } else if (type == "next_url") {
      pg.type = Pagination::Type::kNextUrl;
    } else if (type == "link_header") {
      pg.type = Pagination::Type::kLink;
    } else {
      return invalid_argument("unknown 'pagination/type' '" + type +
                              "' (expected none, page_number, offset, cursor, next_url or "
                              "link_header)");
    }
    pg.page_param = p->get_string("page_param", pg.page_param);
    pg.start_page = p->get_int("start_page", pg.start_page);
    pg.size_param = p->get_string("size_param", pg.size_param);
    pg.page_size = p->get_int("page_size", pg.page_size);
    pg.offset_param = p->get_string("offset_param", pg.offset_param);
    pg.limit_param = p->get_string("limit_param", pg.limit_param);
    pg.cursor_param = p->get_string("cursor_param", pg.cursor_param);
    pg.cursor_pointer = p->get_string("cursor_pointer");
    pg.next_url_pointer = p->get_string("next_url_pointer");
    pg.max_pages = p->get_int("max_pages", pg.max_pages);
    if (pg.type == Pagination::Type::kOffset && pg.page_size <= 0) {
      return invalid_argument("offset pagination needs 'pagination/page_size' > 0");
    }
    if (pg.type == Pagination::Type::kCursor && pg.cursor_pointer.empty()) {
      return invalid_argument("cursor pagination needs 'pagination/cursor_pointer'");
    }
    if (pg.type == Pagination::Type::kNextUrl && pg.next_url_pointer.empty()) {
      return invalid_argument("next_url pagination needs 'pagination/next_url_pointer'");
    }
  }
  CIVICBUS_ASSIGN_OR_RETURN(s.auth, AuthConfig::from_json(config.find("auth")));
  CIVICBUS_ASSIGN_OR_RETURN(s.retry, RetryPolicy::from_json(config.find("retry")));
  if (const Json* w = config.find("write"); w != nullptr && w->is_object()) {
    s.write_method = w->get_string("method", s.write_method);
    if (s.write_method != "POST" && s.write_method != "PUT" && s.write_method != "PATCH") {
      return invalid_argument("'write/method' must be POST, PUT or PATCH");
    }
    s.write_path = w->get_string("path");
    s.write_batch = w->get_bool("batch");
  }
  return s;
}

ConnectorSpec http_spec() {
  ConnectorSpec spec;
  spec.name = "http";
  spec.title = "Generic REST API";
  spec.description =
      "Reads JSON records from a REST endpoint (paged by page "
      "number, offset, cursor token, next "
      "URL or Link header; incremental by a cursor field) and "
      "writes records as JSON.";
  spec.format_source =
      "RFC 9110 (HTTP), RFC 8259 (JSON), RFC 6901 (JSON Pointer), RFC 8288 "
      "(Link), RFC 6749 §4.4 (client credentials), RFC 9110 §10.2.3 "
      "(Retry-After)";
  spec.is_source = true;
  spec.is_sink = true;
  auto obj = [] { return Json::object({{"type", "object"}}); };
  auto integer = [] { return Json::object({{"type", "integer"}}); };
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"base_url"})},
       {"properties",
        Json::object(
            {{"base_url", string_schema()},
             {"path", string_schema()},
             {"stream", string_schema()},
             {"query", obj()},
             {"headers", obj()},
             {"records_pointer", string_schema()},
             {"primary_key", Json::object({{"type", "array"}, {"items", string_schema()}})},
             {"cursor_field", string_schema()},
             {"cursor_param", string_schema()},
             {"start_cursor", Json::object()},
             {"pagination",
              Json::object(
                  {{"type", "object"},
                   {"properties",
                    Json::object(
                        {{"type",
                          Json::object(
                              {{"enum", Json::array({"none", "page_number", "offset", "cursor",
                                                     "next_url", "link_header"})}})},
                         {"page_param", string_schema()},
                         {"start_page", integer()},
                         {"size_param", string_schema()},
                         {"page_size", integer()},
                         {"offset_param", string_schema()},
                         {"limit_param", string_schema()},
                         {"cursor_param", string_schema()},
                         {"cursor_pointer", string_schema()},
                         {"next_url_pointer", string_schema()},
                         {"max_pages", integer()}})}})},
             {"auth", AuthConfig::schema()},
             {"retry",
              Json::object({{"type", "object"},
                            {"properties", Json::object({{"max_retries", integer()},
                                                         {"initial_backoff_ms", integer()},
                                                         {"max_backoff_ms", integer()},
                                                         {"max_retry_after_ms", integer()}})}})},
             {"write",
              Json::object(
                  {{"type", "object"},
                   {"properties",
                    Json::object({{"method",
                                   Json::object({{"enum", Json::array({"POST", "PUT", "PATCH"})}})},
                                  {"path", string_schema()},
                                  {"batch", Json::object({{"type", "boolean"}})}})}})}})}});
  return spec;
}

class HttpConnector final : public Connector {
 public:
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    CIVICBUS_ASSIGN_OR_RETURN(Page page, first_page(session));
    (void)page;
    return Status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    CIVICBUS_ASSIGN_OR_RETURN(Page page, first_page(session));
    StreamSpec stream;
    stream.name = session.settings.stream;
    stream.fields = infer_fields(page.records);
    stream.primary_key = session.settings.primary_key;
    stream.cursor_field = session.settings.cursor_field;
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    const HttpSettings& s = session.settings;
    CIVICBUS_ASSIGN_OR_RETURN(auto streams, streams_to_read(request, {s.stream}, spec_.name));
    if (streams.empty()) return Status();
    Json cursor = s.start_cursor;
    if (const Json* state = request.stream_state(s.stream)) {
      if (const Json* c = state->find("cursor"); c != nullptr && !c->is_null()) cursor = *c;
    }
    std::int64_t remaining = request.max_records;
    StreamWriter writer(out, s.stream, request, &remaining);
    const Pagination& pg = s.pagination;
    Url url = s.base;
    const QueryParams base_params = first_params(session, cursor);
    QueryParams params = base_params;
    std::int64_t page_number = pg.start_page;
    std::int64_t offset = 0;
    std::int64_t position = 0;
    for (std::int64_t pages = 0; pages < pg.max_pages; ++pages) {
      if (out.cancelled()) return cancelled("read of stream '" + s.stream + "' was cancelled");
      QueryParams page_params = with_paging(pg, params, page_number, offset);
      auto page = fetch(session, url, page_params);
      if (!page.ok()) {
        // What came before is emitted and checkpointed; the run stops here and
        // resumes from the last complete page.
        return Status(page.status().code(), "stream '" + s.stream + "', page " +
                                                std::to_string(pages + 1) + ": " +
                                                page.status().message());
      }
      Json page_max = cursor;
      for (const Json& record : page->records) {
        Json object = record.is_object() ? record : Json::object({{"value", record}});
        if (!s.cursor_field.empty()) {
          if (const Json* c = object.find(s.cursor_field);
              c != nullptr && cursor_less(page_max, *c)) {
            page_max = *c;
          }
        }
        CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(object, ++position));
        if (!added) break;
      }
      CIVICBUS_RETURN_IF_ERROR(writer.flush());
      // The state moves only with a whole page: a record limit that cut this
      // page short keeps the old cursor so the rest of the page is read next
      // time.
      if (!s.cursor_field.empty() && !writer.limit_reached()) {
        cursor = page_max;
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint(s.stream, Json::object({{"cursor", cursor}})));
      }
      if (writer.limit_reached() || page->records.empty()) break;
      bool more = false;
      switch (pg.type) {
        case Pagination::Type::kNone:
          break;
        case Pagination::Type::kPageNumber:
          ++page_number;
          more =
              pg.page_size <= 0 || static_cast<std::int64_t>(page->records.size()) >= pg.page_size;
          break;
        case Pagination::Type::kOffset:
          offset += static_cast<std::int64_t>(page->records.size());
          more = static_cast<std::int64_t>(page->records.size()) >= pg.page_size;
          break;
        case Pagination::Type::kCursor: {
          const Json* token = page->body.at_pointer(pg.cursor_pointer);
          if (token != nullptr && !token->is_null() && !scalar_text(*token).empty()) {
            params = base_params;
            params.emplace_back(pg.cursor_param, scalar_text(*token));
            more = true;
          }
          break;
        }
        case Pagination::Type::kNextUrl: {
          const Json* next = page->body.at_pointer(pg.next_url_pointer);
          if (next != nullptr && next->is_string() && !next->as_string().empty()) {
            CIVICBUS_ASSIGN_OR_RETURN(url, url.resolve(next->as_string()));
            params.clear();  // the next URL carries its own query
            more = true;
          }
          break;
        }
        case Pagination::Type::kLink: {
          std::string next = next_link(page->headers);
          if (!next.empty()) {
            CIVICBUS_ASSIGN_OR_RETURN(url, url.resolve(next));
            params.clear();
            more = true;
          }
          break;
        }
      }
      if (!more) break;
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    CIVICBUS_ASSIGN_OR_RETURN(Session session, open(context));
    const HttpSettings& s = session.settings;
    Url url = s.base;
    if (!s.write_path.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(url, s.base.resolve(s.write_path));
    }
    (void)request;
    WriteResult result;
    if (s.write_batch) {
      Json array = Json::array();
      for (const auto& r : batch.records) array.push_back(batch.to_object(r));
      CIVICBUS_ASSIGN_OR_RETURN(RestResponse response,
                                session.client->send(s.write_method, url, s.query, array.dump(),
                                                     "application/json", s.headers));
      if (response.status / 100 != 2) {
        return status_from_response(
            response, s.write_method + " batch of " + std::to_string(batch.size()) + " records");
      }
      result.written = static_cast<std::int64_t>(batch.size());
      return result;
    }
    for (const auto& record : batch.records) {
      CIVICBUS_ASSIGN_OR_RETURN(
          RestResponse response,
          session.client->send(s.write_method, url, s.query, batch.to_object(record).dump(),
                               "application/json", s.headers));
      if (response.status / 100 == 2) {
        ++result.written;
        continue;
      }
      Status error = status_from_response(response, s.write_method + " record");
      // The API refused this record (validation): the others go on. Anything
      // else (auth, outage) fails the batch, which the hub retries.
      if (error.code() == ErrorCode::kInvalidArgument) {
        result.rejected.push_back(RowError{record.position, "", "", error.message()});
        continue;
      }
      return error;
    }
    return result;
  }

 private:
  struct Session {
    HttpSettings settings;
    std::unique_ptr<RestClient> client;
  };
  struct Page {
    Json body;
    std::vector<Json> records;
    http::HttpHeaders headers;
  };

  Result<Session> open(const ConnectorContext& context) {
    Session session;
    CIVICBUS_ASSIGN_OR_RETURN(session.settings, parse_http_settings(context.config));
    CIVICBUS_ASSIGN_OR_RETURN(
        session.client,
        RestClient::create(session.settings.auth, session.settings.retry, context.timeout));
    return session;
  }

  // `params` plus the page-number or offset parameters of one page.
  static QueryParams with_paging(const Pagination& pg, QueryParams params, std::int64_t page_number,
                                 std::int64_t offset) {
    if (pg.type == Pagination::Type::kPageNumber) {
      params.emplace_back(pg.page_param, std::to_string(page_number));
      if (!pg.size_param.empty() && pg.page_size > 0) {
        params.emplace_back(pg.size_param, std::to_string(pg.page_size));
      }
    } else if (pg.type == Pagination::Type::kOffset) {
      params.emplace_back(pg.offset_param, std::to_string(offset));
      params.emplace_back(pg.limit_param, std::to_string(pg.page_size));
    }
    return params;
  }

  // The first page, as check() and discover() sample it.
  Result<Page> first_page(Session& session) {
    const Pagination& pg = session.settings.pagination;
    return fetch(
        session, session.settings.base,
        with_paging(pg, first_params(session, session.settings.start_cursor), pg.start_page, 0));
  }

  QueryParams first_params(const Session& session, const Json& cursor) const {
    const HttpSettings& s = session.settings;
    QueryParams params = s.query;
    if (!s.cursor_param.empty() && !cursor.is_null()) {
      params.emplace_back(s.cursor_param, scalar_text(cursor));
    }
    return params;
  }

  Result<Page> fetch(Session& session, const Url& url, const QueryParams& params) {
    CIVICBUS_ASSIGN_OR_RETURN(
        RestResponse response,
        session.client->send("GET", url, params, {}, {}, session.settings.headers));
    if (response.status / 100 != 2) return status_from_response(response, "GET");
    auto body = Json::parse(response.body);
    if (!body.ok()) {
      return data_loss("GET " + response.url + " did not answer JSON: " + body.status().message());
    }
    Page page;
    page.body = std::move(body).value();
    page.headers = std::move(response.headers);
    const Json* records = page.body.at_pointer(session.settings.records_pointer);
    if (records == nullptr || records->is_null()) return page;
    if (records->is_array()) {
      page.records = records->as_array();
    } else if (records->is_object() && !session.settings.records_pointer.empty()) {
      page.records.push_back(*records);
    } else if (records->is_object()) {
      return invalid_argument("GET " + response.url +
                              " answered an object; set 'records_pointer' to the array of "
                              "records in it");
    } else {
      return invalid_argument("'records_pointer' " + session.settings.records_pointer +
                              " does not point to an array in the answer of " + response.url);
    }
    return page;
  }

  ConnectorSpec spec_ = http_spec();
};

// ---------------------------------------------------------------------------------------------
// webhook: an inbound HTTP listener that stores every accepted body before
// answering.

constexpr storage::Migration kInboxMigrations[] = {
    {1, "webhook inbox",
     "CREATE TABLE webhook_inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
     "received_at INTEGER NOT "
     "NULL, body TEXT NOT NULL);"},
};

ConnectorSpec webhook_spec() {
  ConnectorSpec spec;
  spec.name = "webhook";
  spec.title = "Inbound webhook";
  spec.description =
      "Listens for HTTP POSTs of JSON objects (optionally HMAC-SHA256 signed), "
      "stores each in a "
      "durable inbox before answering 202, and reads the inbox incrementally.";
  spec.format_source = "RFC 9110 (HTTP), RFC 2104 (HMAC), FIPS 180-4 (SHA-256)";
  auto integer = [] { return Json::object({{"type", "integer"}}); };
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"properties",
        Json::object(
            {{"host", string_schema()},
             {"port", Json::object({{"type", "integer"}, {"minimum", 0}, {"maximum", 65535}})},
             {"path", string_schema()},
             {"stream", string_schema()},
             {"secret", string_schema(true)},
             {"signature_header", string_schema()},
             {"signature_prefix", string_schema()},
             {"max_body_bytes", integer()}})}});
  return spec;
}

// Lifetime: the listener starts on the first check() or read() and runs until
// the connector is destroyed; the settings of that first call stay in force for
// the listener's life (a new config needs a new connector instance). The inbox
// outlives both: it is a SQLite file in the work_dir, so bodies accepted before
// a restart are read after it.
class WebhookConnector final : public Connector {
 public:
  ~WebhookConnector() override {
    if (server_ != nullptr) server_->stop();
  }

  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override { return start(context); }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    StreamSpec stream;
    stream.name = context.config.get_string("stream", "webhook");
    stream.fields.push_back(FieldSpec{"_inbox_id", FieldType::kInteger, false});
    stream.fields.push_back(FieldSpec{"_received_at", FieldType::kTimestamp, false});
    stream.primary_key = {"_inbox_id"};
    stream.cursor_field = "_inbox_id";
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_RETURN_IF_ERROR(start(context));
    std::string stream = context.config.get_string("stream", "webhook");
    CIVICBUS_ASSIGN_OR_RETURN(auto streams, streams_to_read(request, {stream}, spec_.name));
    if (streams.empty()) return Status();
    std::int64_t after = 0;
    if (const Json* state = request.stream_state(stream)) after = state->get_int("cursor", 0);
    std::int64_t remaining = request.max_records;
    StreamWriter writer(out, stream, request, &remaining);
    // Drained in slices so a large inbox is not held in memory at once.
    constexpr std::int64_t kSlice = 1000;
    for (;;) {
      std::vector<std::tuple<std::int64_t, std::int64_t, std::string>> rows;
      CIVICBUS_RETURN_IF_ERROR(inbox_->query(
          "SELECT id, received_at, body FROM webhook_inbox WHERE "
          "id > ? ORDER BY id LIMIT ?",
          {after, kSlice}, [&](const storage::Row& row) {
            rows.emplace_back(row.get_int(0), row.get_int(1), std::string(row.get_text(2)));
            return true;
          }));
      if (rows.empty()) break;
      std::int64_t last = after;
      for (auto& [id, received_at, body] : rows) {
        auto json = Json::parse(body);
        if (!json.ok()) {
          return data_loss("webhook inbox row " + std::to_string(id) + " is not JSON");
        }
        Json object = Json::object(
            {{"_inbox_id", id}, {"_received_at", format_rfc3339(from_unix_micros(received_at))}});
        for (auto& [k, v] : json->as_object()) object.set(k, std::move(v));
        CIVICBUS_ASSIGN_OR_RETURN(bool added, writer.add(object, id));
        if (!added) break;
        last = id;
      }
      CIVICBUS_RETURN_IF_ERROR(writer.flush());
      if (last > after) {
        after = last;
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint(stream, Json::object({{"cursor", after}})));
      }
      if (writer.limit_reached() || static_cast<std::int64_t>(rows.size()) < kSlice) break;
      if (out.cancelled()) return cancelled("read of the webhook inbox was cancelled");
    }
    return Status();
  }

  std::uint16_t port() const {
    std::lock_guard lock(mutex_);
    return server_ == nullptr ? 0 : server_->port();
  }

 private:
  Status start(const ConnectorContext& context) {
    std::lock_guard lock(mutex_);
    if (server_ != nullptr) return Status();
    const Json& config = context.config;
    if (context.work_dir.empty()) {
      return failed_precondition("the webhook connector needs a work_dir for its durable inbox");
    }
    path_ = config.get_string("path", "/webhook");
    if (path_.empty() || path_.front() != '/') {
      return invalid_argument("webhook 'path' must start with '/'");
    }
    secret_ = config.get_string("secret");
    signature_header_ = config.get_string("signature_header", "X-Signature");
    signature_prefix_ = config.get_string("signature_prefix", "sha256=");
    std::error_code ec;
    std::filesystem::create_directories(context.work_dir, ec);
    storage::SqliteOptions db_options;
    db_options.path = (std::filesystem::path(context.work_dir) / "webhook_inbox.db").string();
    CIVICBUS_ASSIGN_OR_RETURN(inbox_, storage::open_sqlite(db_options));
    CIVICBUS_RETURN_IF_ERROR(storage::migrate(*inbox_, "webhook_inbox", kInboxMigrations));

    http::HttpServerOptions options;
    options.bind_address = config.get_string("host", "127.0.0.1");
    std::int64_t port = config.get_int("port", 0);
    if (port < 0 || port > 65535) return invalid_argument("webhook 'port' must be 0..65535");
    options.port = static_cast<std::uint16_t>(port);
    std::int64_t max_body = config.get_int("max_body_bytes", 1024 * 1024);
    if (max_body <= 0) return invalid_argument("webhook 'max_body_bytes' must be positive");
    options.max_body_bytes = static_cast<std::size_t>(max_body);  // larger bodies get 413
    auto server = std::make_unique<http::HttpServer>(
        options, [this](const http::HttpRequest& r) { return handle(r); });
    auto bound = server->start();
    if (!bound.ok()) {
      return Status(bound.status().code(), "webhook listener on " + options.bind_address + ":" +
                                               std::to_string(port) + ": " +
                                               bound.status().message());
    }
    server_ = std::move(server);
    return Status();
  }

  http::HttpResponse handle(const http::HttpRequest& request) {
    if (request.path != path_) return http::HttpResponse::text(404, "no webhook at this path\n");
    if (request.method != "POST") {
      auto response = http::HttpResponse::text(405, "webhooks are POSTed\n");
      response.headers.set("Allow", "POST");
      return response;
    }
    if (!secret_.empty()) {
      auto given = request.headers.get(signature_header_);
      std::string expected =
          signature_prefix_ + crypto::to_hex(crypto::hmac_sha256(secret_, request.body));
      // Hex is compared case-insensitively by lowering the given value; the
      // comparison itself takes time independent of where the strings differ.
      std::string actual(given.value_or(""));
      for (std::size_t i = signature_prefix_.size(); i < actual.size(); ++i) {
        if (actual[i] >= 'A' && actual[i] <= 'F') actual[i] = static_cast<char>(actual[i] + 32);
      }
      if (!given || !crypto::constant_time_equal(actual, expected)) {
        return http::HttpResponse::text(401, "missing or invalid " + signature_header_ + "\n");
      }
    }
    auto body = Json::parse(request.body);
    if (!body.ok()) return http::HttpResponse::text(400, "body is not JSON\n");
    std::vector<const Json*> objects;
    if (body->is_object()) {
      objects.push_back(&*body);
    } else if (body->is_array()) {
      for (const auto& item : body->as_array()) {
        if (!item.is_object()) {
          return http::HttpResponse::text(400, "body must be an object or an array of objects\n");
        }
        objects.push_back(&item);
      }
    } else {
      return http::HttpResponse::text(400, "body must be an object or an array of objects\n");
    }
    std::int64_t now = to_unix_micros(clock_.now());
    // Stored (and synced to disk) before the 202: an acknowledged delivery
    // survives a crash.
    Status stored = inbox_->transaction([&]() -> Status {
      for (const Json* object : objects) {
        std::string text = object->dump();
        CIVICBUS_RETURN_IF_ERROR(inbox_
                                     ->execute("INSERT INTO webhook_inbox (received_at, body) "
                                               "VALUES (?, ?)",
                                               {now, std::string_view(text)})
                                     .status());
      }
      return Status();
    });
    if (!stored.ok()) return http::HttpResponse::text(503, "inbox unavailable, retry later\n");
    return http::HttpResponse::text(202, "{\"accepted\":" + std::to_string(objects.size()) + "}",
                                    "application/json");
  }

  ConnectorSpec spec_ = webhook_spec();
  mutable std::mutex mutex_;
  std::string path_;
  std::string secret_;
  std::string signature_header_;
  std::string signature_prefix_;
  // The context's clock lives only for one call, and the listener outlives
  // calls.
  SystemClock clock_;
  std::unique_ptr<storage::Database> inbox_;
  std::unique_ptr<http::HttpServer> server_;  // declared last: stopped before the inbox closes
};

}  // namespace

std::unique_ptr<Connector> make_http_connector() {
  return std::make_unique<HttpConnector>();
}
std::unique_ptr<Connector> make_webhook_connector() {
  return std::make_unique<WebhookConnector>();
}

std::uint16_t webhook_listening_port(const Connector& connector) {
  const auto* webhook = dynamic_cast<const WebhookConnector*>(&connector);
  return webhook == nullptr ? 0 : webhook->port();
}

Status add_http_connectors(ConnectorCatalog& catalog) {
  Status first;
  for (ConnectorFactory factory :
       {ConnectorFactory(make_http_connector), ConnectorFactory(make_webhook_connector),
        ConnectorFactory(make_canada_post_connector), ConnectorFactory(make_arcgis_connector),
        ConnectorFactory(make_open311_connector)}) {
    Status added = catalog.add(std::move(factory));
    if (!added.ok() && first.ok()) first = added;
  }
  return first;
}

}  // namespace civicbus::connect::detail

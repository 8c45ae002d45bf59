// Shared by the s3 and sftp connectors (see remote_files.hpp).
#include "connect/remote_files.hpp"

#include <fmt/format.h>
#include <fnmatch.h>
#include <stdlib.h>

#include <cstring>
#include <ctime>
#include <filesystem>

#include "civicbus/core/csv.hpp"
#include "connect/file_connectors.hpp"
#include "core/json_text.hpp"

namespace civicbus::connect::detail {

namespace fs = std::filesystem;

namespace {

// Passes the file connector's batches on and keeps its checkpoints to itself:
// the state of a remote source is per object, not per local scratch file.
class ForwardingEmitter final : public RecordEmitter {
 public:
  ForwardingEmitter(RecordEmitter& out, std::int64_t& emitted) : out_(out), emitted_(emitted) {}
  Status emit(RecordBatch batch) override {
    emitted_ += static_cast<std::int64_t>(batch.size());
    return out_.emit(std::move(batch));
  }
  Status checkpoint(std::string_view, Json) override { return Status(); }
  bool cancelled() const override { return out_.cancelled(); }

 private:
  RecordEmitter& out_;
  std::int64_t& emitted_;
};

// The config the csv or json connector reads a scratch file with: the format
// options of the remote connector's config, the local path and the remote
// stream name.
Json inner_config(const ConnectorContext& context, RemoteFormat format, const std::string& path,
                  const std::string& stream) {
  Json config = Json::object();
  for (const char* key : {"delimiter", "quote", "header", "columns", "strict", "lenient_quotes",
                          "encoding", "records_pointer", "primary_key", "sample_rows"}) {
    if (const Json* v = context.config.find(key)) config.set(key, *v);
  }
  config.set("path", path);
  config.set("stream", stream);
  if (format != RemoteFormat::kCsv) {
    config.set("format", format == RemoteFormat::kJson ? "json" : "ndjson");
  }
  return config;
}

std::unique_ptr<Connector> file_connector(RemoteFormat format) {
  return format == RemoteFormat::kCsv ? make_csv_connector() : make_json_connector();
}

using civicbus::detail::scalar_text;  // a cell's text

}  // namespace

Result<RemoteFormat> remote_format(const Json& config, std::string_view name) {
  const std::string format = config.get_string("format", "auto");
  if (format == "csv") return RemoteFormat::kCsv;
  if (format == "json") return RemoteFormat::kJson;
  if (format == "ndjson") return RemoteFormat::kNdjson;
  if (format != "auto") {
    return invalid_argument(
        fmt::format("\"format\" must be auto, csv, json or ndjson (got '{}')", format));
  }
  const std::string ext = fs::path(std::string(name)).extension().string();
  if (ext == ".csv" || ext == ".CSV") return RemoteFormat::kCsv;
  if (ext == ".json" || ext == ".JSON") return RemoteFormat::kJson;
  if (ext == ".ndjson" || ext == ".jsonl") return RemoteFormat::kNdjson;
  return invalid_argument(
      fmt::format("cannot tell the format of '{}' from its "
                  "extension; set \"format\" to csv, "
                  "json or ndjson",
                  name));
}

std::string_view remote_format_name(RemoteFormat format) {
  switch (format) {
    case RemoteFormat::kCsv:
      return "csv";
    case RemoteFormat::kJson:
      return "json";
    case RemoteFormat::kNdjson:
      return "ndjson";
  }
  return "csv";
}

std::string_view remote_format_properties() {
  return R"js(
    "format": {"enum": ["auto", "csv", "json", "ndjson"], "default": "auto",
               "description": "Source: auto goes by extension. Sink: csv or ndjson (auto: ndjson)"},
    "pattern": {"type": "string", "minLength": 1, "default": "*",
                "description": "Glob of the names read (fnmatch)"},
    "stream": {"type": "string", "minLength": 1},
    "primary_key": {"type": "array", "items": {"type": "string"}},
    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
    "quote": {"enum": ["\"", ""], "default": "\""},
    "header": {"type": "boolean", "default": true},
    "columns": {"type": "array", "items": {"type": "string"}},
    "strict": {"type": "boolean", "default": false},
    "lenient_quotes": {"type": "boolean", "default": false},
    "encoding": {"enum": ["auto", "utf-8", "latin-1", "iso-8859-1", "windows-1252"]},
    "records_pointer": {"type": "string", "default": ""},
    "sample_rows": {"type": "integer", "minimum": 1, "default": 1000})js";
}

Result<ScratchDir> ScratchDir::create(const ConnectorContext& context, std::string_view name) {
  ScratchDir dir;
  std::error_code ec;
  if (!context.work_dir.empty()) {
    dir.path_ = (fs::path(context.work_dir) / name).string();
    fs::remove_all(dir.path_, ec);  // what an interrupted run left
    fs::create_directories(dir.path_, ec);
    if (ec) {
      return io_error(
          fmt::format("cannot create download folder '{}': {}", dir.path_, ec.message()));
    }
    return dir;
  }
  std::string templ = (fs::temp_directory_path(ec) / "civicbus-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) {
    return io_error(fmt::format("cannot create a download folder under the temp dir: {}",
                                std::strerror(errno)));
  }
  dir.path_ = templ;
  return dir;
}

ScratchDir::ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
}

ScratchDir& ScratchDir::operator=(ScratchDir&& other) noexcept {
  std::swap(path_, other.path_);
  return *this;
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string ScratchDir::file_for(std::string_view name, std::int64_t index) const {
  std::string ext = fs::path(std::string(name)).extension().string();
  for (char& c : ext) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.') c = '_';
  }
  return (fs::path(path_) / fmt::format("object-{}{}", index, ext)).string();
}

Status parse_downloaded(const ConnectorContext& context, RemoteFormat format,
                        const std::string& local_path, std::string_view remote_name,
                        const std::string& stream, std::size_t batch_size, std::int64_t max_records,
                        RecordEmitter& out, std::int64_t& emitted) {
  auto connector = file_connector(format);
  ConnectorContext inner = context;
  inner.config = inner_config(context, format, local_path, stream);
  inner.work_dir.clear();
  ReadRequest request;
  request.batch_size = batch_size;
  request.max_records = max_records;
  ForwardingEmitter forward(out, emitted);
  Status s = connector->read(inner, request, forward);
  if (s.ok()) return s;
  // The file connector names the scratch file; the user knows the remote one.
  std::string message = s.message();
  for (std::size_t at = message.find(local_path); at != std::string::npos;
       at = message.find(local_path, at + remote_name.size())) {
    message.replace(at, local_path.size(), remote_name);
  }
  return Status(s.code(), message);
}

Result<StreamSpec> discover_downloaded(const ConnectorContext& context, RemoteFormat format,
                                       const std::string& local_path, const std::string& stream) {
  auto connector = file_connector(format);
  ConnectorContext inner = context;
  inner.config = inner_config(context, format, local_path, stream);
  inner.work_dir.clear();
  CIVICBUS_ASSIGN_OR_RETURN(std::vector<StreamSpec> streams, connector->discover(inner));
  if (streams.empty()) return StreamSpec{stream, {}, {}, {}};
  return streams.front();
}

Result<EncodedBatch> encode_batch(const RecordBatch& batch, RemoteFormat format, char delimiter) {
  EncodedBatch out;
  if (format != RemoteFormat::kCsv) {
    for (const Record& record : batch.records) {
      batch.to_object(record).dump_to(out.bytes);
      out.bytes += '\n';
      ++out.result.written;
    }
    return out;
  }
  out.bytes = csv_format_record(batch.columns, delimiter);
  std::vector<std::string> fields(batch.columns.size());
  for (const Record& record : batch.records) {
    if (record.values.size() > batch.columns.size()) {
      out.result.rejected.push_back(
          RowError{record.position, "", "",
                   fmt::format("the record has {} values for {} columns", record.values.size(),
                               batch.columns.size())});
      continue;
    }
    for (std::size_t i = 0; i < fields.size(); ++i) {
      fields[i] = scalar_text(RecordBatch::value(record, static_cast<int>(i)));
    }
    out.bytes += csv_format_record(fields, delimiter);
    ++out.result.written;
  }
  return out;
}

Result<std::string> render_name(std::string_view name_template, std::string_view stream,
                                std::string_view batch_id, SystemTime now, std::string_view ext) {
  std::string safe_id(batch_id);
  for (char& c : safe_id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '-';
  }
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char date[16];
  std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
  std::string out;
  for (std::size_t i = 0; i < name_template.size(); ++i) {
    if (name_template[i] != '{') {
      out += name_template[i];
      continue;
    }
    const std::size_t close = name_template.find('}', i);
    if (close == std::string_view::npos) {
      return invalid_argument(
          fmt::format("name template '{}' has an unclosed '{{'", name_template));
    }
    const std::string_view key = name_template.substr(i + 1, close - i - 1);
    if (key == "stream") {
      out += stream;
    } else if (key == "batch_id") {
      out += safe_id;
    } else if (key == "date") {
      out += date;
    } else if (key == "ext") {
      out += ext;
    } else {
      return invalid_argument(
          fmt::format("name template '{}' has an unknown placeholder {{{}}} "
                      "(known: {{stream}} "
                      "{{batch_id}} {{date}} {{ext}})",
                      name_template, key));
    }
    i = close;
  }
  return out;
}

bool glob_matches(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

}  // namespace civicbus::connect::detail

// The file connector family: csv (source and sink), json (JSON and NDJSON;
// source and sink) and xml (source). docs/connectors.md ("File connectors")
// describes the configuration.
#include "connect/file_connectors.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <unordered_map>

#include "civicbus/core/csv.hpp"
#include "connect/builtin_connectors.hpp"
#include "connect/file_formats.hpp"
#include "core/json_text.hpp"
#include "core/xml_tree.hpp"

namespace civicbus::connect::detail {

namespace fs = std::filesystem;

void ReadReport::add_issue(std::string path, std::int64_t line, std::string reason) {
  if (issues.size() >= kMaxIssues) {
    ++issues_dropped;
    return;
  }
  issues.push_back(ReadIssue{std::move(path), line, std::move(reason)});
}

namespace {

// ---- Configuration
// ----------------------------------------------------------------------

Json schema_json(std::string_view text) {
  auto parsed = Json::parse(text);
  assert(parsed.ok() && "a built-in config schema is not valid JSON");
  return parsed.ok() ? std::move(parsed).value() : Json::object({{"type", "object"}});
}

// The properties every file source shares, spliced into each connector's
// schema.
constexpr std::string_view kSourceProperties = R"js(
    "path": {"type": "string", "minLength": 1,
             "description": "A file, or a folder watched for files matching 'pattern'"},
    "pattern": {"type": "string", "minLength": 1,
                "description": "Glob of the files read from a folder (fnmatch)"},
    "stream": {"type": "string", "minLength": 1,
               "description": "Stream name; default: the file's or folder's name without extension"},
    "primary_key": {"type": "array", "items": {"type": "string"}},
    "cursor_field": {"type": "string", "minLength": 1,
                     "description": "Incremental reads skip records whose value is <= the state's cursor"},
    "move_processed_to": {"type": "string", "minLength": 1,
                          "description": "Folder mode: subfolder that finished files are moved to"},
    "sample_rows": {"type": "integer", "minimum": 1, "default": 1000,
                    "description": "Records discover() reads to infer field types"},
    "encoding": {"enum": ["auto", "utf-8", "latin-1", "iso-8859-1", "windows-1252"]},
    "mode": {"enum": ["append", "overwrite"], "default": "append",
             "description": "Sink: append to the file or replace it on the first write"})js";

struct SourceConfig {
  std::string path;
  bool is_folder = false;
  std::string pattern;
  std::string stream;
  std::vector<std::string> primary_key;
  std::string cursor_field;
  std::string move_processed_to;
  std::int64_t sample_rows = 1000;
  TextEncoding encoding = TextEncoding::kAuto;
};

std::vector<std::string> string_list(const Json* value) {
  std::vector<std::string> out;
  if (value == nullptr || !value->is_array()) return out;
  for (const Json& v : value->as_array()) {
    if (v.is_string()) out.push_back(v.as_string());
  }
  return out;
}

Result<SourceConfig> parse_source_config(const Json& config, std::string_view default_pattern,
                                         TextEncoding default_encoding) {
  SourceConfig c;
  c.path = config.get_string("path");
  if (c.path.empty()) return invalid_argument("config has no \"path\" (a file or a folder)");
  std::error_code ec;
  c.is_folder = fs::is_directory(c.path, ec);
  c.pattern = config.get_string("pattern", default_pattern);
  fs::path p(c.path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" names "dir"
  c.stream = config.get_string("stream", c.is_folder ? p.filename().string() : p.stem().string());
  c.primary_key = string_list(config.find("primary_key"));
  c.cursor_field = config.get_string("cursor_field");
  c.move_processed_to = config.get_string("move_processed_to");
  c.sample_rows = std::max<std::int64_t>(1, config.get_int("sample_rows", 1000));
  c.encoding = default_encoding;
  if (const Json* e = config.find("encoding"); e != nullptr && e->is_string()) {
    CIVICBUS_ASSIGN_OR_RETURN(c.encoding, parse_text_encoding(e->as_string()));
  }
  if (!c.move_processed_to.empty() && !c.is_folder) {
    return invalid_argument(fmt::format(
        "\"move_processed_to\" needs \"path\" to be a folder; '{}' is not one", c.path));
  }
  return c;
}

Status check_source_path(const Json& config) {
  const std::string path = config.get_string("path");
  if (path.empty()) return invalid_argument("config has no \"path\" (a file or a folder)");
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return not_found(fmt::format("'{}' does not exist", path));
  if (fs::is_directory(status)) {
    if (::access(path.c_str(), R_OK | X_OK) != 0) {
      return permission_denied(
          fmt::format("folder '{}' cannot be listed: {}", path, std::strerror(errno)));
    }
    return Status();
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return permission_denied(fmt::format("'{}' cannot be read: {}", path, std::strerror(errno)));
  }
  return Status();
}

// ---- Sinks
// ------------------------------------------------------------------------------

struct SinkFile {
  std::string path;
  bool exists = false;
  std::int64_t size = 0;
};

Status check_sink_dir(const Json& config) {
  const std::string path = config.get_string("path");
  if (path.empty()) return invalid_argument("config has no \"path\" (the file to write)");
  std::error_code ec;
  fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) {
    return not_found(fmt::format("folder '{}' for '{}' does not exist", dir.string(), path));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return permission_denied(
        fmt::format("folder '{}' is not writable: {}", dir.string(), std::strerror(errno)));
  }
  return Status();
}

// One config serves a source and a sink, and check() is not told which it is
// for: a config with "mode" is a sink's (its folder must be writable; a file
// there need not exist yet), any other a source's (its path must exist and be
// readable).
Status check_file_config(const Json& config) {
  const bool sink = config.contains("mode");
  std::error_code ec;
  if (!sink || fs::exists(config.get_string("path"), ec)) {
    Status s = check_source_path(config);
    if (!s.ok() && s.code() == ErrorCode::kNotFound && !sink) {
      return not_found(s.message() +
                       " (a sink creates it: give its config a "
                       "\"mode\" so check() tests the "
                       "folder instead)");
    }
    CIVICBUS_RETURN_IF_ERROR(s);
  }
  return sink ? check_sink_dir(config) : Status();
}

// The file a sink writes: `path`, or <path>/<stream><ext> when `path` is a
// folder.
SinkFile sink_file(const Json& config, const WriteRequest& request, std::string_view ext) {
  SinkFile f;
  f.path = config.get_string("path");
  std::error_code ec;
  if (fs::is_directory(f.path, ec))
    f.path = (fs::path(f.path) / (request.stream + std::string(ext))).string();
  struct stat st {};
  if (::stat(f.path.c_str(), &st) == 0) {
    f.exists = true;
    f.size = static_cast<std::int64_t>(st.st_size);
  }
  return f;
}

// Writes `data` at the end of `path` (after truncating it to `keep` bytes when
// keep >= 0) and fsyncs it, and its folder when the file is new, before
// returning: a write the sink acknowledges is on disk.
Status append_durably(const std::string& path, std::string_view data, bool truncate,
                      std::int64_t keep = -1) {
  const bool existed = ::access(path.c_str(), F_OK) == 0;
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  if (fd < 0)
    return io_error(fmt::format("cannot open '{}' for writing: {}", path, std::strerror(errno)));
  auto fail = [&](std::string_view what) {
    const int err = errno;
    ::close(fd);
    return io_error(fmt::format("cannot {} '{}': {}", what, path, std::strerror(err)));
  };
  if (keep >= 0 && ::ftruncate(fd, keep) != 0) return fail("truncate");
  if (::lseek(fd, 0, SEEK_END) < 0) return fail("seek in");
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0)
    return io_error(fmt::format("cannot close '{}': {}", path, std::strerror(errno)));
  if (!existed) {
    std::string dir = fs::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }
  return Status();
}

using civicbus::detail::scalar_text;  // a cell's text

Status refuse_upsert(const ConnectorSpec& spec, const WriteRequest& request) {
  if (request.mode == WriteMode::kUpsert) {
    return invalid_argument(
        fmt::format("connector '{}' appends to files; upsert (stream '{}') "
                    "needs a database sink",
                    spec.name, request.stream));
  }
  return Status();
}

// ---- Batching
// ---------------------------------------------------------------------------

// Collects the records of one stream into batches of the requested size,
// applies the incremental cursor and the record limit, and emits.
class Batcher {
 public:
  Batcher(RecordEmitter& out, std::string stream, std::size_t batch_size, std::int64_t max_records,
          std::string cursor_field, Json floor)
      : out_(out),
        stream_(std::move(stream)),
        batch_size_(std::max<std::size_t>(1, batch_size)),
        max_records_(max_records),
        cursor_field_(std::move(cursor_field)),
        floor_(std::move(floor)),
        batch_(stream_, {}) {}

  const std::string& stream() const { return stream_; }
  const std::string& cursor_field() const { return cursor_field_; }

  // A record that could not be read goes to the run's error report.
  void reject(std::int64_t position, std::string value, std::string reason) {
    out_.reject(RowError{position, "", std::move(value), std::move(reason)});
  }

  // Fixed columns for the records added by add_values (CSV). Flushes what was
  // batched under other columns.
  Status set_columns(std::vector<std::string> columns) {
    if (columns == batch_.columns) return Status();
    CIVICBUS_RETURN_IF_ERROR(flush());
    batch_.columns = std::move(columns);
    cursor_index_ = cursor_field_.empty() ? -1 : batch_.column_index(cursor_field_);
    return Status();
  }
  const std::vector<std::string>& columns() const { return batch_.columns; }
  int cursor_index() const { return cursor_index_; }

  Status add_values(std::vector<Json> values, std::int64_t position) {
    if (!cursor_field_.empty()) {
      const Json* v = cursor_index_ >= 0 && static_cast<std::size_t>(cursor_index_) < values.size()
                          ? &values[static_cast<std::size_t>(cursor_index_)]
                          : nullptr;
      if (!admit(v)) return Status();
    }
    batch_.records.push_back(Record{std::move(values), position});
    return added();
  }

  Status add_object(const Json& object, std::int64_t position) {
    if (!cursor_field_.empty() && !admit(object.find(cursor_field_))) return Status();
    batch_.append_object(object, position);
    return added();
  }

  Status flush() {
    if (batch_.empty()) return Status();
    if (out_.cancelled()) return cancelled(fmt::format("read of stream '{}' cancelled", stream_));
    RecordBatch next(stream_, batch_.columns);
    std::swap(next, batch_);
    return out_.emit(std::move(next));
  }

  bool limit_reached() const { return max_records_ >= 0 && accepted_ >= max_records_; }
  std::int64_t accepted() const { return accepted_; }
  std::int64_t skipped() const { return skipped_; }
  // The largest cursor value of the records emitted, or of the state when none
  // was larger.
  Json cursor_state() const {
    if (max_cursor_.is_null()) return floor_;
    return max_cursor_;
  }

 private:
  // A record is emitted when its cursor value is above the state's; a record
  // without one sorts first, so it is read once, by the first read, and skipped
  // after that.
  bool admit(const Json* value) {
    const bool missing =
        value == nullptr || value->is_null() || (value->is_string() && value->as_string().empty());
    if (!floor_.is_null() && (missing || compare_cursor(*value, floor_) <= 0)) {
      ++skipped_;
      return false;
    }
    if (!missing && (max_cursor_.is_null() || compare_cursor(*value, max_cursor_) > 0)) {
      max_cursor_ = *value;
    }
    return true;
  }

  Status added() {
    ++accepted_;
    if (batch_.size() >= batch_size_ || limit_reached()) return flush();
    return Status();
  }

  RecordEmitter& out_;
  std::string stream_;
  std::size_t batch_size_;
  std::int64_t max_records_;
  std::string cursor_field_;
  Json floor_;
  Json max_cursor_;
  RecordBatch batch_;
  int cursor_index_ = -1;
  std::int64_t accepted_ = 0;
  std::int64_t skipped_ = 0;
};

// What a format reader gets for one file.
struct FileJob {
  const std::string& path;
  Batcher& batcher;
  ReadReport& report;
  FileReadInfo& info;
};

// ---- The shared source driver
// -----------------------------------------------------------

// Reads files of one format; the driver below handles folders, state and
// checkpoints.
class FileSourceBase : public FileSourceConnector {
 public:
  Status check(const ConnectorContext& context) override {
    CIVICBUS_RETURN_IF_ERROR(parse_config(context.config).status());
    return check_file_config(context.config);
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    report_ = ReadReport{};
    CIVICBUS_ASSIGN_OR_RETURN(SourceConfig config, parse_config(context.config));
    if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                              config.stream) == request.streams.end()) {
      return not_found(fmt::format("connector '{}' has no stream '{}' (it offers '{}')",
                                   spec().name, request.streams.front(), config.stream));
    }
    return read_stream(context, config, request.stream_state(config.stream), request.batch_size,
                       request.max_records, out,
                       /*sampling=*/false);
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    report_ = ReadReport{};
    CIVICBUS_ASSIGN_OR_RETURN(SourceConfig config, parse_config(context.config));
    CIVICBUS_RETURN_IF_ERROR(check_source_path(context.config));
    // A sample read: no state, no checkpoint, no file moved.
    CollectingEmitter sample;
    std::vector<std::string> header;
    CIVICBUS_RETURN_IF_ERROR(read_stream(context, config, nullptr, 1000, config.sample_rows, sample,
                                         /*sampling=*/true, &header));
    std::vector<std::string> names = header;
    std::unordered_map<std::string, TypeInference> types;
    std::unordered_map<std::string, std::int64_t> seen;
    std::int64_t total = 0;
    for (const RecordBatch& batch : sample.batches) {
      for (const std::string& c : batch.columns) {
        if (std::find(names.begin(), names.end(), c) == names.end()) names.push_back(c);
      }
      for (const Record& record : batch.records) {
        ++total;
        for (std::size_t i = 0; i < batch.columns.size() && i < record.values.size(); ++i) {
          const Json& v = record.values[i];
          if (values_are_text() && v.is_string()) {
            types[batch.columns[i]].add_text(v.as_string());
          } else {
            types[batch.columns[i]].add(v);
          }
          ++seen[batch.columns[i]];
        }
      }
    }
    StreamSpec stream;
    stream.name = config.stream;
    for (const std::string& name : names) {
      FieldSpec field = types[name].field(name);
      if (seen[name] < total) field.nullable = true;  // absent from some records
      stream.fields.push_back(std::move(field));
    }
    stream.primary_key = config.primary_key;
    stream.cursor_field = config.cursor_field;
    if (!stream.fields.empty()) {
      for (const std::string& key : stream.primary_key) {
        if (stream.field(key) == nullptr) {
          return invalid_argument(fmt::format(
              "primary_key field '{}' is not a field of stream '{}'", key, stream.name));
        }
      }
      if (!stream.cursor_field.empty() && stream.field(stream.cursor_field) == nullptr) {
        return invalid_argument(fmt::format("cursor_field '{}' is not a field of stream '{}'",
                                            stream.cursor_field, stream.name));
      }
    }
    return std::vector<StreamSpec>{std::move(stream)};
  }

 protected:
  virtual Result<SourceConfig> parse_config(const Json& config) const = 0;
  // Reads one file into job.batcher. An error ends the run after the good
  // records before it were emitted.
  virtual Status read_file(const ConnectorContext& context, const SourceConfig& config,
                           FileJob& job) = 0;
  // CSV and XML values are text whose type shows by its form; JSON values have
  // their own.
  virtual bool values_are_text() const = 0;

 private:
  Status read_stream(const ConnectorContext& context, const SourceConfig& config, const Json* state,
                     std::size_t batch_size, std::int64_t max_records, RecordEmitter& out,
                     bool sampling, std::vector<std::string>* header = nullptr) {
    Json floor;
    if (state != nullptr && !config.cursor_field.empty()) {
      if (const Json* c = state->find("cursor")) floor = *c;
    }
    Batcher batcher(out, config.stream, batch_size, max_records, config.cursor_field, floor);
    auto state_with = [&](Json files) {
      Json s = Json::object();
      if (!files.is_null()) s.set("files", std::move(files));
      if (!config.cursor_field.empty()) {
        Json cursor = batcher.cursor_state();
        if (!cursor.is_null()) s.set("cursor", std::move(cursor));
      }
      return s;
    };
    auto run_file = [&](const std::string& path) -> Status {
      report_.files.emplace_back();
      report_.files.back().path = path;
      const std::int64_t before = batcher.accepted(), skipped_before = batcher.skipped();
      FileJob job{path, batcher, report_, report_.files.back()};
      Status s = read_file(context, config, job);
      if (header != nullptr && header->empty()) *header = batcher.columns();
      // Whatever was read before an error goes on: the error names where the
      // file broke.
      Status flushed = batcher.flush();
      FileReadInfo& info = report_.files.back();
      info.records = batcher.accepted() - before;
      info.skipped = batcher.skipped() - skipped_before;
      if (!s.ok()) return s;
      CIVICBUS_RETURN_IF_ERROR(flushed);
      info.complete = !batcher.limit_reached();
      return Status();
    };

    if (!config.is_folder) {
      CIVICBUS_RETURN_IF_ERROR(run_file(config.path));
      if (sampling || batcher.limit_reached()) return Status();
      return out.checkpoint(config.stream, state_with(Json()));
    }

    // A watched folder: the files that are new or changed since the state, in
    // name order, each checkpointed once read. The state keeps only files still
    // in the folder, so it does not grow with every file ever seen, and a name
    // that comes back is read again.
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<FolderEntry> entries,
                              list_folder(config.path, config.pattern));
    const Json* known = state != nullptr ? state->find("files") : nullptr;
    Json files = Json::object();
    std::vector<const FolderEntry*> to_read;
    for (const FolderEntry& e : entries) {
      const Json* k = known != nullptr ? known->find(e.name) : nullptr;
      if (k != nullptr && k->get_int("size", -1) == e.size &&
          k->get_int("mtime", -1) == e.mtime_ns) {
        files.set(e.name, *k);
      } else {
        to_read.push_back(&e);
      }
    }
    for (const FolderEntry* e : to_read) {
      if (batcher.limit_reached()) break;
      if (out.cancelled())
        return cancelled(fmt::format("read of folder '{}' cancelled", config.path));
      CIVICBUS_RETURN_IF_ERROR(run_file(e->path));
      if (sampling) continue;
      if (batcher.limit_reached() && !report_.files.back().complete) break;
      files.set(e->name, Json::object({{"size", e->size}, {"mtime", e->mtime_ns}}));
      CIVICBUS_RETURN_IF_ERROR(out.checkpoint(config.stream, state_with(files)));
      if (!config.move_processed_to.empty()) {
        CIVICBUS_RETURN_IF_ERROR(move_processed(config, *e));
        files.erase(e->name);
      }
    }
    if (!sampling && to_read.empty()) return out.checkpoint(config.stream, state_with(files));
    return Status();
  }

  static Status move_processed(const SourceConfig& config, const FolderEntry& entry) {
    const fs::path dir = fs::path(config.path) / config.move_processed_to;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      return io_error(fmt::format("cannot create folder '{}' for processed files: {}", dir.string(),
                                  ec.message()));
    }
    fs::rename(entry.path, dir / entry.name, ec);
    if (ec) {
      return io_error(fmt::format("cannot move processed file '{}' to '{}': {}", entry.path,
                                  dir.string(), ec.message()));
    }
    return Status();
  }
};

// Maps and decodes one file, noting the encoding in the report.
Result<std::string_view> load_text(FileJob& job, TextEncoding encoding, MappedFile& mapped,
                                   DecodedText& decoded) {
  CIVICBUS_ASSIGN_OR_RETURN(mapped, MappedFile::open(job.path));
  CIVICBUS_ASSIGN_OR_RETURN(decoded, decode_text(job.path, mapped.bytes(), encoding));
  job.info.encoding = std::string(text_encoding_name(decoded.encoding));
  job.info.encoding_note = decoded.detection_note;
  return decoded.text();
}

// ---- csv
// --------------------------------------------------------------------------------

ConnectorSpec csv_spec() {
  ConnectorSpec spec;
  spec.name = "csv";
  spec.title = "CSV files";
  spec.description =
      "Reads CSV files or a watched folder of them; writes CSV "
      "files. Types are inferred from "
      "a sample on discover.";
  spec.format_source = "RFC 4180";
  spec.is_source = true;
  spec.is_sink = true;
  spec.config_schema = schema_json(std::string(R"js({
  "type": "object",
  "required": ["path"],
  "properties": {)js") + std::string(kSourceProperties) +
                                   R"js(,
    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
    "quote": {"enum": ["\"", ""], "default": "\"",
              "description": "'\"' (RFC 4180) or '' for files without quoting"},
    "header": {"type": "boolean", "default": true},
    "columns": {"type": "array", "items": {"type": "string"},
                "description": "Column names; with header true they replace the file's"},
    "strict": {"type": "boolean", "default": false,
               "description": "A row with another field count than the header fails the file"},
    "lenient_quotes": {"type": "boolean", "default": false,
                       "description": "Accept a '\"' inside an unquoted field"}
  }
})js");
  return spec;
}

struct CsvFormat {
  char delimiter = ',';
  bool quoting = true;
  bool header = true;
  std::vector<std::string> columns;
  bool strict = false;
  bool lenient_quotes = false;
};

Result<CsvFormat> parse_csv_format(const Json& config) {
  CsvFormat f;
  const std::string delimiter = config.get_string("delimiter", ",");
  if (delimiter.size() != 1 || delimiter[0] == '"' || delimiter[0] == '\n' ||
      delimiter[0] == '\r') {
    return invalid_argument(
        fmt::format("\"delimiter\" must be one ASCII character other than a "
                    "quote or a line break (got '{}')",
                    delimiter));
  }
  f.delimiter = delimiter[0];
  const std::string quote = config.get_string("quote", "\"");
  if (quote != "\"" && !quote.empty()) {
    return invalid_argument(
        fmt::format("\"quote\" must be '\"' (RFC 4180) or '' (no quoting); got '{}'", quote));
  }
  f.quoting = !quote.empty();
  f.header = config.get_bool("header", true);
  f.columns = string_list(config.find("columns"));
  f.strict = config.get_bool("strict", false);
  f.lenient_quotes = config.get_bool("lenient_quotes", false);
  return f;
}

// Records of a file without quoting: every line is split at the delimiter,
// quotes included.
class UnquotedReader {
 public:
  UnquotedReader(std::string_view text, char delimiter) : text_(text), delimiter_(delimiter) {}
  std::optional<CsvRecord> next() {
    while (pos_ < text_.size()) {
      std::size_t end = text_.find('\n', pos_);
      if (end == std::string_view::npos) end = text_.size();
      std::string_view l = text_.substr(pos_, end - pos_);
      pos_ = end + 1;
      const std::size_t line = line_++;
      if (l.ends_with('\r')) l.remove_suffix(1);
      if (l.empty()) continue;
      CsvRecord record;
      record.line = line;
      for (;;) {
        const std::size_t d = l.find(delimiter_);
        record.fields.emplace_back(l.substr(0, d));
        if (d == std::string_view::npos) break;
        l.remove_prefix(d + 1);
      }
      return record;
    }
    return std::nullopt;
  }

 private:
  std::string_view text_;
  char delimiter_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
};

std::vector<std::string> header_names(std::vector<std::string> names) {
  std::set<std::string> used;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) names[i] = fmt::format("column_{}", i + 1);
    // A repeated name would make two columns one; the second becomes name_2,
    // and so on.
    std::string name = names[i];
    for (int k = 2; used.count(name) != 0; ++k) name = fmt::format("{}_{}", names[i], k);
    names[i] = name;
    used.insert(name);
  }
  return names;
}

class CsvConnector final : public FileSourceBase {
 public:
  CsvConnector() : spec_(csv_spec()) {}
  const ConnectorSpec& spec() const override { return spec_; }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    CIVICBUS_RETURN_IF_ERROR(refuse_upsert(spec_, request));
    CIVICBUS_ASSIGN_OR_RETURN(CsvFormat format, parse_csv_format(context.config));
    SinkFile file = sink_file(context.config, request, ".csv");
    const bool overwrite = context.config.get_string("mode", "append") == "overwrite" &&
                           overwritten_.insert(file.path).second;
    const bool fresh = overwrite || !file.exists || file.size == 0;
    // Appending under an existing header writes the values in that header's
    // order.
    std::vector<std::string> columns = batch.columns;
    if (!fresh && format.header) {
      CIVICBUS_ASSIGN_OR_RETURN(columns, read_header(file.path, format));
      for (const std::string& c : batch.columns) {
        if (std::find(columns.begin(), columns.end(), c) == columns.end()) {
          return failed_precondition(
              fmt::format("column '{}' of stream '{}' is not in the header of '{}' ({}); "
                          "write to a new file "
                          "or use mode overwrite",
                          c, request.stream, file.path, fmt::join(columns, ",")));
        }
      }
    }
    std::vector<int> source(columns.size());
    for (std::size_t i = 0; i < columns.size(); ++i) source[i] = batch.column_index(columns[i]);

    std::string out;
    if (fresh && format.header) out += csv_format_record(columns, format.delimiter);
    WriteResult result;
    std::vector<std::string> fields(columns.size());
    for (const Record& record : batch.records) {
      if (record.values.size() > batch.columns.size()) {
        result.rejected.push_back(
            RowError{record.position, "", "",
                     fmt::format("the record has {} values for {} columns", record.values.size(),
                                 batch.columns.size())});
        continue;
      }
      for (std::size_t i = 0; i < columns.size(); ++i) {
        fields[i] = scalar_text(RecordBatch::value(record, source[i]));
      }
      out += csv_format_record(fields, format.delimiter);
      ++result.written;
    }
    CIVICBUS_RETURN_IF_ERROR(append_durably(file.path, out, overwrite));
    return result;
  }

 protected:
  Result<SourceConfig> parse_config(const Json& config) const override {
    CIVICBUS_RETURN_IF_ERROR(parse_csv_format(config).status());
    return parse_source_config(config, "*.csv", TextEncoding::kAuto);
  }
  bool values_are_text() const override { return true; }

  Status read_file(const ConnectorContext& context, const SourceConfig& config,
                   FileJob& job) override {
    CIVICBUS_ASSIGN_OR_RETURN(CsvFormat format, parse_csv_format(context.config));
    MappedFile mapped;
    DecodedText decoded;
    CIVICBUS_ASSIGN_OR_RETURN(std::string_view text,
                              load_text(job, config.encoding, mapped, decoded));
    if (!text.empty() && text.back() != '\n' && text.back() != '\r') {
      job.report.add_issue(job.path, line_of_offset(text, text.size()),
                           "the file does not end with a line break: its last record may be "
                           "cut short (the record was read as it is)");
    }
    CsvOptions options;
    options.delimiter = format.delimiter;
    options.has_header = false;
    options.allow_bare_quotes = format.lenient_quotes;
    CsvReader reader(text, options);
    UnquotedReader unquoted(text, format.delimiter);
    auto next = [&]() -> Result<std::optional<CsvRecord>> {
      if (!format.quoting) return unquoted.next();
      return reader.next_record();
    };

    bool first = true;
    std::size_t width = 0;
    std::int64_t rows_read = 0;
    while (!job.batcher.limit_reached()) {
      auto record = next();
      if (!record.ok()) {
        std::string message = record.status().message();
        if (message.find("never closed") != std::string::npos) {
          message += "; the file may be truncated";
        }
        return invalid_argument(fmt::format("file '{}': {} ({} records before it were read)",
                                            job.path, message, rows_read));
      }
      if (!*record) break;
      CsvRecord& rec = **record;
      if (first) {
        first = false;
        std::vector<std::string> names;
        if (!format.columns.empty()) {
          names = format.columns;
        } else if (format.header) {
          names = rec.fields;
        } else {
          for (std::size_t i = 0; i < rec.fields.size(); ++i) {
            names.push_back(fmt::format("column_{}", i + 1));
          }
        }
        names = header_names(std::move(names));
        width = names.size();
        CIVICBUS_RETURN_IF_ERROR(job.batcher.set_columns(std::move(names)));
        if (!job.batcher.cursor_field().empty() && job.batcher.cursor_index() < 0) {
          return invalid_argument(fmt::format("cursor_field '{}' is not a column of file '{}'",
                                              job.batcher.cursor_field(), job.path));
        }
        if (format.header) continue;
      }
      if (rec.fields.size() != width) {
        std::string what =
            fmt::format("the record has {} fields, the header has {}", rec.fields.size(), width);
        if (format.strict) {
          return invalid_argument(
              fmt::format("file '{}' line {}: {} (\"strict\": true)", job.path, rec.line, what));
        }
        job.report.add_issue(job.path, static_cast<std::int64_t>(rec.line),
                             what + "; passed on as it is");
      }
      ++rows_read;
      std::vector<Json> values;
      values.reserve(rec.fields.size());
      for (std::string& f : rec.fields) values.emplace_back(std::move(f));
      CIVICBUS_RETURN_IF_ERROR(
          job.batcher.add_values(std::move(values), static_cast<std::int64_t>(rec.line)));
    }
    return Status();
  }

 private:
  static Result<std::vector<std::string>> read_header(const std::string& path,
                                                      const CsvFormat& format) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    std::string head(64 * 1024, '\0');
    const ssize_t n = ::read(fd, head.data(), head.size());
    ::close(fd);
    if (n < 0) return io_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    head.resize(static_cast<std::size_t>(n));
    CsvOptions options;
    options.delimiter = format.delimiter;
    CsvReader reader(head, options);
    auto record = reader.next_record();
    if (!record.ok() || !*record) {
      return failed_precondition(
          fmt::format("the header of '{}' cannot be read ({}); write to a new file or use "
                      "mode overwrite",
                      path, record.ok() ? std::string("no record") : record.status().message()));
    }
    return (**record).fields;
  }

  ConnectorSpec spec_;
  std::set<std::string> overwritten_;  // files this object already replaced
};

// ---- json
// -------------------------------------------------------------------------------

ConnectorSpec json_spec() {
  ConnectorSpec spec;
  spec.name = "json";
  spec.title = "JSON and NDJSON files";
  spec.description =
      "Reads an array of objects (JSON) or one object per line "
      "(NDJSON) from files or a "
      "watched folder; writes either form.";
  spec.format_source = "RFC 8259; NDJSON (github.com/ndjson/ndjson-spec)";
  spec.is_source = true;
  spec.is_sink = true;
  spec.config_schema = schema_json(std::string(R"js({
  "type": "object",
  "required": ["path"],
  "properties": {)js") + std::string(kSourceProperties) +
                                   R"js(,
    "format": {"enum": ["auto", "json", "ndjson"], "default": "auto",
               "description": "auto: .ndjson/.jsonl files are NDJSON, others JSON"},
    "records_pointer": {"type": "string", "default": "",
                        "description": "JSON pointer (RFC 6901) to the array of records"}
  }
})js");
  return spec;
}

enum class JsonLayout { kArray, kLines };

Result<JsonLayout> json_layout(const Json& config, const std::string& path) {
  const std::string format = config.get_string("format", "auto");
  if (format == "json") return JsonLayout::kArray;
  if (format == "ndjson") return JsonLayout::kLines;
  if (format != "auto") {
    return invalid_argument(
        fmt::format("\"format\" must be auto, json or ndjson (got '{}')", format));
  }
  const std::string ext = fs::path(path).extension().string();
  return ext == ".ndjson" || ext == ".jsonl" ? JsonLayout::kLines : JsonLayout::kArray;
}

class JsonConnector final : public FileSourceBase {
 public:
  JsonConnector() : spec_(json_spec()) {}
  const ConnectorSpec& spec() const override { return spec_; }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    CIVICBUS_RETURN_IF_ERROR(refuse_upsert(spec_, request));
    const std::string format = context.config.get_string("format", "auto");
    SinkFile file = sink_file(context.config, request, format == "ndjson" ? ".ndjson" : ".json");
    CIVICBUS_ASSIGN_OR_RETURN(JsonLayout layout, json_layout(context.config, file.path));
    const bool overwrite = context.config.get_string("mode", "append") == "overwrite" &&
                           overwritten_.insert(file.path).second;
    const bool fresh = overwrite || !file.exists || file.size == 0;
    WriteResult result;
    std::string out;
    if (layout == JsonLayout::kLines) {
      for (const Record& record : batch.records) {
        batch.to_object(record).dump_to(out);
        out += '\n';
        ++result.written;
      }
      CIVICBUS_RETURN_IF_ERROR(append_durably(file.path, out, overwrite));
      return result;
    }
    // An array file stays one valid document: the new objects go before its
    // closing ']'.
    std::int64_t keep = -1;
    bool empty_array = true;
    if (!fresh) {
      CIVICBUS_ASSIGN_OR_RETURN(auto tail, array_tail(file));
      keep = tail.first;
      empty_array = tail.second;
    }
    if (fresh) out += "[";
    for (const Record& record : batch.records) {
      out += empty_array ? "\n" : ",\n";
      empty_array = false;
      batch.to_object(record).dump_to(out);
      ++result.written;
    }
    out += "\n]\n";
    CIVICBUS_RETURN_IF_ERROR(append_durably(file.path, out, overwrite, keep));
    return result;
  }

 protected:
  Result<SourceConfig> parse_config(const Json& config) const override {
    return parse_source_config(config, "*.json", TextEncoding::kUtf8);
  }
  bool values_are_text() const override { return false; }

  Status read_file(const ConnectorContext& context, const SourceConfig& config,
                   FileJob& job) override {
    CIVICBUS_ASSIGN_OR_RETURN(JsonLayout layout, json_layout(context.config, job.path));
    MappedFile mapped;
    DecodedText decoded;
    CIVICBUS_ASSIGN_OR_RETURN(std::string_view text,
                              load_text(job, config.encoding, mapped, decoded));
    if (layout == JsonLayout::kLines) return read_lines(text, job);

    // A JSON document is parsed whole (simdjson needs it all); NDJSON is the
    // form for files too large for that.
    auto document = Json::parse(text);
    if (!document.ok()) {
      return invalid_argument(
          fmt::format("file '{}' is not valid JSON: {}", job.path, document.status().message()));
    }
    const std::string pointer = context.config.get_string("records_pointer");
    const Json* records = document->at_pointer(pointer);
    if (records == nullptr) {
      return invalid_argument(
          fmt::format("file '{}' has nothing at records_pointer '{}'", job.path, pointer));
    }
    if (records->is_object() && pointer.empty()) {
      return job.batcher.add_object(*records,
                                    1);  // a file of one object is one record
    }
    if (!records->is_array()) {
      return invalid_argument(
          fmt::format("file '{}': the value at records_pointer '{}' is not an "
                      "array of objects",
                      job.path, pointer));
    }
    std::int64_t index = 0;
    for (const Json& item : records->as_array()) {
      ++index;
      if (job.batcher.limit_reached()) break;
      if (!item.is_object()) {
        job.report.add_issue(job.path, index,
                             fmt::format("element {} is not an object; left out", index));
        job.batcher.reject(index, item.dump().substr(0, 200),
                           fmt::format("file '{}': element {} is not an object", job.path, index));
        continue;
      }
      CIVICBUS_RETURN_IF_ERROR(job.batcher.add_object(item, index));
    }
    return Status();
  }

 private:
  // Each line is one JSON text; a line that is not an object is reported and
  // left out, the others load.
  static Status read_lines(std::string_view text, FileJob& job) {
    std::size_t pos = 0;
    std::int64_t line = 0;
    while (pos < text.size() && !job.batcher.limit_reached()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view l = text.substr(pos, end - pos);
      pos = end + 1;
      ++line;
      if (l.ends_with('\r')) l.remove_suffix(1);
      if (l.find_first_not_of(" \t") == std::string_view::npos) continue;
      auto value = Json::parse(l);
      if (!value.ok()) {
        job.report.add_issue(job.path, line, "not valid JSON: " + value.status().message());
        job.batcher.reject(
            line, std::string(l.substr(0, 200)),
            fmt::format("file '{}': not valid JSON: {}", job.path, value.status().message()));
        continue;
      }
      if (!value->is_object()) {
        job.report.add_issue(job.path, line, "the line is JSON but not an object; left out");
        job.batcher.reject(line, std::string(l.substr(0, 200)),
                           fmt::format("file '{}': the line is JSON but not an object", job.path));
        continue;
      }
      CIVICBUS_RETURN_IF_ERROR(job.batcher.add_object(*value, line));
    }
    return Status();
  }

  // Where an array file's closing ']' is, and whether the array is empty.
  static Result<std::pair<std::int64_t, bool>> array_tail(const SinkFile& file) {
    const int fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return io_error(fmt::format("cannot read '{}': {}", file.path, std::strerror(errno)));
    const std::int64_t start = std::max<std::int64_t>(0, file.size - 4096);
    std::string tail(static_cast<std::size_t>(file.size - start), '\0');
    const ssize_t n = ::pread(fd, tail.data(), tail.size(), start);
    ::close(fd);
    if (n < 0)
      return io_error(fmt::format("cannot read '{}': {}", file.path, std::strerror(errno)));
    tail.resize(static_cast<std::size_t>(n));
    const std::size_t close = tail.find_last_not_of(" \t\r\n");
    if (close == std::string::npos || tail[close] != ']') {
      return failed_precondition(
          fmt::format("'{}' does not end with a JSON array's ']'; append "
                      "NDJSON instead or use mode overwrite",
                      file.path));
    }
    const std::size_t before =
        close == 0 ? std::string::npos : tail.find_last_not_of(" \t\r\n", close - 1);
    const bool empty = before != std::string::npos && tail[before] == '[';
    return std::make_pair(start + static_cast<std::int64_t>(close), empty);
  }

  ConnectorSpec spec_;
  std::set<std::string> overwritten_;
};

// ---- xml
// --------------------------------------------------------------------------------

ConnectorSpec xml_spec() {
  ConnectorSpec spec;
  spec.name = "xml";
  spec.title = "XML files";
  spec.description =
      "Reads repeated elements of XML files (or a watched "
      "folder) as records: attributes "
      "become '@name' fields, child elements fields "
      "(docs/transforms.md convention). DTDs are "
      "refused.";
  spec.format_source = "XML 1.0 (W3C Recommendation, fifth edition)";
  spec.is_source = true;
  spec.is_sink = false;
  spec.config_schema = schema_json(std::string(R"js({
  "type": "object",
  "required": ["path", "record_element"],
  "properties": {)js") + std::string(kSourceProperties) +
                                   R"js(,
    "record_element": {"type": "string", "minLength": 1,
                       "description": "Name of the repeated element ('permit'), or its path from the root ('/permits/permit')"}
  }
})js");
  return spec;
}

// Which elements of an XML file are records: a name ("permit", at any depth) or a path from
// the root ("/permits/permit").
class XmlRecordMatch {
 public:
  explicit XmlRecordMatch(std::string_view record_element) {
    if (!record_element.starts_with("/")) {
      name_ = record_element;
      return;
    }
    std::string_view rest = record_element;
    while (!rest.empty()) {
      rest.remove_prefix(1);
      const std::size_t slash = rest.find('/');
      path_.emplace_back(rest.substr(0, slash));
      rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    }
  }

  bool operator()(const std::vector<std::string>& open) const {
    return path_.empty() ? open.back() == name_ : open == path_;
  }

 private:
  std::string name_;
  std::vector<std::string> path_;
};

class XmlConnector final : public FileSourceBase {
 public:
  XmlConnector() : spec_(xml_spec()) {}
  const ConnectorSpec& spec() const override { return spec_; }

 protected:
  Result<SourceConfig> parse_config(const Json& config) const override {
    if (config.get_string("record_element").empty()) {
      return invalid_argument(
          "config has no \"record_element\" (the repeated "
          "element that is one record, e.g. "
          "\"permit\" or \"/permits/permit\")");
    }
    return parse_source_config(config, "*.xml", TextEncoding::kAuto);
  }
  bool values_are_text() const override { return true; }

  Status read_file(const ConnectorContext& context, const SourceConfig& config,
                   FileJob& job) override {
    // With "auto", expat decodes what the XML declaration or BOM names (UTF-8, UTF-16,
    // ISO-8859-1, US-ASCII); a declared encoding overrides the document's. expat has no
    // Windows-1252 of its own. Records are UTF-8 either way.
    const char* encoding = nullptr;
    switch (config.encoding) {
      case TextEncoding::kAuto:
        job.info.encoding = "as declared in the document";
        break;
      case TextEncoding::kUtf8:
        encoding = "UTF-8";
        break;
      case TextEncoding::kLatin1:
        encoding = "ISO-8859-1";
        break;
      case TextEncoding::kWindows1252:
        return invalid_argument(
            "the xml connector reads utf-8, latin-1 or what the XML declaration names; "
            "windows-1252 is not supported (use \"auto\" with an encoding declaration)");
    }
    if (encoding != nullptr) job.info.encoding = std::string(text_encoding_name(config.encoding));
    const int fd = ::open(job.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      std::string message = fmt::format("cannot open '{}': {}", job.path, std::strerror(err));
      return err == ENOENT ? not_found(std::move(message)) : io_error(std::move(message));
    }
    // Records are read in pieces of 1 MiB and handed to the batcher after each piece: those
    // completed before an error still load, and the error names where the file broke.
    struct Pending {
      Json object;
      std::int64_t line;
    };
    std::vector<Pending> pending;
    civicbus::detail::XmlTreeOptions tree;
    if (encoding != nullptr) tree.encoding = encoding;
    civicbus::detail::XmlTreeReader reader(
        std::move(tree), XmlRecordMatch(context.config.get_string("record_element")),
        [&pending](std::string /*name*/, Json value, std::int64_t line) {
          // A record's members are its fields; a record of text alone is one "#text".
          if (!value.is_object()) {
            Json object = Json::object();
            if (!value.is_null()) object.set("#text", std::move(value));
            value = std::move(object);
          }
          pending.push_back(Pending{std::move(value), line});
        });
    Status s;
    std::string chunk(std::size_t{1} << 20, '\0');
    bool stop = false;
    while (s.ok() && !stop) {
      const ssize_t n = ::read(fd, chunk.data(), chunk.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        s = io_error(fmt::format("cannot read '{}': {}", job.path, std::strerror(errno)));
        break;
      }
      const bool final = n == 0;
      Status parsed =
          reader.feed(std::string_view(chunk.data(), static_cast<std::size_t>(n)), final);
      for (Pending& r : pending) {
        if (job.batcher.limit_reached()) {
          stop = true;
          break;
        }
        s = job.batcher.add_object(r.object, r.line);
        if (!s.ok()) break;
      }
      pending.clear();
      if (s.ok() && !parsed.ok()) s = parsed.with_context(fmt::format("file '{}'", job.path));
      if (final) break;
    }
    ::close(fd);
    return s;
  }

 private:
  ConnectorSpec spec_;
};

}  // namespace

std::unique_ptr<Connector> make_csv_connector() {
  return std::make_unique<CsvConnector>();
}
std::unique_ptr<Connector> make_json_connector() {
  return std::make_unique<JsonConnector>();
}
std::unique_ptr<Connector> make_xml_connector() {
  return std::make_unique<XmlConnector>();
}

Status add_file_connectors(ConnectorCatalog& catalog) {
  CIVICBUS_RETURN_IF_ERROR(catalog.add(&make_csv_connector));
  CIVICBUS_RETURN_IF_ERROR(catalog.add(&make_json_connector));
  return catalog.add(&make_xml_connector);
}

}  // namespace civicbus::connect::detail

// What the remote-file connectors (s3, sftp) share: the format of an object or
// file, its parsing by the file connectors (csv, json; file_connectors.cpp)
// once it is downloaded to a local scratch file, the encoding of a sink batch
// as one document, and the naming of that document from a template. Private to
// the connect area.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::connect::detail {

enum class RemoteFormat { kCsv, kJson, kNdjson };

// The "format" of the config ("auto", "csv", "json", "ndjson"); "auto" goes by
// the extension of `name` (.csv, .json, .ndjson / .jsonl). kInvalidArgument
// names the object when auto cannot tell.
Result<RemoteFormat> remote_format(const Json& config, std::string_view name);
std::string_view remote_format_name(RemoteFormat format);  // "csv", "json", "ndjson"

// The schema properties of the format and its CSV options, spliced into a
// connector's schema (a JSON object text without braces).
std::string_view remote_format_properties();

// A folder for downloads: <work_dir>/<name> when the context has a work_dir,
// else a fresh folder under the system temp dir. Removed with what it holds
// when destroyed.
class ScratchDir {
 public:
  static Result<ScratchDir> create(const ConnectorContext& context, std::string_view name);
  ScratchDir(ScratchDir&& other) noexcept;
  ScratchDir& operator=(ScratchDir&& other) noexcept;
  ~ScratchDir();
  const std::string& path() const { return path_; }
  // A local file name for the remote `name` (its extension kept, other
  // characters safe).
  std::string file_for(std::string_view name, std::int64_t index) const;

 private:
  ScratchDir() = default;
  std::string path_;
};

// Parses the downloaded `local_path` (remote name `remote_name`, named in
// errors) with the csv or json connector and emits its records as `stream`. The
// file connector's own checkpoint is dropped: the caller checkpoints the remote
// file once it is done. `emitted` counts records.
Status parse_downloaded(const ConnectorContext& context, RemoteFormat format,
                        const std::string& local_path, std::string_view remote_name,
                        const std::string& stream, std::size_t batch_size, std::int64_t max_records,
                        RecordEmitter& out, std::int64_t& emitted);

// The stream of one downloaded sample file, as the file connector discovers it.
Result<StreamSpec> discover_downloaded(const ConnectorContext& context, RemoteFormat format,
                                       const std::string& local_path, const std::string& stream);

// One batch as a whole CSV (header line first) or NDJSON document.
struct EncodedBatch {
  std::string bytes;
  WriteResult result;
};
Result<EncodedBatch> encode_batch(const RecordBatch& batch, RemoteFormat format, char delimiter);

// `name_template` with {stream}, {batch_id}, {date} (yyyy-mm-dd, UTC) and {ext}
// replaced; an unknown {placeholder} is kInvalidArgument. `batch_id` is made
// file-name safe.
Result<std::string> render_name(std::string_view name_template, std::string_view stream,
                                std::string_view batch_id, SystemTime now, std::string_view ext);

// fnmatch(3) of a file name against a glob.
bool glob_matches(const std::string& pattern, const std::string& name);

}  // namespace civicbus::connect::detail

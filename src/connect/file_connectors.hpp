// The file connectors (csv, json, xml) and what they tell about a read beyond
// its records.
//
// RecordEmitter has no channel for problems that do not stop a read: an NDJSON
// line that is not JSON, a CSV row with fewer fields than the header, a file
// read as Windows-1252 because it is not UTF-8. The file sources keep them in a
// ReadReport, rebuilt by every read() and kept until the next one; a caller
// that knows the file family fetches it with
// `dynamic_cast<detail::FileSourceConnector*>(connector)->last_read_report()`.
// Problems that lose the file's structure (an unterminated quote, broken XML, a
// file declared UTF-8 that is not) are not issues: read() fails with them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "civicbus/connect/connector.hpp"

namespace civicbus::connect::detail {

// One line or record of a file that was left out or passed on imperfect, and
// why.
struct ReadIssue {
  std::string path;
  std::int64_t line = 0;  // the line (CSV, NDJSON, XML) or element number (JSON array)
  std::string reason;
};

// What one read did with one file.
struct FileReadInfo {
  std::string path;
  std::string encoding;       // "utf-8", "windows-1252", "iso-8859-1"
  std::string encoding_note;  // why "auto" chose a single-byte encoding; empty otherwise
  std::int64_t records = 0;   // records emitted
  std::int64_t skipped = 0;   // records at or below the state's cursor
  bool complete = false;      // read to its end (false: failed, cancelled or limit hit)
};

struct ReadReport {
  static constexpr std::size_t kMaxIssues = 1000;
  std::vector<FileReadInfo> files;
  std::vector<ReadIssue> issues;  // the first kMaxIssues
  std::int64_t issues_dropped = 0;

  void add_issue(std::string path, std::int64_t line, std::string reason);
};

// A file source: a Connector that keeps the report of its last read.
class FileSourceConnector : public Connector {
 public:
  // The report of the last read() (or discover()) of this object; valid until
  // the next call.
  const ReadReport& last_read_report() const { return report_; }

 protected:
  ReadReport report_;
};

std::unique_ptr<Connector> make_csv_connector();
std::unique_ptr<Connector> make_json_connector();
std::unique_ptr<Connector> make_xml_connector();

}  // namespace civicbus::connect::detail

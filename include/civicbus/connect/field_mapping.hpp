// FieldMapping: turns records of a source stream into records of the platform's data model, field
// by field, as configured (JSON here; the hub loads it from YAML). Each target field takes a source
// field (or a JSON pointer into one), an expression, or a default; may pass through a lookup table;
// is converted to a type; and may be required. A mapping is checked against the discovered streams
// once, before any run, and every problem is reported at once; applying it then does no parsing and
// no lookups by name per record.
//
// Mapping document:
//   {
//     "source": "assessments",          // the stream to read (optional with one stream)
//     "target": "property_assessment",  // the output stream's name (default: the source's)
//     "lookups": {                      // named tables: code -> value
//       "property_class": {"values": {"201": "residential", "340": "commercial"},
//                          "default": "other"},     // or "on_miss": "error" | "keep"
//       "ward_names": {"1": "Ward 1 – Orléans"}     // a bare table: a miss is an error
//     },
//     "fields": {                       // in output order (an array of {"name": …} works too)
//       "roll_number": {"from": "ROLL_NUM", "type": "string", "required": true},
//       "owner_city": {"from": "/owner/address/city"},  // column "owner", then /address/city
//       "sale_date": {"from": "SALE_DT", "type": "date", "formats": ["%d/%m/%Y", "%Y%m%d"]},
//       "read_at": {"from": "TS", "type": "timestamp", "formats": ["%Y-%m-%d %H:%M"],
//                   "time_zone": "America/Toronto"},
//       "class": {"from": "CLASS", "lookup": "property_class"},
//       "label": {"expr": "upper(trim(street)) + ' ' + coalesce(unit, '')"},
//       "active": {"from": "ACTIVE", "type": "boolean", "default": true}
//     }
//   }
//
// Types: string, integer, number, boolean, date ("YYYY-MM-DD"; formats default ["%Y-%m-%d"]),
// timestamp (RFC 3339 UTC with microseconds; without formats the input must be RFC 3339; a format
// without %z is read in `time_zone`, default UTC), json (kept as is). Without "type" the value
// passes unchanged. For types other than string and json an empty or blank string counts as missing
// (CSV's empty cell). A missing value takes the default (which skips the lookup); a required field
// still missing fails the row.
//
// Format directives: %Y (4 digits) %y %m %d %e %H %M %S %f (fraction) %z (Z, ±hh:mm, ±hhmm) %b %B
// (English month names) %T (%H:%M:%S) %F (%Y-%m-%d) %s (Unix seconds) %%; a space matches any run
// of white space; the keyword "rfc3339" as a whole format takes RFC 3339.
//
// Expressions: field names (`back-quoted` when they are not identifiers), 'single' or "double"
// quoted strings, numbers, true/false/null; + - * / % (numbers; + joins when either side is a
// string; numeric strings count as numbers for - * / %), comparisons == != < <= > >= (= and <>
// too), and/or/not (&&, ||, ! too), parentheses, and the functions if(c, a, b) (lazy), upper,
// lower, trim, substr(s, start[, length]) (start counts from 1), concat(…) (nulls as ''),
// coalesce(…), round(x[, digits]), len(s) (code points), replace(s, from, to). Arithmetic,
// comparison and + with a null give null; a null condition is false.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::connect {

struct MappingProblem {
  std::string target;  // the target field, or empty for the mapping as a whole
  std::string message;
};

struct MappedBatch {
  RecordBatch batch;  // the rows that mapped, in input order
  // One per failing field of each row left out. `position` is the record's position, or its
  // 1-based index in the batch when it has none; `value` is the offending value as text.
  std::vector<RowError> errors;
};

// A compiled mapping. Immutable and cheap to copy (shared); apply() is thread-safe.
class CIVICBUS_EXPORT FieldMapping {
 public:
  // Compiles `mapping` against the streams a source discovered (empty: source fields are not
  // checked, and a column missing from a batch reads as null). On failure the status
  // (kInvalidArgument) lists every problem, one per line.
  static Result<FieldMapping> compile(const Json& mapping,
                                      const std::vector<StreamSpec>& discovered);
  // Every problem compile() would report; empty when the mapping compiles.
  static std::vector<MappingProblem> check(const Json& mapping,
                                           const std::vector<StreamSpec>& discovered);

  // Maps one batch. Column indexes are resolved once per call from `in.columns`.
  MappedBatch apply(const RecordBatch& in) const;
  // The same, moving values out of `in` where a field passes unchanged.
  MappedBatch apply(RecordBatch&& in) const;

  const std::string& source_stream() const;
  const std::string& target_stream() const;
  // The output schema: target fields with their types (json when no type is set), nullable unless
  // required.
  StreamSpec target_spec() const;

  struct Impl;

 private:
  explicit FieldMapping(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// The closest of `candidates` to `name` (edit distance, case-insensitive), or empty when none is
// close enough to be a likely typo.
CIVICBUS_EXPORT std::string closest_name(std::string_view name,
                                         const std::vector<std::string>& candidates);

}  // namespace civicbus::connect

// Bulk import of devices: reads a CSV file (header row) or a JSON array of objects into an
// ImportPlan, validating every row against the device types. Good rows are kept, bad rows are
// listed by where they are (the CSV file's line, or "item N" of the JSON array) with the field
// and the reason, so an operator can fix the file and import the rest.
//
// Parsing only: nothing is stored and no certificate is issued here; the importer (bulk job)
// provisions ImportPlan::rows through the registry and the device CA.
//
// CSV columns (header names, case-insensitive, in any order):
//   serial (required), type (required), lat, lon, asset_id, id, model, firmware_version,
//   install_date (YYYY-MM-DD), department, project, network (mqtt|lorawan|sigfox|http),
//   tags ("k=v;k=v").
//   Aliases: latitude → lat, longitude|lng → lon, firmware → firmware_version.
// An unknown column fails the whole import (kInvalidArgument naming it): a misspelt
// "lattitude" silently kept as a tag would lose every location. JSON objects take the same
// keys (an unknown key is an error for that item); lat/lon may be numbers, tags an object of
// strings, and "location": {"lat", "lon"} is accepted too.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"

namespace civicbus::fleet {

// Finds a device type by name; nullptr when there is none. Called once per row, from the
// parsing thread only; must stay valid for the call.
using DeviceTypeLookup = std::function<const DeviceType*(std::string_view type_name)>;

struct ImportRow {
  std::size_t line = 0;  // CSV: physical line where the record starts; JSON: 1-based item
  Device device;         // id defaults to the serial; network to the type's default
};

struct ImportError {
  std::size_t line = 0;  // as ImportRow::line
  std::string field;     // the column ("" when about the whole row)
  std::string reason;
  bool json_item = false;  // line counts JSON array items

  // "line 7" or "item 7".
  std::string location() const;
  // "line 7: lat: 'abc' is not a number".
  std::string message() const;
};

struct ImportPlan {
  std::vector<ImportRow> rows;
  std::vector<ImportError> errors;  // in file order
};

struct ImportOptions {
  char csv_delimiter = ',';
};

// Limits a row must fit.
inline constexpr std::size_t kMaxImportIdLength = 128;     // id and serial
inline constexpr std::size_t kMaxImportFieldLength = 256;  // other fields, tag values
inline constexpr std::size_t kMaxImportTagKeyLength = 64;
inline constexpr std::size_t kMaxImportTags = 32;

// Whole-file problems (CSV syntax error with line and column, no header, a required column
// missing, an unknown column, JSON that is not an array) fail with kInvalidArgument; row
// problems go to ImportPlan::errors.
Result<ImportPlan> parse_device_csv(std::string_view text, const DeviceTypeLookup& types,
                                    const ImportOptions& options = {});
Result<ImportPlan> parse_device_json(std::string_view text, const DeviceTypeLookup& types);
// JSON when the first non-blank character is '[' or '{', CSV otherwise.
Result<ImportPlan> parse_device_import(std::string_view text, const DeviceTypeLookup& types,
                                       const ImportOptions& options = {});

// The errors as a CSV report: header "where,field,reason", one record per error.
std::string import_errors_csv(const ImportPlan& plan);

}  // namespace civicbus::fleet

// Compatibility between versions of a JSON Schema, as a schema registry checks it when a new
// version is registered (the modes of Confluent Schema Registry).
//
// BACKWARD: consumers using the new schema can read data written with the previous one,
// i.e. every instance valid under the old schema is valid under the new. FORWARD: the
// reverse. FULL: both. The _TRANSITIVE forms check against every earlier version instead of
// only the last one.
//
// The check is structural and conservative: it proves "every instance of A is an instance
// of B" keyword by keyword (types, properties, required, additionalProperties, enum/const,
// bounds, lengths, patterns, formats, items/prefixItems, local $ref) and reports the first
// construct it cannot prove, naming where and why. One assumption: properties a schema does
// not declare are taken as absent from data written with it (producers send what their schema
// names), unless the schema gives additionalProperties or patternProperties a schema. So
// adding an optional property is backward compatible, adding a required one is not.
#pragma once

#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

enum class SchemaCompatibility {
  kNone,
  kBackward,
  kForward,
  kFull,
  kBackwardTransitive,
  kForwardTransitive,
  kFullTransitive,
};

// "NONE", "BACKWARD", "FORWARD", "FULL" and the "_TRANSITIVE" forms (case-insensitive).
CIVICBUS_EXPORT Result<SchemaCompatibility> parse_schema_compatibility(std::string_view text);
CIVICBUS_EXPORT std::string_view to_string(SchemaCompatibility mode);

// Checks `next` against the earlier versions (oldest first; version numbers are positions
// from 1). kFailedPrecondition names the mode, the version, the path and the reason:
// "BACKWARD incompatible with version 2: property 'ward' became required at /required".
CIVICBUS_EXPORT Status check_compatibility(SchemaCompatibility mode,
                                           const std::vector<Json>& earlier, const Json& next);

// True when every instance valid under `narrower` is valid under `wider`; otherwise false
// with `reason` (path and cause) filled in.
CIVICBUS_EXPORT bool schema_accepts_all(const Json& narrower, const Json& wider,
                                        std::string* reason);

}  // namespace civicbus

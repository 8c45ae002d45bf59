// The device type catalogue: device types are data (data/fleet/device_types.json, embedded in
// the library at build time), parsed and validated here, and kept by name in a
// DeviceTypeCatalog to which a node may add its own types.
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"

namespace civicbus::fleet {

// Checks one type: a name, at least one metric, every metric named once with a unit and
// min <= max, a positive expected interval, default rules that are objects with "name" and
// "kind" and whose "metric" (unless "*") is one of the type's metrics. Errors name the type
// and the field.
Status validate_device_type(const DeviceType& type);

// parse_device_type() and device_type_to_json() are declared in civicbus/fleet/types.hpp.

// A catalogue: a JSON array of types. Errors name the index and the name of the bad type
// and the field ("device type #4 'air_quality': metric 'pm10' has no unit"); duplicate
// type names are refused.
Result<std::vector<DeviceType>> parse_device_types(std::string_view json_text);

// The text of data/fleet/device_types.json as built into the library.
std::string_view builtin_device_types_json();
// The built-in catalogue, parsed (it is checked by the tests, so this does not fail in
// practice; an error would name the bad entry).
Result<std::vector<DeviceType>> builtin_device_types();

// Device types by name. Thread-safe: lookups share a lock, registering takes it alone.
// Returned pointers stay valid as long as the caller holds them, even after the type is
// replaced.
class DeviceTypeCatalog {
 public:
  DeviceTypeCatalog() = default;

  // A catalogue holding the built-in types.
  static Result<std::unique_ptr<DeviceTypeCatalog>> with_builtin_types();

  // Adds a type after validate_device_type(); an existing name is refused (kAlreadyExists)
  // unless `replace` is true.
  Status register_type(DeviceType type, bool replace = false);
  // Adds all of `types`, validated, each with register_type(type, replace).
  Status register_types(std::vector<DeviceType> types, bool replace = false);

  std::shared_ptr<const DeviceType> find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // Every type, sorted by name.
  std::vector<std::shared_ptr<const DeviceType>> list() const;
  // "air_quality, flood_gauge, …" for error messages.
  std::string names() const;
  std::size_t size() const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<const DeviceType>, std::less<>> types_;
};

}  // namespace civicbus::fleet

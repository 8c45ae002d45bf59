// Registry: the fleet's devices, their lifecycle, groups and twins. Every change is written
// to SQLite (tables fleet_devices, fleet_device_history, fleet_groups, fleet_group_members,
// component "fleet_registry") and mirrored in memory, so lookups and queries never touch the
// database: a hash map by id, a per-type list and a 0.01° spatial grid (per type too).
//
// Devices are immutable snapshots: find() hands out a shared_ptr<const Device> that stays
// valid (and unchanged) however long the caller keeps it; a change installs a new snapshot.
// Writers are serialised among themselves; readers never wait for the disk.
//
// The registry publishes nothing: the façade wires on_provisioned / on_status_changed to
// the broker. Callbacks are called after the commit, outside the registry's locks, on the
// calling thread; register them before the registry is shared between threads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/storage/database.hpp"
#include "fleet/device_types.hpp"

namespace civicbus::fleet {

// One item of provision_batch(): the device as stored, or why it was refused.
struct ProvisionResult {
  std::size_t index = 0;  // position in the batch
  std::string id;         // the id it has or would have had
  Status status;
  std::shared_ptr<const Device> device;  // null when refused
};

class Registry {
 public:
  using StatusChangedCallback = std::function<void(const StatusChange&, const Device&)>;
  using ProvisionedCallback = std::function<void(const Device&)>;

  // Migrates the tables and loads every device and group (one query each). `db`, `clock` and
  // `catalog` must outlive the registry.
  static Result<std::unique_ptr<Registry>> open(storage::Database& db, const Clock& clock,
                                                const DeviceTypeCatalog& catalog);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // ----- lifecycle ---------------------------------------------------------------------
  // Validates (id — the serial when empty — and serial non-empty and unique, known type,
  // location within -90..90/-180..180, install_date YYYY-MM-DD, status not decommissioned)
  // and stores the device; created_at/updated_at are set from the clock, the twin versions
  // reset. A device provisioned as active or maintenance gets a history entry for it.
  Result<std::shared_ptr<const Device>> provision(Device device, std::string_view actor);
  // Provisions many in one transaction; a refused item does not stop the others. The outer
  // error is only for a failed write (then nothing was stored).
  Result<std::vector<ProvisionResult>> provision_batch(std::vector<Device> devices,
                                                       std::string_view actor);

  // Moves a device along its lifecycle (transition_allowed()); refused transitions name
  // both states. Records who, when and why.
  Result<std::shared_ptr<const Device>> set_status(std::string_view id, DeviceStatus to,
                                                   std::string_view actor, std::string_view reason);
  // Status changes of one device, oldest first.
  Result<std::vector<StatusChange>> history(std::string_view id) const;
  // Decommissions every matching device that is not decommissioned yet, in one transaction;
  // returns their ids (sorted).
  Result<std::vector<std::string>> decommission_where(const DeviceQuery& query,
                                                      std::string_view actor,
                                                      std::string_view reason);

  // The same move for many devices in one transaction: those that may make it (known, and
  // transition_allowed) do, the others are skipped; returns the ids moved (sorted).
  Result<std::vector<std::string>> set_status_many(const std::vector<std::string>& ids,
                                                   DeviceStatus to, std::string_view actor,
                                                   std::string_view reason);

  Result<std::shared_ptr<const Device>> update(std::string_view id, const DeviceUpdate& update,
                                               std::string_view actor);

  // ----- reads -------------------------------------------------------------------------
  std::shared_ptr<const Device> find(std::string_view id) const;  // null when unknown
  std::shared_ptr<const Device> find_by_serial(std::string_view serial) const;
  DeviceQueryResult query(const DeviceQuery& q) const;
  std::size_t size() const;

  // ----- groups ------------------------------------------------------------------------
  // Static members must be known devices; a query group's query is validated.
  Result<Group> create_group(Group group, std::string_view actor);
  Result<Group> get_group(std::string_view group_id) const;
  std::vector<Group> list_groups() const;  // sorted by id
  Status delete_group(std::string_view group_id, std::string_view actor);
  Status add_members(std::string_view group_id, const std::vector<std::string>& device_ids);
  Status remove_members(std::string_view group_id, const std::vector<std::string>& device_ids);
  // The ids (sorted) of a static group's members, or of the devices a query group matches now.
  Result<std::vector<std::string>> members(std::string_view group_id) const;
  // Ids of the groups (static and query) the device belongs to now, sorted. Cached per
  // device until the device or any group changes.
  std::vector<std::string> groups_of(std::string_view device_id) const;

  // ----- twin --------------------------------------------------------------------------
  // Merges `patch` (RFC 7386: null removes) into the desired state; bumps desired_version.
  Result<std::shared_ptr<const Device>> set_desired(std::string_view id, const Json& patch,
                                                    std::string_view actor);
  // What the device says it runs: merged (RFC 7386) into reported, or replacing it when
  // `replace`; bumps reported_version.
  Result<std::shared_ptr<const Device>> report(std::string_view id, const Json& reported,
                                               bool replace = false);
  // The desired keys whose value differs from the reported one, as a merge patch ({} when
  // the device has caught up).
  Result<Json> delta(std::string_view id) const;

  // ----- callbacks ---------------------------------------------------------------------
  void on_status_changed(StatusChangedCallback cb);
  void on_provisioned(ProvisionedCallback cb);

 private:
  struct Impl;
  explicit Registry(std::unique_ptr<Impl> impl);
  // Moves the devices `candidates` yields (under the registry's locks) to `to` in one
  // transaction; what decommission_where and set_status_many share.
  Result<std::vector<std::string>> transition_many(
      const std::function<void(const std::function<void(const Device&)>&)>& candidates,
      DeviceStatus to, std::string_view actor, std::string_view reason);
  std::unique_ptr<Impl> impl_;
};

// RFC 7386 JSON merge patch, applied to `target` in place.
void apply_merge_patch(Json& target, const Json& patch);
// The members of `desired` that `reported` does not already have with the same value
// (recursively for objects), as a merge patch.
Json twin_delta(const Json& desired, const Json& reported);

}  // namespace civicbus::fleet

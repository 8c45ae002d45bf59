// SchemaRegistry: versions of JSON Schema 2020-12 documents per subject, their compatibility
// checks, and the proposed → active life cycle driven by consumer acknowledgements.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/json_schema.hpp"
#include "civicbus/core/json_schema_compat.hpp"

namespace civicbus::broker {
class AuditLog;
}

namespace civicbus::broker::detail {

class SchemaRegistry {
 public:
  struct Hooks {
    // Consumer groups that must acknowledge a new version of `subject`.
    std::function<std::vector<std::string>(std::string_view subject)> groups_of_subject;
    // Owners of the topics that use `subject`.
    std::function<std::vector<std::string>(std::string_view subject)> owners_of_subject;
  };

  // `db`, `audit` and `clock` must outlive the registry.
  SchemaRegistry(storage::Database& db, AuditLog& audit, const Clock& clock, Hooks hooks);

  // Loads the active versions. Called once at broker start-up.
  Status load();

  Status set_compatibility(std::string_view subject, SchemaCompatibility mode,
                           std::string_view actor);
  Result<SchemaVersion> register_version(std::string_view subject, const Json& schema,
                                         std::string_view actor);
  Result<SchemaVersion> acknowledge(std::string_view subject, int version, std::string_view group);
  Result<SchemaVersion> activate(std::string_view subject, int version, std::string_view actor);
  Result<std::vector<SchemaVersion>> versions(std::string_view subject);
  // Re-checks proposed versions whose waiting list may have emptied (a group went away).
  Status reconcile();

  // The compiled active version of `subject` and its number; null when none is active.
  struct Active {
    int version = 0;
    std::shared_ptr<const JsonSchema> schema;
  };
  Active active(std::string_view subject) const;

 private:
  Result<SchemaVersion> load_version(std::string_view subject, int version);
  Status make_active(std::string_view subject, int version, std::string_view actor,
                     std::string_view reason);
  Result<SchemaCompatibility> compatibility_of(std::string_view subject);

  storage::Database& db_;
  AuditLog& audit_;
  const Clock& clock_;
  Hooks hooks_;
  std::mutex write_mu_;  // one registration/activation at a time
  mutable std::shared_mutex active_mu_;
  std::map<std::string, Active, std::less<>> active_;
};

}  // namespace civicbus::broker::detail

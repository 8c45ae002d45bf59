// AlertEngine: evaluates alert rules (alert_rules.hpp) against readings on the ingestion hot
// path, raises deduplicated alerts and drives their lifecycle Raised → Acknowledged →
// Resolved. It owns the tables fleet_alert_rules, fleet_alerts, fleet_alert_state and
// fleet_alert_devices (component "fleet_alerts"); it does not publish events: the façade
// wires on_alert() to the broker and on_action() to local outputs (edge gateways).
//
// Times: evaluation uses the reading's time (rate windows, for_s, raised_at); tick() uses the
// time it is given; acknowledge/resolve use the Clock.
//
// Persistence: rules and alerts are written as they change. Per-(rule, device) state is
// written immediately when its level changes (raise, escalate, clear), so a reopened engine
// neither raises a duplicate for an already-active condition nor forgets one. What changes
// with every reading (last-seen times for inactivity, rate-window samples, for_s start, the
// value of an active alert) is written in batches by flush(), which tick() calls every
// `state_flush_interval_ms`: after a crash, at most that much of last-seen history is lost
// (the worst effect is an inactivity alert that comes late or early by that much).
//
// A manual resolve while the condition still holds re-arms the rule: a threshold raises a
// fresh alert on the next reading still past its level, an inactivity rule after another full
// silence period from the resolve.
//
// Thread safety: all calls are thread-safe (one internal mutex). Callbacks run outside the
// engine's lock, on the calling thread, in transition order, just before that call commits
// its writes (the call returns after the commit): an fsync never delays an alert, and a crash
// between the two can at worst repeat the alert after a restart (at-least-once). Set the
// callbacks before the first evaluate() and keep what they capture alive while the engine
// lives.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/storage/database.hpp"
#include "fleet/alert_rules.hpp"

namespace civicbus::fleet {

// What the engine needs to know about the device a reading comes from.
struct DeviceContext {
  std::string device_id;
  std::string type;
  std::optional<GeoPoint> location;
  std::vector<std::string> groups;  // ids of the groups the device belongs to
};

struct AlertFilter {
  std::optional<AlertState> state;
  bool active_only = false;  // raised or acknowledged
  std::string device_id;     // matches device_id or membership in a composite alert
  std::optional<Severity> severity;
  std::string rule_id;
  std::size_t limit = 1000;  // newest first
};

struct AlertEngineOptions {
  // How often tick() writes batched state (last-seen times, rate windows, alert values).
  std::int64_t state_flush_interval_ms = 10'000;
};

// transition: "raised", "escalated", "acknowledged", "resolved".
using AlertCallback = std::function<void(const Alert& alert, std::string_view transition)>;
// Called when a rule with actions raises/escalates/resolves (see RuleAction::On).
using ActionCallback = std::function<void(const RuleAction& action, const Alert& alert)>;
using IdSource = std::function<std::string()>;

class AlertEngine {
 public:
  // Creates the tables if needed and loads rules, active alerts and rule state. `db`, `clock`
  // must outlive the engine.
  static Result<std::unique_ptr<AlertEngine>> open(storage::Database& db, const Clock& clock,
                                                   IdSource ids, AlertEngineOptions options = {});
  ~AlertEngine();
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  void set_on_alert(AlertCallback cb);
  void set_on_action(ActionCallback cb);

  // Rules. add_rule assigns an id when the rule has none; an existing id is an error
  // (already_exists); put_rule adds or replaces. Removing a rule resolves its active alerts.
  Result<AlertRule> add_rule(AlertRule rule);
  Result<AlertRule> add_rule(const Json& rule_json);
  Result<AlertRule> put_rule(AlertRule rule);
  Status remove_rule(std::string_view rule_id);
  Result<AlertRule> get_rule(std::string_view rule_id) const;
  std::vector<AlertRule> list_rules() const;
  // Installs a type's default_rules, scoped to the type, idempotently: a rule without an id
  // gets "<type>.<name>" (or "<type>.<kind>.<index>"), and an existing rule is replaced.
  Status install_type_rules(const DeviceType& type);

  // Starts inactivity tracking from `now` (a device that never reports also alerts).
  // Re-tracking an already known device updates its context and interval only.
  void track_device(const DeviceContext& ctx, std::int64_t expected_interval_s, TimeMs now);
  // Stops tracking and forgets the device's rule state (decommissioning); its open alerts
  // are resolved by "system".
  Status untrack_device(std::string_view device_id);

  // The hot path. Returns an error only when storing a transition failed.
  Status evaluate(const Reading& reading, const DeviceContext& ctx);
  // The same for a run of readings of one device, under one lock and one commit.
  Status evaluate(std::span<const Reading> readings, const DeviceContext& ctx);
  // Inactivity and for_s checks at `now`, then a batched flush when due.
  Status tick(TimeMs now);
  // Writes batched state now.
  Status flush();

  Result<Alert> acknowledge(std::string_view alert_id, std::string_view who,
                            std::string_view note = {});
  Result<Alert> resolve(std::string_view alert_id, std::string_view who,
                        std::string_view note = {});
  Result<Alert> get_alert(std::string_view alert_id) const;
  Result<std::vector<Alert>> list_alerts(const AlertFilter& filter = {}) const;
  std::size_t active_alert_count() const;

 private:
  struct Impl;
  explicit AlertEngine(std::unique_ptr<Impl> impl);
  Result<Alert> get_alert_unlocked_(std::string_view alert_id) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::fleet

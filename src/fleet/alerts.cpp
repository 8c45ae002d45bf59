#include "fleet/alerts.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <variant>

#include "core/string_map.hpp"

namespace civicbus::fleet {

namespace {

using RulePtr = std::shared_ptr<const AlertRule>;

constexpr std::string_view kComponent = "fleet_alerts";

constexpr storage::Migration kMigrations[] = {
    {1, "alert rules, alerts, per-(rule, device) state, tracked devices",
     R"sql(
CREATE TABLE fleet_alert_rules (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE fleet_alerts (
  id TEXT PRIMARY KEY,
  rule_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  devices TEXT NOT NULL,
  metric TEXT NOT NULL,
  severity TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL,
  value REAL NOT NULL,
  lat REAL,
  lon REAL,
  raised_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  acknowledged_by TEXT NOT NULL DEFAULT '',
  acknowledged_at INTEGER NOT NULL DEFAULT 0,
  ack_note TEXT NOT NULL DEFAULT '',
  resolved_by TEXT NOT NULL DEFAULT '',
  resolved_at INTEGER NOT NULL DEFAULT 0,
  resolve_note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX fleet_alerts_state ON fleet_alerts (state, raised_at);
CREATE INDEX fleet_alerts_device ON fleet_alerts (device_id, raised_at);
CREATE INDEX fleet_alerts_rule ON fleet_alerts (rule_id, raised_at);
CREATE TABLE fleet_alert_state (
  rule_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  level INTEGER NOT NULL,
  pending_since INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  last_value REAL NOT NULL,
  alert_id TEXT NOT NULL,
  samples TEXT NOT NULL,
  PRIMARY KEY (rule_id, device_id)
);
CREATE TABLE fleet_alert_devices (
  device_id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  groups TEXT NOT NULL,
  lat REAL,
  lon REAL,
  expected_interval_s INTEGER NOT NULL,
  tracked_since INTEGER NOT NULL
);
)sql"},
};

using civicbus::detail::StringMap;

struct Sample {
  TimeMs t;
  double v;
};

// Per-(rule, device) state.
struct State {
  int level = 0;  // 0 none, 1 warning, 2 critical (or the rule's severity, for the others)
  TimeMs pending_since = -1;  // threshold for_s: when the condition started holding
  TimeMs last_seen = -1;      // inactivity
  double last_value = 0;
  std::string alert_id;
  std::vector<Sample> window;  // rate_of_change, [head, size) are live
  std::size_t head = 0;
  // geofence: a position arrives as a "lat" and a "lon" reading with the same time.
  double lat = 0, lon = 0;
  TimeMs lat_time = -1, lon_time = -1;
};

struct Binding {
  RulePtr rule;
  State st;
};

struct DeviceSlot {
  DeviceContext ctx;
  bool known_ctx = false;
  std::uint64_t generation = 0;  // rules generation the bindings were made for; 0 = unbound
  std::vector<Binding> bindings;
  StringMap<State> restored;  // state loaded from storage, claimed at the next bind
  bool tracked = false;
  std::int64_t expected_interval_s = 0;
  TimeMs tracked_since = -1;
  bool dirty = false;      // state to write at the next flush
  bool ctx_dirty = false;  // device row to write at the next flush
};

struct Event {
  Alert alert;
  std::string_view transition;
  std::optional<RuleAction> action;  // set: an action to run rather than an alert event
};

int severity_level(Severity s) {
  return s == Severity::kCritical ? 2 : 1;
}
Severity level_severity(int level) {
  return level >= 2 ? Severity::kCritical : Severity::kWarning;
}

Result<Severity> parse_severity(std::string_view s) {
  if (s == "warning") return Severity::kWarning;
  if (s == "critical") return Severity::kCritical;
  return data_loss(fmt::format("stored alert has unknown severity '{}'", s));
}
Result<AlertState> parse_alert_state(std::string_view s) {
  if (s == "raised") return AlertState::kRaised;
  if (s == "acknowledged") return AlertState::kAcknowledged;
  if (s == "resolved") return AlertState::kResolved;
  return data_loss(fmt::format("stored alert has unknown state '{}'", s));
}

// The level a value reaches (0 none), reading `below` rules downwards.
int raise_level(const AlertRule& r, double v, bool below) {
  if (below) {
    if (r.critical && v <= *r.critical) return 2;
    if (r.warning && v <= *r.warning) return 1;
  } else {
    if (r.critical && v >= *r.critical) return 2;
    if (r.warning && v >= *r.warning) return 1;
  }
  return 0;
}
bool is_clear(const AlertRule& r, double v, bool below) {
  return below ? v > r.clear : v < r.clear;
}

std::string encode_samples(const State& st) {
  std::string out;
  for (std::size_t i = st.head; i < st.window.size(); ++i) {
    fmt::format_to(std::back_inserter(out), "{}{}:{}", out.empty() ? "" : ",", st.window[i].t,
                   st.window[i].v);
  }
  return out;
}
void decode_samples(std::string_view text, State& st) {
  std::string s(text);
  const char* p = s.c_str();
  while (*p != '\0') {
    char* end = nullptr;
    const long long t = std::strtoll(p, &end, 10);
    if (end == p || *end != ':') return;
    p = end + 1;
    const double v = std::strtod(p, &end);
    if (end == p) return;
    st.window.push_back({t, v});
    p = *end == ',' ? end + 1 : end;
  }
}

std::string devices_json(const std::vector<std::string>& devices) {
  Json a = Json::array();
  for (const auto& d : devices) a.push_back(d);
  return a.dump();
}

std::string active_key(std::string_view rule_id, std::string_view device_id) {
  std::string k;
  k.reserve(rule_id.size() + device_id.size() + 1);
  k.append(rule_id);
  k.push_back('\x1f');
  k.append(device_id);
  return k;
}

}  // namespace

struct AlertEngine::Impl {
  storage::Database& db;
  const Clock& clock;
  IdSource ids;
  AlertEngineOptions options;

  mutable std::mutex mu;
  AlertCallback on_alert;
  ActionCallback on_action;

  std::map<std::string, RulePtr, std::less<>> rules;
  StringMap<std::vector<RulePtr>> by_type, by_group, by_device;
  std::vector<RulePtr> composites;
  std::uint64_t generation = 1;

  StringMap<std::unique_ptr<DeviceSlot>> devices;
  // The slot of the last evaluated device: readings come in runs of one device, and this
  // spares the hash of its id for all but the first (reset when a slot is erased).
  DeviceSlot* last_slot = nullptr;
  std::vector<DeviceSlot*> dirty;

  StringMap<Alert> active;               // alert id → alert (raised or acknowledged)
  StringMap<std::string> active_by_key;  // rule id \x1f device id → alert id (device alerts)
  StringMap<bool> alert_dirty;           // active alerts whose value/updated_at changed
  TimeMs last_flush = 0;

  Impl(storage::Database& d, const Clock& c, IdSource i, AlertEngineOptions o)
      : db(d), clock(c), ids(std::move(i)), options(o) {}

  TimeMs now_ms() const { return to_unix_micros(clock.now()) / 1000; }

  // ----- rules ------------------------------------------------------------------------

  void rebuild_index() {
    by_type.clear();
    by_group.clear();
    by_device.clear();
    composites.clear();
    for (const auto& [id, r] : rules) {
      if (r->kind == RuleKind::kComposite) {
        composites.push_back(r);
      } else if (!r->scope.type.empty()) {
        by_type[r->scope.type].push_back(r);
      } else if (!r->scope.group.empty()) {
        by_group[r->scope.group].push_back(r);
      } else {
        by_device[r->scope.device].push_back(r);
      }
    }
    ++generation;
  }

  // ----- writes -------------------------------------------------------------------------
  // Writes are queued under `mu` and applied by drain() after the callbacks ran, in one
  // transaction per drain and in the order they were queued (a drain takes everything queued
  // so far, under write_mu, so a later drain never overtakes an earlier one). So a commit (an fsync
  // with synchronous=FULL) never delays the alert callback, and the caller still returns only once
  // its writes are committed.
  using Owned = std::variant<std::nullptr_t, std::int64_t, double, std::string>;
  struct Write {
    std::string_view sql;  // string literals only
    std::vector<Owned> params;
  };
  std::vector<Write> queue;         // under mu, in the order the changes were made
  std::uint64_t writes_queued = 0;  // under mu
  std::mutex write_mu;              // held while a drain writes

  Result<std::int64_t> exec(std::string_view sql, std::initializer_list<storage::Value> params) {
    Write w{sql, {}};
    w.params.reserve(params.size());
    for (const auto& v : params) {
      if (auto* i = std::get_if<std::int64_t>(&v)) {
        w.params.emplace_back(*i);
      } else if (auto* d = std::get_if<double>(&v)) {
        w.params.emplace_back(*d);
      } else if (auto* t = std::get_if<std::string_view>(&v)) {
        w.params.emplace_back(std::string(*t));
      } else if (auto* b = std::get_if<storage::Blob>(&v)) {
        w.params.emplace_back(std::string(b->bytes));
      } else {
        w.params.emplace_back(nullptr);
      }
    }
    queue.push_back(std::move(w));
    ++writes_queued;
    return std::int64_t{0};
  }

  // Not under mu.
  Status drain() {
    std::lock_guard wlock(write_mu);
    std::vector<Write> batch;
    {
      std::lock_guard lock(mu);
      batch.swap(queue);
    }
    if (batch.empty()) return Status();
    Status st = db.transaction([&]() -> Status {
      std::vector<storage::Value> values;
      {
        for (const auto& w : batch) {
          values.clear();
          for (const auto& o : w.params) {
            std::visit(
                [&](const auto& x) {
                  using T = std::decay_t<decltype(x)>;
                  if constexpr (std::is_same_v<T, std::string>) {
                    values.emplace_back(std::string_view(x));
                  } else {
                    values.emplace_back(x);
                  }
                },
                o);
          }
          CIVICBUS_RETURN_IF_ERROR(db.execute(w.sql, values).status());
        }
      }
      return Status();
    });
    return st.ok() ? st : st.with_context("writing alerts and alert state");
  }

  Status store_rule(const AlertRule& r) {
    const std::string body = r.to_json().dump();
    const std::string kind(rule_kind_name(r.kind));
    auto st = exec(
        "INSERT INTO fleet_alert_rules (id, kind, body, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, body = excluded.body, "
        "updated_at = excluded.updated_at",
        {std::string_view(r.id), std::string_view(kind), std::string_view(body), now_ms()});
    return st.status();
  }

  // ----- binding rules to devices ------------------------------------------------------

  void bind(DeviceSlot& slot) {
    std::vector<Binding> next;
    auto add = [&](const StringMap<std::vector<RulePtr>>& index, std::string_view key) {
      auto it = index.find(key);
      if (it == index.end()) return;
      for (const auto& r : it->second) {
        Binding b{r, {}};
        auto old = std::find_if(slot.bindings.begin(), slot.bindings.end(),
                                [&](const Binding& o) { return o.rule->id == r->id; });
        if (old != slot.bindings.end()) {
          b.st = std::move(old->st);
        } else if (auto rs = slot.restored.find(r->id); rs != slot.restored.end()) {
          b.st = std::move(rs->second);
          slot.restored.erase(rs);
        }
        next.push_back(std::move(b));
      }
    };
    add(by_type, slot.ctx.type);
    for (const auto& g : slot.ctx.groups) add(by_group, g);
    add(by_device, slot.ctx.device_id);
    slot.bindings = std::move(next);
    slot.generation = generation;
  }

  DeviceSlot& slot_for(const DeviceContext& ctx, bool& position_changed) {
    DeviceSlot* slot = nullptr;
    if (last_slot != nullptr && last_slot->known_ctx && last_slot->ctx.device_id == ctx.device_id) {
      slot = last_slot;
    } else if (auto it = devices.find(std::string_view(ctx.device_id)); it != devices.end()) {
      slot = it->second.get();
    } else {
      auto s = std::make_unique<DeviceSlot>();
      slot = s.get();
      devices.emplace(ctx.device_id, std::move(s));
    }
    last_slot = slot;
    if (!slot->known_ctx) {
      slot->ctx = ctx;
      slot->known_ctx = true;
      slot->generation = 0;
      position_changed = ctx.location.has_value();
      slot->ctx_dirty = slot->tracked;
      return *slot;
    }
    if (slot->ctx.type != ctx.type || slot->ctx.groups != ctx.groups) {
      slot->ctx.type = ctx.type;
      slot->ctx.groups = ctx.groups;
      slot->generation = 0;
      slot->ctx_dirty = slot->tracked;
    }
    const auto& a = slot->ctx.location;
    const auto& b = ctx.location;
    if (a.has_value() != b.has_value() || (a && (a->lat != b->lat || a->lon != b->lon))) {
      slot->ctx.location = b;
      position_changed = b.has_value();
      slot->ctx_dirty = slot->tracked;
    }
    if (slot->ctx_dirty) mark_dirty(*slot);
    return *slot;
  }

  void mark_dirty(DeviceSlot& slot) {
    if (!slot.dirty) {
      slot.dirty = true;
      dirty.push_back(&slot);
    }
  }

  // ----- storing alerts and state ------------------------------------------------------

  Status store_alert(const Alert& a) {
    const std::string devs = devices_json(a.devices);
    const std::string sev(severity_name(a.severity));
    const std::string state(alert_state_name(a.state));
    storage::Value lat = nullptr, lon = nullptr;
    if (a.location) {
      lat = a.location->lat;
      lon = a.location->lon;
    }
    auto r = exec(
        "INSERT INTO fleet_alerts (id, rule_id, device_id, devices, metric, severity, state, "
        "message, value, lat, lon, raised_at, updated_at, acknowledged_by, acknowledged_at, "
        "resolved_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET devices = excluded.devices, severity = "
        "excluded.severity, state = excluded.state, message = excluded.message, value = "
        "excluded.value, lat = excluded.lat, lon = excluded.lon, updated_at = "
        "excluded.updated_at, acknowledged_by = excluded.acknowledged_by, acknowledged_at = "
        "excluded.acknowledged_at, resolved_by = excluded.resolved_by, resolved_at = "
        "excluded.resolved_at",
        {std::string_view(a.id), std::string_view(a.rule_id), std::string_view(a.device_id),
         std::string_view(devs), std::string_view(a.metric), std::string_view(sev),
         std::string_view(state), std::string_view(a.message), a.value, lat, lon, a.raised_at,
         a.updated_at, std::string_view(a.acknowledged_by), a.acknowledged_at,
         std::string_view(a.resolved_by), a.resolved_at});
    return r.status();
  }

  Status store_state(std::string_view device_id, const Binding& b) {
    const State& st = b.st;
    const std::string samples = encode_samples(st);
    auto r = exec(
        "INSERT INTO fleet_alert_state (rule_id, device_id, level, pending_since, last_seen, "
        "last_value, alert_id, samples) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (rule_id, device_id) DO UPDATE SET level = excluded.level, pending_since "
        "= excluded.pending_since, last_seen = excluded.last_seen, last_value = "
        "excluded.last_value, alert_id = excluded.alert_id, samples = excluded.samples",
        {std::string_view(b.rule->id), device_id, static_cast<std::int64_t>(st.level),
         st.pending_since, st.last_seen, st.last_value, std::string_view(st.alert_id),
         std::string_view(samples)});
    return r.status();
  }

  Status store_device(const DeviceSlot& s) {
    std::vector<std::string> g = s.ctx.groups;
    const std::string groups = devices_json(g);
    storage::Value lat = nullptr, lon = nullptr;
    if (s.ctx.location) {
      lat = s.ctx.location->lat;
      lon = s.ctx.location->lon;
    }
    auto r = exec(
        "INSERT INTO fleet_alert_devices (device_id, type, groups, lat, lon, "
        "expected_interval_s, tracked_since) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET type = excluded.type, groups = excluded.groups, "
        "lat = excluded.lat, lon = excluded.lon, expected_interval_s = "
        "excluded.expected_interval_s, tracked_since = excluded.tracked_since",
        {std::string_view(s.ctx.device_id), std::string_view(s.ctx.type), std::string_view(groups),
         lat, lon, s.expected_interval_s, s.tracked_since});
    return r.status();
  }

  Status flush_locked() {
    Status st = [&]() -> Status {
      for (DeviceSlot* s : dirty) {
        if (s->tracked && s->ctx_dirty) CIVICBUS_RETURN_IF_ERROR(store_device(*s));
        for (const auto& b : s->bindings) {
          CIVICBUS_RETURN_IF_ERROR(store_state(s->ctx.device_id, b));
        }
      }
      for (const auto& [id, _] : alert_dirty) {
        auto it = active.find(std::string_view(id));
        if (it == active.end()) continue;
        auto r = exec("UPDATE fleet_alerts SET value = ?, updated_at = ? WHERE id = ?",
                      {it->second.value, it->second.updated_at, std::string_view(id)});
        CIVICBUS_RETURN_IF_ERROR(r.status());
      }
      return Status();
    }();
    if (!st.ok()) return st;
    for (DeviceSlot* s : dirty) {
      s->dirty = false;
      s->ctx_dirty = false;
    }
    dirty.clear();
    alert_dirty.clear();
    return Status();
  }

  // ----- transitions (under mu) --------------------------------------------------------

  void queue_actions(const AlertRule& r, const Alert& a, RuleAction::On on,
                     std::vector<Event>& out) {
    for (const auto& act : r.actions) {
      if (act.on == on) out.push_back({a, "action", act});
    }
  }

  Status raise(DeviceSlot& slot, Binding& b, int level, double value, TimeMs t, std::string message,
               std::optional<GeoPoint> where, std::vector<Event>& out) {
    return raise_unwritten(slot, b, level, value, t, std::move(message), where, out);
  }
  Status escalate(DeviceSlot& slot, Binding& b, int level, double value, TimeMs t,
                  std::string message, std::vector<Event>& out) {
    return escalate_unwritten(slot, b, level, value, t, std::move(message), out);
  }
  Status clear(DeviceSlot& slot, Binding& b, TimeMs t, std::vector<Event>& out) {
    return clear_unwritten(slot, b, t, out);
  }

  Status raise_unwritten(DeviceSlot& slot, Binding& b, int level, double value, TimeMs t,
                         std::string message, std::optional<GeoPoint> where,
                         std::vector<Event>& out) {
    const AlertRule& r = *b.rule;
    Alert a;
    a.id = ids();
    a.rule_id = r.id;
    a.device_id = slot.ctx.device_id;
    a.devices = {slot.ctx.device_id};
    a.metric = r.metric;
    a.severity = level_severity(level);
    a.state = AlertState::kRaised;
    a.message = std::move(message);
    a.value = value;
    a.location = where ? where : slot.ctx.location;
    a.raised_at = t;
    a.updated_at = t;
    b.st.level = level;
    b.st.alert_id = a.id;
    b.st.pending_since = -1;
    CIVICBUS_RETURN_IF_ERROR(store_alert(a));
    CIVICBUS_RETURN_IF_ERROR(store_state(slot.ctx.device_id, b));
    active_by_key[active_key(r.id, a.device_id)] = a.id;
    active.emplace(a.id, a);
    out.push_back({a, "raised", std::nullopt});
    queue_actions(r, a, RuleAction::On::kRaised, out);
    if (level >= 2) queue_actions(r, a, RuleAction::On::kCritical, out);
    return composite_on_raise(a, out);
  }

  Status escalate_unwritten(DeviceSlot& slot, Binding& b, int level, double value, TimeMs t,
                            std::string message, std::vector<Event>& out) {
    b.st.level = level;
    CIVICBUS_RETURN_IF_ERROR(store_state(slot.ctx.device_id, b));
    auto it = active.find(std::string_view(b.st.alert_id));
    if (it == active.end()) return Status();
    Alert& a = it->second;
    a.severity = level_severity(level);
    a.value = value;
    a.updated_at = t;
    a.message = std::move(message);
    CIVICBUS_RETURN_IF_ERROR(store_alert(a));
    out.push_back({a, "escalated", std::nullopt});
    if (level >= 2) queue_actions(*b.rule, a, RuleAction::On::kCritical, out);
    return Status();
  }

  void touch(const Binding& b, double value, TimeMs t) {
    auto it = active.find(std::string_view(b.st.alert_id));
    if (it == active.end()) return;
    it->second.value = value;
    it->second.updated_at = std::max(it->second.updated_at, t);
    if (alert_dirty.find(std::string_view(b.st.alert_id)) == alert_dirty.end()) {
      alert_dirty.emplace(b.st.alert_id, true);
    }
  }

  // The condition cleared: resolve the alert by "system" and reset the level.
  Status clear_unwritten(DeviceSlot& slot, Binding& b, TimeMs t, std::vector<Event>& out) {
    std::string id = std::move(b.st.alert_id);
    b.st.alert_id.clear();
    b.st.level = 0;
    b.st.pending_since = -1;
    CIVICBUS_RETURN_IF_ERROR(store_state(slot.ctx.device_id, b));
    auto it = active.find(std::string_view(id));
    if (it == active.end()) return Status();
    return resolve_active(it, "system", {}, t, out);
  }

  // Resolves an active alert (and, for device alerts, re-checks the composites over it).
  Status resolve_active(StringMap<Alert>::iterator it, std::string_view who, std::string_view note,
                        TimeMs t, std::vector<Event>& out) {
    Alert a = std::move(it->second);
    active.erase(it);
    alert_dirty.erase(a.id);
    if (!a.device_id.empty()) active_by_key.erase(active_key(a.rule_id, a.device_id));
    a.state = AlertState::kResolved;
    a.resolved_by = std::string(who);
    a.resolved_at = t;
    a.updated_at = std::max(a.updated_at, t);
    a.resolve_note = std::string(note);
    CIVICBUS_RETURN_IF_ERROR(store_alert(a));
    if (!note.empty()) {
      CIVICBUS_RETURN_IF_ERROR(exec("UPDATE fleet_alerts SET resolve_note = ? WHERE id = ?",
                                    {note, std::string_view(a.id)})
                                   .status());
    }
    out.push_back({a, "resolved", std::nullopt});
    if (auto r = rules.find(a.rule_id); r != rules.end()) {
      queue_actions(*r->second, a, RuleAction::On::kResolved, out);
    }
    if (!a.device_id.empty()) return composite_on_resolve(a, t, out);
    return Status();
  }

  // ----- composite rules ---------------------------------------------------------------

  bool has_active(std::string_view rule_id, std::string_view device_id) const {
    return active_by_key.find(active_key(rule_id, device_id)) != active_by_key.end();
  }

  Status composite_on_raise(const Alert& trigger, std::vector<Event>& out) {
    if (!trigger.location) return Status();
    for (const auto& c : composites) {
      const AlertRule& cr = *c;
      if (std::none_of(cr.conditions.begin(), cr.conditions.end(),
                       [&](const CompositeCondition& cc) { return cc.rule == trigger.rule_id; })) {
        continue;
      }
      const TimeMs within_ms = cr.within_s * 1000;
      // Candidates per condition: active device alerts of that rule near the trigger in time.
      std::vector<std::vector<const Alert*>> cands(cr.conditions.size());
      for (const auto& [id, a] : active) {
        if (a.device_id.empty() || !a.location) continue;
        if (std::llabs(a.raised_at - trigger.raised_at) > within_ms) continue;
        for (std::size_t i = 0; i < cr.conditions.size(); ++i) {
          if (cr.conditions[i].rule == a.rule_id) cands[i].push_back(&a);
        }
      }
      // Greedy cluster around the trigger: nearest first, every pair within distance_m and
      // all raise times within within_s.
      std::vector<const Alert*> chosen{&trigger};
      TimeMs lo = trigger.raised_at, hi = trigger.raised_at;
      auto in_chosen = [&](std::string_view dev) {
        return std::any_of(chosen.begin(), chosen.end(),
                           [&](const Alert* x) { return x->device_id == dev; });
      };
      bool ok = true;
      for (std::size_t i = 0; i < cr.conditions.size() && ok; ++i) {
        auto& list = cands[i];
        std::sort(list.begin(), list.end(), [&](const Alert* x, const Alert* y) {
          return distance_m(*x->location, *trigger.location) <
                 distance_m(*y->location, *trigger.location);
        });
        int count = 0;
        for (const Alert* a : list) {
          if (in_chosen(a->device_id)) ++count;
        }
        for (const Alert* a : list) {
          if (count >= cr.conditions[i].min_devices) break;
          if (in_chosen(a->device_id)) continue;
          if (std::max(hi, a->raised_at) - std::min(lo, a->raised_at) > within_ms) continue;
          const bool near = std::all_of(chosen.begin(), chosen.end(), [&](const Alert* x) {
            return distance_m(*x->location, *a->location) <= cr.distance_m;
          });
          if (!near) continue;
          chosen.push_back(a);
          lo = std::min(lo, a->raised_at);
          hi = std::max(hi, a->raised_at);
          ++count;
        }
        ok = count >= cr.conditions[i].min_devices;
      }
      if (!ok) continue;
      std::vector<std::string> devs;
      for (const Alert* a : chosen) devs.push_back(a->device_id);
      std::sort(devs.begin(), devs.end());
      devs.erase(std::unique(devs.begin(), devs.end()), devs.end());

      // One open alert per composite rule and set: an overlapping open alert absorbs the set.
      Alert* existing = nullptr;
      for (auto& [id, a] : active) {
        if (a.rule_id != cr.id) continue;
        for (const auto& d : devs) {
          if (std::find(a.devices.begin(), a.devices.end(), d) != a.devices.end()) {
            existing = &a;
            break;
          }
        }
        if (existing != nullptr) break;
      }
      if (existing != nullptr) {
        for (const auto& d : devs) {
          if (std::find(existing->devices.begin(), existing->devices.end(), d) ==
              existing->devices.end()) {
            existing->devices.push_back(d);
          }
        }
        existing->value = static_cast<double>(existing->devices.size());
        existing->updated_at = std::max(existing->updated_at, trigger.raised_at);
        CIVICBUS_RETURN_IF_ERROR(store_alert(*existing));
        continue;
      }
      Alert a;
      a.id = ids();
      a.rule_id = cr.id;
      a.devices = devs;
      a.severity = cr.severity;
      a.value = static_cast<double>(devs.size());
      a.location = trigger.location;
      a.raised_at = trigger.raised_at;
      a.updated_at = trigger.raised_at;
      a.message = fmt::format("composite rule '{}': {} devices within {} m and {} s: {}",
                              cr.name.empty() ? cr.id : cr.name, devs.size(), cr.distance_m,
                              cr.within_s, fmt::join(devs, ", "));
      CIVICBUS_RETURN_IF_ERROR(store_alert(a));
      active.emplace(a.id, a);
      out.push_back({a, "raised", std::nullopt});
      queue_actions(cr, a, RuleAction::On::kRaised, out);
      if (a.severity == Severity::kCritical) queue_actions(cr, a, RuleAction::On::kCritical, out);
    }
    return Status();
  }

  Status composite_on_resolve(const Alert& gone, TimeMs t, std::vector<Event>& out) {
    std::vector<std::string> to_resolve;
    for (const auto& [id, a] : active) {
      if (!a.device_id.empty()) continue;
      auto r = rules.find(a.rule_id);
      if (r == rules.end() || r->second->kind != RuleKind::kComposite) continue;
      if (std::find(a.devices.begin(), a.devices.end(), gone.device_id) == a.devices.end()) {
        continue;
      }
      for (const auto& cc : r->second->conditions) {
        int n = 0;
        for (const auto& d : a.devices) n += has_active(cc.rule, d) ? 1 : 0;
        if (n < cc.min_devices) {
          to_resolve.push_back(id);
          break;
        }
      }
    }
    for (const auto& id : to_resolve) {
      auto it = active.find(std::string_view(id));
      if (it != active.end()) CIVICBUS_RETURN_IF_ERROR(resolve_active(it, "system", {}, t, out));
    }
    return Status();
  }

  // ----- evaluation --------------------------------------------------------------------

  Status eval_level(DeviceSlot& slot, Binding& b, double v, TimeMs t, bool below,
                    std::vector<Event>& out) {
    const AlertRule& r = *b.rule;
    State& st = b.st;
    const int cand = raise_level(r, v, below);
    auto describe = [&](int level) {
      const double limit = level >= 2 ? *r.critical : *r.warning;
      if (r.kind == RuleKind::kRateOfChange) {
        return fmt::format("{} on {} changed by {} within {} s ({} level {}; rule '{}')", r.metric,
                           slot.ctx.device_id, v, r.window_s, severity_name(level_severity(level)),
                           limit, r.name.empty() ? r.id : r.name);
      }
      return fmt::format("{} on {} is {} ({} {} level {}; rule '{}')", r.metric, slot.ctx.device_id,
                         v, below ? "below" : "above", severity_name(level_severity(level)), limit,
                         r.name.empty() ? r.id : r.name);
    };
    if (st.level == 0) {
      if (cand == 0) {
        if (st.pending_since >= 0) {
          st.pending_since = -1;
          mark_dirty(slot);
        }
        return Status();
      }
      if (r.for_s > 0) {
        if (st.pending_since < 0) {
          st.pending_since = t;
          mark_dirty(slot);
          return Status();
        }
        if (t - st.pending_since < r.for_s * 1000) return Status();
      }
      return raise(slot, b, cand, v, t, describe(cand), std::nullopt, out);
    }
    if (is_clear(r, v, below)) return clear(slot, b, t, out);
    if (cand > st.level) return escalate(slot, b, cand, v, t, describe(cand), out);
    touch(b, v, t);
    return Status();
  }

  Status eval_geofence(DeviceSlot& slot, Binding& b, GeoPoint p, TimeMs t,
                       std::vector<Event>& out) {
    const AlertRule& r = *b.rule;
    const bool inside = r.area.contains(p);
    const bool firing = r.alert_on_enter ? inside : !inside;
    const GeoPoint ref = r.area.bbox ? GeoPoint{(r.area.bbox->min_lat + r.area.bbox->max_lat) / 2,
                                                (r.area.bbox->min_lon + r.area.bbox->max_lon) / 2}
                                     : r.area.center;
    const double d = distance_m(ref, p);
    if (firing && b.st.level == 0) {
      return raise(
          slot, b, severity_level(r.severity), d, t,
          fmt::format("{} {} the area of rule '{}' at {:.6f},{:.6f}", slot.ctx.device_id,
                      inside ? "entered" : "left", r.name.empty() ? r.id : r.name, p.lat, p.lon),
          p, out);
    }
    if (!firing && b.st.level > 0) return clear(slot, b, t, out);
    if (firing) touch(b, d, t);
    return Status();
  }

  Status evaluate(const Reading& reading, const DeviceContext& ctx, std::vector<Event>& out) {
    bool position_changed = false;
    DeviceSlot& slot = slot_for(ctx, position_changed);
    if (slot.generation != generation) bind(slot);
    const TimeMs t = reading.time;
    TimeMs heard_at = -1;  // the clock, read once and only when an inactivity rule needs it
    for (auto& b : slot.bindings) {
      const AlertRule& r = *b.rule;
      State& st = b.st;
      switch (r.kind) {
        case RuleKind::kThreshold:
          if (r.metric != reading.metric) break;
          st.last_value = reading.value;
          CIVICBUS_RETURN_IF_ERROR(
              eval_level(slot, b, reading.value, t, r.direction == RuleDirection::kBelow, out));
          break;
        case RuleKind::kRateOfChange: {
          if (r.metric != reading.metric) break;
          st.last_value = reading.value;
          st.window.push_back({t, reading.value});
          const TimeMs from = t - r.window_s * 1000;
          while (st.head < st.window.size() && st.window[st.head].t < from) ++st.head;
          if (st.head > 16 && st.head * 2 > st.window.size()) {
            st.window.erase(st.window.begin(), st.window.begin() + st.head);
            st.head = 0;
          }
          const double change = reading.value - st.window[st.head].v;
          const double magnitude = r.direction == RuleDirection::kRise   ? change
                                   : r.direction == RuleDirection::kFall ? -change
                                                                         : std::fabs(change);
          mark_dirty(slot);
          CIVICBUS_RETURN_IF_ERROR(eval_level(slot, b, magnitude, t, false, out));
          break;
        }
        case RuleKind::kInactivity:
          if (r.metric != "*" && r.metric != reading.metric) break;
          // Activity is when the node hears from the device (as ThingsBoard's last activity
          // time), not the reading's own time: a backfill of old readings, or a batch an edge
          // held during an outage, is activity now and must not raise an inactivity alert.
          if (heard_at < 0) heard_at = now_ms();
          st.last_seen = std::max(st.last_seen, std::max(t, heard_at));
          mark_dirty(slot);
          if (st.level > 0) CIVICBUS_RETURN_IF_ERROR(clear(slot, b, t, out));
          break;
        case RuleKind::kGeofence:
          if (reading.metric == "lat") {
            st.lat = reading.value;
            st.lat_time = t;
          } else if (reading.metric == "lon") {
            st.lon = reading.value;
            st.lon_time = t;
          } else {
            break;
          }
          if (st.lat_time == st.lon_time && st.lat_time >= 0) {
            st.lat_time = st.lon_time = -1;
            CIVICBUS_RETURN_IF_ERROR(eval_geofence(slot, b, {st.lat, st.lon}, t, out));
          }
          break;
        case RuleKind::kComposite:
          break;
      }
    }
    if (position_changed && slot.ctx.location) {
      for (auto& b : slot.bindings) {
        if (b.rule->kind != RuleKind::kGeofence) continue;
        CIVICBUS_RETURN_IF_ERROR(eval_geofence(slot, b, *slot.ctx.location, t, out));
      }
    }
    return Status();
  }

  Status tick(TimeMs now, std::vector<Event>& out) {
    for (auto& [id, sp] : devices) {
      DeviceSlot& slot = *sp;
      if (!slot.known_ctx) continue;
      if (slot.generation != generation) bind(slot);
      for (auto& b : slot.bindings) {
        const AlertRule& r = *b.rule;
        State& st = b.st;
        if (r.kind == RuleKind::kInactivity && st.level == 0) {
          const TimeMs ref = st.last_seen >= 0 ? st.last_seen
                             : slot.tracked    ? slot.tracked_since
                                               : -1;
          if (ref < 0) continue;
          const double limit_ms =
              r.after_s > 0 ? r.after_s * 1000.0
                            : r.factor * static_cast<double>(slot.expected_interval_s) * 1000.0;
          if (limit_ms <= 0 || static_cast<double>(now - ref) < limit_ms) continue;
          const double silent_s = static_cast<double>(now - ref) / 1000.0;
          std::string msg =
              st.last_seen >= 0
                  ? fmt::format("{} has not reported {} for {} s (rule '{}')", id,
                                r.metric == "*" ? std::string("anything") : r.metric, silent_s,
                                r.name.empty() ? r.id : r.name)
                  : fmt::format("{} has never reported {} in {} s since registration (rule '{}')",
                                id, r.metric == "*" ? std::string("anything") : r.metric, silent_s,
                                r.name.empty() ? r.id : r.name);
          CIVICBUS_RETURN_IF_ERROR(
              raise(slot, b, severity_level(r.severity), silent_s, now, msg, std::nullopt, out));
        } else if (r.kind == RuleKind::kThreshold && st.level == 0 && st.pending_since >= 0 &&
                   now - st.pending_since >= r.for_s * 1000) {
          const bool below = r.direction == RuleDirection::kBelow;
          const int cand = raise_level(r, st.last_value, below);
          if (cand == 0) continue;
          CIVICBUS_RETURN_IF_ERROR(
              raise(slot, b, cand, st.last_value, now,
                    fmt::format("{} on {} has been {} the {} level for {} s (rule '{}')", r.metric,
                                id, below ? "below" : "above", severity_name(level_severity(cand)),
                                r.for_s, r.name.empty() ? r.id : r.name),
                    std::nullopt, out));
        }
      }
    }
    if (now - last_flush >= options.state_flush_interval_ms) {
      last_flush = now;
      return flush_locked();
    }
    return Status();
  }

  // ----- loading -----------------------------------------------------------------------

  static Alert alert_from_row(const storage::Row& row) {
    Alert a;
    a.id = std::string(row.get_text(0));
    a.rule_id = std::string(row.get_text(1));
    a.device_id = std::string(row.get_text(2));
    if (auto j = Json::parse(row.get_text(3)); j.ok() && j->is_array()) {
      for (const auto& d : j->as_array()) {
        if (d.is_string()) a.devices.push_back(d.as_string());
      }
    }
    a.metric = std::string(row.get_text(4));
    a.severity = parse_severity(row.get_text(5)).value_or(Severity::kWarning);
    a.state = parse_alert_state(row.get_text(6)).value_or(AlertState::kRaised);
    a.message = std::string(row.get_text(7));
    a.value = row.get_double(8);
    if (!row.is_null(9) && !row.is_null(10)) {
      a.location = GeoPoint{row.get_double(9), row.get_double(10)};
    }
    a.raised_at = row.get_int(11);
    a.updated_at = row.get_int(12);
    a.acknowledged_by = std::string(row.get_text(13));
    a.acknowledged_at = row.get_int(14);
    a.resolved_by = std::string(row.get_text(15));
    a.resolved_at = row.get_int(16);
    a.acknowledge_note = std::string(row.get_text(17));
    a.resolve_note = std::string(row.get_text(18));
    return a;
  }

  static constexpr std::string_view kAlertColumns =
      "id, rule_id, device_id, devices, metric, severity, state, message, value, lat, lon, "
      "raised_at, updated_at, acknowledged_by, acknowledged_at, resolved_by, resolved_at, "
      "ack_note, "
      "resolve_note";

  DeviceSlot& slot_by_id(std::string_view id) {
    auto it = devices.find(id);
    if (it != devices.end()) return *it->second;
    auto s = std::make_unique<DeviceSlot>();
    s->ctx.device_id = std::string(id);
    DeviceSlot& ref = *s;
    devices.emplace(std::string(id), std::move(s));
    return ref;
  }

  Status load() {
    Status failed;
    CIVICBUS_RETURN_IF_ERROR(db.query(
        "SELECT id, body FROM fleet_alert_rules ORDER BY id", {}, [&](const storage::Row& row) {
          auto j = Json::parse(row.get_text(1));
          if (!j.ok()) {
            failed = data_loss(fmt::format("stored alert rule '{}' is not JSON: {}",
                                           row.get_text(0), j.status().message()));
            return false;
          }
          auto r = AlertRule::from_json(*j);
          if (!r.ok()) {
            failed = data_loss(
                fmt::format("stored alert rule '{}': {}", row.get_text(0), r.status().message()));
            return false;
          }
          std::string id(row.get_text(0));
          r->id = id;
          rules[id] = std::make_shared<const AlertRule>(std::move(*r));
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(failed);
    rebuild_index();

    CIVICBUS_RETURN_IF_ERROR(db.query(
        fmt::format("SELECT {} FROM fleet_alerts WHERE state <> 'resolved'", kAlertColumns), {},
        [&](const storage::Row& row) {
          Alert a = alert_from_row(row);
          if (!a.device_id.empty()) active_by_key[active_key(a.rule_id, a.device_id)] = a.id;
          std::string id = a.id;
          active.emplace(std::move(id), std::move(a));
          return true;
        }));

    CIVICBUS_RETURN_IF_ERROR(db.query(
        "SELECT device_id, type, groups, lat, lon, expected_interval_s, tracked_since FROM "
        "fleet_alert_devices",
        {}, [&](const storage::Row& row) {
          DeviceSlot& s = slot_by_id(row.get_text(0));
          s.ctx.type = std::string(row.get_text(1));
          if (auto j = Json::parse(row.get_text(2)); j.ok() && j->is_array()) {
            for (const auto& g : j->as_array()) {
              if (g.is_string()) s.ctx.groups.push_back(g.as_string());
            }
          }
          if (!row.is_null(3) && !row.is_null(4)) {
            s.ctx.location = GeoPoint{row.get_double(3), row.get_double(4)};
          }
          s.known_ctx = true;
          s.tracked = true;
          s.expected_interval_s = row.get_int(5);
          s.tracked_since = row.get_int(6);
          return true;
        }));

    return db.query(
        "SELECT rule_id, device_id, level, pending_since, last_seen, last_value, alert_id, "
        "samples FROM fleet_alert_state",
        {}, [&](const storage::Row& row) {
          DeviceSlot& s = slot_by_id(row.get_text(1));
          State st;
          st.level = static_cast<int>(row.get_int(2));
          st.pending_since = row.get_int(3);
          st.last_seen = row.get_int(4);
          st.last_value = row.get_double(5);
          st.alert_id = std::string(row.get_text(6));
          decode_samples(row.get_text(7), st);
          // A level whose alert was resolved while we were away is stale.
          if (st.level > 0 && active.find(std::string_view(st.alert_id)) == active.end()) {
            st.level = 0;
            st.alert_id.clear();
          }
          s.restored[std::string(row.get_text(0))] = std::move(st);
          return true;
        });
  }

  // ----- manual lifecycle --------------------------------------------------------------

  // Re-arms the binding behind a manually resolved device alert.
  void rearm(const Alert& a, TimeMs t) {
    auto it = devices.find(std::string_view(a.device_id));
    if (it == devices.end()) return;
    DeviceSlot& s = *it->second;
    auto reset = [&](State& st, RuleKind kind) {
      if (st.alert_id != a.id) return;
      st.level = 0;
      st.alert_id.clear();
      st.pending_since = -1;
      if (kind == RuleKind::kInactivity) st.last_seen = std::max(st.last_seen, t);
    };
    for (auto& b : s.bindings) {
      if (b.rule->id == a.rule_id) {
        reset(b.st, b.rule->kind);
        store_state(s.ctx.device_id, b).ignore_error();
      }
    }
    if (auto r = s.restored.find(std::string_view(a.rule_id)); r != s.restored.end()) {
      auto rule = rules.find(a.rule_id);
      reset(r->second, rule != rules.end() ? rule->second->kind : RuleKind::kThreshold);
    }
  }

  void dispatch(std::vector<Event>& events) {
    for (auto& e : events) {
      if (e.action) {
        if (on_action) on_action(*e.action, e.alert);
      } else if (on_alert) {
        on_alert(e.alert, e.transition);
      }
    }
  }
};

AlertEngine::AlertEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AlertEngine::~AlertEngine() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->flush_locked().ignore_error();
  }
  impl_->drain().ignore_error();
}

Result<std::unique_ptr<AlertEngine>> AlertEngine::open(storage::Database& db, const Clock& clock,
                                                       IdSource ids, AlertEngineOptions options) {
  if (!ids) return invalid_argument("AlertEngine::open needs an id source");
  if (options.state_flush_interval_ms < 0) {
    return invalid_argument("AlertEngineOptions.state_flush_interval_ms must be >= 0");
  }
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, kComponent, kMigrations));
  auto impl = std::make_unique<Impl>(db, clock, std::move(ids), options);
  CIVICBUS_RETURN_IF_ERROR(impl->load());
  impl->last_flush = impl->now_ms();
  return std::unique_ptr<AlertEngine>(new AlertEngine(std::move(impl)));
}

void AlertEngine::set_on_alert(AlertCallback cb) {
  std::lock_guard lock(impl_->mu);
  impl_->on_alert = std::move(cb);
}
void AlertEngine::set_on_action(ActionCallback cb) {
  std::lock_guard lock(impl_->mu);
  impl_->on_action = std::move(cb);
}

Result<AlertRule> AlertEngine::add_rule(const Json& rule_json) {
  CIVICBUS_ASSIGN_OR_RETURN(AlertRule r, AlertRule::from_json(rule_json));
  return add_rule(std::move(r));
}

Result<AlertRule> AlertEngine::add_rule(AlertRule rule) {
  {
    std::lock_guard lock(impl_->mu);
    if (rule.id.empty()) rule.id = impl_->ids();
    if (impl_->rules.count(rule.id) != 0) {
      return already_exists(
          fmt::format("alert rule '{}' already exists; use put_rule to "
                      "replace it",
                      rule.id));
    }
  }
  return put_rule(std::move(rule));
}

Result<AlertRule> AlertEngine::put_rule(AlertRule rule) {
  std::vector<Event> events;
  Status st;
  {
    std::lock_guard lock(impl_->mu);
    if (rule.id.empty()) rule.id = impl_->ids();
    auto it = impl_->rules.find(rule.id);
    if (it != impl_->rules.end()) {
      const AlertRule& old = *it->second;
      const bool same_shape = old.kind == rule.kind && old.scope.type == rule.scope.type &&
                              old.scope.group == rule.scope.group &&
                              old.scope.device == rule.scope.device && old.metric == rule.metric;
      if (!same_shape) {
        // Alerts and state of the old shape no longer mean anything.
        std::vector<std::string> ids;
        for (const auto& [id, a] : impl_->active) {
          if (a.rule_id == rule.id) ids.push_back(id);
        }
        for (const auto& id : ids) {
          auto a = impl_->active.find(std::string_view(id));
          if (a != impl_->active.end()) {
            impl_->resolve_active(a, "system", "rule changed", impl_->now_ms(), events)
                .ignore_error();
          }
        }
        for (auto& [id, s] : impl_->devices) {
          std::erase_if(s->bindings, [&](const Binding& b) { return b.rule->id == rule.id; });
          s->restored.erase(rule.id);
        }
        impl_->exec("DELETE FROM fleet_alert_state WHERE rule_id = ?", {std::string_view(rule.id)})
            .status()
            .ignore_error();
      }
    }
    st = impl_->store_rule(rule);
    if (st.ok()) {
      impl_->rules[rule.id] = std::make_shared<const AlertRule>(rule);
      impl_->rebuild_index();
    }
  }
  impl_->dispatch(events);
  Status written = impl_->drain();
  if (!st.ok()) return st;
  if (!written.ok()) return written;
  return rule;
}

Status AlertEngine::remove_rule(std::string_view rule_id) {
  std::vector<Event> events;
  Status st;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->rules.find(rule_id);
    if (it == impl_->rules.end()) {
      return not_found(fmt::format("alert rule '{}' does not exist", rule_id));
    }
    std::vector<std::string> ids;
    for (const auto& [id, a] : impl_->active) {
      if (a.rule_id == rule_id) ids.push_back(id);
    }
    for (const auto& id : ids) {
      auto a = impl_->active.find(std::string_view(id));
      if (a != impl_->active.end()) {
        st = impl_->resolve_active(a, "system", "rule removed", impl_->now_ms(), events);
        if (!st.ok()) break;
      }
    }
    for (auto& [id, s] : impl_->devices) s->restored.erase(std::string(rule_id));
    if (st.ok()) {
      st = [&]() -> Status {
        CIVICBUS_RETURN_IF_ERROR(
            impl_->exec("DELETE FROM fleet_alert_rules WHERE id = ?", {rule_id}).status());
        return impl_->exec("DELETE FROM fleet_alert_state WHERE rule_id = ?", {rule_id}).status();
      }();
    }
    impl_->rules.erase(it);
    impl_->rebuild_index();
  }
  impl_->dispatch(events);
  Status written = impl_->drain();
  return st.ok() ? written : st;
}

Result<AlertRule> AlertEngine::get_rule(std::string_view rule_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->rules.find(rule_id);
  if (it == impl_->rules.end()) {
    return not_found(fmt::format("alert rule '{}' does not exist", rule_id));
  }
  return *it->second;
}

std::vector<AlertRule> AlertEngine::list_rules() const {
  std::lock_guard lock(impl_->mu);
  std::vector<AlertRule> out;
  for (const auto& [id, r] : impl_->rules) out.push_back(*r);
  return out;
}

Status AlertEngine::install_type_rules(const DeviceType& type) {
  for (std::size_t i = 0; i < type.default_rules.size(); ++i) {
    auto r = AlertRule::from_json(type.default_rules[i], type.name);
    if (!r.ok()) {
      return r.status().with_context(
          fmt::format("device type '{}' default_rules[{}]", type.name, i));
    }
    if (r->id.empty()) {
      std::string slug = r->name;
      for (char& c : slug) {
        if (c == ' ' || c == '-') c = '_';
      }
      r->id = !r->name.empty() ? fmt::format("{}.{}", type.name, slug)
                               : fmt::format("{}.{}.{}", type.name, rule_kind_name(r->kind), i);
    }
    CIVICBUS_RETURN_IF_ERROR(put_rule(std::move(*r)).status());
  }
  return Status();
}

void AlertEngine::track_device(const DeviceContext& ctx, std::int64_t expected_interval_s,
                               TimeMs now) {
  std::lock_guard lock(impl_->mu);
  bool position_changed = false;
  DeviceSlot& s = impl_->slot_for(ctx, position_changed);
  if (!s.tracked) {
    s.tracked = true;
    s.tracked_since = now;
  }
  s.expected_interval_s = expected_interval_s;
  s.ctx_dirty = true;
  impl_->mark_dirty(s);
}

Status AlertEngine::untrack_device(std::string_view device_id) {
  std::vector<Event> events;
  Status st;
  {
    std::lock_guard lock(impl_->mu);
    std::vector<std::string> ids;
    for (const auto& [id, a] : impl_->active) {
      if (a.device_id == device_id) ids.push_back(id);
    }
    const TimeMs now = impl_->now_ms();
    for (const auto& id : ids) {
      auto a = impl_->active.find(std::string_view(id));
      if (a != impl_->active.end()) {
        st = impl_->resolve_active(a, "system", "device untracked", now, events);
        if (!st.ok()) break;
      }
    }
    auto it = impl_->devices.find(device_id);
    if (it != impl_->devices.end()) {
      std::erase(impl_->dirty, it->second.get());
      if (impl_->last_slot == it->second.get()) impl_->last_slot = nullptr;
      impl_->devices.erase(it);
    }
    if (st.ok()) {
      st = [&]() -> Status {
        CIVICBUS_RETURN_IF_ERROR(
            impl_->exec("DELETE FROM fleet_alert_state WHERE device_id = ?", {device_id}).status());
        return impl_->exec("DELETE FROM fleet_alert_devices WHERE device_id = ?", {device_id})
            .status();
      }();
    }
  }
  impl_->dispatch(events);
  Status written = impl_->drain();
  return st.ok() ? written : st;
}

Status AlertEngine::evaluate(const Reading& reading, const DeviceContext& ctx) {
  std::vector<Event> events;
  Status st;
  bool wrote = false;
  {
    std::lock_guard lock(impl_->mu);
    const std::uint64_t before = impl_->writes_queued;
    st = impl_->evaluate(reading, ctx, events);
    wrote = impl_->writes_queued != before;
  }
  if (!events.empty()) impl_->dispatch(events);
  if (!wrote) return st;
  Status written = impl_->drain();
  return st.ok() ? written : st;
}

Status AlertEngine::evaluate(std::span<const Reading> readings, const DeviceContext& ctx) {
  std::vector<Event> events;
  Status st;
  bool wrote = false;
  {
    std::lock_guard lock(impl_->mu);
    const std::uint64_t before = impl_->writes_queued;
    for (const Reading& r : readings) {
      st = impl_->evaluate(r, ctx, events);
      if (!st.ok()) break;
    }
    wrote = impl_->writes_queued != before;
  }
  if (!events.empty()) impl_->dispatch(events);
  if (!wrote) return st;
  Status written = impl_->drain();
  return st.ok() ? written : st;
}

Status AlertEngine::tick(TimeMs now) {
  std::vector<Event> events;
  Status st;
  {
    std::lock_guard lock(impl_->mu);
    st = impl_->tick(now, events);
  }
  impl_->dispatch(events);
  Status written = impl_->drain();
  return st.ok() ? written : st;
}

Status AlertEngine::flush() {
  {
    std::lock_guard lock(impl_->mu);
    CIVICBUS_RETURN_IF_ERROR(impl_->flush_locked());
  }
  return impl_->drain();
}

Result<Alert> AlertEngine::acknowledge(std::string_view alert_id, std::string_view who,
                                       std::string_view note) {
  if (who.empty()) return invalid_argument("acknowledging an alert needs who does it");
  Alert copy;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->active.find(alert_id);
    if (it == impl_->active.end()) {
      auto stored = get_alert_unlocked_(alert_id);
      if (!stored.ok()) return stored.status();
      return failed_precondition(
          fmt::format("alert '{}' is {}; only a raised alert can be "
                      "acknowledged",
                      alert_id, alert_state_name(stored->state)));
    }
    Alert& a = it->second;
    if (a.state == AlertState::kAcknowledged) {
      return failed_precondition(
          fmt::format("alert '{}' was already acknowledged by {}", alert_id, a.acknowledged_by));
    }
    const TimeMs now = impl_->now_ms();
    a.state = AlertState::kAcknowledged;
    a.acknowledged_by = std::string(who);
    a.acknowledged_at = now;
    a.acknowledge_note = std::string(note);
    a.updated_at = std::max(a.updated_at, now);
    CIVICBUS_RETURN_IF_ERROR(impl_->store_alert(a));
    CIVICBUS_RETURN_IF_ERROR(
        impl_->exec("UPDATE fleet_alerts SET ack_note = ? WHERE id = ?", {note, alert_id})
            .status());
    copy = a;
  }
  std::vector<Event> events{{copy, "acknowledged", std::nullopt}};
  impl_->dispatch(events);
  CIVICBUS_RETURN_IF_ERROR(impl_->drain());
  return copy;
}

Result<Alert> AlertEngine::resolve(std::string_view alert_id, std::string_view who,
                                   std::string_view note) {
  if (who.empty()) return invalid_argument("resolving an alert needs who does it");
  std::vector<Event> events;
  Alert copy;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->active.find(alert_id);
    if (it == impl_->active.end()) {
      auto stored = get_alert_unlocked_(alert_id);
      if (!stored.ok()) return stored.status();
      return failed_precondition(
          fmt::format("alert '{}' is already resolved (by {})", alert_id, stored->resolved_by));
    }
    const TimeMs now = impl_->now_ms();
    Alert before = it->second;
    CIVICBUS_RETURN_IF_ERROR(impl_->resolve_active(it, who, note, now, events));
    if (!before.device_id.empty()) impl_->rearm(before, now);
    for (const auto& e : events) {
      if (!e.action && e.alert.id == before.id) copy = e.alert;
    }
  }
  impl_->dispatch(events);
  CIVICBUS_RETURN_IF_ERROR(impl_->drain());
  return copy;
}

Result<Alert> AlertEngine::get_alert_unlocked_(std::string_view alert_id) const {
  if (auto it = impl_->active.find(alert_id); it != impl_->active.end()) return it->second;
  std::optional<Alert> found;
  CIVICBUS_RETURN_IF_ERROR(
      impl_->db.query(fmt::format("SELECT {} FROM fleet_alerts WHERE id = ?", Impl::kAlertColumns),
                      {alert_id}, [&](const storage::Row& row) {
                        found = Impl::alert_from_row(row);
                        return false;
                      }));
  if (!found) return not_found(fmt::format("alert '{}' does not exist", alert_id));
  return *found;
}

Result<Alert> AlertEngine::get_alert(std::string_view alert_id) const {
  std::lock_guard lock(impl_->mu);
  return get_alert_unlocked_(alert_id);
}

Result<std::vector<Alert>> AlertEngine::list_alerts(const AlertFilter& filter) const {
  std::lock_guard lock(impl_->mu);
  std::string sql = fmt::format("SELECT {} FROM fleet_alerts WHERE 1 = 1", Impl::kAlertColumns);
  std::vector<std::string> keep;  // owns the text the parameters point into
  keep.reserve(8);
  std::vector<storage::Value> params;
  if (filter.state) {
    sql += " AND state = ?";
    keep.emplace_back(alert_state_name(*filter.state));
    params.emplace_back(std::string_view(keep.back()));
  } else if (filter.active_only) {
    sql += " AND state <> 'resolved'";
  }
  if (!filter.device_id.empty()) {
    sql += " AND (device_id = ? OR devices LIKE ?)";
    keep.push_back(filter.device_id);
    params.emplace_back(std::string_view(keep.back()));
    keep.push_back(fmt::format("%\"{}\"%", filter.device_id));
    params.emplace_back(std::string_view(keep.back()));
  }
  if (filter.severity) {
    sql += " AND severity = ?";
    keep.emplace_back(severity_name(*filter.severity));
    params.emplace_back(std::string_view(keep.back()));
  }
  if (!filter.rule_id.empty()) {
    sql += " AND rule_id = ?";
    keep.push_back(filter.rule_id);
    params.emplace_back(std::string_view(keep.back()));
  }
  sql += " ORDER BY raised_at DESC, id DESC LIMIT ?";
  params.emplace_back(static_cast<std::int64_t>(filter.limit));
  std::vector<Alert> out;
  CIVICBUS_RETURN_IF_ERROR(impl_->db.query(sql, params, [&](const storage::Row& row) {
    Alert a = Impl::alert_from_row(row);
    // Active alerts in memory carry the newest value and updated_at (written in batches).
    if (auto it = impl_->active.find(std::string_view(a.id)); it != impl_->active.end()) {
      a = it->second;
    }
    out.push_back(std::move(a));
    return true;
  }));
  return out;
}

std::size_t AlertEngine::active_alert_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->active.size();
}

}  // namespace civicbus::fleet

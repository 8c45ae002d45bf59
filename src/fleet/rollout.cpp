#include "fleet/rollout.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace civicbus::fleet {

namespace {

constexpr std::array<std::string_view, 3> kRolloutStates{"running", "completed", "aborted"};
constexpr std::array<std::string_view, 7> kDeviceStates{
    "pending", "sent", "succeeded", "failed", "timed_out", "rolling_back", "rolled_back"};

constexpr storage::Migration kMigrations[] = {
    {1, "rollouts and their devices",
     R"sql(
CREATE TABLE fleet_rollouts (
  id TEXT PRIMARY KEY,
  options TEXT NOT NULL,
  state INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  wave INTEGER NOT NULL,
  wave_size INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE fleet_rollout_devices (
  rollout_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  previous_version TEXT NOT NULL,
  state INTEGER NOT NULL,
  wave INTEGER NOT NULL,
  sent_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (rollout_id, device_id)
);
)sql"},
};

}  // namespace

std::string_view rollout_state_name(RolloutState s) {
  return kRolloutStates[static_cast<std::size_t>(s)];
}
std::string_view device_update_state_name(DeviceUpdateState s) {
  return kDeviceStates[static_cast<std::size_t>(s)];
}

Json RolloutOptions::to_json() const {
  Json j = Json::object();
  j["id"] = id;
  j["firmware_version"] = firmware_version;
  j["firmware_url"] = firmware_url;
  j["sha256"] = sha256;
  j["group_id"] = group_id;
  Json devs = Json::array();
  for (const auto& d : devices) devs.as_array().emplace_back(d);
  j["devices"] = std::move(devs);
  j["first_wave"] = static_cast<std::int64_t>(first_wave);
  j["growth"] = growth;
  j["max_wave"] = static_cast<std::int64_t>(max_wave);
  j["max_failure_ratio"] = max_failure_ratio;
  j["min_devices"] = static_cast<std::int64_t>(min_devices);
  j["device_timeout_s"] = device_timeout_s;
  j["rollback_on_abort"] = rollback_on_abort;
  return j;
}

Result<RolloutOptions> RolloutOptions::from_json(const Json& j) {
  if (!j.is_object()) return invalid_argument("a rollout must be a JSON object");
  static constexpr std::array<std::string_view, 13> kKnown{
      "id",          "firmware_version", "firmware_url",     "sha256",   "group_id",
      "devices",     "first_wave",       "growth",           "max_wave", "max_failure_ratio",
      "min_devices", "device_timeout_s", "rollback_on_abort"};
  for (const auto& [key, value] : j.as_object()) {
    if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) {
      return invalid_argument(fmt::format("rollout: unknown field '{}'", key));
    }
  }
  RolloutOptions o;
  auto text = [&](std::string_view key, std::string& out) -> Status {
    if (const Json* v = j.find(key); v != nullptr && !v->is_null()) {
      if (!v->is_string())
        return invalid_argument(fmt::format("rollout: '{}' must be a string", key));
      out = v->as_string();
    }
    return Status();
  };
  auto count = [&](std::string_view key, std::size_t& out) -> Status {
    if (const Json* v = j.find(key); v != nullptr && !v->is_null()) {
      if (!v->is_int() || v->as_int() < 0) {
        return invalid_argument(fmt::format("rollout: '{}' must be a non-negative integer", key));
      }
      out = static_cast<std::size_t>(v->as_int());
    }
    return Status();
  };
  auto number = [&](std::string_view key, double& out) -> Status {
    if (const Json* v = j.find(key); v != nullptr && !v->is_null()) {
      if (!v->is_number())
        return invalid_argument(fmt::format("rollout: '{}' must be a number", key));
      out = v->as_double();
    }
    return Status();
  };
  CIVICBUS_RETURN_IF_ERROR(text("id", o.id));
  CIVICBUS_RETURN_IF_ERROR(text("firmware_version", o.firmware_version));
  CIVICBUS_RETURN_IF_ERROR(text("firmware_url", o.firmware_url));
  CIVICBUS_RETURN_IF_ERROR(text("sha256", o.sha256));
  CIVICBUS_RETURN_IF_ERROR(text("group_id", o.group_id));
  if (const Json* v = j.find("devices"); v != nullptr && !v->is_null()) {
    if (!v->is_array()) return invalid_argument("rollout: 'devices' must be an array of ids");
    for (const auto& d : v->as_array()) {
      if (!d.is_string()) return invalid_argument("rollout: 'devices' must be an array of ids");
      o.devices.push_back(d.as_string());
    }
  }
  CIVICBUS_RETURN_IF_ERROR(count("first_wave", o.first_wave));
  CIVICBUS_RETURN_IF_ERROR(number("growth", o.growth));
  CIVICBUS_RETURN_IF_ERROR(count("max_wave", o.max_wave));
  CIVICBUS_RETURN_IF_ERROR(number("max_failure_ratio", o.max_failure_ratio));
  CIVICBUS_RETURN_IF_ERROR(count("min_devices", o.min_devices));
  if (const Json* v = j.find("device_timeout_s"); v != nullptr && !v->is_null()) {
    if (!v->is_int()) return invalid_argument("rollout: 'device_timeout_s' must be an integer");
    o.device_timeout_s = v->as_int();
  }
  if (const Json* v = j.find("rollback_on_abort"); v != nullptr && !v->is_null()) {
    if (!v->is_bool())
      return invalid_argument("rollout: 'rollback_on_abort' must be true or false");
    o.rollback_on_abort = v->as_bool();
  }
  return o;
}

Status RolloutOptions::validate() const {
  if (firmware_version.empty()) return invalid_argument("rollout: firmware_version is required");
  if (devices.empty()) return invalid_argument("rollout: no devices to update (empty group?)");
  if (first_wave == 0) return invalid_argument("rollout: first_wave must be at least 1");
  if (!(growth >= 1.0)) return invalid_argument("rollout: growth must be at least 1.0");
  if (max_wave < first_wave)
    return invalid_argument("rollout: max_wave is smaller than first_wave");
  if (!(max_failure_ratio >= 0.0 && max_failure_ratio <= 1.0)) {
    return invalid_argument("rollout: max_failure_ratio must be within 0..1");
  }
  if (device_timeout_s <= 0) return invalid_argument("rollout: device_timeout_s must be positive");
  std::vector<std::string> sorted = devices;
  std::sort(sorted.begin(), sorted.end());
  if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
    return invalid_argument(fmt::format("rollout: device '{}' is listed twice", *dup));
  }
  return Status();
}

Json RolloutProgress::to_json() const {
  Json j = Json::object();
  j["id"] = id;
  j["firmware_version"] = firmware_version;
  j["group_id"] = group_id;
  j["state"] = std::string(rollout_state_name(state));
  if (!reason.empty()) j["reason"] = reason;
  j["wave"] = wave;
  j["wave_size"] = static_cast<std::int64_t>(wave_size);
  j["total"] = static_cast<std::int64_t>(total);
  j["pending"] = static_cast<std::int64_t>(pending);
  j["in_flight"] = static_cast<std::int64_t>(in_flight);
  j["succeeded"] = static_cast<std::int64_t>(succeeded);
  j["failed"] = static_cast<std::int64_t>(failed);
  j["rolled_back"] = static_cast<std::int64_t>(rolled_back);
  j["failure_ratio"] = failure_ratio;
  j["started_at"] = started_at;
  j["updated_at"] = updated_at;
  return j;
}

RolloutManager::RolloutManager(storage::Database& db, const Clock& clock, IdGenerator& ids,
                               Sender sender)
    : db_(db), clock_(clock), ids_(ids), sender_(std::move(sender)) {}

RolloutManager::~RolloutManager() = default;

Result<std::unique_ptr<RolloutManager>> RolloutManager::open(storage::Database& db,
                                                             const Clock& clock, IdGenerator& ids,
                                                             Sender sender) {
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "fleet.rollouts", kMigrations));
  std::unique_ptr<RolloutManager> m(new RolloutManager(db, clock, ids, std::move(sender)));
  CIVICBUS_RETURN_IF_ERROR(m->load());
  return m;
}

TimeMs RolloutManager::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
      .count();
}

void RolloutManager::on_progress(ProgressListener listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

Status RolloutManager::load() {
  Status parse_error;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT id, options, state, reason, wave, wave_size, started_at, updated_at "
      "FROM fleet_rollouts",
      {}, [&](const storage::Row& row) {
        auto options = Json::parse(row.get_text(1));
        Result<RolloutOptions> parsed = options.ok() ? RolloutOptions::from_json(*options)
                                                     : Result<RolloutOptions>(options.status());
        if (!parsed.ok()) {
          parse_error = parsed.status().with_context(
              fmt::format("rollout '{}' in fleet_rollouts", row.get_text(0)));
          return false;
        }
        auto r = std::make_unique<Rollout>();
        r->options = std::move(*parsed);
        r->options.devices.clear();  // the device rows are the truth
        r->state = static_cast<RolloutState>(row.get_int(2));
        r->reason = std::string(row.get_text(3));
        r->wave = static_cast<int>(row.get_int(4));
        r->wave_size = static_cast<std::size_t>(row.get_int(5));
        r->started_at = row.get_int(6);
        r->updated_at = row.get_int(7);
        rollouts_.emplace(std::string(row.get_text(0)), std::move(r));
        return true;
      }));
  CIVICBUS_RETURN_IF_ERROR(parse_error);
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT rollout_id, device_id, previous_version, state, wave, sent_at, finished_at, detail "
      "FROM fleet_rollout_devices ORDER BY rollout_id, position",
      {}, [&](const storage::Row& row) {
        auto it = rollouts_.find(row.get_text(0));
        if (it == rollouts_.end()) return true;
        Rollout& r = *it->second;
        DeviceEntry d;
        d.device_id = std::string(row.get_text(1));
        d.previous_version = std::string(row.get_text(2));
        d.state = static_cast<DeviceUpdateState>(row.get_int(3));
        d.wave = static_cast<int>(row.get_int(4));
        d.sent_at = row.get_int(5);
        d.finished_at = row.get_int(6);
        d.detail = std::string(row.get_text(7));
        r.index.emplace(d.device_id, r.devices.size());
        r.options.devices.push_back(d.device_id);
        if (r.state == RolloutState::kRunning || d.state == DeviceUpdateState::kRollingBack) {
          running_by_device_[d.device_id] = it->first;
        }
        r.devices.push_back(std::move(d));
        return true;
      }));
  return Status();
}

Status RolloutManager::save_rollout(const Rollout& r) {
  std::string options = r.options.to_json().dump();
  return db_
      .execute(
          "INSERT INTO fleet_rollouts (id, options, state, reason, wave, wave_size, started_at, "
          "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
          "state = excluded.state, reason = excluded.reason, wave = excluded.wave, "
          "wave_size = excluded.wave_size, updated_at = excluded.updated_at",
          {std::string_view(r.options.id), std::string_view(options),
           static_cast<std::int64_t>(r.state), std::string_view(r.reason),
           static_cast<std::int64_t>(r.wave), static_cast<std::int64_t>(r.wave_size), r.started_at,
           r.updated_at})
      .status();
}

Status RolloutManager::save_device(const Rollout& r, const DeviceEntry& d) {
  auto pos = r.index.find(d.device_id);
  return db_
      .execute(
          "INSERT INTO fleet_rollout_devices (rollout_id, position, device_id, previous_version, "
          "state, wave, sent_at, finished_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
          "ON CONFLICT(rollout_id, device_id) DO UPDATE SET state = excluded.state, "
          "wave = excluded.wave, sent_at = excluded.sent_at, finished_at = excluded.finished_at, "
          "detail = excluded.detail",
          {std::string_view(r.options.id), static_cast<std::int64_t>(pos->second),
           std::string_view(d.device_id), std::string_view(d.previous_version),
           static_cast<std::int64_t>(d.state), static_cast<std::int64_t>(d.wave), d.sent_at,
           d.finished_at, std::string_view(d.detail)})
      .status();
}

RolloutProgress RolloutManager::progress_of(const Rollout& r) const {
  RolloutProgress p;
  p.id = r.options.id;
  p.firmware_version = r.options.firmware_version;
  p.group_id = r.options.group_id;
  p.state = r.state;
  p.reason = r.reason;
  p.wave = r.wave;
  p.wave_size = r.wave_size;
  p.total = r.devices.size();
  for (const auto& d : r.devices) {
    switch (d.state) {
      case DeviceUpdateState::kPending:
        ++p.pending;
        break;
      case DeviceUpdateState::kSent:
        ++p.in_flight;
        break;
      case DeviceUpdateState::kSucceeded:
        ++p.succeeded;
        break;
      case DeviceUpdateState::kFailed:
      case DeviceUpdateState::kTimedOut:
        ++p.failed;
        break;
      case DeviceUpdateState::kRollingBack:
        ++p.in_flight;
        break;
      case DeviceUpdateState::kRolledBack:
        ++p.rolled_back;
        break;
    }
  }
  const std::size_t done = p.succeeded + p.failed + p.rolled_back;
  p.failure_ratio = done == 0 ? 0.0 : static_cast<double>(p.failed) / static_cast<double>(done);
  p.started_at = r.started_at;
  p.updated_at = r.updated_at;
  return p;
}

Result<RolloutProgress> RolloutManager::start(
    RolloutOptions options,
    const std::function<std::string(const std::string&)>& previous_version) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  std::vector<Outgoing> out;
  RolloutProgress progress;
  {
    std::lock_guard lock(mu_);
    if (options.id.empty()) options.id = ids_.next();
    if (rollouts_.count(options.id) != 0) {
      return already_exists(fmt::format("rollout '{}' already exists", options.id));
    }
    for (const auto& d : options.devices) {
      if (auto it = running_by_device_.find(d); it != running_by_device_.end()) {
        return failed_precondition(
            fmt::format("device '{}' is already in running rollout '{}'", d, it->second));
      }
    }
    auto r = std::make_unique<Rollout>();
    r->options = std::move(options);
    r->started_at = r->updated_at = now_ms();
    for (const auto& id : r->options.devices) {
      DeviceEntry d;
      d.device_id = id;
      d.previous_version = previous_version ? previous_version(id) : std::string();
      r->index.emplace(id, r->devices.size());
      r->devices.push_back(std::move(d));
    }
    Rollout& ref = *r;
    CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(save_rollout(ref));
      for (const auto& d : ref.devices) CIVICBUS_RETURN_IF_ERROR(save_device(ref, d));
      return Status();
    }));
    for (const auto& d : ref.devices) running_by_device_[d.device_id] = ref.options.id;
    std::string id = ref.options.id;
    rollouts_.emplace(id, std::move(r));
    CIVICBUS_RETURN_IF_ERROR(start_next_wave(ref, out));
    progress = progress_of(ref);
  }
  std::string id = progress.id;
  send_all(std::move(out));
  notify({id});
  return this->progress(id);
}

Status RolloutManager::start_next_wave(Rollout& r, std::vector<Outgoing>& out) {
  std::size_t size = r.options.first_wave;
  if (r.wave > 0) {
    size = std::max(
        r.wave_size + 1,
        static_cast<std::size_t>(std::ceil(static_cast<double>(r.wave_size) * r.options.growth)));
  }
  size = std::min(size, r.options.max_wave);
  const TimeMs now = now_ms();
  std::size_t taken = 0;
  const int wave = r.wave + 1;
  return db_.transaction([&]() -> Status {
    for (auto& d : r.devices) {
      if (taken == size) break;
      if (d.state != DeviceUpdateState::kPending) continue;
      d.state = DeviceUpdateState::kSent;
      d.wave = wave;
      d.sent_at = now;
      ++taken;
      Json command = Json::object();
      command["command"] = "ota.update";
      command["rollout"] = r.options.id;
      command["version"] = r.options.firmware_version;
      if (!r.options.firmware_url.empty()) command["url"] = r.options.firmware_url;
      if (!r.options.sha256.empty()) command["sha256"] = r.options.sha256;
      command["timeout_s"] = r.options.device_timeout_s;
      out.push_back({r.options.id, d.device_id, std::move(command)});
      CIVICBUS_RETURN_IF_ERROR(save_device(r, d));
    }
    if (taken == 0) return Status();
    r.wave = wave;
    r.wave_size = taken;
    r.updated_at = now;
    return save_rollout(r);
  });
}

Status RolloutManager::abort_locked(Rollout& r, std::string reason, std::vector<Outgoing>& out) {
  r.state = RolloutState::kAborted;
  r.reason = std::move(reason);
  r.updated_at = now_ms();
  return db_.transaction([&]() -> Status {
    for (auto& d : r.devices) {
      if (d.state == DeviceUpdateState::kPending) {
        d.detail = "skipped: rollout aborted";
        running_by_device_.erase(d.device_id);
        CIVICBUS_RETURN_IF_ERROR(save_device(r, d));
      } else if (d.state == DeviceUpdateState::kSucceeded && r.options.rollback_on_abort &&
                 !d.previous_version.empty()) {
        d.state = DeviceUpdateState::kRollingBack;
        d.sent_at = r.updated_at;
        Json command = Json::object();
        command["command"] = "ota.rollback";
        command["rollout"] = r.options.id;
        command["version"] = d.previous_version;
        command["timeout_s"] = r.options.device_timeout_s;
        out.push_back({r.options.id, d.device_id, std::move(command)});
        CIVICBUS_RETURN_IF_ERROR(save_device(r, d));
      } else if (d.state != DeviceUpdateState::kSent) {
        running_by_device_.erase(d.device_id);
      }
    }
    return save_rollout(r);
  });
}

Status RolloutManager::check_finish_or_abort(Rollout& r, std::vector<Outgoing>& out) {
  if (r.state != RolloutState::kRunning) {
    // After an abort, a device leaves the rollout once it has answered.
    for (const auto& d : r.devices) {
      if (d.state != DeviceUpdateState::kSent && d.state != DeviceUpdateState::kRollingBack) {
        auto it = running_by_device_.find(d.device_id);
        if (it != running_by_device_.end() && it->second == r.options.id) {
          running_by_device_.erase(it);
        }
      }
    }
    return Status();
  }
  RolloutProgress p = progress_of(r);
  const std::size_t done = p.succeeded + p.failed;
  if (done >= r.options.min_devices && p.failure_ratio > r.options.max_failure_ratio) {
    return abort_locked(
        r,
        fmt::format("failure share {:.1f}% passed the {:.1f}% threshold after {} devices",
                    100.0 * p.failure_ratio, 100.0 * r.options.max_failure_ratio, done),
        out);
  }
  if (p.in_flight > 0) return Status();
  if (p.pending > 0) return start_next_wave(r, out);
  r.state = RolloutState::kCompleted;
  r.updated_at = now_ms();
  for (const auto& d : r.devices) running_by_device_.erase(d.device_id);
  return save_rollout(r);
}

Status RolloutManager::report(std::string_view device_id, std::string_view rollout_id, bool success,
                              std::string_view detail) {
  std::vector<Outgoing> out;
  std::string id;
  {
    std::lock_guard lock(mu_);
    if (rollout_id.empty()) {
      auto it = running_by_device_.find(device_id);
      if (it == running_by_device_.end()) {
        return not_found(fmt::format("device '{}' is in no running rollout", device_id));
      }
      id = it->second;
    } else {
      id = std::string(rollout_id);
    }
    auto rit = rollouts_.find(id);
    if (rit == rollouts_.end()) return not_found(fmt::format("no rollout '{}'", id));
    Rollout& r = *rit->second;
    auto dit = r.index.find(device_id);
    if (dit == r.index.end()) {
      return not_found(fmt::format("device '{}' is not part of rollout '{}'", device_id, id));
    }
    DeviceEntry& d = r.devices[dit->second];
    if (d.state == DeviceUpdateState::kSent) {
      d.state = success ? DeviceUpdateState::kSucceeded : DeviceUpdateState::kFailed;
    } else if (d.state == DeviceUpdateState::kRollingBack) {
      d.state = success ? DeviceUpdateState::kRolledBack : DeviceUpdateState::kFailed;
    } else {
      return failed_precondition(
          fmt::format("device '{}' in rollout '{}' is {}, not waiting for an answer", device_id, id,
                      device_update_state_name(d.state)));
    }
    d.finished_at = now_ms();
    d.detail = std::string(detail);
    r.updated_at = d.finished_at;
    CIVICBUS_RETURN_IF_ERROR(save_device(r, d));
    CIVICBUS_RETURN_IF_ERROR(check_finish_or_abort(r, out));
  }
  send_all(std::move(out));
  notify({id});
  return Status();
}

void RolloutManager::tick() {
  std::vector<Outgoing> out;
  std::vector<std::string> changed;
  {
    std::lock_guard lock(mu_);
    const TimeMs now = now_ms();
    for (auto& [id, rp] : rollouts_) {
      Rollout& r = *rp;
      bool touched = false;
      for (auto& d : r.devices) {
        const bool waiting =
            d.state == DeviceUpdateState::kSent || d.state == DeviceUpdateState::kRollingBack;
        if (waiting && now - d.sent_at >= r.options.device_timeout_s * 1000) {
          d.state = DeviceUpdateState::kTimedOut;
          d.finished_at = now;
          d.detail = fmt::format("no answer within {} s", r.options.device_timeout_s);
          save_device(r, d).ignore_error();  // retried by the next change of this rollout
          touched = true;
        }
      }
      if (touched) {
        r.updated_at = now;
        check_finish_or_abort(r, out).ignore_error();
        changed.push_back(id);
      }
    }
  }
  send_all(std::move(out));
  notify(changed);
}

Status RolloutManager::abort(std::string_view rollout_id, std::string_view actor,
                             std::string_view reason) {
  std::vector<Outgoing> out;
  {
    std::lock_guard lock(mu_);
    auto it = rollouts_.find(rollout_id);
    if (it == rollouts_.end()) return not_found(fmt::format("no rollout '{}'", rollout_id));
    if (it->second->state != RolloutState::kRunning) {
      return failed_precondition(fmt::format("rollout '{}' is already {}", rollout_id,
                                             rollout_state_name(it->second->state)));
    }
    CIVICBUS_RETURN_IF_ERROR(
        abort_locked(*it->second, fmt::format("aborted by {}: {}", actor, reason), out));
  }
  send_all(std::move(out));
  notify({std::string(rollout_id)});
  return Status();
}

void RolloutManager::send_all(std::vector<Outgoing> out) {
  // A command that cannot be sent is that device's failure; reporting it may start another
  // wave, whose commands are sent by that report() call.
  for (auto& o : out) {
    Status s = sender_ ? sender_(o.device_id, o.command) : unavailable("no command sender");
    if (!s.ok()) {
      report(o.device_id, o.rollout_id, false, fmt::format("command not sent: {}", s.message()))
          .ignore_error();
    }
  }
}

void RolloutManager::notify(const std::vector<std::string>& rollout_ids) {
  ProgressListener listener;
  std::vector<RolloutProgress> updates;
  {
    std::lock_guard lock(mu_);
    listener = listener_;
    if (!listener) return;
    for (const auto& id : rollout_ids) {
      if (auto it = rollouts_.find(id); it != rollouts_.end()) {
        updates.push_back(progress_of(*it->second));
      }
    }
  }
  for (const auto& p : updates) listener(p);
}

Result<RolloutProgress> RolloutManager::progress(std::string_view rollout_id) const {
  std::lock_guard lock(mu_);
  auto it = rollouts_.find(rollout_id);
  if (it == rollouts_.end()) return not_found(fmt::format("no rollout '{}'", rollout_id));
  return progress_of(*it->second);
}

std::vector<RolloutProgress> RolloutManager::list() const {
  std::lock_guard lock(mu_);
  std::vector<RolloutProgress> all;
  for (const auto& [id, r] : rollouts_) all.push_back(progress_of(*r));
  return all;
}

Result<Json> RolloutManager::devices(std::string_view rollout_id) const {
  std::lock_guard lock(mu_);
  auto it = rollouts_.find(rollout_id);
  if (it == rollouts_.end()) return not_found(fmt::format("no rollout '{}'", rollout_id));
  Json list = Json::array();
  for (const auto& d : it->second->devices) {
    Json j = Json::object();
    j["device_id"] = d.device_id;
    j["state"] = std::string(device_update_state_name(d.state));
    j["wave"] = d.wave;
    j["previous_version"] = d.previous_version;
    if (d.sent_at != 0) j["sent_at"] = d.sent_at;
    if (d.finished_at != 0) j["finished_at"] = d.finished_at;
    if (!d.detail.empty()) j["detail"] = d.detail;
    list.as_array().push_back(std::move(j));
  }
  return list;
}

}  // namespace civicbus::fleet

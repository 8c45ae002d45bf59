// Staged OTA firmware rollouts. A rollout sends an update command to a group's devices in
// waves (a first wave, then each wave `growth` times the last), waits for every device of a
// wave to report (or time out) before the next, and aborts when the share of failures passes
// `max_failure_ratio` once `min_devices` have finished; on abort it can send the devices that
// did update a rollback to the version they ran before. Progress is reported per wave.
//
// The manager does not know how commands travel: the façade gives it a Sender (MQTT publish
// to the device's command topic, for instance) and feeds it the devices' results. Every change
// is written to SQLite at once (rollouts are slow; there is nothing to batch), so a restarted
// node resumes a rollout where it stood.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/id.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::fleet {

struct RolloutOptions {
  std::string id;                    // "" → a UUIDv7
  std::string firmware_version;      // the target version (required)
  std::string firmware_url;          // where devices fetch the image
  std::string sha256;                // the image's digest, passed to devices when set
  std::string group_id;              // for the record
  std::vector<std::string> devices;  // the group's members when the rollout starts
  std::size_t first_wave = 10;
  double growth = 2.0;  // wave n+1 = wave n × growth (at least one more device)
  std::size_t max_wave = 1000;
  double max_failure_ratio = 0.1;        // abort when failed / finished exceeds this…
  std::size_t min_devices = 10;          // …once at least this many devices have finished
  std::int64_t device_timeout_s = 3600;  // a device that has not reported by then failed
  bool rollback_on_abort = true;

  Json to_json() const;
  static Result<RolloutOptions> from_json(const Json& j);
  Status validate() const;
};

enum class RolloutState { kRunning, kCompleted, kAborted };
std::string_view rollout_state_name(RolloutState s);  // "running", "completed", "aborted"

enum class DeviceUpdateState {
  kPending,  // not sent yet (or skipped, when the rollout aborted)
  kSent,     // command sent, waiting for the device
  kSucceeded,
  kFailed,       // the device said so
  kTimedOut,     // no answer within device_timeout_s (counts as a failure)
  kRollingBack,  // rollback sent after an abort
  kRolledBack,
};
std::string_view device_update_state_name(DeviceUpdateState s);

struct RolloutProgress {
  std::string id;
  std::string firmware_version;
  std::string group_id;
  RolloutState state = RolloutState::kRunning;
  std::string reason;  // why it aborted
  int wave = 0;        // the wave in flight (1-based); the last one once finished
  std::size_t wave_size = 0;
  std::size_t total = 0;
  std::size_t pending = 0;
  std::size_t in_flight = 0;
  std::size_t succeeded = 0;
  std::size_t failed = 0;  // failed + timed out
  std::size_t rolled_back = 0;
  double failure_ratio = 0;
  TimeMs started_at = 0;
  TimeMs updated_at = 0;

  Json to_json() const;
};

class RolloutManager {
 public:
  // Sends one command to one device; an error counts as that device failing.
  using Sender = std::function<Status(const std::string& device_id, const Json& command)>;
  using ProgressListener = std::function<void(const RolloutProgress&)>;

  // Opens (and migrates) the rollout tables and resumes running rollouts. `db`, `clock` and
  // `ids` must outlive the manager.
  static Result<std::unique_ptr<RolloutManager>> open(storage::Database& db, const Clock& clock,
                                                      IdGenerator& ids, Sender sender);
  ~RolloutManager();

  // Called after every change of a rollout's counts or state (outside the manager's lock).
  void on_progress(ProgressListener listener);

  // Starts a rollout and sends its first wave. `previous_version(device)` gives each
  // device's firmware now (kept for the rollback). A device already in a running rollout is
  // refused (kFailedPrecondition naming it).
  Result<RolloutProgress> start(
      RolloutOptions options,
      const std::function<std::string(const std::string&)>& previous_version);

  // A device's answer to an update (or rollback) command. `rollout_id` may be empty: the
  // running rollout that holds the device is used. Unknown device: kNotFound.
  Status report(std::string_view device_id, std::string_view rollout_id, bool success,
                std::string_view detail = {});

  // Times out silent devices and starts the next wave when the current one is finished.
  void tick();

  Status abort(std::string_view rollout_id, std::string_view actor, std::string_view reason);

  Result<RolloutProgress> progress(std::string_view rollout_id) const;
  std::vector<RolloutProgress> list() const;
  // Each device of a rollout with its state, as JSON objects.
  Result<Json> devices(std::string_view rollout_id) const;

 private:
  struct DeviceEntry {
    std::string device_id;
    std::string previous_version;
    DeviceUpdateState state = DeviceUpdateState::kPending;
    int wave = 0;
    TimeMs sent_at = 0;
    TimeMs finished_at = 0;
    std::string detail;
  };
  struct Rollout {
    RolloutOptions options;
    RolloutState state = RolloutState::kRunning;
    std::string reason;
    int wave = 0;
    std::size_t wave_size = 0;
    TimeMs started_at = 0;
    TimeMs updated_at = 0;
    std::vector<DeviceEntry> devices;
    std::map<std::string, std::size_t, std::less<>> index;  // device id → position
  };

  RolloutManager(storage::Database& db, const Clock& clock, IdGenerator& ids, Sender sender);
  Status load();
  RolloutProgress progress_of(const Rollout& r) const;
  // The following run under mu_ and return the commands to send after unlocking.
  struct Outgoing {
    std::string rollout_id;
    std::string device_id;
    Json command;
  };
  Status start_next_wave(Rollout& r, std::vector<Outgoing>& out);
  Status check_finish_or_abort(Rollout& r, std::vector<Outgoing>& out);
  Status abort_locked(Rollout& r, std::string reason, std::vector<Outgoing>& out);
  Status save_rollout(const Rollout& r);
  Status save_device(const Rollout& r, const DeviceEntry& d);
  void send_all(std::vector<Outgoing> out);
  void notify(const std::vector<std::string>& rollout_ids);
  TimeMs now_ms() const;

  storage::Database& db_;
  const Clock& clock_;
  IdGenerator& ids_;
  Sender sender_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Rollout>, std::less<>> rollouts_;
  std::map<std::string, std::string, std::less<>> running_by_device_;  // device → rollout
  ProgressListener listener_;
};

}  // namespace civicbus::fleet

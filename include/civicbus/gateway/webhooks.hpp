// Webhooks: a broker subscription kind that pushes events to subscriber endpoints over HTTP,
// signed per Standard Webhooks (https://www.standardwebhooks.com): headers webhook-id (the
// CloudEvent id, stable across retries), webhook-timestamp (Unix seconds of the attempt) and
// webhook-signature ("v1,<base64 HMAC-SHA256>", space-separated during a secret rotation).
// The body is the CloudEvent in structured mode (application/cloudevents+json).
//
// WebhookDispatcher owns the subscriptions (stored in the node database with their secrets),
// one broker consumer group per subscription ("webhook.<id>"), one HTTP client per endpoint,
// a durable retry table and a dead-letter table of its own. It does not own the broker, the
// database, the executor or the clock: those come in WebhookContext and must outlive it.
//
// At rest, signing secrets and the bodies of parked and dead-lettered events are sealed with
// AES-256-GCM under a key derived from the node's master key (WebhookDispatcherOptions::
// master_key), each bound to its row (subscription id, event id) so rows cannot be swapped.
//
// Delivery, in short (docs/webhooks.md has the whole story):
//  - a new event is attempted at once; a 2xx acknowledges it to the consumer group;
//  - any other answer, a timeout or a connection failure parks the event in the durable retry
//    table (webhook_retries) and only then acknowledges it to the group, so the group moves on
//    and a slow retry schedule never holds back later events of the endpoint. Retry-table
//    writes of all endpoints are group-committed (a few ms or a batch of rows per
//    transaction); an acknowledgement still waits for its own row's commit;
//  - parked events are attempted again after the schedule's delays (with jitter); after the
//    last attempt they move to the dead-letter table with the last error as the reason;
//  - an endpoint that fails `pause.after_failures` attempts in a row is paused: nothing is sent
//    and nothing is counted against events' schedules until the cool-off ends; then one probe
//    is sent, and a success resumes the endpoint (a failure doubles the cool-off).
// Delivery is at least once: a crash between a 2xx and the group's commit sends the event
// again, with the same webhook-id. Order is not kept across retries.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/log.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus {
class Executor;
class MetricsRegistry;
class RandomSource;
namespace storage {
class Database;
}
namespace broker {
class Broker;
}
}  // namespace civicbus

namespace civicbus::gateway {

// ---- signing (usable on its own, by senders and receivers) ---------------------------------

// A new secret in the Standard Webhooks format: "whsec_" + base64 of 32 random bytes.
CIVICBUS_EXPORT std::string generate_webhook_secret(RandomSource& random);

// Checks a secret: "whsec_" followed by base64 of 24..64 bytes. Errors say which part is wrong.
CIVICBUS_EXPORT Status validate_webhook_secret(std::string_view secret);

// The signature of one message under one secret: "v1," + base64(HMAC-SHA256(key, content))
// where key is the base64-decoded secret (after an optional "whsec_" prefix) and content is
// "{webhook_id}.{timestamp}.{body}". kInvalidArgument when the secret is not base64.
CIVICBUS_EXPORT Result<std::string> sign_webhook(std::string_view secret,
                                                 std::string_view webhook_id,
                                                 std::int64_t timestamp, std::string_view body);

struct WebhookVerifyOptions {
  // A timestamp further than this from `now`, in either direction, is refused (replays).
  std::chrono::seconds tolerance{300};
};

// Verifies a received webhook: some "v1,..." entry of `signature_header` (space-separated)
// must match the signature under some secret of `secrets` (rotation: old and new), and
// `timestamp` (Unix seconds, decimal) must lie within the tolerance of `now`. Comparisons
// take constant time. kUnauthenticated with a reason ("no signature matches", "timestamp is
// 612 s old, more than the 300 s tolerance") otherwise.
CIVICBUS_EXPORT Status verify_webhook(const std::vector<std::string>& secrets,
                                      std::string_view webhook_id, std::string_view timestamp,
                                      std::string_view signature_header, std::string_view body,
                                      SystemTime now, WebhookVerifyOptions options = {});
// The same, reading webhook-id, webhook-timestamp and webhook-signature from `headers`.
CIVICBUS_EXPORT Status verify_webhook(const std::vector<std::string>& secrets,
                                      const http::HttpHeaders& headers, std::string_view body,
                                      SystemTime now, WebhookVerifyOptions options = {});

// ---- subscriptions ---------------------------------------------------------------------------

// The default schedule: the wait before each attempt, from the failure of the one before
// (the first from the moment the event reaches the subscription): 0 s, 5 s, 30 s, 5 min,
// 30 min, 2 h, 5 h, 10 h and a last try 24 h later: 9 attempts over about 42 hours.
CIVICBUS_EXPORT std::vector<std::chrono::milliseconds> default_webhook_schedule();

struct WebhookPausePolicy {
  // Consecutive failed attempts (across events) that pause the endpoint. 0: never pause.
  int after_failures = 10;
  // The first cool-off; each failed probe doubles it, up to max_cool_off. A successful probe
  // resets it.
  std::chrono::milliseconds cool_off{60'000};
  std::chrono::milliseconds max_cool_off{3'600'000};
};

// TLS towards an https:// endpoint. Both empty (the default): the system trust store and the
// URL's host.
struct WebhookTlsOptions {
  // PEM trust anchors for the receiver's certificate (a private or municipal CA). Read when
  // the subscription starts; a missing or unreadable file fails create() / open().
  std::string ca_file;
  // The name sent as SNI and checked against the certificate, when it differs from the URL's
  // host (an endpoint reached by IP address whose certificate names its host).
  std::string server_name;

  bool empty() const { return ca_file.empty() && server_name.empty(); }
};

struct CIVICBUS_EXPORT WebhookOptions {
  // [a-z0-9_-], 1..64 characters. The consumer group is "webhook.<id>".
  std::string id;
  // Topic patterns, as consumer groups take them ("permit.*", "property.>"). At least one.
  std::vector<std::string> topics;
  // Optional filter on the CloudEvent `type`, as patterns. Empty: every event of `topics`.
  // (In civicbus the topic is the type; the filter narrows a wide pattern without a second
  // subscription.)
  std::vector<std::string> event_types;
  // http://host[:port][/path][?query] or https://... (the server certificate is verified
  // against the system bundle or tls.ca_file; there is no switch to turn verification off).
  std::string url;
  // Only for https:// URLs (set with an http:// URL it is refused as a likely mistake).
  WebhookTlsOptions tls;
  // "whsec_" + base64 (24..64 bytes). Empty: one is generated and returned once by create().
  std::string secret;
  // The wait before each attempt (see default_webhook_schedule()); its size is the number of
  // attempts. Tests and benchmarks pass milliseconds.
  std::vector<std::chrono::milliseconds> schedule = default_webhook_schedule();
  // Each non-zero wait is scaled by a uniform factor in [1 - jitter, 1 + jitter], so that
  // events failed together do not return together. 0..1.
  double jitter = 0.2;
  // One attempt: connecting, sending and reading the answer.
  std::chrono::milliseconds attempt_timeout{15'000};
  // Requests in flight to the endpoint at once (new events and retries together).
  std::size_t max_concurrent = 4;
  WebhookPausePolicy pause;
  // Where a new subscription starts in the topics: only events published from now on
  // (default) or everything still retained.
  bool from_earliest = false;

  Status validate() const;
};

// A subscription as stored. `secret` is filled only in the answer of create() and
// rotate_secret(): it is shown once, then kept only in the database.
struct WebhookSubscription {
  WebhookOptions options;  // options.secret is empty
  std::string secret;
  SystemTime created_at;
};

struct WebhookEndpointState {
  std::string id;
  bool paused = false;
  std::optional<SystemTime> paused_until;  // when the next probe may go
  int consecutive_failures = 0;
  std::size_t in_flight = 0;
  std::int64_t pending_retries = 0;  // events parked for a later attempt
  std::int64_t dead_letters = 0;
};

// An event parked for a later attempt.
struct WebhookRetry {
  std::string event_id;
  std::string topic;
  int attempts = 0;  // made so far
  SystemTime next_attempt_at;
  SystemTime first_failed_at;
  std::string last_error;
};

struct WebhookDeadLetter {
  std::int64_t id = 0;
  std::string subscription;
  std::string event_id;
  std::string topic;
  std::string body;    // the CloudEvent JSON as it was sent
  std::string reason;  // the last attempt's error: "HTTP 503 Service Unavailable: ..."
  int attempts = 0;
  SystemTime first_failed_at;
  SystemTime dead_at;
};

struct CIVICBUS_EXPORT WebhookDispatcherOptions {
  // The node's 32-byte master key (the one the broker seals PII with; see
  // broker::load_master_key()). Required: secrets and parked bodies are stored only sealed
  // under a key derived from it (HMAC-SHA256(master_key, "civicbus webhooks v1")). The
  // dispatcher keeps only derived keys. A database first used with another master key is
  // refused with kFailedPrecondition at open().
  std::string master_key;
  // How often due retries and ended cool-offs are looked for. Retries go out at most this
  // late; run_due() looks at once.
  std::chrono::milliseconds poll_interval{250};
  // How long the previous secret still signs after rotate_secret().
  std::chrono::hours rotation_overlap{24};
  std::string user_agent = "civicbus-webhooks/0.1";
  // Group commit of the retry and dead-letter tables: writes (parking, rescheduling,
  // removing, dead-lettering; all subscriptions together) wait up to retry_write_delay or
  // until retry_write_batch of them are queued, then go in one transaction (one fsync).
  // While a commit runs the next batch gathers. A failed batch is retried one write per
  // transaction, so one bad row fails only its own event. 0 ms: no waiting beyond that.
  std::chrono::milliseconds retry_write_delay{2};
  std::size_t retry_write_batch = 256;

  Status validate() const;
};

// Everything the dispatcher runs on. All references must outlive the dispatcher.
struct WebhookContext {
  broker::Broker& broker;
  storage::Database& db;  // webhook_* tables (usually the node database the broker uses)
  Executor& executor;     // attempts' bookkeeping and the poll timer
  const Clock& clock;     // schedules, pauses, webhook-timestamp
  MetricsRegistry& metrics;
  // Secrets, jitter and AES-GCM nonces; a CSPRNG outside tests (a seeded source would repeat
  // nonces across restarts). Used under the dispatcher's lock.
  RandomSource& random;
  Logger logger;
};

class CIVICBUS_EXPORT WebhookDispatcher {
 public:
  // Creates its tables when missing and starts every stored subscription (parked retries
  // resume where they were; unacknowledged events come again from the consumer groups).
  // kInvalidArgument without a 32-byte master_key; kFailedPrecondition when the database's
  // webhook data was sealed under another master key; kDataLoss when a stored secret does not
  // decrypt (a corrupt or moved row). Rows written in clear by an older version are sealed here.
  static Result<std::unique_ptr<WebhookDispatcher>> open(WebhookDispatcherOptions options,
                                                         WebhookContext context);
  virtual ~WebhookDispatcher() = default;

  // Stores and starts a subscription. kAlreadyExists for a taken id. The answer carries the
  // secret (generated when options.secret is empty); it is not shown again.
  virtual Result<WebhookSubscription> create(WebhookOptions options) = 0;
  // Stops the subscription and deletes it with its parked retries and dead letters. (The
  // consumer group's offset stays in the broker; a new subscription of the same id resumes
  // after it.)
  virtual Status remove(std::string_view id) = 0;
  virtual Result<std::vector<WebhookSubscription>> subscriptions() = 0;
  // Replaces the secret (by `new_secret`, or a generated one). The previous secret keeps
  // signing too for rotation_overlap, so receivers can switch without a gap.
  virtual Result<WebhookSubscription> rotate_secret(std::string_view id,
                                                    std::string new_secret = {}) = 0;

  virtual Result<WebhookEndpointState> endpoint_state(std::string_view id) = 0;
  // Ends a pause now (an operator who fixed the endpoint need not wait for the probe).
  virtual Status resume(std::string_view id) = 0;
  virtual Result<std::vector<WebhookRetry>> pending_retries(std::string_view id,
                                                            std::size_t limit = 1000) = 0;
  virtual Result<std::vector<WebhookDeadLetter>> dead_letters(std::string_view id,
                                                              std::size_t limit = 1000) = 0;
  // Moves the subscription's dead letters back to the retry table with a fresh schedule, due
  // now. Returns how many.
  virtual Result<std::int64_t> replay_dead_letters(std::string_view id) = 0;

  // Looks for due retries and ended cool-offs now (also done every poll_interval): a test
  // that advances a ManualClock calls it instead of waiting.
  virtual void run_due() = 0;

  // Stops every subscription: attempts in flight are cancelled (not counted), events not yet
  // acknowledged stay with the consumer groups. Idempotent; also done by the destructor. Must
  // not be called from an executor thread.
  virtual void close() = 0;
};

}  // namespace civicbus::gateway

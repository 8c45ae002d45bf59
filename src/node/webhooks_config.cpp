// The `webhooks:` section of the node's YAML: fills NodeWebhooksOptions (docs/CONFIG.md). The
// section is either a mapping (dispatcher settings and `subscriptions:`) or, for short files,
// just the list of subscriptions. What one field decides (types, durations, ranges) is checked
// here with the line of the field; what a whole subscription decides (its id, topic patterns,
// URL, secret format, schedule) by WebhookOptions::validate(), reported at the subscription's
// line. Secrets are never put into error messages.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "node/config_loader.hpp"

namespace civicbus::config_detail {

Status Loader::load_webhooks(const Entry& e, NodeOptions& out) {
  NodeWebhooksOptions w;
  bool enabled = true;
  if (e.value.IsSequence()) {
    CIVICBUS_RETURN_IF_ERROR(load_webhook_subscriptions(e.value, w));
    out.webhooks = std::move(w);
    return {};
  }
  CIVICBUS_ASSIGN_OR_RETURN(Fields f,
                            fields(e.value, "'webhooks'", "in webhooks",
                                   {"enabled", "subscriptions", "poll_interval", "rotation_overlap",
                                    "user_agent", "retry_write_delay", "retry_write_batch"}));
  gateway::WebhookDispatcherOptions& d = w.dispatcher;
  if (const Entry* v = f.get("enabled")) {
    CIVICBUS_ASSIGN_OR_RETURN(enabled, read_bool(*v));
  }
  if (const Entry* v = f.get("poll_interval")) {
    CIVICBUS_ASSIGN_OR_RETURN(d.poll_interval, read_duration(*v));
    if (d.poll_interval.count() < 10) {
      return fail(v->value, "'poll_interval' must be at least 10ms");
    }
  }
  if (const Entry* v = f.get("rotation_overlap")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto overlap, read_duration(*v));
    if (overlap.count() % 3'600'000 != 0) {
      return fail(v->value, fmt::format("'rotation_overlap' must be whole hours like 24h or 7d; "
                                        "got '{}'",
                                        v->value.Scalar()));
    }
    d.rotation_overlap = std::chrono::duration_cast<std::chrono::hours>(overlap);
  }
  if (const Entry* v = f.get("user_agent")) {
    CIVICBUS_ASSIGN_OR_RETURN(d.user_agent, read_string(*v));
    if (trim(d.user_agent).empty()) return fail(v->value, "'user_agent' must not be empty");
  }
  if (const Entry* v = f.get("retry_write_delay")) {
    CIVICBUS_ASSIGN_OR_RETURN(d.retry_write_delay, read_duration(*v));
    if (d.retry_write_delay.count() > 1000) {
      return fail(v->value, "'retry_write_delay' must be between 0 and 1s");
    }
  }
  if (const Entry* v = f.get("retry_write_batch")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 10'000));
    d.retry_write_batch = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("subscriptions")) {
    if (!v->value.IsNull()) CIVICBUS_RETURN_IF_ERROR(load_webhook_subscriptions(v->value, w));
  }
  // A disabled section is still read whole, so that a typo in it is found before it is enabled.
  if (enabled) {
    out.webhooks = std::move(w);
  } else {
    out.webhooks.reset();
  }
  return {};
}

Status Loader::load_webhook_subscriptions(const YAML::Node& list, NodeWebhooksOptions& out) const {
  CIVICBUS_RETURN_IF_ERROR(expect_list(list, "'webhooks.subscriptions'",
                                       "id, topics, url, secret, ... (see docs/CONFIG.md)"));
  std::vector<std::pair<std::string, int>> seen;
  for (std::size_t i = 0; i < list.size(); ++i) {
    gateway::WebhookOptions o;
    CIVICBUS_RETURN_IF_ERROR(load_webhook(list[i], i, o));
    for (const auto& [other, line] : seen) {
      if (other == o.id) {
        return fail(list[i], fmt::format("duplicate webhook id '{}' in webhooks.subscriptions[{}] "
                                         "(first defined at line {})",
                                         o.id, i, line));
      }
    }
    seen.emplace_back(o.id, list[i].Mark().line + 1);
    out.subscriptions.push_back(std::move(o));
  }
  return {};
}

Status Loader::load_webhook(const YAML::Node& item, std::size_t i,
                            gateway::WebhookOptions& o) const {
  const std::string where = fmt::format("in webhooks.subscriptions[{}]", i);
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(item, fmt::format("webhooks.subscriptions[{}]", i), where,
                       {"id", "topics", "event_types", "url", "secret", "schedule", "jitter",
                        "attempt_timeout", "max_concurrent", "pause", "tls", "from_earliest"}));
  const Entry* id = f.get("id");
  if (id == nullptr) return fail(item, fmt::format("webhooks.subscriptions[{}] has no 'id'", i));
  CIVICBUS_ASSIGN_OR_RETURN(o.id, read_string(*id));
  const Entry* topics = f.get("topics");
  if (topics == nullptr) {
    return fail(item, fmt::format("webhook '{}' has no 'topics' (a list of topic patterns like "
                                  "[permit.*])",
                                  o.id));
  }
  if (topics->value.IsScalar()) {
    o.topics = {topics->value.Scalar()};  // `topics: permit.*` is read as a one-item list
  } else {
    CIVICBUS_ASSIGN_OR_RETURN(o.topics, read_string_list(*topics));
  }
  if (const Entry* v = f.get("event_types")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.event_types, read_string_list(*v));
  }
  const Entry* url = f.get("url");
  if (url == nullptr) return fail(item, fmt::format("webhook '{}' has no 'url'", o.id));
  CIVICBUS_ASSIGN_OR_RETURN(o.url, read_string(*url));
  // A node cannot show a generated secret to anyone, so the configuration must give one.
  const Entry* secret = f.get("secret");
  if (secret == nullptr) {
    return fail(item, fmt::format("webhook '{}' has no 'secret'; give one (\"whsec_\" + base64 of "
                                  "24..64 random bytes, e.g. from `openssl rand -base64 32`) or "
                                  "${{NAME}} of an environment variable holding it",
                                  o.id));
  }
  CIVICBUS_ASSIGN_OR_RETURN(o.secret,
                            read_secret(secret->value, fmt::format("webhook '{}': secret", o.id)));
  if (Status s = gateway::validate_webhook_secret(o.secret); !s.ok()) {
    return fail(secret->value, fmt::format("webhook '{}': {}", o.id, s.message()));
  }
  if (const Entry* v = f.get("schedule")) {
    if (!v->value.IsSequence() || v->value.size() == 0) {
      return fail(v->value, "'schedule' must be a non-empty list of waits, e.g. [0, 5s, 30s, 5m]");
    }
    o.schedule.clear();
    for (std::size_t j = 0; j < v->value.size(); ++j) {
      CIVICBUS_ASSIGN_OR_RETURN(
          auto d, read_duration(Entry{fmt::format("schedule[{}]", j), v->value[j], v->value[j]}));
      o.schedule.push_back(d);
    }
  }
  if (const Entry* v = f.get("jitter")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.jitter, read_number(*v, 0.0, 1.0));
  }
  if (const Entry* v = f.get("attempt_timeout")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.attempt_timeout, read_duration(*v));
    if (o.attempt_timeout.count() <= 0) return fail(v->value, "'attempt_timeout' must be positive");
  }
  if (const Entry* v = f.get("max_concurrent")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 1024));
    o.max_concurrent = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("pause")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields p, fields(v->value, "'pause'", where + ".pause",
                                               {"after_failures", "cool_off", "max_cool_off"}));
    if (const Entry* x = p.get("after_failures")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 0, 1'000'000));
      o.pause.after_failures = static_cast<int>(n);
    }
    for (auto [key, field] : {std::pair{"cool_off", &o.pause.cool_off},
                              std::pair{"max_cool_off", &o.pause.max_cool_off}}) {
      if (const Entry* x = p.get(key)) {
        CIVICBUS_ASSIGN_OR_RETURN(*field, read_duration(*x));
        if (field->count() <= 0) return fail(x->value, fmt::format("'{}' must be positive", key));
      }
    }
    if (o.pause.max_cool_off < o.pause.cool_off) {
      return fail(v->value, fmt::format("webhook '{}': pause.max_cool_off ({}) must be at least "
                                        "pause.cool_off ({})",
                                        o.id, format_duration(o.pause.max_cool_off),
                                        format_duration(o.pause.cool_off)));
    }
  }
  if (const Entry* v = f.get("tls")) {
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields t, fields(v->value, "'tls'", where + ".tls", {"ca_file", "server_name"}));
    if (const Entry* x = t.get("ca_file")) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*x));
      o.tls.ca_file = resolve(file);
    }
    if (const Entry* x = t.get("server_name")) {
      CIVICBUS_ASSIGN_OR_RETURN(o.tls.server_name, read_string(*x));
    }
  }
  if (const Entry* v = f.get("from_earliest")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.from_earliest, read_bool(*v));
  }
  if (Status s = o.validate(); !s.ok()) {
    // The message names the webhook and the field; the line is the subscription's.
    return fail(item, s.message());
  }
  return {};
}

}  // namespace civicbus::config_detail

// `civicbus webhooks list|dlq|replay`: the node's webhook subscriptions from the command line
// (see docs/CLI.md and docs/webhooks.md). Secrets are never printed.
#include <fmt/format.h>

#include <charconv>
#include <string>

#include "civicbus/core/json.hpp"
#include "civicbus/gateway/webhooks.hpp"
#include "cli/commands.hpp"

namespace civicbus::cli {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::string short_time(SystemTime t) {
  return format_rfc3339(t).substr(0, 19) + "Z";
}

// The ID positional of `webhooks dlq|replay`.
std::optional<std::string> subscription_id(const Args& args, std::string_view command,
                                           int& exit_code) {
  if (args.positionals().size() != 1 || args.positionals()[0].empty()) {
    exit_code = usage_error(command, "give the subscription's ID");
    return std::nullopt;
  }
  return args.positionals()[0];
}

// kNotFound, with a hint, when no subscription `id` is stored (the dispatcher answers an
// unknown id with an empty list, which would read as "no dead letters").
Status check_subscription(gateway::WebhookDispatcher& webhooks, const std::string& id) {
  CIVICBUS_ASSIGN_OR_RETURN(auto subscriptions, webhooks.subscriptions());
  std::vector<std::string_view> ids;
  for (const gateway::WebhookSubscription& s : subscriptions) {
    if (s.options.id == id) return {};
    ids.push_back(s.options.id);
  }
  auto hint = closest(id, ids);
  return not_found(fmt::format("no webhook subscription '{}'{}", id,
                               hint          ? fmt::format(" (did you mean '{}'?)", *hint)
                               : ids.empty() ? std::string("; there are none")
                                             : std::string()));
}

}  // namespace

int run_webhooks_list(const Args& args) {
  int code = kExitOk;
  auto node = open_node(args, "webhooks list", code, NodeParts::kWithWebhooks);
  if (!node) return code;
  gateway::WebhookDispatcher* webhooks = node->webhooks();
  if (webhooks == nullptr) return fail("the node opened no webhook dispatcher");
  auto subscriptions = webhooks->subscriptions();
  if (!subscriptions.ok()) return fail(subscriptions.status());

  Table table({"ID", "URL", "TOPICS", "STATE", "RETRIES", "DEAD LETTERS"});
  for (const gateway::WebhookSubscription& s : *subscriptions) {
    const gateway::WebhookOptions& o = s.options;
    auto state = webhooks->endpoint_state(o.id);
    if (!state.ok()) return fail(state.status().with_context(fmt::format("webhook '{}'", o.id)));
    std::string shown = state->paused ? "paused" : "active";
    if (state->paused && state->paused_until) shown += " until " + short_time(*state->paused_until);
    if (args.has("json")) {
      Json topics = Json::array();
      for (const std::string& t : o.topics) topics.push_back(Json(t));
      Json types = Json::array();
      for (const std::string& t : o.event_types) types.push_back(Json(t));
      Json line = Json::object({
          {"id", o.id},
          {"url", o.url},
          {"topics", std::move(topics)},
          {"event_types", std::move(types)},
          {"state", state->paused ? "paused" : "active"},
          {"paused_until",
           state->paused_until ? Json(format_rfc3339(*state->paused_until)) : Json()},
          {"consecutive_failures", state->consecutive_failures},
          {"pending_retries", state->pending_retries},
          {"dead_letters", state->dead_letters},
          {"created_at", format_rfc3339(s.created_at)},
      });
      fmt::print("{}\n", line.dump());
      continue;
    }
    table.add({o.id, o.url, join(o.topics), shown, std::to_string(state->pending_retries),
               std::to_string(state->dead_letters)});
  }
  if (args.has("json")) return kExitOk;
  if (subscriptions->empty()) {
    fmt::print("no webhook subscriptions\n");
    return kExitOk;
  }
  fmt::print("{}{} subscription{}\n", table.render(), subscriptions->size(),
             subscriptions->size() == 1 ? "" : "s");
  return kExitOk;
}

int run_webhooks_dlq(const Args& args) {
  int code = kExitOk;
  auto id = subscription_id(args, "webhooks dlq", code);
  if (!id) return code;
  std::size_t limit = 1000;
  if (auto text = args.value("limit")) {
    std::size_t v = 0;
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
    if (ec != std::errc() || ptr != text->data() + text->size() || v < 1 || v > 10'000'000) {
      return usage_error("webhooks dlq",
                         fmt::format("--limit must be a whole number between 1 and 10000000; "
                                     "got '{}'",
                                     *text));
    }
    limit = v;
  }
  auto node = open_node(args, "webhooks dlq", code, NodeParts::kWithWebhooks);
  if (!node) return code;
  if (Status s = check_subscription(*node->webhooks(), *id); !s.ok()) return fail(s);
  auto letters = node->webhooks()->dead_letters(*id, limit);
  if (!letters.ok()) return fail(letters.status());
  if (args.has("json")) {
    for (const gateway::WebhookDeadLetter& d : *letters) {
      auto body = Json::parse(d.body);
      Json line = Json::object({
          {"id", d.id},
          {"subscription", d.subscription},
          {"event_id", d.event_id},
          {"topic", d.topic},
          {"reason", d.reason},
          {"attempts", d.attempts},
          {"first_failed_at", format_rfc3339(d.first_failed_at)},
          {"dead_at", format_rfc3339(d.dead_at)},
          {"body", body.ok() ? std::move(body).value() : Json(d.body)},
      });
      fmt::print("{}\n", line.dump());
    }
    return kExitOk;
  }
  if (letters->empty()) {
    fmt::print("webhook '{}' has no dead letters\n", *id);
    return kExitOk;
  }
  Table table({"ID", "EVENT", "TOPIC", "ATTEMPTS", "DEAD AT", "REASON"});
  for (const gateway::WebhookDeadLetter& d : *letters) {
    table.add({std::to_string(d.id), d.event_id, d.topic, std::to_string(d.attempts),
               short_time(d.dead_at), truncate(d.reason, 80)});
  }
  fmt::print("{}{} dead letter{}\n", table.render(), letters->size(),
             letters->size() == 1 ? "" : "s");
  return kExitOk;
}

int run_webhooks_replay(const Args& args) {
  int code = kExitOk;
  auto id = subscription_id(args, "webhooks replay", code);
  if (!id) return code;
  auto node = open_node(args, "webhooks replay", code, NodeParts::kWithWebhooks);
  if (!node) return code;
  if (Status s = check_subscription(*node->webhooks(), *id); !s.ok()) return fail(s);
  auto replayed = node->webhooks()->replay_dead_letters(*id);
  if (!replayed.ok()) return fail(replayed.status());
  fmt::print("{} dead letter{} of webhook '{}' queued for delivery again\n", *replayed,
             *replayed == 1 ? "" : "s", *id);
  return kExitOk;
}

}  // namespace civicbus::cli

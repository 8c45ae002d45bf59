// Operator commands that open a node's data directory: topics, publish, tail, dlq, asyncapi,
// audit.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/json.hpp"
#include "cli/commands.hpp"

namespace civicbus::cli {
namespace {

using broker::CloudEvent;

std::optional<std::int64_t> parse_int(std::string_view text) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

// Reads --NAME as an integer in [min, max]; `error` gets the usage message on failure.
std::optional<std::int64_t> int_option(const Args& args, std::string_view name,
                                       std::int64_t fallback, std::int64_t min, std::int64_t max,
                                       std::string& error) {
  auto text = args.value(name);
  if (!text) return fallback;
  auto v = parse_int(*text);
  if (!v || *v < min || *v > max) {
    error = fmt::format("--{} must be a whole number between {} and {}; got '{}'", name, min, max,
                        *text);
    return std::nullopt;
  }
  return v;
}

std::string retention_text(const broker::TopicOptions& t) {
  std::string out =
      t.retention.count() == 0
          ? std::string("forever")
          : format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(t.retention));
  if (t.retention_bytes > 0) out += " / " + format_size(t.retention_bytes);
  return out;
}

std::string human_bytes(std::int64_t bytes) {
  if (bytes < 1024) return fmt::format("{}B", bytes);
  double v = static_cast<double>(bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f}{}", v, units[u]);
}

Json record_json(const broker::DeliveredEvent& ev) {
  return Json::object({{"offset", ev.offset},
                       {"topic", ev.topic},
                       {"stored_at", format_rfc3339(ev.stored_at)},
                       {"event", ev.event.document()}});
}

void print_ack(std::string_view prefix, const std::string& topic, const broker::PublishAck& ack) {
  if (ack.duplicate) {
    fmt::print("{}duplicate {} offset={} id={} (already stored; nothing written)\n", prefix, topic,
               ack.offset, ack.id);
  } else {
    fmt::print("{}stored {} offset={} id={}\n", prefix, topic, ack.offset, ack.id);
  }
}

std::string actor_name(const Args& args) {
  if (auto a = args.value("actor")) return *a;
  const char* user = std::getenv("USER");
  return user && *user ? fmt::format("cli:{}", user) : std::string("cli");
}

// Builds the DLQ filter from the shared options of `dlq list` and `dlq replay`.
std::optional<broker::DlqFilter> dlq_filter(const Args& args, std::string_view command,
                                            const Clock& clock, int& exit_code) {
  broker::DlqFilter filter;
  filter.group = args.value_or("group", "");
  filter.topic = args.value_or("topic", "");
  filter.error_contains = args.value_or("error", "");
  if (auto id = args.value("id")) {
    auto v = parse_int(*id);
    if (!v || *v <= 0) {
      exit_code =
          usage_error(command, fmt::format("--id must be a positive number; got '{}'", *id));
      return std::nullopt;
    }
    filter.id = *v;
  }
  for (std::string_view name : {"since", "until"}) {
    auto text = args.value(name);
    if (!text) continue;
    auto t = parse_time_or_ago(*text, clock.now());
    if (!t.ok()) {
      exit_code = usage_error(command, fmt::format("--{}: {}", name, t.status().message()));
      return std::nullopt;
    }
    (name == "since" ? filter.dead_after : filter.dead_before) = *t;
  }
  return filter;
}

}  // namespace

int run_topics(const Args& args) {
  int code = kExitOk;
  auto node = open_node(args, "topics", code);
  if (!node) return code;
  std::vector<broker::TopicInfo> topics = node->broker().topics();
  std::sort(topics.begin(), topics.end(),
            [](const auto& a, const auto& b) { return a.options.name < b.options.name; });
  if (args.has("json")) {
    Json out = Json::array();
    for (const auto& t : topics) {
      Json pii = Json::array();
      for (const auto& p : t.options.pii_fields) pii.push_back(p);
      out.push_back(Json::object({
          {"name", t.options.name},
          {"owner", t.options.owner},
          {"description", t.options.description},
          {"retention_seconds", static_cast<std::int64_t>(t.options.retention.count())},
          {"retention_bytes", t.options.retention_bytes},
          {"sensitivity", std::string(broker::to_string(t.options.sensitivity))},
          {"pii_fields", std::move(pii)},
          {"schema_subject", t.options.schema_subject},
          {"created_at", format_rfc3339(t.created_at)},
          {"records", t.records},
          {"bytes", t.bytes},
      }));
    }
    fmt::print("{}\n", out.dump(2));
    return kExitOk;
  }
  if (topics.empty()) {
    fmt::print("no topics in {}\n", node->options().data_dir);
    return kExitOk;
  }
  Table table({"TOPIC", "OWNER", "SENSITIVITY", "RETENTION", "RECORDS", "SIZE", "PII", "SCHEMA"});
  for (const auto& t : topics) {
    std::string pii;
    for (const auto& p : t.options.pii_fields) pii += (pii.empty() ? "" : ",") + p;
    table.add({t.options.name, t.options.owner,
               std::string(broker::to_string(t.options.sensitivity)), retention_text(t.options),
               std::to_string(t.records), human_bytes(t.bytes), pii.empty() ? "-" : pii,
               t.options.schema_subject.empty() ? "-" : t.options.schema_subject});
  }
  fmt::print("{}", table.render());
  return kExitOk;
}

namespace {

Result<std::string> read_input(const std::string& path) {
  if (path == "-") {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    return text;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(fmt::format("cannot read '{}'", path));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text;
}

// Publishes every line of `text` as a CloudEvent, keeping a window of events in flight.
int publish_lines(broker::Broker& broker, const std::string& name, const std::string& text) {
  struct Outcome {
    std::size_t line = 0;
    std::string topic;
    std::optional<Result<broker::PublishAck>> result;
  };
  std::vector<Outcome> outcomes;
  std::mutex mu;
  std::condition_variable cv;
  std::size_t in_flight = 0;
  constexpr std::size_t kWindow = 512;
  std::size_t stored = 0, duplicates = 0, refused = 0;

  // Split first, so that callbacks write to outcomes that never move.
  std::size_t pos = 0;
  std::size_t line_no = 0;
  std::vector<std::string_view> lines;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty()) continue;
    outcomes.push_back(Outcome{line_no, "", std::nullopt});
    lines.push_back(line);
  }

  auto start = std::chrono::steady_clock::now();
  auto last_progress = start;
  for (std::size_t index = 0; index < lines.size(); ++index) {
    auto event = CloudEvent::parse(lines[index]);
    if (!event.ok()) {
      std::lock_guard lock(mu);
      outcomes[index].result = Result<broker::PublishAck>(
          invalid_argument(fmt::format("invalid CloudEvent: {}", event.status().message())));
      continue;
    }
    outcomes[index].topic = event->type();
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < kWindow; });
      ++in_flight;
    }
    broker.publish_async(std::move(event).value(), [&, index](Result<broker::PublishAck> r) {
      std::lock_guard lock(mu);
      outcomes[index].result = std::move(r);
      --in_flight;
      cv.notify_all();
    });
    auto now = std::chrono::steady_clock::now();
    if (now - last_progress >= std::chrono::seconds(1)) {
      last_progress = now;
      fmt::print(stderr, "publishing {}: {} of {} events sent\n", name, index + 1, lines.size());
    }
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  for (const Outcome& o : outcomes) {
    std::string prefix = fmt::format("line {}: ", o.line);
    if (!o.result || !o.result->ok()) {
      ++refused;
      fmt::print("{}refused: {}\n", prefix,
                 o.result ? o.result->status().message() : std::string("no answer"));
      continue;
    }
    (o.result->value().duplicate ? duplicates : stored) += 1;
    print_ack(prefix, o.topic, o.result->value());
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{}: {} stored, {} duplicates, {} refused in {:.2f}s\n", name, stored, duplicates,
             refused, seconds);
  if (refused > 0) {
    return fail(fmt::format("{} of {} events in {} were refused", refused, outcomes.size(), name));
  }
  return kExitOk;
}

}  // namespace

int run_publish(const Args& args) {
  bool fields = args.has("type") || args.has("source") || args.has("data") || args.has("id") ||
                args.has("subject") || args.has("partition-key");
  int modes = (fields ? 1 : 0) + (args.has("event") ? 1 : 0) + (args.has("file") ? 1 : 0);
  if (modes == 0) {
    return usage_error("publish",
                       "give --type and --source (with --data), --event JSON or --file FILE");
  }
  if (modes > 1) {
    return usage_error("publish", "use one of --type/--source/--data, --event or --file");
  }

  std::optional<CloudEvent> event;
  if (fields) {
    auto type = args.value("type");
    auto source = args.value("source");
    if (!type)
      return usage_error("publish", "--type is required (the event type, which is the topic)");
    if (!source)
      return usage_error("publish", "--source is required (who publishes, e.g. /tax/roll)");
    Json data;
    if (auto text = args.value("data")) {
      auto parsed = Json::parse(*text);
      if (!parsed.ok()) {
        return usage_error("publish",
                           fmt::format("--data is not valid JSON: {}", parsed.status().message()));
      }
      data = std::move(parsed).value();
    }
    event.emplace(*type, *source, std::move(data));
    if (auto id = args.value("id")) event->set_id(*id);
    if (auto subject = args.value("subject")) event->set_subject(*subject);
    if (auto key = args.value("partition-key")) event->set_partition_key(*key);
  } else if (auto text = args.value("event")) {
    auto parsed = CloudEvent::parse(*text);
    if (!parsed.ok()) {
      return usage_error("publish", fmt::format("--event is not a valid CloudEvent: {}",
                                                parsed.status().message()));
    }
    event.emplace(std::move(parsed).value());
  }

  std::string file_text;
  std::string file_name;
  if (auto file = args.value("file")) {
    file_name = *file == "-" ? std::string("stdin") : *file;
    auto text = read_input(*file);
    if (!text.ok()) return fail(text.status());
    file_text = std::move(text).value();
  }

  int code = kExitOk;
  auto node = open_node(args, "publish", code);
  if (!node) return code;
  if (!event) return publish_lines(node->broker(), file_name, file_text);

  std::string topic = event->type();
  auto ack = node->broker().publish(std::move(*event));
  if (!ack.ok()) return fail(fmt::format("publish refused: {}", ack.status().message()));
  print_ack("", topic, *ack);
  return kExitOk;
}

int run_tail(const Args& args) {
  std::string error;
  auto limit = int_option(args, "limit", 10, 1, 10'000'000, error);
  if (!limit) return usage_error("tail", error);
  auto from = int_option(args, "from", -1, 0, std::numeric_limits<std::int64_t>::max(), error);
  if (!from) return usage_error("tail", error);
  std::string pattern = args.value_or("topic", ">");
  if (pattern.empty()) return usage_error("tail", "--topic must not be empty");
  bool events_only = args.has("events-only");
  bool follow = args.has("follow");

  int code = kExitOk;
  auto node = open_node(args, "tail", code);
  if (!node) return code;
  broker::Broker& broker = node->broker();
  auto print = [&](const broker::DeliveredEvent& ev) {
    fmt::print("{}\n", events_only ? ev.event.to_json() : record_json(ev).dump());
  };
  constexpr std::size_t kChunk = 1000;

  std::int64_t next = node->transport().next_offset();
  std::int64_t position = 0;
  if (*from >= 0) {
    // From an offset: print up to --limit events.
    position = *from;
    std::size_t printed = 0;
    while (printed < static_cast<std::size_t>(*limit)) {
      std::size_t want = std::min<std::size_t>(kChunk, static_cast<std::size_t>(*limit) - printed);
      auto events = broker.read(pattern, position, want);
      if (!events.ok()) return fail(events.status());
      if (events->empty()) break;
      for (const auto& ev : *events) print(ev);
      printed += events->size();
      position = events->back().offset + 1;
    }
    if (printed < static_cast<std::size_t>(*limit)) position = std::max(position, next);
  } else {
    // The last --limit matching events: look back in growing windows until enough match.
    std::vector<broker::DeliveredEvent> last;
    std::int64_t window = std::max<std::int64_t>(*limit * 4, 256);
    while (true) {
      std::int64_t start = std::max<std::int64_t>(1, next - window);
      last.clear();
      std::int64_t pos = start;
      while (pos < next) {
        auto events = broker.read(pattern, pos, kChunk);
        if (!events.ok()) return fail(events.status());
        if (events->empty()) break;
        for (auto& ev : *events) {
          if (ev.offset >= next) break;
          last.push_back(std::move(ev));
        }
        pos = events->back().offset + 1;
        if (last.size() > static_cast<std::size_t>(*limit)) {
          last.erase(last.begin(), last.end() - *limit);
        }
      }
      if (static_cast<std::int64_t>(last.size()) >= *limit || start == 1) break;
      window *= 8;
    }
    for (const auto& ev : last) print(ev);
    position = next;
  }
  std::fflush(stdout);
  if (!follow) return kExitOk;

  install_stop_handlers();
  while (!stop_requested()) {
    auto events = broker.read(pattern, position, kChunk);
    if (!events.ok()) return fail(events.status());
    if (events->empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    for (const auto& ev : *events) print(ev);
    position = events->back().offset + 1;
    std::fflush(stdout);
  }
  return kExitOk;
}

int run_dlq_list(const Args& args) {
  std::string error;
  auto limit = int_option(args, "limit", 1000, 1, 10'000'000, error);
  if (!limit) return usage_error("dlq list", error);
  int code = kExitOk;
  auto node = open_node(args, "dlq list", code);
  if (!node) return code;
  auto filter = dlq_filter(args, "dlq list", node->clock(), code);
  if (!filter) return code;
  filter->include_replayed = args.has("all");
  filter->limit = static_cast<std::size_t>(*limit);
  auto letters = node->broker().dead_letters(*filter);
  if (!letters.ok()) return fail(letters.status());

  if (args.has("json")) {
    for (const auto& d : *letters) {
      auto payload = Json::parse(d.payload);
      Json line = Json::object({
          {"id", d.id},
          {"group", d.group},
          {"topic", d.topic},
          {"offset", d.offset},
          {"event_id", d.event_id},
          {"source", d.source},
          {"error", d.error},
          {"attempts", d.attempts},
          {"first_failed_at", format_rfc3339(d.first_failed_at)},
          {"dead_at", format_rfc3339(d.dead_at)},
          {"replay_requested_at",
           d.replay_requested_at ? Json(format_rfc3339(*d.replay_requested_at)) : Json()},
          {"replayed_at", d.replayed_at ? Json(format_rfc3339(*d.replayed_at)) : Json()},
          {"payload", payload.ok() ? std::move(payload).value() : Json(d.payload)},
      });
      fmt::print("{}\n", line.dump());
    }
    return kExitOk;
  }
  if (letters->empty()) {
    fmt::print("no dead letters match\n");
    return kExitOk;
  }
  Table table({"ID", "GROUP", "TOPIC", "OFFSET", "ATTEMPTS", "DEAD AT", "STATE", "ERROR"});
  for (const auto& d : *letters) {
    std::string state = d.replayed_at           ? "replayed"
                        : d.replay_requested_at ? "replay queued"
                                                : "dead";
    table.add({std::to_string(d.id), d.group, d.topic, std::to_string(d.offset),
               std::to_string(d.attempts), format_rfc3339(d.dead_at).substr(0, 19) + "Z", state,
               truncate(d.error, 80)});
  }
  fmt::print("{}{} dead letter{}\n", table.render(), letters->size(),
             letters->size() == 1 ? "" : "s");
  return kExitOk;
}

int run_dlq_replay(const Args& args) {
  bool filtered = args.has("group") || args.has("topic") || args.has("id") || args.has("since") ||
                  args.has("until") || args.has("error");
  if (!filtered && !args.has("all")) {
    return usage_error(
        "dlq replay", "give a filter (--group, --topic, --id, --since, --until, --error) or --all");
  }
  int code = kExitOk;
  auto node = open_node(args, "dlq replay", code);
  if (!node) return code;
  auto filter = dlq_filter(args, "dlq replay", node->clock(), code);
  if (!filter) return code;
  filter->limit = std::numeric_limits<std::size_t>::max() / 2;
  auto queued = node->broker().replay_dead_letters(*filter, actor_name(args));
  if (!queued.ok()) return fail(queued.status());
  fmt::print("queued {} dead letter{} for replay{}; {} redelivered when {} next runs\n", *queued,
             *queued == 1 ? "" : "s",
             filter->group.empty() ? std::string() : " to group " + filter->group,
             *queued == 1 ? "it is" : "they are",
             filter->group.empty() ? std::string("their consumer group") : "the group");
  return kExitOk;
}

int run_asyncapi(const Args& args) {
  int code = kExitOk;
  auto node = open_node(args, "asyncapi", code);
  if (!node) return code;
  fmt::print("{}\n", node->broker().asyncapi().dump(2));
  return kExitOk;
}

int run_audit_verify(const Args& args) {
  int code = kExitOk;
  auto node = open_node(args, "audit verify", code);
  if (!node) return code;
  auto report = node->broker().verify_audit();
  if (!report.ok()) return fail(report.status());
  if (report->intact && report->problems.empty()) {
    fmt::print("audit log intact: {} record{} verified\n", report->records,
               report->records == 1 ? "" : "s");
    return kExitOk;
  }
  fmt::print("audit log NOT intact: {} problem{} in {} records\n", report->problems.size(),
             report->problems.size() == 1 ? "" : "s", report->records);
  for (const auto& p : report->problems) fmt::print("  {}\n", p);
  std::fflush(stdout);
  return fail(fmt::format("audit verification failed ({} problem{})", report->problems.size(),
                          report->problems.size() == 1 ? "" : "s"));
}

int run_audit_list(const Args& args) {
  std::string error;
  auto from = int_option(args, "from", 1, 0, std::numeric_limits<std::int64_t>::max(), error);
  if (!from) return usage_error("audit list", error);
  auto limit = int_option(args, "limit", 100, 1, 10'000'000, error);
  if (!limit) return usage_error("audit list", error);
  int code = kExitOk;
  auto node = open_node(args, "audit list", code);
  if (!node) return code;
  auto records = node->broker().audit_records(*from, static_cast<std::size_t>(*limit));
  if (!records.ok()) return fail(records.status());
  for (const auto& r : *records) {
    fmt::print("{}\n", Json::object({{"seq", r.seq},
                                     {"at", format_rfc3339(r.at)},
                                     {"actor", r.actor},
                                     {"action", r.action},
                                     {"subject", r.subject},
                                     {"detail", r.detail},
                                     {"hash", r.hash}})
                           .dump());
  }
  return kExitOk;
}

}  // namespace civicbus::cli

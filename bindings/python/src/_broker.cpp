// civicbus.Broker (a node's broker), its events and consumer groups. Subscriber handlers are
// Python callables run on the node's worker threads with the GIL taken; a handler that raises
// fails that delivery (retried with backoff, dead-lettered after max_deliveries).
#include <fmt/format.h>

#include "civicbus/broker/broker.hpp"
#include "handles.hpp"

namespace civicbus::python {
namespace {

using broker::Broker;

// A running consumer group member. Closed (stopped) by stop(), by the node's close() or when
// the last Python reference goes.
class SubscriptionState final : public Closeable,
                                public std::enable_shared_from_this<SubscriptionState> {
 public:
  SubscriptionState(std::string group, std::shared_ptr<NodeState> node)
      : group_(std::move(group)), node_(std::move(node)) {}
  ~SubscriptionState() override {
    without_gil([this] { close(); });
  }
  void set(std::unique_ptr<broker::Subscription> sub) {
    std::lock_guard<std::mutex> lock(mu_);
    sub_ = std::move(sub);
  }
  void close() override {
    std::unique_ptr<broker::Subscription> sub;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sub = std::move(sub_);
    }
    if (sub) sub->stop();  // waits for running handlers (which take the GIL: we do not hold it)
  }
  bool active() {
    std::lock_guard<std::mutex> lock(mu_);
    return sub_ != nullptr;
  }
  const std::string& group() const { return group_; }

  // The subscription whose handler runs on this thread, if any: stopping it from there would
  // wait for itself.
  static thread_local const SubscriptionState* running_handler;

 private:
  std::string group_;
  std::shared_ptr<NodeState> node_;  // the broker must outlive the subscription
  std::mutex mu_;
  std::unique_ptr<broker::Subscription> sub_;
};
thread_local const SubscriptionState* SubscriptionState::running_handler = nullptr;

broker::StartFrom parse_start_from(std::string_view s) {
  if (s == "latest") return broker::StartFrom::kLatest;
  if (s == "earliest") return broker::StartFrom::kEarliest;
  throw StatusError(
      invalid_argument(fmt::format("start_from must be 'earliest' or 'latest', got '{}'", s)));
}

broker::DlqFilter dlq_filter(std::optional<std::int64_t> id, std::string group, std::string topic,
                             std::optional<SystemTime> dead_after,
                             std::optional<SystemTime> dead_before, std::string error_contains,
                             bool include_replayed, std::size_t limit) {
  broker::DlqFilter f;
  f.id = id;
  f.group = std::move(group);
  f.topic = std::move(topic);
  f.dead_after = dead_after;
  f.dead_before = dead_before;
  f.error_contains = std::move(error_contains);
  f.include_replayed = include_replayed;
  f.limit = limit;
  return f;
}

broker::TopicOptions topic_options(std::string name, std::string owner, std::string description,
                                   std::chrono::seconds retention, std::int64_t retention_bytes,
                                   std::string_view sensitivity,
                                   std::vector<std::string> pii_fields,
                                   std::string schema_subject) {
  broker::TopicOptions o;
  o.name = std::move(name);
  o.owner = std::move(owner);
  o.description = std::move(description);
  o.retention = retention;
  o.retention_bytes = retention_bytes;
  o.sensitivity = unwrap(broker::parse_sensitivity(sensitivity));
  o.pii_fields = std::move(pii_fields);
  o.schema_subject = std::move(schema_subject);
  return o;
}

#define CIVICBUS_TOPIC_ARGS                                                               \
  py::arg("name"), py::arg("owner"), py::kw_only(),                                       \
      py::arg("description") = "",                                                        \
      py::arg("retention") = std::chrono::seconds(std::chrono::hours(24 * 7)),            \
      py::arg("retention_bytes") = 0, py::arg("sensitivity") = "internal",                \
      py::arg("pii_fields") = std::vector<std::string>{}, py::arg("schema_subject") = "", \
      py::arg("actor") = "system"

#define CIVICBUS_DLQ_ARGS                                                                  \
  py::kw_only(), py::arg("id") = py::none(), py::arg("group") = "", py::arg("topic") = "", \
                 py::arg("dead_after") = py::none(), py::arg("dead_before") = py::none(),  \
                 py::arg("error_contains") = "", py::arg("include_replayed") = false,      \
                 py::arg("limit") = 1000

void bind_values(py::module_& m) {
  py::class_<broker::DeliveredEvent>(m, "Event",
                                     "An event as a consumer sees it (PII fields decrypted for "
                                     "groups holding a grant, \"[redacted]\" otherwise).")
      .def_readonly("offset", &broker::DeliveredEvent::offset, "The event's offset in the log.")
      .def_readonly("topic", &broker::DeliveredEvent::topic, "The topic (the event's type).")
      .def_readonly("attempt", &broker::DeliveredEvent::attempt, "1 on first delivery.")
      .def_readonly("stored_at", &broker::DeliveredEvent::stored_at,
                    "When the log stored it (UTC).")
      .def_readonly("replay", &broker::DeliveredEvent::replay,
                    "True when delivered again from the DLQ.")
      .def_property_readonly(
          "id", [](const broker::DeliveredEvent& e) { return e.event.id(); }, "The event id.")
      .def_property_readonly(
          "type", [](const broker::DeliveredEvent& e) { return e.event.type(); },
          "The CloudEvents type.")
      .def_property_readonly(
          "source", [](const broker::DeliveredEvent& e) { return e.event.source(); },
          "The CloudEvents source.")
      .def_property_readonly(
          "subject", [](const broker::DeliveredEvent& e) { return e.event.subject(); },
          "The CloudEvents subject (\"\" when absent).")
      .def_property_readonly(
          "time", [](const broker::DeliveredEvent& e) { return e.event.time(); },
          "The CloudEvents time (RFC 3339 text).")
      .def_property_readonly(
          "partition_key", [](const broker::DeliveredEvent& e) { return e.event.partition_key(); },
          "The ordering key: the partitionkey extension, else the subject.")
      .def_property_readonly(
          "data", [](const broker::DeliveredEvent& e) { return to_py(e.event.data()); },
          "The event's data (dict, list, str, number, bool or None).")
      .def_property_readonly(
          "document", [](const broker::DeliveredEvent& e) { return to_py(e.event.document()); },
          "The whole structured-mode CloudEvent as a dict.")
      .def("__repr__", [](const broker::DeliveredEvent& e) {
        return fmt::format("<civicbus.Event {} offset={} id={}>", e.topic, e.offset, e.event.id());
      });

  py::class_<broker::PublishAck>(m, "PublishAck",
                                 "What publish() answers once the event is durable.")
      .def_readonly("offset", &broker::PublishAck::offset, "The event's offset.")
      .def_readonly("duplicate", &broker::PublishAck::duplicate,
                    "True when the same source and id was published within the dedup window "
                    "(nothing new stored).")
      .def_readonly("id", &broker::PublishAck::id, "The event id (generated when none was given).")
      .def("__repr__", [](const broker::PublishAck& a) {
        return fmt::format("<civicbus.PublishAck offset={} id={}{}>", a.offset, a.id,
                           a.duplicate ? " duplicate" : "");
      });

  py::class_<broker::TopicInfo>(m, "TopicInfo", "A topic's settings and what it stores now.")
      .def_property_readonly(
          "name", [](const broker::TopicInfo& t) { return t.options.name; }, "The topic name.")
      .def_property_readonly(
          "owner", [](const broker::TopicInfo& t) { return t.options.owner; },
          "Who answers for the topic.")
      .def_property_readonly(
          "description", [](const broker::TopicInfo& t) { return t.options.description; },
          "What the topic carries.")
      .def_property_readonly(
          "retention", [](const broker::TopicInfo& t) { return t.options.retention; },
          "How long events are kept (timedelta; 0: forever).")
      .def_property_readonly(
          "retention_bytes", [](const broker::TopicInfo& t) { return t.options.retention_bytes; },
          "Size bound (0: none).")
      .def_property_readonly(
          "sensitivity",
          [](const broker::TopicInfo& t) { return std::string(to_string(t.options.sensitivity)); },
          "\"public\", \"internal\", \"confidential\" or \"restricted\".")
      .def_property_readonly(
          "pii_fields", [](const broker::TopicInfo& t) { return t.options.pii_fields; },
          "JSON pointers of the data's encrypted fields.")
      .def_property_readonly(
          "schema_subject", [](const broker::TopicInfo& t) { return t.options.schema_subject; },
          "The schema subject the data must satisfy (\"\" when none).")
      .def_readonly("created_at", &broker::TopicInfo::created_at, "When it was created (UTC).")
      .def_readonly("records", &broker::TopicInfo::records, "Events stored now.")
      .def_readonly("bytes", &broker::TopicInfo::bytes, "Bytes stored now.")
      .def("__repr__", [](const broker::TopicInfo& t) {
        return fmt::format("<civicbus.TopicInfo {} records={}>", t.options.name, t.records);
      });

  py::class_<broker::GroupInfo>(m, "GroupInfo", "A consumer group's position and backlog.")
      .def_readonly("group", &broker::GroupInfo::group, "The group name.")
      .def_readonly("topics", &broker::GroupInfo::topics, "Its topic patterns.")
      .def_readonly("committed_offset", &broker::GroupInfo::committed_offset,
                    "Every matching event at or below is done.")
      .def_readonly("lag_events", &broker::GroupInfo::lag_events,
                    "Matching events above the committed offset.")
      .def_readonly("oldest_unacked_age", &broker::GroupInfo::oldest_unacked_age,
                    "Age of the oldest unacknowledged event (timedelta).")
      .def_readonly("dlq_events", &broker::GroupInfo::dlq_events, "Events in its DLQ.")
      .def_readonly("active", &broker::GroupInfo::active, "True while a member runs.");

  py::class_<broker::SchemaVersion>(m, "SchemaVersion", "One version of a schema subject.")
      .def_readonly("subject", &broker::SchemaVersion::subject, "The subject.")
      .def_readonly("version", &broker::SchemaVersion::version, "1, 2, ...")
      .def_readonly("schema", &broker::SchemaVersion::schema, "The JSON Schema (dict).")
      .def_property_readonly(
          "state", [](const broker::SchemaVersion& v) { return std::string(to_string(v.state)); },
          "\"proposed\", \"active\" or \"superseded\".")
      .def_readonly("created_at", &broker::SchemaVersion::created_at, "When registered (UTC).")
      .def_readonly("activated_at", &broker::SchemaVersion::activated_at,
                    "When it became active, or None.")
      .def_readonly("acknowledged_by", &broker::SchemaVersion::acknowledged_by,
                    "Consumer groups that acknowledged it.")
      .def_readonly("waiting_for", &broker::SchemaVersion::waiting_for,
                    "Groups yet to acknowledge it.");

  py::class_<broker::DeadLetter>(m, "DeadLetter",
                                 "An event a consumer group gave up on after max_deliveries.")
      .def_readonly("id", &broker::DeadLetter::id, "The dead letter's id.")
      .def_readonly("group", &broker::DeadLetter::group, "The consumer group.")
      .def_readonly("topic", &broker::DeadLetter::topic, "The event's topic.")
      .def_readonly("offset", &broker::DeadLetter::offset, "The event's offset.")
      .def_readonly("event_id", &broker::DeadLetter::event_id, "The event id.")
      .def_readonly("source", &broker::DeadLetter::source, "The event source.")
      .def_readonly("payload", &broker::DeadLetter::payload,
                    "The stored event as JSON text (PII still encrypted).")
      .def_readonly("error", &broker::DeadLetter::error, "The last handler error.")
      .def_readonly("attempts", &broker::DeadLetter::attempts, "Deliveries tried.")
      .def_readonly("first_failed_at", &broker::DeadLetter::first_failed_at,
                    "When the first attempt failed (UTC).")
      .def_readonly("dead_at", &broker::DeadLetter::dead_at, "When it moved to the DLQ (UTC).")
      .def_readonly("replay_requested_at", &broker::DeadLetter::replay_requested_at,
                    "When a replay was asked for, or None.")
      .def_readonly("replayed_at", &broker::DeadLetter::replayed_at,
                    "When it was delivered again, or None.")
      .def("__repr__", [](const broker::DeadLetter& d) {
        return fmt::format("<civicbus.DeadLetter {} group={} topic={} error={}>", d.id, d.group,
                           d.topic, d.error);
      });

  py::class_<broker::AuditRecord>(m, "AuditRecord", "One entry of the hash-chained audit log.")
      .def_readonly("seq", &broker::AuditRecord::seq, "Sequence number.")
      .def_readonly("at", &broker::AuditRecord::at, "When (UTC).")
      .def_readonly("actor", &broker::AuditRecord::actor, "Who.")
      .def_readonly("action", &broker::AuditRecord::action,
                    "\"topic.created\", \"event.published\", \"dlq.moved\", ...")
      .def_readonly("subject", &broker::AuditRecord::subject, "What it acted on.")
      .def_readonly("detail", &broker::AuditRecord::detail, "Details (dict).")
      .def_readonly("hash", &broker::AuditRecord::hash, "The chain hash (hex).");

  py::class_<broker::AuditReport>(m, "AuditReport", "The result of verify_audit().")
      .def_readonly("records", &broker::AuditReport::records, "Records checked.")
      .def_readonly("intact", &broker::AuditReport::intact, "True when the chain holds.")
      .def_readonly("problems", &broker::AuditReport::problems,
                    "Each names the record and what is wrong.");
}

void bind_subscription(py::module_& m) {
  py::class_<SubscriptionState, std::shared_ptr<SubscriptionState>>(
      m, "Subscription",
      "A running consumer group member. stop() (or leaving a `with` block) stops fetching, "
      "waits for running handlers and commits the group's offset.")
      .def_property_readonly("group", &SubscriptionState::group, "The consumer group.")
      .def_property_readonly(
          "active", [](SubscriptionState& s) { return s.active(); },
          "True until stopped (or its node closed).")
      .def(
          "stop",
          [](const std::shared_ptr<SubscriptionState>& s) {
            if (SubscriptionState::running_handler == s.get()) {
              throw StatusError(failed_precondition(fmt::format(
                  "subscription of group '{}' cannot be stopped from inside its own handler",
                  s->group())));
            }
            without_gil([&] { s->close(); });
          },
          "Stops the member (idempotent). Must not be called from its own handler.")
      .def(
          "__enter__", [](const std::shared_ptr<SubscriptionState>& s) { return s; },
          "Returns the subscription.")
      .def(
          "__exit__",
          [](const std::shared_ptr<SubscriptionState>& s, const py::object&, const py::object&,
             const py::object&) { without_gil([&] { s->close(); }); },
          py::arg("exc_type"), py::arg("exc"), py::arg("traceback"), "Stops the member.")
      .def("__repr__", [](const std::shared_ptr<SubscriptionState>& s) {
        return fmt::format("<civicbus.Subscription group={}{}>", s->group(),
                           s->active() ? "" : " (stopped)");
      });
}

std::shared_ptr<SubscriptionState> subscribe(
    const BrokerRef& self, std::string group, const py::object& topics, const py::object& handler,
    int max_deliveries, std::chrono::milliseconds initial_backoff,
    std::chrono::milliseconds max_backoff, double backoff_multiplier, int parallelism,
    std::size_t max_in_flight, std::string_view start_from) {
  if (!PyCallable_Check(handler.ptr())) throw py::type_error("handler must be callable");
  broker::ConsumerGroupOptions o;
  o.group = group;
  if (py::isinstance<py::str>(topics)) {
    o.topics = {topics.cast<std::string>()};
  } else {
    o.topics = topics.cast<std::vector<std::string>>();
  }
  o.max_deliveries = max_deliveries;
  o.initial_backoff = initial_backoff;
  o.max_backoff = max_backoff;
  o.backoff_multiplier = backoff_multiplier;
  o.parallelism = parallelism;
  o.max_in_flight = max_in_flight;
  o.start_from = parse_start_from(start_from);

  auto state = std::make_shared<SubscriptionState>(group, self.node);
  const std::string context = fmt::format("the handler of consumer group '{}'", group);
  broker::Handler h = [fn = share(handler), context,
                       raw = state.get()](const broker::DeliveredEvent& event) -> Status {
    return call_python(context, [&] {
      const SubscriptionState* previous = SubscriptionState::running_handler;
      SubscriptionState::running_handler = raw;
      try {
        (*fn)(py::cast(broker::DeliveredEvent(event)));
      } catch (...) {
        SubscriptionState::running_handler = previous;
        throw;
      }
      SubscriptionState::running_handler = previous;
    });
  };
  auto sub = self.with([&](Broker& b) { return b.subscribe(std::move(o), std::move(h)); });
  state->set(unwrap(std::move(sub)));
  self.node->add_dependent(state);
  return state;
}

}  // namespace

void init_broker(py::module_& m) {
  bind_values(m);
  bind_subscription(m);

  m.def("topic_matches", &broker::topic_matches, py::arg("pattern"), py::arg("topic"),
        "True when a dotted topic matches a NATS-style pattern (\"*\" one token, \">\" the "
        "rest).");
  m.def(
      "validate_topic_name",
      [](std::string_view name) { check(broker::validate_topic_name(name)); }, py::arg("name"),
      "Raises InvalidArgument unless `name` is a valid topic name (tokens of [a-z0-9_-] "
      "separated by dots).");

  py::class_<BrokerRef>(m, "Broker", R"doc(
A node's broker (Node.broker): topics, publishing, consumer groups, the schema registry, the
dead-letter queue, PII grants and the audit log. Every call that waits for storage releases
the GIL.
)doc")
      .def(
          "create_topic",
          [](const BrokerRef& self, std::string name, std::string owner, std::string description,
             std::chrono::seconds retention, std::int64_t retention_bytes,
             std::string_view sensitivity, std::vector<std::string> pii_fields,
             std::string schema_subject, std::string actor) {
            broker::TopicOptions o = topic_options(
                std::move(name), std::move(owner), std::move(description), retention,
                retention_bytes, sensitivity, std::move(pii_fields), std::move(schema_subject));
            check(self.with([&](Broker& b) { return b.create_topic(o, actor); }));
          },
          CIVICBUS_TOPIC_ARGS,
          "Creates a topic (a no-op when it exists with the same settings; AlreadyExists when "
          "the settings differ). `retention` is a timedelta or seconds (0: forever).")
      .def(
          "update_topic",
          [](const BrokerRef& self, std::string name, std::string owner, std::string description,
             std::chrono::seconds retention, std::int64_t retention_bytes,
             std::string_view sensitivity, std::vector<std::string> pii_fields,
             std::string schema_subject, std::string actor) {
            broker::TopicOptions o = topic_options(
                std::move(name), std::move(owner), std::move(description), retention,
                retention_bytes, sensitivity, std::move(pii_fields), std::move(schema_subject));
            check(self.with([&](Broker& b) { return b.update_topic(o, actor); }));
          },
          CIVICBUS_TOPIC_ARGS, "Changes an existing topic's settings (recorded in the audit log).")
      .def(
          "topic",
          [](const BrokerRef& self, std::string_view name) {
            return unwrap(self.with([&](Broker& b) { return b.topic(name); }));
          },
          py::arg("name"), "A topic's settings and counts; raises NotFound.")
      .def(
          "topics",
          [](const BrokerRef& self) { return self.with([](Broker& b) { return b.topics(); }); },
          "Every topic.")
      .def(
          "publish",
          [](const BrokerRef& self, std::string type, const py::object& data, std::string source,
             std::optional<std::string> id, std::optional<std::string> subject,
             std::optional<std::string> partition_key, const py::object& time,
             const py::object& extensions) {
            broker::CloudEvent event(std::move(type), std::move(source), json_from_python(data));
            if (id) event.set_id(std::move(*id));
            if (subject) event.set_subject(std::move(*subject));
            if (partition_key) event.set_partition_key(std::move(*partition_key));
            if (!time.is_none()) {
              event.set_time(py::isinstance<py::str>(time)
                                 ? time.cast<std::string>()
                                 : format_rfc3339(time_from_python(time)));
            }
            if (!extensions.is_none()) {
              Json ext = json_from_python(extensions);
              if (!ext.is_object()) throw py::type_error("extensions must be a dict");
              for (auto& [name, value] : ext.as_object()) event.set_attribute(name, value);
            }
            return unwrap(self.with([&](Broker& b) { return b.publish(std::move(event)); }));
          },
          py::arg("type"), py::arg("data") = py::none(), py::kw_only(),
          py::arg("source") = "civicbus://python", py::arg("id") = py::none(),
          py::arg("subject") = py::none(), py::arg("partition_key") = py::none(),
          py::arg("time") = py::none(), py::arg("extensions") = py::none(),
          "Publishes an event of `type` (its topic) carrying `data` and returns once it is "
          "durable. Refused with nothing stored (InvalidArgument, NotFound...) for an unknown "
          "topic, an invalid event, an oversized one or data failing the topic's schema. "
          "`time` is a datetime or RFC 3339 text; `extensions` a dict of extension attributes.")
      .def(
          "publish_event",
          [](const BrokerRef& self, const py::object& document) {
            broker::CloudEvent event =
                unwrap(broker::CloudEvent::from_json(json_from_python(document)));
            return unwrap(self.with([&](Broker& b) { return b.publish(std::move(event)); }));
          },
          py::arg("event"),
          "Publishes a structured-mode CloudEvent given as a dict (type, source, id, data...).")
      .def("subscribe", &subscribe, py::arg("group"), py::arg("topics"), py::arg("handler"),
           py::kw_only(), py::arg("max_deliveries") = 5,
           py::arg("initial_backoff") = std::chrono::milliseconds(200),
           py::arg("max_backoff") = std::chrono::milliseconds(60'000),
           py::arg("backoff_multiplier") = 2.0, py::arg("parallelism") = 1,
           py::arg("max_in_flight") = 1024, py::arg("start_from") = "latest",
           R"doc(Joins consumer group `group` on `topics` (a pattern or a list: "permit.*",
"property.>", exact names) and calls handler(event) for each event, on the node's worker
threads (with the GIL). Returning acknowledges the event; raising fails this delivery: it is
retried with backoff and moved to the DLQ after `max_deliveries` (the DLQ entry's error names
the exception; a civicbus.Error keeps its code). A new group starts at the `start_from` end
("latest" or "earliest"). Returns the Subscription; keep it (it stops when dropped).)doc")
      .def(
          "groups",
          [](const BrokerRef& self) {
            return unwrap(self.with([](Broker& b) { return b.groups(); }));
          },
          "Every consumer group with its offsets and lag.")
      .def(
          "seek_group",
          [](const BrokerRef& self, std::string_view group, const py::object& position) {
            if (PyLong_Check(position.ptr())) {
              const std::int64_t offset = position.cast<std::int64_t>();
              check(self.with([&](Broker& b) { return b.seek_group(group, offset); }));
            } else {
              const SystemTime t = time_from_python(position);
              check(self.with([&](Broker& b) { return b.seek_group_to_time(group, t); }));
            }
          },
          py::arg("group"), py::arg("position"),
          "Moves an inactive group so that its next delivery is the first matching event at or "
          "after `position`: an offset (int) or a time (datetime).")
      .def(
          "read",
          [](const BrokerRef& self, std::string_view pattern, std::int64_t from_offset,
             std::size_t limit) {
            return unwrap(
                self.with([&](Broker& b) { return b.read(pattern, from_offset, limit); }));
          },
          py::arg("pattern"), py::arg("from_offset") = 0, py::arg("limit") = 100,
          "Stored events of topics matching `pattern` from `from_offset`, PII redacted.")
      .def(
          "set_compatibility",
          [](const BrokerRef& self, std::string_view subject, std::string_view mode,
             std::string_view actor) {
            SchemaCompatibility c = unwrap(parse_schema_compatibility(mode));
            check(self.with([&](Broker& b) { return b.set_compatibility(subject, c, actor); }));
          },
          py::arg("subject"), py::arg("mode"), py::kw_only(), py::arg("actor") = "system",
          "Sets a subject's compatibility mode: BACKWARD, FORWARD, FULL, NONE or a *_TRANSITIVE "
          "one.")
      .def(
          "register_schema",
          [](const BrokerRef& self, std::string_view subject, const Json& schema,
             std::string_view actor) {
            return unwrap(
                self.with([&](Broker& b) { return b.register_schema(subject, schema, actor); }));
          },
          py::arg("subject"), py::arg("schema"), py::kw_only(), py::arg("actor") = "system",
          "Registers a JSON Schema (dict) for `subject`: active at once for a new subject, "
          "proposed (after the compatibility check) otherwise.")
      .def(
          "acknowledge_schema",
          [](const BrokerRef& self, std::string_view subject, int version, std::string_view group) {
            return unwrap(self.with(
                [&](Broker& b) { return b.acknowledge_schema(subject, version, group); }));
          },
          py::arg("subject"), py::arg("version"), py::arg("group"),
          "A consumer group accepts a proposed version.")
      .def(
          "activate_schema",
          [](const BrokerRef& self, std::string_view subject, int version, std::string_view actor) {
            return unwrap(
                self.with([&](Broker& b) { return b.activate_schema(subject, version, actor); }));
          },
          py::arg("subject"), py::arg("version"), py::arg("actor"),
          "Owner override: activates a version (`actor` must own a topic of the subject).")
      .def(
          "schema_versions",
          [](const BrokerRef& self, std::string_view subject) {
            return unwrap(self.with([&](Broker& b) { return b.schema_versions(subject); }));
          },
          py::arg("subject"), "Every version of a subject.")
      .def(
          "dead_letters",
          [](const BrokerRef& self, std::optional<std::int64_t> id, std::string group,
             std::string topic, std::optional<SystemTime> dead_after,
             std::optional<SystemTime> dead_before, std::string error_contains,
             bool include_replayed, std::size_t limit) {
            broker::DlqFilter f =
                dlq_filter(id, std::move(group), std::move(topic), dead_after, dead_before,
                           std::move(error_contains), include_replayed, limit);
            return unwrap(self.with([&](Broker& b) { return b.dead_letters(f); }));
          },
          CIVICBUS_DLQ_ARGS,
          "Dead letters matching the filter (empty strings: any group or topic).")
      .def(
          "replay_dead_letters",
          [](const BrokerRef& self, std::optional<std::int64_t> id, std::string group,
             std::string topic, std::optional<SystemTime> dead_after,
             std::optional<SystemTime> dead_before, std::string error_contains,
             bool include_replayed, std::size_t limit, std::string actor) {
            broker::DlqFilter f =
                dlq_filter(id, std::move(group), std::move(topic), dead_after, dead_before,
                           std::move(error_contains), include_replayed, limit);
            return unwrap(self.with([&](Broker& b) { return b.replay_dead_letters(f, actor); }));
          },
          CIVICBUS_DLQ_ARGS, py::arg("actor") = "system",
          "Queues the matching dead letters for redelivery to their group; returns how many.")
      .def(
          "grant_pii",
          [](const BrokerRef& self, std::string_view topic, std::string_view group,
             std::string_view actor) {
            check(self.with([&](Broker& b) { return b.grant_pii(topic, group, actor); }));
          },
          py::arg("topic"), py::arg("group"), py::kw_only(), py::arg("actor") = "system",
          "Lets a consumer group see the topic's PII fields in clear.")
      .def(
          "revoke_pii",
          [](const BrokerRef& self, std::string_view topic, std::string_view group,
             std::string_view actor) {
            check(self.with([&](Broker& b) { return b.revoke_pii(topic, group, actor); }));
          },
          py::arg("topic"), py::arg("group"), py::kw_only(), py::arg("actor") = "system",
          "Withdraws a PII grant.")
      .def(
          "shred_pii",
          [](const BrokerRef& self, std::string_view topic, std::string_view actor) {
            check(self.with([&](Broker& b) { return b.shred_pii(topic, actor); }));
          },
          py::arg("topic"), py::kw_only(), py::arg("actor") = "system",
          "Deletes the topic's PII key: every PII value stored so far becomes unreadable.")
      .def(
          "audit_records",
          [](const BrokerRef& self, std::int64_t from_seq, std::size_t limit) {
            return unwrap(self.with([&](Broker& b) { return b.audit_records(from_seq, limit); }));
          },
          py::arg("from_seq") = 0, py::arg("limit") = 100, "Audit log entries from `from_seq`.")
      .def(
          "verify_audit",
          [](const BrokerRef& self) {
            return unwrap(self.with([](Broker& b) { return b.verify_audit(); }));
          },
          "Checks the audit chain.")
      .def(
          "asyncapi",
          [](const BrokerRef& self) { return self.with([](Broker& b) { return b.asyncapi(); }); },
          "The AsyncAPI 3.0 document of every topic (dict).")
      .def(
          "run_maintenance",
          [](const BrokerRef& self) {
            check(self.with([](Broker& b) { return b.run_maintenance(); }));
          },
          "Runs retention, DLQ expiry and lag gauges now.");
}

}  // namespace civicbus::python

// civicbus.GoldenRecordStore and civicbus.ReviewQueue: the match area's stores, on a node's
// database (golden-record events then go to its broker) or on an SQLite file of their own.
#include <fmt/format.h>

#include "civicbus/match/golden.hpp"
#include "civicbus/match/review.hpp"
#include "civicbus/storage/database.hpp"
#include "handles.hpp"

namespace civicbus::python {
namespace {

using namespace civicbus::match;

// A store on a node (its database and broker) or on an SQLite file it opened.
template <typename Store>
class StoreState final : public Lifetime {
 public:
  StoreState(std::string what, std::shared_ptr<NodeState> node)
      : Lifetime(std::move(what)), node_(std::move(node)) {}
  ~StoreState() override { close_from_destructor(); }
  Store* get() { return store_.get(); }
  void set(std::unique_ptr<storage::Database> db, std::unique_ptr<Store> store) {
    db_ = std::move(db);
    store_ = std::move(store);
  }

 protected:
  void destroy() override {
    store_.reset();
    db_.reset();
  }

 private:
  std::shared_ptr<NodeState> node_;
  std::unique_ptr<storage::Database> db_;  // null on a node
  std::unique_ptr<Store> store_;
};

template <typename Store>
struct StoreRef {
  std::shared_ptr<StoreState<Store>> state;
  template <typename Body>
  auto with(Body&& body) const {
    std::shared_ptr<Lifetime> life = state;
    std::function<Store*()> get = [s = state.get()] { return s->get(); };
    return use_without_gil<Store>(life, get, std::forward<Body>(body));
  }
};
using GoldenRef = StoreRef<GoldenRecordStore>;
using ReviewRef = StoreRef<ReviewQueue>;

// Opens `open(db, broker)` on the node's database, or on an SQLite file at `path`.
template <typename Store>
StoreRef<Store> open_store(
    std::string what, const std::shared_ptr<NodeState>& node,
    const std::optional<std::string>& path,
    const std::function<Result<std::unique_ptr<Store>>(storage::Database&, broker::Broker*)>&
        open) {
  if ((node == nullptr) == !path.has_value()) {
    throw StatusError(
        invalid_argument(fmt::format("open the {} with node= or path=, not both "
                                     "or neither",
                                     what)));
  }
  auto state = std::make_shared<StoreState<Store>>(what, node);
  if (node) {
    std::function<Node*()> get = [n = node.get()] { return &n->node(); };
    auto store =
        use_without_gil<Node>(node, get, [&](Node& n) { return open(n.database(), &n.broker()); });
    state->set(nullptr, unwrap(std::move(store)));
    node->add_dependent(state);
  } else {
    py::gil_scoped_release nogil;
    storage::SqliteOptions o;
    o.path = *path;
    std::unique_ptr<storage::Database> db = unwrap(storage::open_sqlite(o));
    auto store = unwrap(open(*db, nullptr));
    state->set(std::move(db), std::move(store));
  }
  state->register_for_exit();
  return StoreRef<Store>{state};
}

SourceRecord source_record(const py::handle& item) {
  if (py::isinstance<SourceRecord>(item)) return item.cast<SourceRecord>();
  py::dict d = item.cast<py::dict>();
  SourceRecord r;
  r.source = d["source"].cast<std::string>();
  r.record_id = d["record_id"].cast<std::string>();
  if (d.contains("updated_at") && !d["updated_at"].is_none()) {
    r.updated_at = time_from_python(d["updated_at"]);
  }
  r.fields = d.contains("fields") ? json_from_python(d["fields"]) : Json::object();
  return r;
}

std::map<std::string, CustomSurvivorship> survivorship_functions(const py::object& functions) {
  std::map<std::string, CustomSurvivorship> out;
  if (functions.is_none()) return out;
  for (auto item : functions.cast<py::dict>()) {
    const std::string name = item.first.cast<std::string>();
    PyHandle fn = share(py::reinterpret_borrow<py::object>(item.second));
    out[name] =
        [fn, name](
            std::string_view attribute,
            std::span<const SurvivorCandidate> candidates) -> Result<std::optional<std::size_t>> {
      std::optional<std::size_t> chosen;
      Status s = call_python(fmt::format("survivorship function '{}'", name), [&] {
        std::vector<SurvivorCandidate> list(candidates.begin(), candidates.end());
        py::object r = (*fn)(std::string(attribute), list);
        if (!r.is_none()) {
          const auto index = r.cast<std::size_t>();
          if (index >= list.size()) {
            throw StatusError(out_of_range(
                fmt::format("survivorship function '{}' chose candidate {} of {} for '{}'", name,
                            index, list.size(), attribute)));
          }
          chosen = index;
        }
      });
      if (!s.ok()) return s;
      return chosen;
    };
  }
  return out;
}

py::tuple member_tuple(const MemberRef& m) {
  return py::make_tuple(m.source, m.record_id);
}

void bind_golden_types(py::module_& m) {
  py::class_<SourceRecord>(m, "SourceRecord", "One record of one source system about an entity.")
      .def(py::init([](std::string source, std::string record_id, const Json& fields,
                       std::optional<SystemTime> updated_at) {
             return SourceRecord{std::move(source), std::move(record_id), updated_at, fields};
           }),
           py::arg("source"), py::arg("record_id"), py::arg("fields"), py::kw_only(),
           py::arg("updated_at") = py::none(),
           "A record: its source system, its id there, its attributes (dict) and when the "
           "source last changed it.")
      .def_readonly("source", &SourceRecord::source, "The system (\"mpac\", \"tax\").")
      .def_readonly("record_id", &SourceRecord::record_id, "The record's id in that system.")
      .def_readonly("updated_at", &SourceRecord::updated_at, "When the source changed it, or None.")
      .def_readonly("fields", &SourceRecord::fields, "Attribute name → value (dict).");

  py::class_<SurvivorCandidate>(m, "SurvivorCandidate",
                                "A candidate value of an attribute with its provenance (for "
                                "custom survivorship functions).")
      .def_readonly("value", &SurvivorCandidate::value, "The value.")
      .def_readonly("source", &SurvivorCandidate::source, "Its source.")
      .def_readonly("record_id", &SurvivorCandidate::record_id, "Its record.")
      .def_readonly("updated_at", &SurvivorCandidate::updated_at, "When its record changed.");

  py::class_<AttributeValue>(m, "AttributeValue", "A surviving value and where it came from.")
      .def_readonly("value", &AttributeValue::value, "The value.")
      .def_readonly("source", &AttributeValue::source, "Its source.")
      .def_readonly("record_id", &AttributeValue::record_id, "Its record.")
      .def_readonly("updated_at", &AttributeValue::updated_at, "When its record changed.");

  py::class_<GoldenRecord>(m, "GoldenRecord", "The best view of an entity, attribute by attribute.")
      .def_readonly("entity_id", &GoldenRecord::entity_id, "The entity.")
      .def_readonly("kind", &GoldenRecord::kind, "\"property\", \"person\"...")
      .def_readonly("version", &GoldenRecord::version, "1 for the first version.")
      .def_readonly("updated_at", &GoldenRecord::updated_at, "When this version was stored.")
      .def_readonly("attributes", &GoldenRecord::attributes,
                    "Attribute → AttributeValue (only attributes with a value).")
      .def_property_readonly(
          "members",
          [](const GoldenRecord& g) {
            py::list out;
            for (const auto& x : g.members) out.append(member_tuple(x));
            return out;
          },
          "Member records as (source, record_id).")
      .def("values", &GoldenRecord::values, "The values alone (dict).");

  py::class_<AttributeChange>(m, "AttributeChange", "One attribute changed by apply().")
      .def_readonly("attribute", &AttributeChange::attribute, "The attribute.")
      .def_readonly("old_value", &AttributeChange::old_value, "Before (None when absent).")
      .def_readonly("new_value", &AttributeChange::new_value, "After (None when absent).")
      .def_readonly("source", &AttributeChange::source, "Provenance of the new value.")
      .def_readonly("record_id", &AttributeChange::record_id, "Its record.");

  py::class_<GoldenRecordChange>(m, "GoldenRecordChange", "What one apply() changed.")
      .def_readonly("entity_id", &GoldenRecordChange::entity_id, "The entity.")
      .def_readonly("version", &GoldenRecordChange::version, "The version after apply().")
      .def_readonly("created", &GoldenRecordChange::created, "True when it created the record.")
      .def_readonly("changed", &GoldenRecordChange::changed, "Changed attributes.")
      .def_property_readonly(
          "members_added",
          [](const GoldenRecordChange& c) {
            py::list out;
            for (const auto& x : c.members_added) out.append(member_tuple(x));
            return out;
          },
          "Records that joined, as (source, record_id).")
      .def_readonly("events", &GoldenRecordChange::events, "Event types published.")
      .def_property_readonly("empty", &GoldenRecordChange::empty, "True when nothing changed.");
}

void bind_golden(py::module_& m) {
  py::class_<GoldenRef>(m, "GoldenRecordStore", R"doc(
Golden records built from source records by survivorship rules, with provenance per attribute,
on a node (its database; changes published on its broker) or on an SQLite file of its own
(path=...; nothing published). ``options`` is the documented dict ({"kind", "default",
"attributes", "domain_events", ...}); ``functions`` names the Python functions of "custom"
rules: function(attribute, candidates) -> index of the surviving candidate, or None.
)doc")
      .def(py::init([](const py::object& options, const std::shared_ptr<NodeState>& node,
                       const std::optional<std::string>& path, const py::object& functions) {
             GoldenRecordOptions o = unwrap(GoldenRecordOptions::from_json(
                 json_from_python(options), survivorship_functions(functions)));
             return open_store<GoldenRecordStore>("golden record store", node, path,
                                                  [&o](storage::Database& db, broker::Broker* b) {
                                                    return GoldenRecordStore::open(db, b, o);
                                                  });
           }),
           py::arg("options"), py::kw_only(), py::arg("node") = py::none(),
           py::arg("path") = py::none(), py::arg("functions") = py::none(),
           "Opens (and migrates) the store.")
      .def(
          "apply",
          [](const GoldenRef& self, std::string_view entity_id, const py::iterable& records) {
            std::vector<SourceRecord> list;
            for (auto r : records) list.push_back(source_record(r));
            return unwrap(self.with(
                [&](GoldenRecordStore& s) { return s.apply(entity_id, std::move(list)); }));
          },
          py::arg("entity_id"), py::arg("records"),
          "Merges source records (SourceRecord or dicts {source, record_id, fields, "
          "updated_at}) into the entity, recomputes its attributes and publishes the change.")
      .def(
          "get",
          [](const GoldenRef& self, std::string_view entity_id) {
            return unwrap(self.with([&](GoldenRecordStore& s) { return s.get(entity_id); }));
          },
          py::arg("entity_id"), "The golden record; raises NotFound.")
      .def(
          "entity_of",
          [](const GoldenRef& self, std::string_view source, std::string_view record_id) {
            return unwrap(
                self.with([&](GoldenRecordStore& s) { return s.entity_of(source, record_id); }));
          },
          py::arg("source"), py::arg("record_id"),
          "The entity a source record belongs to, or None.")
      .def(
          "list",
          [](const GoldenRef& self, std::size_t limit, std::string_view after) {
            return unwrap(self.with([&](GoldenRecordStore& s) { return s.list(limit, after); }));
          },
          py::arg("limit") = 100, py::kw_only(), py::arg("after") = "",
          "Golden records by entity id, after `after`.")
      .def(
          "members",
          [](const GoldenRef& self, std::string_view entity_id) {
            return unwrap(self.with([&](GoldenRecordStore& s) { return s.members(entity_id); }));
          },
          py::arg("entity_id"), "An entity's member records as stored.")
      .def(
          "publish_pending",
          [](const GoldenRef& self) {
            return unwrap(self.with([](GoldenRecordStore& s) { return s.publish_pending(); }));
          },
          "Publishes events left queued by earlier applies; returns how many.")
      .def(
          "pending_events",
          [](const GoldenRef& self) {
            return unwrap(self.with([](GoldenRecordStore& s) { return s.pending_events(); }));
          },
          "Events queued and not yet published.")
      .def(
          "close",
          [](const GoldenRef& self) {
            refuse_close_in_callback("golden record store");
            without_gil([&] { self.state->close(); });
          },
          "Closes the store (idempotent).");
}

void bind_review(py::module_& m) {
  py::class_<ReviewItem>(m, "ReviewItem", "A pair waiting for (or given) a clerk's decision.")
      .def(py::init([](std::string left_id, std::string right_id, double match_probability,
                       double match_weight, const Json& explanation) {
             ReviewItem item;
             item.left_id = std::move(left_id);
             item.right_id = std::move(right_id);
             item.match_probability = match_probability;
             item.match_weight = match_weight;
             item.explanation = explanation;
             return item;
           }),
           py::arg("left_id"), py::arg("right_id"), py::arg("match_probability"), py::kw_only(),
           py::arg("match_weight") = 0.0, py::arg("explanation") = py::none(),
           "An item to enqueue (explanation: PairExplanation.to_dict()).")
      .def_readonly("id", &ReviewItem::id, "Assigned by enqueue().")
      .def_readonly("left_id", &ReviewItem::left_id, "Left record id.")
      .def_readonly("right_id", &ReviewItem::right_id, "Right record id.")
      .def_readonly("match_probability", &ReviewItem::match_probability, "In [0, 1].")
      .def_readonly("match_weight", &ReviewItem::match_weight, "Weight.")
      .def_readonly("explanation", &ReviewItem::explanation, "What the clerk is shown (dict).")
      .def_property_readonly(
          "status", [](const ReviewItem& i) { return std::string(to_string(i.status)); },
          "\"pending\", \"accepted\" or \"rejected\".")
      .def_readonly("enqueued_at", &ReviewItem::enqueued_at, "When queued.")
      .def_readonly("decided_by", &ReviewItem::decided_by, "Who decided.")
      .def_readonly("decided_at", &ReviewItem::decided_at, "When, or None.")
      .def_readonly("reason", &ReviewItem::reason, "Why.");

  py::class_<EnqueueReport>(m, "EnqueueReport", "What enqueue() did.")
      .def_readonly("added", &EnqueueReport::added, "New pending items.")
      .def_readonly("updated", &EnqueueReport::updated, "Pending items re-scored.")
      .def_readonly("already_decided", &EnqueueReport::already_decided,
                    "Pairs decided before, left as decided.");

  py::class_<ReviewCounts>(m, "ReviewCounts", "Items by status.")
      .def_readonly("pending", &ReviewCounts::pending, "Pending.")
      .def_readonly("accepted", &ReviewCounts::accepted, "Accepted.")
      .def_readonly("rejected", &ReviewCounts::rejected, "Rejected.");

  py::class_<ReviewRef>(m, "ReviewQueue",
                        "The clerical review queue, on a node's database (node=...) or an "
                        "SQLite file (path=...). Decisions become training labels.")
      .def(py::init(
               [](const std::shared_ptr<NodeState>& node, const std::optional<std::string>& path) {
                 return open_store<ReviewQueue>(
                     "review queue", node, path,
                     [](storage::Database& db, broker::Broker*) { return ReviewQueue::open(db); });
               }),
           py::kw_only(), py::arg("node") = py::none(), py::arg("path") = py::none(),
           "Opens (and migrates) the queue.")
      .def(
          "enqueue",
          [](const ReviewRef& self, const std::vector<ReviewItem>& items) {
            return unwrap(self.with([&](ReviewQueue& q) { return q.enqueue(items); }));
          },
          py::arg("items"), "Queues pairs (one transaction); decided pairs are never reopened.")
      .def(
          "pending",
          [](const ReviewRef& self, std::size_t limit) {
            return unwrap(self.with([&](ReviewQueue& q) { return q.pending(limit); }));
          },
          py::arg("limit") = 100, "Pending items, most probable first.")
      .def(
          "get",
          [](const ReviewRef& self, std::int64_t id) {
            return unwrap(self.with([&](ReviewQueue& q) { return q.get(id); }));
          },
          py::arg("id"), "An item; raises NotFound.")
      .def(
          "decide",
          [](const ReviewRef& self, std::int64_t id, bool accept, std::string_view who,
             std::string_view reason) {
            return unwrap(
                self.with([&](ReviewQueue& q) { return q.decide(id, accept, who, reason); }));
          },
          py::arg("id"), py::arg("accept"), py::arg("who"), py::arg("reason") = "",
          "Records a clerk's decision; raises NotFound or FailedPrecondition (already decided).")
      .def(
          "labelled",
          [](const ReviewRef& self) {
            return unwrap(self.with([](ReviewQueue& q) { return q.labelled(); }));
          },
          "Every decided pair (training labels for MatchEngine.train_from_labels).")
      .def(
          "counts",
          [](const ReviewRef& self) {
            return unwrap(self.with([](ReviewQueue& q) { return q.counts(); }));
          },
          "Items by status.")
      .def(
          "close",
          [](const ReviewRef& self) {
            refuse_close_in_callback("review queue");
            without_gil([&] { self.state->close(); });
          },
          "Closes the queue (idempotent).");
}

}  // namespace

void init_golden(py::module_& m) {
  bind_golden_types(m);
  bind_golden(m);
  bind_review(m);
}

}  // namespace civicbus::python

// permit_events: the smallest useful civicbus module. A permits module publishes
// `permit.issued` events with a schema and one PII field; the tax module (granted the PII key)
// and an analytics job (not granted) consume them. Run it with no arguments; it uses a fresh
// data directory under /tmp and prints what happens. Exits non-zero if anything unexpected
// does.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "civicbus/node/node.hpp"

using namespace civicbus;

namespace {

int fail(const Status& st, const char* what) {
  std::fprintf(stderr, "permit_events: %s: %s\n", what, st.to_string().c_str());
  return 1;
}

}  // namespace

int main() {
  char dir_template[] = "/tmp/civicbus-permit-events-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return 1;
  const std::filesystem::path data_dir = dir_template;

  // 1. A node on embedded defaults: one SQLite file, in-process transport.
  NodeOptions options;
  options.data_dir = data_dir.string();
  options.generate_master_key = true;  // PII fields need one; kept in data_dir/master.key
  options.logging.level = LogLevel::kWarn;
  auto node = Node::create(options);
  if (!node.ok()) return fail(node.status(), "creating the node");
  broker::Broker& bus = (*node)->broker();

  // 2. The topic, its schema and its PII field.
  auto schema = Json::parse(R"({
    "type": "object",
    "required": ["permit_id", "roll_number", "applicant_email"],
    "properties": {
      "permit_id": {"type": "string", "pattern": "^BP-[0-9]{4}-[0-9]+$"},
      "roll_number": {"type": "string", "pattern": "^[0-9]{15}$"},
      "applicant_email": {"type": "string", "format": "email"},
      "value_cad": {"type": "number", "minimum": 0}
    }
  })");
  if (auto v = bus.register_schema("permit.issued", *schema, "permits"); !v.ok()) {
    return fail(v.status(), "registering the schema");
  }
  broker::TopicOptions topic;
  topic.name = "permit.issued";
  topic.owner = "permits";
  topic.description = "A building permit was issued";
  topic.sensitivity = broker::Sensitivity::kConfidential;
  topic.pii_fields = {"/applicant_email"};
  topic.schema_subject = "permit.issued";
  if (Status st = bus.create_topic(topic, "permits"); !st.ok())
    return fail(st, "creating the topic");
  if (Status st = bus.grant_pii("permit.issued", "tax", "permits"); !st.ok()) {
    return fail(st, "granting the tax module");
  }

  // 3. Two consumer groups. Handlers run on the node's worker threads.
  std::atomic<int> tax_seen{0}, analytics_seen{0}, clear_for_tax{0}, redacted_for_analytics{0};
  broker::ConsumerGroupOptions tax;
  tax.group = "tax";
  tax.topics = {"permit.>"};
  tax.start_from = broker::StartFrom::kEarliest;
  auto tax_sub = bus.subscribe(tax, [&](const broker::DeliveredEvent& e) {
    const std::string email = e.event.data().get_string("applicant_email");
    std::printf("  tax       offset %lld  %s  applicant %s\n", static_cast<long long>(e.offset),
                e.event.data().get_string("permit_id").c_str(), email.c_str());
    if (email.find('@') != std::string::npos) ++clear_for_tax;
    ++tax_seen;
    return Status();
  });
  if (!tax_sub.ok()) return fail(tax_sub.status(), "subscribing tax");
  broker::ConsumerGroupOptions analytics = tax;
  analytics.group = "analytics";
  auto analytics_sub = bus.subscribe(analytics, [&](const broker::DeliveredEvent& e) {
    const std::string email = e.event.data().get_string("applicant_email");
    std::printf("  analytics offset %lld  %s  applicant %s\n", static_cast<long long>(e.offset),
                e.event.data().get_string("permit_id").c_str(), email.c_str());
    if (email == "[redacted]") ++redacted_for_analytics;
    ++analytics_seen;
    return Status();
  });
  if (!analytics_sub.ok()) return fail(analytics_sub.status(), "subscribing analytics");

  // 4. Publish: two good events, one the schema refuses, one retry of the first.
  auto permit = [](const char* id, const char* roll, const char* email) {
    broker::CloudEvent e("permit.issued", "/permits/issuance",
                         Json::object({{"permit_id", id},
                                       {"roll_number", roll},
                                       {"applicant_email", email},
                                       {"value_cad", 425000}}));
    e.set_subject(roll);  // events of one property stay in order
    return e;
  };
  auto first = permit("BP-2026-1041", "190101234567890", "a.tremblay@example.ca");
  first.set_id("permit-BP-2026-1041");
  for (auto event : {first, permit("BP-2026-1042", "190101234567891", "j.singh@example.ca")}) {
    auto ack = bus.publish(event);
    if (!ack.ok()) return fail(ack.status(), "publishing");
    std::printf("published %s at offset %lld\n", ack->id.c_str(),
                static_cast<long long>(ack->offset));
  }
  auto bad = bus.publish(permit("BP-2026-1043", "1901-01", "not-an-email"));
  std::printf("refused: %s\n", bad.ok() ? "(nothing: accepted!)" : bad.status().message().c_str());
  auto again = bus.publish(first);
  std::printf("retry of %s: duplicate=%s offset %lld\n", first.id().c_str(),
              again.ok() && again->duplicate ? "yes" : "no",
              again.ok() ? static_cast<long long>(again->offset) : -1LL);

  // 5. Wait for both groups, then report.
  for (int i = 0; i < 500 && (tax_seen < 2 || analytics_seen < 2); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*tax_sub)->stop();
  (*analytics_sub)->stop();
  const bool ok = tax_seen == 2 && analytics_seen == 2 && clear_for_tax == 2 &&
                  redacted_for_analytics == 2 && !bad.ok() && again.ok() && again->duplicate;
  std::printf("%s: tax saw %d (PII in clear), analytics saw %d (PII redacted)\n",
              ok ? "ok" : "UNEXPECTED", tax_seen.load(), analytics_seen.load());
  node->reset();
  std::filesystem::remove_all(data_dir);
  return ok ? 0 : 1;
}

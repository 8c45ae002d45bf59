// Builds the AsyncAPI 3.0 document of a node's topics.
#pragma once

#include <string>
#include <vector>

#include "civicbus/broker/broker.hpp"

namespace civicbus::broker {

struct AsyncApiChannel {
  TopicOptions topic;
  int schema_version = 0;  // 0: no active schema
  Json data_schema;        // the active JSON Schema of the event data
  std::vector<std::string> consumer_groups;
};

// One channel per topic (address = topic name), a `send` operation per topic and a
// `receive` operation per consumer group, and a message per topic whose payload is the
// CloudEvents envelope with `data` constrained by the topic's active schema. Owner,
// sensitivity, retention and PII fields travel as x-civicbus-* extensions.
Json build_asyncapi(const std::vector<AsyncApiChannel>& channels, std::string_view node_source);

}  // namespace civicbus::broker

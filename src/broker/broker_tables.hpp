// The broker's own tables (prefix broker_). The audit log and key store keep theirs in their
// own migration components (broker_audit, broker_keys).
#pragma once

#include "civicbus/storage/database.hpp"

namespace civicbus::broker::detail {

inline constexpr storage::Migration kBrokerMigrations[] = {
    {1, "topics, schema registry, consumer groups, dead letters",
     R"sql(
CREATE TABLE broker_topics (
  name TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  description TEXT NOT NULL,
  retention_seconds INTEGER NOT NULL,
  retention_bytes INTEGER NOT NULL,
  sensitivity TEXT NOT NULL,
  pii_fields TEXT NOT NULL,          -- JSON array of JSON pointers
  schema_subject TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE broker_schema_subjects (
  subject TEXT PRIMARY KEY,
  compatibility TEXT NOT NULL
);
CREATE TABLE broker_schema_versions (
  subject TEXT NOT NULL,
  version INTEGER NOT NULL,
  schema TEXT NOT NULL,
  state TEXT NOT NULL,               -- proposed | active | superseded
  created_at INTEGER NOT NULL,
  activated_at INTEGER,
  PRIMARY KEY (subject, version)
);
CREATE TABLE broker_schema_acks (
  subject TEXT NOT NULL,
  version INTEGER NOT NULL,
  group_name TEXT NOT NULL,
  acked_at INTEGER NOT NULL,
  PRIMARY KEY (subject, version, group_name)
);
CREATE TABLE broker_groups (
  name TEXT PRIMARY KEY,
  topics TEXT NOT NULL,              -- JSON array of patterns
  committed_offset INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE broker_dlq (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  group_name TEXT NOT NULL,
  topic TEXT NOT NULL,
  log_offset INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  source TEXT NOT NULL,
  partition_key TEXT NOT NULL,
  stored_at INTEGER NOT NULL,
  payload BLOB NOT NULL,
  error TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  dead_at INTEGER NOT NULL,
  replay_requested_at INTEGER,
  replayed_at INTEGER
);
CREATE INDEX broker_dlq_by_group ON broker_dlq(group_name, dead_at);
CREATE INDEX broker_dlq_by_time ON broker_dlq(dead_at);
CREATE TABLE broker_state (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql"},
};

}  // namespace civicbus::broker::detail

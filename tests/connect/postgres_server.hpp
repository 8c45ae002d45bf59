// One throwaway PostgreSQL server for the whole connect_tests binary (initdb costs a second
// or two), shared by the postgres and amanda connector tests; each test creates a database
// of its own.
#pragma once

#include <atomic>
#include <string>

#include "support/postgres.hpp"

namespace civicbus::connect::test {

inline testing::Postgres& postgres_server() {
  static testing::Postgres server;
  return server;
}

// A fresh database named `prefix_<n>`; its URI.
inline std::string fresh_postgres_database(const std::string& prefix) {
  static std::atomic<int> next{0};
  return postgres_server().create_database(prefix + "_" + std::to_string(++next));
}

}  // namespace civicbus::connect::test

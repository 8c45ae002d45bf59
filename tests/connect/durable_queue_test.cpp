#include "connect/durable_queue.hpp"

#include <doctest/doctest.h>

#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class QueueFixture {
 public:
  QueueFixture() { reopen(); }

  // A restart: a new connection and new objects on the same file.
  void reopen(DurableQueueOptions options = {}) {
    queue_.reset();
    cache_.reset();
    db_.reset();
    storage::SqliteOptions sqlite;
    sqlite.path = dir_.file("connect.db");
    auto db = storage::open_sqlite(sqlite);
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    db_ = std::move(*db);
    auto queue = DurableQueue::open(*db_, clock_, options);
    REQUIRE_MESSAGE(queue.ok(), queue.status().to_string());
    queue_ = std::move(*queue);
    auto cache = ResponseCache::open(*db_, clock_);
    REQUIRE_MESSAGE(cache.ok(), cache.status().to_string());
    cache_ = std::move(*cache);
  }

  std::int64_t enqueue(const std::string& connection, int n) {
    auto id = queue_->enqueue(connection, "write", Json::object({{"n", n}}));
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    return *id;
  }

  std::int64_t size(const std::string& connection) {
    auto n = queue_->size(connection);
    REQUIRE(n.ok());
    return *n;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<DurableQueue> queue_;
  std::unique_ptr<ResponseCache> cache_;
};

std::vector<std::int64_t> payload_numbers(const std::vector<QueuedRequest>& requests) {
  std::vector<std::int64_t> out;
  for (const auto& r : requests) out.push_back(r.payload.get_int("n"));
  return out;
}

TEST_CASE("durable queue: FIFO per connection, kept across a reopen") {
  QueueFixture f;
  for (int i = 1; i <= 5; ++i) {
    f.enqueue("permits-db", i);
    f.enqueue("gis", 100 + i);
    f.clock_.advance(seconds(1));
  }
  CHECK(f.size("permits-db") == 5);
  CHECK(f.size("gis") == 5);
  CHECK(f.size("nobody") == 0);

  f.reopen();
  auto head = f.queue_->peek_many("permits-db", 10);
  REQUIRE(head.ok());
  CHECK(payload_numbers(*head) == std::vector<std::int64_t>{1, 2, 3, 4, 5});
  CHECK((*head)[0].connection == "permits-db");
  CHECK((*head)[0].kind == "write");
  CHECK((*head)[0].attempts == 0);
  CHECK((*head)[1].enqueued_at - (*head)[0].enqueued_at == seconds(1));
  auto gis = f.queue_->peek("gis");
  REQUIRE(gis.ok());
  REQUIRE(gis->has_value());
  CHECK((*gis)->payload.get_int("n") == 101);

  auto names = f.queue_->connections();
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"gis", "permits-db"});
}

TEST_CASE("durable queue: ack removes, fail counts attempts and keeps the head") {
  QueueFixture f;
  const std::int64_t first = f.enqueue("c", 1);
  f.enqueue("c", 2);

  auto attempts = f.queue_->fail(first, "503 Service Unavailable");
  REQUIRE(attempts.ok());
  CHECK(*attempts == 1);
  attempts = f.queue_->fail(first, "connection reset");
  REQUIRE(attempts.ok());
  CHECK(*attempts == 2);
  f.reopen();
  auto head = f.queue_->peek("c");
  REQUIRE(head.ok());
  REQUIRE(head->has_value());
  CHECK((*head)->id == first);
  CHECK((*head)->attempts == 2);
  CHECK((*head)->last_error == "connection reset");

  REQUIRE(f.queue_->ack(first).ok());
  CHECK(f.queue_->ack(first).code() == ErrorCode::kNotFound);
  CHECK(f.queue_->fail(first, "x").status().code() == ErrorCode::kNotFound);
  head = f.queue_->peek("c");
  REQUIRE(head.ok());
  CHECK((*head)->payload.get_int("n") == 2);
}

TEST_CASE("durable queue: replay delivers in order and stops at the first failure") {
  QueueFixture f;
  for (int i = 1; i <= 6; ++i) f.enqueue("sink", i);
  std::vector<std::int64_t> delivered;
  int fail_on = 4;
  auto deliver = [&](const QueuedRequest& r) -> Status {
    if (r.payload.get_int("n") == fail_on) return unavailable("sink still down");
    delivered.push_back(r.payload.get_int("n"));
    return {};
  };
  auto result = f.queue_->replay("sink", deliver);
  REQUIRE(result.ok());
  CHECK(result->delivered == 3);
  CHECK(result->remaining == 3);
  CHECK(result->stopped_by.code() == ErrorCode::kUnavailable);
  CHECK(delivered == std::vector<std::int64_t>{1, 2, 3});

  // The failed request stays first, with its attempt recorded, across a restart.
  f.reopen();
  auto head = f.queue_->peek("sink");
  REQUIRE(head.ok());
  CHECK((*head)->payload.get_int("n") == 4);
  CHECK((*head)->attempts == 1);
  CHECK((*head)->last_error == "sink still down");

  // Newly queued requests go behind the old ones.
  f.enqueue("sink", 7);
  fail_on = -1;
  result = f.queue_->replay("sink", deliver, 2);
  REQUIRE(result.ok());
  CHECK(result->delivered == 2);
  CHECK(result->remaining == 2);
  CHECK(result->stopped_by.ok());
  result = f.queue_->replay("sink", deliver);
  REQUIRE(result.ok());
  CHECK(result->remaining == 0);
  CHECK(delivered == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("durable queue: replay pages through a long queue") {
  QueueFixture f;
  REQUIRE(f.db_
              ->transaction([&]() -> Status {
                for (int i = 0; i < 600; ++i) f.enqueue("bulk", i);
                return Status();
              })
              .ok());
  std::int64_t expected = 0;
  bool in_order = true;
  auto result = f.queue_->replay("bulk", [&](const QueuedRequest& r) -> Status {
    in_order = in_order && r.payload.get_int("n") == expected++;
    return {};
  });
  REQUIRE(result.ok());
  CHECK(result->delivered == 600);
  CHECK(in_order);
  CHECK(f.size("bulk") == 0);
}

TEST_CASE("durable queue: a full queue refuses, clear drops one connection") {
  QueueFixture f;
  DurableQueueOptions options;
  options.max_per_connection = 2;
  f.reopen(options);
  f.enqueue("a", 1);
  f.enqueue("a", 2);
  f.enqueue("b", 1);
  auto refused = f.queue_->enqueue("a", "write", Json::object());
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::kResourceExhausted);
  CHECK(refused.status().message().find("'a'") != std::string::npos);
  CHECK(f.queue_->enqueue("", "write", Json()).status().code() == ErrorCode::kInvalidArgument);

  auto cleared = f.queue_->clear("a");
  REQUIRE(cleared.ok());
  CHECK(*cleared == 2);
  CHECK(f.size("a") == 0);
  CHECK(f.size("b") == 1);
}

TEST_CASE("response cache: serves the last value with its age") {
  QueueFixture f;
  REQUIRE(f.cache_->put("weather", "/forecast?ward=4", Json::object({{"temp", -3}})).ok());
  f.clock_.advance(seconds(90));
  auto hit = f.cache_->get("weather", "/forecast?ward=4");
  REQUIRE(hit.ok());
  REQUIRE(hit->has_value());
  CHECK((*hit)->value.get_int("temp") == -3);
  CHECK((*hit)->age == seconds(90));

  // Too old for this caller.
  auto stale = f.cache_->get("weather", "/forecast?ward=4", seconds(60));
  REQUIRE(stale.ok());
  CHECK_FALSE(stale->has_value());

  // Replacing restamps it; it survives a restart.
  REQUIRE(f.cache_->put("weather", "/forecast?ward=4", Json::object({{"temp", 1}})).ok());
  f.clock_.advance(seconds(5));
  f.reopen();
  hit = f.cache_->get("weather", "/forecast?ward=4", seconds(60));
  REQUIRE(hit.ok());
  REQUIRE(hit->has_value());
  CHECK((*hit)->value.get_int("temp") == 1);
  CHECK((*hit)->age == seconds(5));

  auto miss = f.cache_->get("weather", "/other");
  REQUIRE(miss.ok());
  CHECK_FALSE(miss->has_value());
}

TEST_CASE("response cache: prune and clear") {
  QueueFixture f;
  REQUIRE(f.cache_->put("a", "old", Json(1)).ok());
  f.clock_.advance(seconds(100));
  REQUIRE(f.cache_->put("a", "new", Json(2)).ok());
  REQUIRE(f.cache_->put("b", "new", Json(3)).ok());
  auto pruned = f.cache_->prune(seconds(50));
  REQUIRE(pruned.ok());
  CHECK(*pruned == 1);
  CHECK_FALSE(f.cache_->get("a", "old")->has_value());
  auto cleared = f.cache_->clear("a");
  REQUIRE(cleared.ok());
  CHECK(*cleared == 1);
  CHECK(f.cache_->get("b", "new")->has_value());
}

TEST_CASE("durable queue and response cache: the same behaviour on PostgreSQL") {
  testing::Postgres server;
  ManualClock clock;
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = server.uri()});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  auto queue = DurableQueue::open(**db, clock);
  REQUIRE_MESSAGE(queue.ok(), queue.status().to_string());
  std::vector<std::int64_t> ids;
  for (int i = 1; i <= 4; ++i) {
    auto id = (*queue)->enqueue("sink", "write", Json::object({{"n", i}}));
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    ids.push_back(*id);
  }
  CHECK(ids[1] > ids[0]);
  CHECK(ids[3] > ids[2]);
  std::vector<std::int64_t> seen;
  auto result = (*queue)->replay("sink", [&](const QueuedRequest& r) -> Status {
    if (r.payload.get_int("n") == 3) return unavailable("down");
    seen.push_back(r.payload.get_int("n"));
    return {};
  });
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  CHECK(seen == std::vector<std::int64_t>{1, 2});
  CHECK(result->remaining == 2);
  auto head = (*queue)->peek("sink");
  REQUIRE(head.ok());
  CHECK((*head)->attempts == 1);
  CHECK((*head)->last_error == "down");

  auto cache = ResponseCache::open(**db, clock);
  REQUIRE_MESSAGE(cache.ok(), cache.status().to_string());
  REQUIRE((*cache)->put("weather", "k", Json(1)).ok());
  REQUIRE((*cache)->put("weather", "k", Json(2)).ok());
  clock.advance(seconds(3));
  auto hit = (*cache)->get("weather", "k");
  REQUIRE(hit.ok());
  REQUIRE(hit->has_value());
  CHECK((*hit)->value == Json(2));
  CHECK((*hit)->age == seconds(3));
}

}  // namespace
}  // namespace civicbus::connect

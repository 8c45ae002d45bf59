// Change capture from SQLite: AFTER INSERT / UPDATE / DELETE triggers on each captured table
// write the change, with json_object() images of the old and new row, to the change log
// `_civicbus_changes` inside the writer's own transaction, so a rolled-back write leaves no
// change and SQLite's single writer makes the log's order the commit order.
//
// seq is AUTOINCREMENT (not a bare INTEGER PRIMARY KEY, whose rowids are reused once the
// log is emptied): the event id derives from it, and a reused seq would be taken by the
// broker for a duplicate of an older change and dropped. The id also carries the epoch of
// the install (`_civicbus_changes_meta`), because dropping the log at uninstall resets the
// sequence.
#include <fmt/format.h>

#include <chrono>

#include "pipeline/cdc_source.hpp"

namespace civicbus::pipeline::detail {
namespace {

// json_object() takes at most 127 arguments in older SQLite builds (SQLITE_MAX_FUNCTION_ARG),
// so wide tables are built from chunks joined with json_insert().
constexpr std::size_t kColumnsPerCall = 50;

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string quote_literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// A column's value as JSON can hold it: blobs (which json_object() refuses, and which would
// then fail the application's write) as hex text.
std::string json_value(std::string_view row, std::string_view column) {
  std::string ref = fmt::format("{}.{}", row, quote_identifier(column));
  return fmt::format("CASE WHEN typeof({0}) = 'blob' THEN hex({0}) ELSE {0} END", ref);
}

// json_object('a', NEW."a", ...) over every column of the table, in table order.
std::string row_image(std::string_view row, const std::vector<std::string>& columns) {
  std::string image = "json_object(";
  std::size_t i = 0;
  for (; i < columns.size() && i < kColumnsPerCall; ++i) {
    image += fmt::format("{}{}, {}", i ? ", " : "", quote_literal(columns[i]),
                         json_value(row, columns[i]));
  }
  image += ")";
  while (i < columns.size()) {
    std::string chunk = "json_insert(" + image;
    for (std::size_t n = 0; i < columns.size() && n < kColumnsPerCall; ++i, ++n) {
      std::string path = "$.\"" + columns[i] + "\"";
      chunk += fmt::format(", {}, {}", quote_literal(path), json_value(row, columns[i]));
    }
    image = chunk + ")";
  }
  return image;
}

std::string trigger_name(std::string_view table, std::string_view op) {
  return quote_identifier(fmt::format("_civicbus_cdc_{}_{}", table, op));
}

class SqliteChangeSource final : public ChangeSource {
 public:
  SqliteChangeSource(storage::Database& db, std::vector<std::string> tables, const Clock& clock)
      : db_(db), tables_(std::move(tables)), clock_(clock) {}

  Status install() override {
    return db_.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(db_.execute_script(
          "CREATE TABLE IF NOT EXISTS _civicbus_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
          "table_name TEXT NOT NULL, op TEXT NOT NULL, before TEXT, after TEXT, "
          "at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
          "CREATE TABLE IF NOT EXISTS _civicbus_changes_meta (name TEXT PRIMARY KEY, "
          "value TEXT NOT NULL);"));
      const auto micros =
          std::chrono::duration_cast<std::chrono::microseconds>(clock_.now().time_since_epoch())
              .count();
      CIVICBUS_RETURN_IF_ERROR(
          db_.execute("INSERT OR IGNORE INTO _civicbus_changes_meta (name, value) VALUES "
                      "('epoch', ?)",
                      {std::string_view(std::to_string(micros))})
              .status());
      for (const auto& table : tables_) {
        std::vector<std::string> columns;
        CIVICBUS_RETURN_IF_ERROR(db_.query("SELECT name FROM pragma_table_info(?)",
                                           {std::string_view(table)}, [&](const storage::Row& row) {
                                             columns.emplace_back(row.get_text(0));
                                             return true;
                                           }));
        if (columns.empty()) {
          return invalid_argument(fmt::format("change capture: database '{}' has no table '{}'",
                                              db_.describe(), table));
        }
        const std::string t = quote_identifier(table);
        const std::string name = quote_literal(table);
        const std::string old_image = row_image("OLD", columns);
        const std::string new_image = row_image("NEW", columns);
        // Re-created every time, so the images follow the table's current columns.
        CIVICBUS_RETURN_IF_ERROR(db_.execute_script(fmt::format(
            "DROP TRIGGER IF EXISTS {0};"
            "CREATE TRIGGER {0} AFTER INSERT ON {3} BEGIN INSERT INTO _civicbus_changes "
            "(table_name, op, before, after) VALUES ({4}, 'insert', NULL, {6}); END;"
            "DROP TRIGGER IF EXISTS {1};"
            "CREATE TRIGGER {1} AFTER UPDATE ON {3} BEGIN INSERT INTO _civicbus_changes "
            "(table_name, op, before, after) VALUES ({4}, 'update', {5}, {6}); END;"
            "DROP TRIGGER IF EXISTS {2};"
            "CREATE TRIGGER {2} AFTER DELETE ON {3} BEGIN INSERT INTO _civicbus_changes "
            "(table_name, op, before, after) VALUES ({4}, 'delete', {5}, NULL); END;",
            trigger_name(table, "insert"), trigger_name(table, "update"),
            trigger_name(table, "delete"), t, name, old_image, new_image)));
      }
      return load_epoch();
    });
  }

  Result<PendingChanges> pending(std::size_t limit) override {
    if (epoch_.empty()) CIVICBUS_RETURN_IF_ERROR(load_epoch());
    PendingChanges out;
    Status parse_status;
    CIVICBUS_RETURN_IF_ERROR(db_.query(
        "SELECT seq, table_name, op, before, after, at FROM _civicbus_changes ORDER BY seq "
        "LIMIT ?",
        {static_cast<std::int64_t>(limit)}, [&](const storage::Row& row) {
          RowChange c;
          c.commit_seq = row.get_int(0);
          c.table = std::string(row.get_text(1));
          c.op = std::string(row.get_text(2));
          for (auto [column, image] : {std::pair{3, &c.before}, std::pair{4, &c.after}}) {
            if (row.is_null(column)) continue;
            auto parsed = Json::parse(row.get_text(column));
            if (!parsed.ok()) {
              parse_status = parsed.status().with_context(
                  fmt::format("change {} of the change log", c.commit_seq));
              return false;
            }
            *image = std::move(parsed).value();
          }
          c.committed_at = std::string(row.get_text(5));
          c.event_id = fmt::format("{}-{}", epoch_, c.commit_seq);
          c.ackable = true;  // every statement's change is its own step of the log
          c.ack_token = std::to_string(c.commit_seq);
          out.end_token = c.ack_token;
          out.changes.push_back(std::move(c));
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(parse_status);
    out.exhausted = out.changes.size() < limit;
    return out;
  }

  Status acknowledge(const std::string& token) override {
    return db_
        .execute("DELETE FROM _civicbus_changes WHERE seq <= ?",
                 {static_cast<std::int64_t>(std::stoll(token))})
        .status();
  }

  Status uninstall() override {
    return db_.transaction([&]() -> Status {
      for (const auto& table : tables_) {
        CIVICBUS_RETURN_IF_ERROR(db_.execute_script(fmt::format(
            "DROP TRIGGER IF EXISTS {}; DROP TRIGGER IF EXISTS {}; DROP TRIGGER IF EXISTS {};",
            trigger_name(table, "insert"), trigger_name(table, "update"),
            trigger_name(table, "delete"))));
      }
      epoch_.clear();
      return db_.execute_script(
          "DROP TABLE IF EXISTS _civicbus_changes; DROP TABLE IF EXISTS _civicbus_changes_meta;");
    });
  }

 private:
  Status load_epoch() {
    auto epoch = db_.query_int("SELECT value FROM _civicbus_changes_meta WHERE name = 'epoch'");
    if (!epoch.ok()) return epoch.status();
    if (!epoch->has_value()) {
      return failed_precondition(fmt::format(
          "change capture of '{}' is not installed (no change log epoch)", db_.describe()));
    }
    epoch_ = std::to_string(**epoch);
    return Status();
  }

  storage::Database& db_;
  std::vector<std::string> tables_;
  const Clock& clock_;
  std::string epoch_;
};

}  // namespace

std::unique_ptr<ChangeSource> make_sqlite_change_source(storage::Database& db,
                                                        std::vector<std::string> tables,
                                                        const Clock& clock) {
  return std::make_unique<SqliteChangeSource>(db, std::move(tables), clock);
}

}  // namespace civicbus::pipeline::detail

// Change capture from PostgreSQL by logical decoding through SQL functions, so that no
// replication connection (nor a second protocol) is needed: a slot with the built-in
// test_decoding plugin, peeked for pending changes and advanced with get_changes(upto_lsn)
// only once the broker acknowledged them.
//
// Why test_decoding and not pgoutput: pgoutput needs a publication per capture and its binary
// messages (Relation, Insert, Update ... with their own type OIDs and TOAST flags) need a
// decoder of their own, while test_decoding ships with every server (contrib, built into
// the packages) and prints each change as one line with types and values as text. Its
// output format is stable across versions 9.4 to 17; the parser below follows
// contrib/test_decoding/test_decoding.c.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <utility>

#include "pipeline/cdc_source.hpp"

namespace civicbus::pipeline::detail {
namespace {

constexpr std::string_view kDecodingOptions =
    "'include-xids', '1', 'include-timestamp', '1', 'skip-empty-xacts', '1'";

class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool done() const { return pos_ >= text_.size(); }
  std::size_t pos() const { return pos_; }
  char peek() const { return done() ? '\0' : text_[pos_]; }
  bool consume(std::string_view prefix) {
    if (text_.substr(pos_).starts_with(prefix)) {
      pos_ += prefix.size();
      return true;
    }
    return false;
  }
  void skip_spaces() {
    while (!done() && text_[pos_] == ' ') ++pos_;
  }
  // An identifier as quote_identifier() prints it: "double ""quoted""" or bare up to one of
  // `stops`.
  Result<std::string> identifier(std::string_view stops) {
    std::string out;
    if (peek() == '"') {
      ++pos_;
      for (;;) {
        if (done()) return error("unterminated quoted identifier");
        char c = text_[pos_++];
        if (c == '"') {
          if (peek() == '"') {
            out += '"';
            ++pos_;
            continue;
          }
          return out;
        }
        out += c;
      }
    }
    while (!done() && stops.find(text_[pos_]) == std::string_view::npos) out += text_[pos_++];
    if (out.empty()) return error("expected an identifier");
    return out;
  }
  // A column's type: everything between '[' and the "]:" that ends it (integer[] keeps its
  // own brackets).
  Result<std::string> type() {
    if (!consume("[")) return error("expected '[' before a column's type");
    std::size_t end = text_.find("]:", pos_);
    if (end == std::string_view::npos) return error("unterminated column type");
    std::string out(text_.substr(pos_, end - pos_));
    pos_ = end + 2;
    return out;
  }
  // 'text with '' doubled'
  Result<std::string> quoted() {
    std::string out;
    ++pos_;  // the opening quote
    for (;;) {
      if (done()) return error("unterminated quoted value");
      char c = text_[pos_++];
      if (c == '\'') {
        if (peek() == '\'') {
          out += '\'';
          ++pos_;
          continue;
        }
        return out;
      }
      out += c;
    }
  }
  std::string_view bare() {
    std::size_t start = pos_;
    while (!done() && text_[pos_] != ' ') ++pos_;
    return text_.substr(start, pos_ - start);
  }
  Status error(std::string_view what) const {
    return invalid_argument(fmt::format("test_decoding output: {} at column {} of \"{}\"", what,
                                        pos_ + 1, text_.substr(0, 200)));
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

bool is_integer_type(std::string_view type) {
  return type == "smallint" || type == "integer" || type == "bigint" || type == "oid";
}
bool is_real_type(std::string_view type) {
  return type == "real" || type == "double precision" || type.starts_with("numeric");
}

Json value_of(std::string_view type, std::string_view text, bool was_quoted) {
  if (!was_quoted) {
    if (is_integer_type(type)) {
      std::int64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec == std::errc() && end == text.data() + text.size()) return Json(v);
    }
    if (is_real_type(type)) {
      double v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      // NaN and Infinity have no JSON number: kept as text.
      if (ec == std::errc() && end == text.data() + text.size() && v == v && v - v == 0) {
        return Json(v);
      }
    }
    if (type == "boolean") return Json(text == "true");
    return Json(text);
  }
  if (type == "json" || type == "jsonb") {
    if (auto parsed = Json::parse(text); parsed.ok()) return std::move(parsed).value();
  }
  return Json(text);
}

// " col[type]:value col2[type]:value" into `out` until the end or a section keyword.
Status parse_tuple(LineReader& r, Json& out, std::vector<std::string>* unchanged_toast) {
  out = Json::object();
  for (;;) {
    r.skip_spaces();
    if (r.done()) return Status();
    if (r.consume("(no-tuple-data)")) {
      out = Json();
      continue;
    }
    if (r.peek() == 'o' || r.peek() == 'n') {
      // "old-key:" / "new-tuple:" start the next section; a column may be named so too, but
      // then '[' follows its name.
      LineReader probe = r;
      if (probe.consume("old-key:") || probe.consume("new-tuple:")) return Status();
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::string name, r.identifier("["));
    CIVICBUS_ASSIGN_OR_RETURN(std::string type, r.type());
    if (r.peek() == '\'') {
      CIVICBUS_ASSIGN_OR_RETURN(std::string text, r.quoted());
      out.set(name, value_of(type, text, true));
    } else if (r.consume("B'")) {  // bit strings
      std::string_view bits = r.bare();
      out.set(name, Json(bits.substr(0, bits.empty() ? 0 : bits.size() - 1)));
    } else {
      std::string_view text = r.bare();
      if (text.empty()) return r.error(fmt::format("column '{}' has no value", name));
      if (text == "null") {
        out.set(name, Json());
      } else if (text == "unchanged-toast-datum") {
        out.set(name, Json());
        if (unchanged_toast != nullptr) unchanged_toast->push_back(name);
      } else {
        out.set(name, value_of(type, text, false));
      }
    }
  }
}

// "X/Y" as one 64-bit number (the position in the WAL).
std::int64_t lsn_number(std::string_view lsn) {
  std::size_t slash = lsn.find('/');
  if (slash == std::string_view::npos) return 0;
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  std::from_chars(lsn.data(), lsn.data() + slash, hi, 16);
  std::from_chars(lsn.data() + slash + 1, lsn.data() + lsn.size(), lo, 16);
  return static_cast<std::int64_t>((hi << 32) | lo);
}

struct TableRef {
  std::string name;  // as configured
  std::string schema;
  std::string table;
  std::vector<std::string> columns;  // in attnum order, read at install
};

std::string quote(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

class PostgresChangeSource final : public ChangeSource {
 public:
  PostgresChangeSource(storage::Database& db, std::vector<std::string> tables, std::string slot)
      : db_(db), slot_(std::move(slot)) {
    for (auto& t : tables) {
      TableRef ref;
      std::size_t dot = t.find('.');
      ref.schema = dot == std::string::npos ? "public" : t.substr(0, dot);
      ref.table = dot == std::string::npos ? t : t.substr(dot + 1);
      ref.name = std::move(t);
      tables_.push_back(std::move(ref));
    }
  }

  Status install() override {
    for (auto& t : tables_) {
      const std::string qualified = quote(t.schema) + "." + quote(t.table);
      t.columns.clear();
      CIVICBUS_RETURN_IF_ERROR(db_.query(
          "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
          "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ? AND "
          "c.relname = ? AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
          {std::string_view(t.schema), std::string_view(t.table)}, [&](const storage::Row& row) {
            t.columns.emplace_back(row.get_text(0));
            return true;
          }));
      if (t.columns.empty()) {
        return invalid_argument(
            fmt::format("change capture: database '{}' has no table '{}'", db_.describe(), t.name));
      }
      // Full before images: without it, updates and deletes log only the key's columns.
      CIVICBUS_RETURN_IF_ERROR(
          db_.execute_script(fmt::format("ALTER TABLE {} REPLICA IDENTITY FULL", qualified)));
    }
    std::string plugin;
    std::string database;
    std::string current;
    CIVICBUS_RETURN_IF_ERROR(
        db_.query("SELECT s.plugin, s.database, current_database() FROM pg_replication_slots s "
                  "WHERE s.slot_name = ?",
                  {std::string_view(slot_)}, [&](const storage::Row& row) {
                    plugin = std::string(row.get_text(0));
                    database = std::string(row.get_text(1));
                    current = std::string(row.get_text(2));
                    return false;
                  }));
    if (plugin.empty()) {
      Status created =
          db_.query("SELECT 1 FROM pg_create_logical_replication_slot(?, 'test_decoding')",
                    {std::string_view(slot_)}, [](const storage::Row&) { return false; });
      if (!created.ok()) {
        return created.with_context(fmt::format(
            "creating replication slot '{}' (the server needs wal_level=logical and a free "
            "slot in max_replication_slots)",
            slot_));
      }
    } else if (plugin != "test_decoding" || database != current) {
      return failed_precondition(fmt::format(
          "replication slot '{}' exists with plugin '{}' in database '{}'; change capture "
          "needs a test_decoding slot of database '{}': choose another slot name",
          slot_, plugin, database, current));
    }
    return Status();
  }

  Result<PendingChanges> pending(std::size_t limit) override {
    PendingChanges out;
    std::vector<RowChange> open;  // changes of the transaction being read
    std::size_t rows = 0;
    Status parse_status;
    const std::string sql = fmt::format(
        "SELECT CAST(lsn AS TEXT), CAST(xid AS TEXT), data FROM "
        "pg_logical_slot_peek_changes(CAST(? AS name), NULL, CAST(? AS integer), {})",
        kDecodingOptions);
    CIVICBUS_RETURN_IF_ERROR(
        db_.query(sql, {std::string_view(slot_), static_cast<std::int64_t>(limit)},
                  [&](const storage::Row& row) {
                    ++rows;
                    auto line = parse_test_decoding(row.get_text(2));
                    if (!line.ok()) {
                      parse_status = line.status();
                      return false;
                    }
                    switch (line->kind) {
                      case DecodedLine::Kind::kBegin:
                        open.clear();
                        break;
                      case DecodedLine::Kind::kChange:
                        if (const TableRef* t = find(line->schema, line->table);
                            t != nullptr && line->op != "truncate") {
                          open.push_back(to_change(*t, std::move(line).value(), row.get_text(1)));
                        }
                        break;
                      case DecodedLine::Kind::kCommit: {
                        std::string lsn(row.get_text(0));
                        for (std::size_t i = 0; i < open.size(); ++i) {
                          RowChange& c = open[i];
                          c.lsn = lsn;
                          c.commit_seq = lsn_number(lsn);
                          c.committed_at = line->committed_at;
                          c.event_id = fmt::format("{}-{}", lsn, i + 1);
                          c.ackable = i + 1 == open.size();
                          c.ack_token = lsn;
                          out.changes.push_back(std::move(c));
                        }
                        open.clear();
                        out.end_token = lsn;
                        break;
                      }
                      case DecodedLine::Kind::kOther:
                        break;
                    }
                    return true;
                  }));
    CIVICBUS_RETURN_IF_ERROR(parse_status);
    // Whole transactions only (the function never splits one); more when the limit was hit.
    out.exhausted = rows < limit;
    return out;
  }

  Status acknowledge(const std::string& token) override {
    const std::string sql = fmt::format(
        "SELECT COUNT(*) FROM pg_logical_slot_get_changes(CAST(? AS name), CAST(? AS pg_lsn), "
        "NULL, {})",
        kDecodingOptions);
    return db_.query(sql, {std::string_view(slot_), std::string_view(token)},
                     [](const storage::Row&) { return false; });
  }

  Status uninstall() override {
    Status dropped = db_.query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = ?",
        {std::string_view(slot_)}, [](const storage::Row&) { return true; });
    CIVICBUS_RETURN_IF_ERROR(dropped);
    for (const auto& t : tables_) {
      CIVICBUS_RETURN_IF_ERROR(
          db_.execute_script(fmt::format("ALTER TABLE IF EXISTS {}.{} REPLICA IDENTITY DEFAULT",
                                         quote(t.schema), quote(t.table))));
    }
    return Status();
  }

 private:
  const TableRef* find(std::string_view schema, std::string_view table) const {
    for (const auto& t : tables_) {
      if (t.schema == schema && t.table == table) return &t;
    }
    return nullptr;
  }

  // The old tuple lacks its NULL columns: the image lists every known column, in table order.
  static Json full_image(const TableRef& t, Json parsed) {
    if (!parsed.is_object()) return parsed;
    Json out = Json::object();
    for (const auto& c : t.columns) {
      Json* v = parsed.find(c);
      out.set(c, v != nullptr ? std::move(*v) : Json());
    }
    for (auto& [k, v] : parsed.as_object()) {
      if (out.find(k) == nullptr) out.set(k, std::move(v));
    }
    return out;
  }

  static RowChange to_change(const TableRef& t, DecodedLine line, std::string_view xid) {
    RowChange c;
    c.table = t.name;
    c.op = line.op;
    c.xid = std::string(xid);
    if (line.op == "insert") {
      c.after = std::move(line.after);
    } else if (line.op == "update") {
      c.after = std::move(line.after);
      c.before = full_image(t, std::move(line.before));
      // A TOASTed value the update did not touch is not logged in the new tuple; the full
      // before image has it.
      for (const auto& name : line.unchanged_toast) {
        if (const Json* old = c.before.is_object() ? c.before.find(name) : nullptr) {
          c.after.set(name, *old);
        }
      }
    } else {
      c.before = full_image(t, std::move(line.before));
    }
    return c;
  }

  storage::Database& db_;
  std::string slot_;
  std::vector<TableRef> tables_;
};

}  // namespace

std::string timestamptz_to_rfc3339(std::string_view text) {
  std::string out(text);
  std::size_t space = out.find(' ');
  if (space == std::string::npos) return out;
  out[space] = 'T';
  // The zone offset: the last sign after the time ("+00", "-05", "+05:30").
  std::size_t sign = out.find_last_of("+-");
  if (sign == std::string::npos || sign < space) return out + "Z";
  std::string_view offset = std::string_view(out).substr(sign + 1);
  if (offset.size() == 2) out += ":00";
  if (offset.size() == 8) out.resize(sign + 6);  // "+05:30:00" seconds are not RFC 3339
  return out;
}

Result<DecodedLine> parse_test_decoding(std::string_view text) {
  DecodedLine line;
  LineReader r(text);
  if (r.consume("BEGIN")) {
    line.kind = DecodedLine::Kind::kBegin;
    r.skip_spaces();
    line.xid = std::string(r.bare());
    return line;
  }
  if (r.consume("COMMIT")) {
    line.kind = DecodedLine::Kind::kCommit;
    r.skip_spaces();
    if (r.peek() != '(') line.xid = std::string(r.bare());
    r.skip_spaces();
    if (r.consume("(at ")) {
      std::size_t close = text.rfind(')');
      if (close == std::string_view::npos || close < r.pos()) {
        return r.error("unterminated commit time");
      }
      line.committed_at = timestamptz_to_rfc3339(text.substr(r.pos(), close - r.pos()));
    }
    return line;
  }
  if (!r.consume("table ")) return line;  // logical messages and the like
  line.kind = DecodedLine::Kind::kChange;
  CIVICBUS_ASSIGN_OR_RETURN(line.schema, r.identifier(".:"));
  if (!r.consume(".")) return r.error("expected '.' between schema and table");
  CIVICBUS_ASSIGN_OR_RETURN(line.table, r.identifier(":"));
  if (!r.consume(": ")) return r.error("expected ': ' after the table");
  if (r.consume("INSERT:")) {
    line.op = "insert";
    CIVICBUS_RETURN_IF_ERROR(parse_tuple(r, line.after, &line.unchanged_toast));
  } else if (r.consume("UPDATE:")) {
    line.op = "update";
    r.skip_spaces();
    if (r.consume("old-key:")) {
      CIVICBUS_RETURN_IF_ERROR(parse_tuple(r, line.before, nullptr));
      r.skip_spaces();
      if (!r.consume("new-tuple:")) return r.error("expected 'new-tuple:' after 'old-key:'");
    }
    CIVICBUS_RETURN_IF_ERROR(parse_tuple(r, line.after, &line.unchanged_toast));
  } else if (r.consume("DELETE:")) {
    line.op = "delete";
    CIVICBUS_RETURN_IF_ERROR(parse_tuple(r, line.before, nullptr));
  } else if (r.consume("TRUNCATE:")) {
    line.op = "truncate";
  } else {
    return r.error("unknown change (expected INSERT, UPDATE, DELETE or TRUNCATE)");
  }
  return line;
}

std::unique_ptr<ChangeSource> make_postgres_change_source(storage::Database& db,
                                                          std::vector<std::string> tables,
                                                          std::string slot) {
  return std::make_unique<PostgresChangeSource>(db, std::move(tables), std::move(slot));
}

}  // namespace civicbus::pipeline::detail

// The municipal file formats behind the municipal connectors (municipal_*.cpp): parsers and
// writers that work on text in memory, so the connectors, the tests and the fuzz targets
// (tests/fuzz/cpa005_fuzz.cpp, bai2_fuzz.cpp, gtfs_rt_fuzz.cpp) share one implementation.
// Every parse error names the record (or line) and the field.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::connect::detail {

// ---------------------------------------------------------------------------------------------
// Shared helpers (municipal_common.cpp)

Result<std::string> read_file_bytes(const std::string& path);
// Writes through a temporary file and a rename, so a reader never sees half a file.
Status write_file_atomically(const std::string& path, std::string_view content);
// True when `request` asks for `stream` (an empty list asks for every stream).
bool wants_stream(const ReadRequest& request, std::string_view stream);
// Emits `records` of `stream` in batches of request.batch_size, honouring the remaining
// `budget` (negative: unlimited; decremented), then checkpoints `state` (unless null).
Status emit_records(RecordEmitter& out, const ReadRequest& request, const std::string& stream,
                    const std::vector<std::string>& columns, std::vector<Record> records,
                    std::int64_t& budget, Json state);
// "2026-03-01" from a days-since-epoch count, and back (nullopt when malformed).
std::string format_date(int year, unsigned month, unsigned day);
std::optional<std::int64_t> parse_iso_date_days(std::string_view text);
// Cents from "1234.56", "1234.5", "-12", "1,234.56" is refused; nullopt when not an amount.
std::optional<std::int64_t> parse_decimal_cents(std::string_view text);
std::string format_cents(std::int64_t cents);  // "1234.56", "-0.05"
// A JSON value (number or string) as cents; nullopt when it is neither.
std::optional<std::int64_t> json_cents(const Json& value);
// A JSON value as text: strings as they are, numbers written, null as "".
std::string json_text(const Json& value);
// Expands "{n}" in a sink's path to `n` (zero-padded to `width`).
std::string expand_sequence(std::string path, std::int64_t n, int width);

// ---------------------------------------------------------------------------------------------
// Payments Canada Standard 005 (municipal_cpa005.cpp)

inline constexpr std::size_t kCpa005RecordSize = 1464;
inline constexpr std::size_t kCpa005SegmentSize = 240;

struct Cpa005Header {
  std::string originator_id;              // 10
  std::int64_t file_creation_number = 0;  // 4 digits
  std::string creation_date;              // ISO date (0YYDDD in the file)
  std::string destination_data_centre;    // 5 digits
  std::string currency;                   // "CAD", "USD" or blank
};

struct Cpa005Transaction {
  char record_type = 'C';          // 'C' credit, 'D' debit
  std::int64_t record_number = 0;  // logical record count of the record holding it (parse)
  int segment = 1;                 // 1..6 within that record (parse)
  std::string transaction_type;    // 3-digit CPA transaction code ("450")
  std::int64_t amount_cents = 0;
  std::string due_date;     // ISO date
  std::string institution;  // 3 digits
  std::string transit;      // 5 digits
  std::string account;      // up to 12
  std::string item_trace;
  std::string originator_short_name;
  std::string payee_name;
  std::string originator_long_name;
  std::string originator_user_id;
  std::string cross_reference;
  std::string return_institution;
  std::string return_transit;
  std::string return_account;
  std::string sundry;
};

struct Cpa005File {
  Cpa005Header header;
  std::vector<Cpa005Transaction> transactions;
  std::int64_t record_count = 0;  // logical records, A and Z included
};

// Parses a file of 1464-byte logical records (with or without line ends between them; a
// line shorter than 1464 bytes is padded with blanks). The Z trailer's totals and every
// record's sequence number, originator and file creation number are checked.
Result<Cpa005File> parse_cpa005(std::string_view text);
// Writes a valid file: an A header, the transactions packed up to six per C or D record (a
// change of type starts a new record), a Z trailer. Fields are validated first; the error
// names the transaction (0-based) and field.
Result<std::string> write_cpa005(const Cpa005Header& header,
                                 const std::vector<Cpa005Transaction>& transactions);

// ---------------------------------------------------------------------------------------------
// BAI2 cash management balance reporting (municipal_bai2.cpp)

struct Bai2Summary {
  std::int64_t line = 0;
  std::string account_number;
  std::string currency;
  std::string type_code;
  std::optional<std::int64_t> amount_cents;
  std::optional<std::int64_t> item_count;
  std::string funds_type;
};

struct Bai2Transaction {
  std::int64_t line = 0;
  std::string sender_id, receiver_id, file_creation_date, file_id;
  std::string originator_id, group_status, as_of_date;
  std::string account_number, currency;
  std::string type_code;
  std::optional<std::int64_t> amount_cents;
  std::string funds_type;
  std::string bank_reference, customer_reference, text;
};

struct Bai2File {
  std::string sender_id, receiver_id, file_creation_date, file_creation_time, file_id;
  std::vector<Bai2Summary> summaries;
  std::vector<Bai2Transaction> transactions;
  std::int64_t groups = 0;
  std::int64_t accounts = 0;
  std::int64_t physical_records = 0;
};

// Parses a BAI2 file: 01/02/03/16/88/49/98/99, with 88 continuations joined to the record
// they continue; the control totals and record counts of 49, 98 and 99 are checked.
Result<Bai2File> parse_bai2(std::string_view text);
// "credit" for detail type codes 100-399, "debit" for 400-699, "status"/"summary" otherwise.
std::string_view bai2_direction(std::string_view type_code);

// ---------------------------------------------------------------------------------------------
// Protocol Buffers wire format and GTFS-realtime (municipal_gtfs_rt.cpp)

// One field read from a message; `bytes` points into the message being read.
struct ProtoField {
  std::uint32_t number = 0;
  int wire_type = 0;        // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  std::uint64_t value = 0;  // varint, fixed64 or fixed32
  std::string_view bytes;   // length-delimited
  std::size_t offset = 0;   // of the tag within the message
};

// Reads the fields of one message in order. Groups (wire types 3, 4) are refused; every
// other field, known or not, is returned so the caller can skip what it does not know.
class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : data_(data) {}
  // The next field; nullopt at the end; an error names the byte offset.
  Result<std::optional<ProtoField>> next();

 private:
  Result<std::uint64_t> varint();
  std::string_view data_;
  std::size_t pos_ = 0;
};

struct GtfsRtFeed {
  std::string version;
  std::int64_t incrementality = 0;
  std::optional<std::int64_t> timestamp;
  // Rows of the three streams, as objects keyed by column.
  std::vector<Json> trip_updates;
  std::vector<Json> vehicle_positions;
  std::vector<Json> alerts;
};

// Decodes a FeedMessage. Errors name the message path ("entity[2].vehicle.position") and
// the byte offset.
Result<GtfsRtFeed> decode_gtfs_rt(std::string_view bytes);

// ---------------------------------------------------------------------------------------------
// MPAC (municipal_mpac.cpp): 19 digits from a roll number written with or without separators.
Result<std::string> normalize_roll_number(std::string_view text);

// The connectors, registered by add_municipal_connectors (municipal_connectors.cpp).
std::unique_ptr<Connector> make_cpa005_connector();
std::unique_ptr<Connector> make_bai2_connector();
std::unique_ptr<Connector> make_cra_remittance_connector();
std::unique_ptr<Connector> make_erp_gl_connector();
std::unique_ptr<Connector> make_mpac_connector();
std::unique_ptr<Connector> make_gtfs_connector();
std::unique_ptr<Connector> make_gtfs_rt_connector();

}  // namespace civicbus::connect::detail

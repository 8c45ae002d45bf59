// The HTTP connector family (http, webhook, canada_post, arcgis, open311):
// factories and the few accessors tests and the hub use that the public
// Connector interface does not have. Private to the connect area.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "civicbus/connect/connector.hpp"

namespace civicbus::connect::detail {

std::unique_ptr<Connector> make_http_connector();
std::unique_ptr<Connector> make_webhook_connector();
std::unique_ptr<Connector> make_canada_post_connector();
std::unique_ptr<Connector> make_arcgis_connector();
std::unique_ptr<Connector> make_open311_connector();

// The TCP port the webhook connector's listener is bound to (useful with
// "port": 0); 0 when it is not listening yet or `connector` is not a webhook
// connector.
std::uint16_t webhook_listening_port(const Connector& connector);

// What an Open311 server answered for one record written by the open311 sink.
struct Open311Submission {
  std::int64_t position = 0;
  std::string service_request_id;  // empty when the server answered with a token
  std::string token;
  std::string service_notice;
};
// The submissions of the open311 connector's last write() (empty for other
// connectors). They are also kept in `open311_submissions.db` in the work_dir
// when there is one.
std::vector<Open311Submission> open311_last_submissions(const Connector& connector);

// Groups records of one stream into batches of `batch_size`, stops at the
// request's record limit, and hands full batches to the emitter.
class StreamWriter {
 public:
  StreamWriter(RecordEmitter& out, std::string stream, const ReadRequest& request,
               std::int64_t* remaining)
      : out_(out), batch_(stream, {}), batch_size_(request.batch_size), remaining_(remaining) {}

  // False once the record limit is reached (the record is then not added).
  Result<bool> add(const Json& object, std::int64_t position) {
    if (*remaining_ == 0) return false;
    batch_.append_object(object, position);
    if (*remaining_ > 0) --*remaining_;
    if (batch_.size() >= batch_size_) CIVICBUS_RETURN_IF_ERROR(flush());
    return true;
  }
  Status flush() {
    if (batch_.empty()) return Status();
    RecordBatch full(batch_.stream, {});
    std::swap(full, batch_);
    return out_.emit(std::move(full));
  }
  bool limit_reached() const { return *remaining_ == 0; }

 private:
  RecordEmitter& out_;
  RecordBatch batch_;
  std::size_t batch_size_;
  std::int64_t* remaining_;  // negative: no limit
};

// Config helpers shared by the family: errors name the key.
Result<std::string> required_string(const Json& config, std::string_view key);
// Streams to read: the request's, or every one offered, checking the names.
Result<std::vector<std::string>> streams_to_read(const ReadRequest& request,
                                                 const std::vector<std::string>& offered,
                                                 std::string_view connector);

}  // namespace civicbus::connect::detail

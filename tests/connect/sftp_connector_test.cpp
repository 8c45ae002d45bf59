// The sftp connector against a real OpenSSH sshd started by the test
// (tests/support/sshd.hpp): a drop folder read as a watched folder, files moved
// aside once read, batches uploaded and renamed into place, and the host key
// pin and the client key enforced.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "support/sshd.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

namespace fs = std::filesystem;
using testing::Sshd;

std::unique_ptr<Connector> make_sftp() {
  auto c = ConnectorCatalog::builtin().create("sftp");
  REQUIRE(c.ok());
  return std::move(c).value();
}

ConnectorContext context_for(const Sshd& sshd, const fs::path& folder,
                             Json extra = Json::object()) {
  ConnectorContext context;
  context.config = Json::object({{"host", "127.0.0.1"},
                                 {"port", sshd.port()},
                                 {"username", sshd.user()},
                                 {"private_key", sshd.client_private_key()},
                                 {"host_key_sha256", sshd.host_fingerprint()},
                                 {"path", folder.string()},
                                 {"stream", "permits"}});
  for (const auto& [k, v] : extra.as_object()) context.config.set(k, v);
  context.timeout = std::chrono::milliseconds(10'000);
  return context;
}

std::vector<std::string> ids(const CollectingEmitter& out) {
  std::vector<std::string> values;
  for (const RecordBatch& b : out.batches) {
    const int i = b.column_index("permit_id");
    for (const Record& r : b.records) values.push_back(RecordBatch::value(r, i).as_string());
  }
  return values;
}

class CountingEmitter : public CollectingEmitter {
 public:
  Status checkpoint(std::string_view stream, Json state) override {
    ++checkpoints;
    return CollectingEmitter::checkpoint(stream, std::move(state));
  }
  int checkpoints = 0;
};

}  // namespace

TEST_CASE("sftp is in the builtin catalog with its secrets marked") {
  auto c = make_sftp();
  auto secrets = c->spec().secret_pointers();
  for (const char* p : {"/password", "/private_key", "/private_key_passphrase"}) {
    CHECK(std::find(secrets.begin(), secrets.end(), p) != secrets.end());
  }
  CHECK(c->spec().is_source);
  CHECK(c->spec().is_sink);
}

TEST_CASE("sftp source reads a drop folder and then only the file that appears") {
  Sshd sshd;
  const fs::path drop = sshd.data_dir() / "drop";
  fs::create_directories(drop);
  testing::write_file((drop / "2026-11-01.csv").string(), "permit_id,ward\nP-1,3\nP-2,5\n");
  testing::write_file((drop / "2026-11-02.csv").string(), "permit_id,ward\nP-3,1\n");
  testing::write_file((drop / "notes.txt").string(), "not a csv");
  auto sftp = make_sftp();
  ConnectorContext context = context_for(sshd, drop, Json::object({{"pattern", "*.csv"}}));
  REQUIRE_MESSAGE(sftp->check(context).ok(), sshd.log());

  auto streams = sftp->discover(context);
  REQUIRE(streams.ok());
  REQUIRE(streams->front().field("ward") != nullptr);
  CHECK(streams->front().field("ward")->type == FieldType::kInteger);

  CountingEmitter first;
  Status s = sftp->read(context, ReadRequest{}, first);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(ids(first) == std::vector<std::string>{"P-1", "P-2", "P-3"});
  CHECK(first.checkpoints == 2);
  const Json state = *first.states.find("permits");
  REQUIRE(state.find("files") != nullptr);
  CHECK(state.find("files")->size() == 2);
  CHECK(state.find("files")->find("2026-11-01.csv")->get_int("size") == 27);

  testing::write_file((drop / "2026-11-03.csv").string(), "permit_id,ward\nP-4,2\n");
  ReadRequest again;
  again.state = Json::object({{"permits", state}});
  CountingEmitter second;
  REQUIRE(sftp->read(context, again, second).ok());
  CHECK(ids(second) == std::vector<std::string>{"P-4"});
  CHECK(second.checkpoints == 1);
  CHECK(second.states.find("permits")->find("files")->size() == 3);
}

TEST_CASE("sftp source moves processed files to a subfolder after the checkpoint") {
  Sshd sshd;
  const fs::path drop = sshd.data_dir() / "drop";
  fs::create_directories(drop);
  testing::write_file((drop / "a.ndjson").string(),
                      "{\"permit_id\":\"P-1\"}\n{\"permit_id\":\"P-2\"}\n");
  testing::write_file((drop / "b.csv").string(), "permit_id\nP-3\n");
  auto sftp = make_sftp();
  ConnectorContext context = context_for(sshd, drop, Json::object({{"move_processed_to", "done"}}));
  CountingEmitter out;
  Status s = sftp->read(context, ReadRequest{}, out);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(ids(out) == std::vector<std::string>{"P-1", "P-2", "P-3"});
  CHECK(out.checkpoints == 2);
  CHECK(!fs::exists(drop / "a.ndjson"));
  CHECK(!fs::exists(drop / "b.csv"));
  CHECK(fs::exists(drop / "done" / "a.ndjson"));
  CHECK(fs::exists(drop / "done" / "b.csv"));
  // Moved files leave the state (the last one at the next listing); the folder, its
  // subfolder aside, is empty, so nothing is read.
  ReadRequest next;
  next.state = out.states;
  CollectingEmitter again;
  REQUIRE(sftp->read(context, next, again).ok());
  CHECK(again.record_count() == 0);
  CHECK(again.states.find("permits")->find("files")->size() == 0);
}

TEST_CASE(
    "sftp sink uploads each batch under a temporary name and renames it "
    "into place") {
  Sshd sshd;
  const fs::path out_dir = sshd.data_dir() / "outbox";
  fs::create_directories(out_dir);
  auto sftp = make_sftp();
  ConnectorContext context = context_for(sshd, out_dir, Json::object({{"format", "csv"}}));
  RecordBatch batch("permits", {"permit_id", "ward"});
  batch.records.push_back(Record{{Json("P-1"), Json(3)}, 1});
  batch.records.push_back(Record{{Json("P-2"), Json()}, 2});
  WriteRequest request;
  request.stream = "permits";
  request.batch_id = "run3:1";
  auto written = sftp->write(context, request, batch);
  REQUIRE_MESSAGE(written.ok(), written.status().message());
  CHECK(written->written == 2);
  const fs::path file = out_dir / "permits-run3-1.csv";
  REQUIRE(fs::exists(file));
  CHECK(testing::read_file(file.string()) == "permit_id,ward\r\nP-1,3\r\nP-2,\r\n");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(out_dir)) names.push_back(e.path().filename());
  CHECK(names == std::vector<std::string>{"permits-run3-1.csv"});  // no temporary file left

  // A replayed batch id finds its file complete and does not write it again.
  const auto mtime = fs::last_write_time(file);
  RecordBatch other("permits", {"permit_id"});
  other.records.push_back(Record{{Json("X")}, 1});
  REQUIRE(sftp->write(context, request, other).ok());
  CHECK(testing::read_file(file.string()) == "permit_id,ward\r\nP-1,3\r\nP-2,\r\n");
  CHECK(fs::last_write_time(file) == mtime);

  // NDJSON, and the sink's own files read back by the source.
  ConnectorContext ndjson = context_for(sshd, out_dir, Json::object({{"format", "ndjson"}}));
  request.batch_id = "run3:2";
  REQUIRE(sftp->write(ndjson, request, batch).ok());
  CHECK(testing::read_file((out_dir / "permits-run3-2.ndjson").string()) ==
        "{\"permit_id\":\"P-1\",\"ward\":3}\n{\"permit_id\":\"P-2\",\"ward\":"
        "null}\n");
  ConnectorContext source = context_for(sshd, out_dir, Json::object({{"format", "auto"}}));
  CollectingEmitter back;
  REQUIRE(sftp->read(source, ReadRequest{}, back).ok());
  CHECK(ids(back) == std::vector<std::string>{"P-1", "P-2", "P-1", "P-2"});
}

TEST_CASE(
    "sftp refuses a wrong host key pin, an unpinned host and an unknown "
    "client key") {
  Sshd sshd;
  const fs::path drop = sshd.data_dir();
  auto sftp = make_sftp();

  // Another key's fingerprint: refused, naming the fingerprint the server
  // presented.
  ConnectorContext pinned_wrong = context_for(
      sshd, drop,
      Json::object({{"host_key_sha256", "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}}));
  Status s = sftp->check(pinned_wrong);
  CHECK(s.code() == ErrorCode::kPermissionDenied);
  CHECK(s.message().find(sshd.host_fingerprint()) != std::string::npos);

  // No pin: refused unless the check is skipped on purpose.
  ConnectorContext unpinned = context_for(sshd, drop);
  unpinned.config.erase("host_key_sha256");
  Status refused = sftp->check(unpinned);
  CHECK(refused.code() == ErrorCode::kFailedPrecondition);
  CHECK(refused.message().find(sshd.host_fingerprint()) != std::string::npos);
  unpinned.config.set("insecure_skip_host_key_check", true);
  CHECK(sftp->check(unpinned).ok());

  // A key the server does not know.
  ConnectorContext stranger =
      context_for(sshd, drop, Json::object({{"private_key", sshd.unknown_private_key()}}));
  Status denied = sftp->check(stranger);
  CHECK(denied.code() == ErrorCode::kPermissionDenied);
  CHECK(denied.message().find("refused the private key") != std::string::npos);

  // A folder that is not there.
  CHECK(sftp->check(context_for(sshd, drop / "missing")).code() == ErrorCode::kNotFound);
}

}  // namespace civicbus::connect

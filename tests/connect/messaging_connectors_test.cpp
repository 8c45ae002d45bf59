// The messaging connectors: `mqtt` against a real mosquitto broker, `smtp` against a stand-in SMTP
// server written here (the real protocol over a loopback socket on port 0).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/crypto.hpp"
#include "connect/builtin_connectors.hpp"
#include "support/mosquitto.hpp"
#include "support/test_pki.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Connector> make(std::string_view name) {
  auto connector = ConnectorCatalog::builtin().create(name);
  REQUIRE(connector.ok());
  return std::move(connector).value();
}

ConnectorContext context_with(Json config, std::string work_dir = {}) {
  ConnectorContext context;
  context.config = std::move(config);
  context.work_dir = std::move(work_dir);
  context.timeout = 5s;
  return context;
}

WriteRequest write_to(std::string stream) {
  WriteRequest request;
  request.stream = std::move(stream);
  return request;
}

// Every record read so far, as objects; the state moves on only as a hub would commit it.
struct Drain {
  std::vector<Json> records;
  Json state;  // null: from the start

  Status read_once(Connector& connector, const ConnectorContext& context) {
    ReadRequest request;
    request.state = state;
    CollectingEmitter out;
    CIVICBUS_RETURN_IF_ERROR(connector.read(context, request, out));
    for (const auto& batch : out.batches) {
      for (const auto& record : batch.records) records.push_back(batch.to_object(record));
    }
    if (out.states.size() > 0) state = out.states;
    return Status();
  }
  // Reads until `count` records have come or 10 s pass.
  bool read_until(Connector& connector, const ConnectorContext& context, std::size_t count) {
    return testing::wait_until(
        [&] { return read_once(connector, context).ok() && records.size() >= count; }, 10s);
  }
};

RecordBatch permits_batch() {
  RecordBatch batch("permits", {"id", "status", "address"});
  batch.records.push_back(Record{{Json(1), Json("issued"), Json("12 King St")}, 1});
  batch.records.push_back(Record{{Json(2), Json("pending"), Json("3 Bay St")}, 2});
  batch.records.push_back(Record{{Json(3), Json(), Json("9 Front St")}, 3});  // no status
  return batch;
}

TEST_CASE("messaging connectors are in the builtin catalog with secrets marked") {
  auto catalog = ConnectorCatalog::builtin();
  REQUIRE(catalog.contains("mqtt"));
  REQUIRE(catalog.contains("smtp"));
  auto mqtt = make("mqtt");
  CHECK(mqtt->spec().is_source);
  CHECK(mqtt->spec().is_sink);
  CHECK(mqtt->spec().secret_pointers() == std::vector<std::string>{"/password"});
  auto smtp = make("smtp");
  CHECK_FALSE(smtp->spec().is_source);
  CHECK(smtp->spec().is_sink);
  CHECK(smtp->spec().secret_pointers() == std::vector<std::string>{"/password"});
  CHECK(
      validate_config(mqtt->spec(), Json::object({{"server_uri", "tcp://127.0.0.1:1"}, {"qos", 2}}))
          .code() == ErrorCode::kInvalidArgument);
}

TEST_CASE(
    "mqtt round trip: sink publishes by topic template, source reads the "
    "inbox") {
  testing::Mosquitto broker;
  testing::TempDir dir;
  auto source = make("mqtt");
  ConnectorContext source_context =
      context_with(Json::object({{"server_uri", broker.uri()},
                                 {"client_id", "roundtrip-source"},
                                 {"topics", Json::array({"city/permits/+", "city/notes/#"})},
                                 {"qos", 1}}),
                   dir.file("source"));
  REQUIRE(source->check(source_context).ok());  // the subscription starts here

  auto sink = make("mqtt");
  ConnectorContext sink_context = context_with(Json::object({{"server_uri", broker.uri()},
                                                             {"client_id", "roundtrip-sink"},
                                                             {"topic", "city/permits/{status}"}}));
  auto written = sink->write(sink_context, write_to("permits"), permits_batch());
  REQUIRE(written.ok());
  CHECK(written->written == 2);
  REQUIRE(written->rejected.size() == 1);
  CHECK(written->rejected[0].position == 3);
  CHECK(written->rejected[0].field == "status");

  // A payload_field sends that field's text as it is.
  ConnectorContext note_context = context_with(Json::object(
      {{"server_uri", broker.uri()}, {"topic", "city/notes/{id}"}, {"payload_field", "address"}}));
  auto notes = sink->write(note_context, write_to("permits"), permits_batch());
  REQUIRE(notes.ok());
  CHECK(notes->written == 3);

  Drain drain;
  REQUIRE(drain.read_until(*source, source_context, 5));
  REQUIRE(drain.records.size() == 5);
  std::set<std::string> topics;
  for (Json r : drain.records) {
    topics.insert(r.get_string("topic"));
    CHECK(r.get_int("qos") == 1);
    CHECK(r["retained"] == Json(false));
    CHECK(parse_rfc3339(r.get_string("received_at")).ok());
    if (r.get_string("topic") == "city/permits/issued") {
      // A JSON object payload is flattened into columns.
      CHECK(r["id"] == Json(1));
      CHECK(r["address"] == Json("12 King St"));
      CHECK(r["payload"].is_null());
    }
    if (r.get_string("topic") == "city/notes/3") CHECK(r["payload"] == Json("9 Front St"));
  }
  CHECK(topics == std::set<std::string>{"city/permits/issued", "city/permits/pending",
                                        "city/notes/1", "city/notes/2", "city/notes/3"});
  CHECK(drain.state["mqtt"]["cursor"] == drain.records.back()["_inbox_id"]);

  // The state cursor skips what was read.
  Drain again{{}, drain.state};
  REQUIRE(again.read_once(*source, source_context).ok());
  CHECK(again.records.empty());
}

TEST_CASE(
    "mqtt source drains what arrived between reads and survives its own "
    "destruction") {
  testing::Mosquitto broker;
  testing::TempDir dir;
  Json config = Json::object({{"server_uri", broker.uri()},
                              {"client_id", "durable-source"},
                              {"topics", Json::array({"sensors/#"})},
                              {"keep_alive_s", 10}});
  ConnectorContext context = context_with(config, dir.file("inbox"));
  auto sink = make("mqtt");
  ConnectorContext sink_context =
      context_with(Json::object({{"server_uri", broker.uri()}, {"topic", "sensors/{id}"}}));
  auto publish = [&](int first, int count) {
    RecordBatch batch("readings", {"id", "level"});
    for (int i = first; i < first + count; ++i) {
      batch.records.push_back(Record{{Json(i), Json(i * 10)}, i});
    }
    auto r = sink->write(sink_context, write_to("readings"), batch);
    REQUIRE(r.ok());
    REQUIRE(r->written == count);
  };

  Drain committed;  // what a hub has read and committed
  {
    auto source = make("mqtt");
    Drain first;
    REQUIRE(first.read_once(*source, context).ok());  // subscribes (empty inbox)
    CHECK(first.records.empty());
    publish(1, 2);
    REQUIRE(committed.read_until(*source, context, 2));

    // Published while nobody reads: stored in the inbox, drained by the next read.
    publish(3, 2);
    Drain peek{{}, committed.state};
    REQUIRE(peek.read_until(*source, context, 2));
    CHECK(peek.records[0]["id"] == Json(3));
    CHECK(peek.records[1]["level"] == Json(40));
    // Not committed: the destroyed connector's inbox must still hold 3 and 4.
  }
  // Published while no connector exists: the broker keeps them for the persistent session.
  publish(5, 2);

  auto restarted = make("mqtt");
  Drain rest{{}, committed.state};
  REQUIRE(rest.read_until(*restarted, context, 4));
  std::vector<std::int64_t> ids;
  for (const Json& r : rest.records) ids.push_back(r.get_int("id"));
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::int64_t>{3, 4, 5, 6});
}

TEST_CASE("mqtt check names the server it cannot reach and refuses bad config") {
  const int port = testing::free_loopback_port();  // nothing listens there
  const std::string uri = "tcp://127.0.0.1:" + std::to_string(port);
  testing::TempDir dir;
  auto connector = make("mqtt");
  Status status = connector->check(context_with(
      Json::object(
          {{"server_uri", uri}, {"client_id", "nobody"}, {"topics", Json::array({"a/#"})}}),
      dir.file("inbox")));
  REQUIRE_FALSE(status.ok());
  CHECK(status.code() == ErrorCode::kUnavailable);
  CHECK(status.message().find(uri) != std::string::npos);

  Status sink_only = make("mqtt")->check(context_with(Json::object({{"server_uri", uri}})));
  CHECK(sink_only.code() == ErrorCode::kUnavailable);
  CHECK(sink_only.message().find(uri) != std::string::npos);

  Status bad_filter = make("mqtt")->check(context_with(
      Json::object({{"server_uri", uri}, {"client_id", "x"}, {"topics", Json::array({"a/b#"})}}),
      dir.file("inbox")));
  CHECK(bad_filter.code() == ErrorCode::kInvalidArgument);
  CHECK(bad_filter.message().find("a/b#") != std::string::npos);

  Status bad_scheme =
      make("mqtt")->check(context_with(Json::object({{"server_uri", "http://127.0.0.1:1"}})));
  CHECK(bad_scheme.code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("mqtt over ssl checks the broker certificate against ca_file") {
  const auto& pki = testing::pki();
  testing::TempDir dir;
  const int port = testing::free_loopback_port();
  // mosquitto started as root drops to its own user before it loads the certificate: it gets
  // readable copies.
  namespace fs = std::filesystem;
  fs::copy_file(pki.server, dir.file("server.pem"));
  fs::copy_file(pki.server_key, dir.file("server.key"));
  fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
  for (const char* name : {"server.pem", "server.key"}) {
    fs::permissions(dir.file(name), fs::perms::owner_read | fs::perms::owner_write |
                                        fs::perms::group_read | fs::perms::others_read);
  }
  testing::write_file(dir.file("mosquitto.conf"),
                      "listener " + std::to_string(port) + " 127.0.0.1\n" + "certfile " +
                          dir.file("server.pem") + "\nkeyfile " + dir.file("server.key") +
                          "\nallow_anonymous true\npersistence false\nlog_dest stderr\n");
  auto exe = testing::find_program("mosquitto");
  REQUIRE(exe.has_value());
  auto broker = testing::ChildProcess::start({*exe, "-c", dir.file("mosquitto.conf")},
                                             dir.file("mosquitto.log"));
  REQUIRE(broker.has_value());
  const bool up = testing::wait_until([&] { return testing::tcp_accepts(port); }, 10s);
  INFO("mosquitto log: " << testing::read_file(dir.file("mosquitto.log")));
  REQUIRE(up);
  const std::string uri = "ssl://127.0.0.1:" + std::to_string(port);

  auto source = make("mqtt");
  ConnectorContext source_context =
      context_with(Json::object({{"server_uri", uri},
                                 {"client_id", "tls-source"},
                                 {"ca_file", pki.ca},
                                 {"topics", Json::array({"secure/#"})}}),
                   dir.file("inbox"));
  REQUIRE(source->check(source_context).ok());
  auto sink = make("mqtt");
  RecordBatch batch("alerts", {"zone", "level"});
  batch.records.push_back(Record{{Json("north"), Json(3)}, 1});
  auto written = sink->write(
      context_with(
          Json::object({{"server_uri", uri}, {"ca_file", pki.ca}, {"topic", "secure/{zone}"}})),
      write_to("alerts"), batch);
  REQUIRE(written.ok());
  CHECK(written->written == 1);
  Drain drain;
  REQUIRE(drain.read_until(*source, source_context, 1));
  CHECK(drain.records[0]["topic"] == Json("secure/north"));
  CHECK(drain.records[0]["level"] == Json(3));

  // Without the test CA the broker's certificate is not trusted.
  Status untrusted = make("mqtt")->check(context_with(Json::object({{"server_uri", uri}})));
  CHECK(untrusted.code() == ErrorCode::kUnavailable);
  CHECK(untrusted.message().find(uri) != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// smtp

// A stand-in SMTP server: one thread, one connection at a time, the RFC 5321 commands the sink
// uses. Messages are recorded as received on the wire (dot-stuffed) and unstuffed.
class FakeSmtpServer {
 public:
  struct Options {
    bool offer_8bitmime = true;
    std::string username = "clerk";  // empty: no AUTH required
    std::string password = "s3cret";
    std::set<std::string> refuse;    // 550 on RCPT
    std::set<std::string> tempfail;  // 451 on RCPT
    int drop_after_messages = -1;    // close the connection on the next MAIL after this many
  };
  struct Message {
    std::string mail_from;
    std::vector<std::string> rcpt_to;
    std::string wire;  // as sent between DATA and the final ".", dot-stuffed
    std::string text;  // dot-stuffing removed
  };

  explicit FakeSmtpServer(Options options) : options_(std::move(options)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 8) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeSmtpServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  std::vector<Message> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::vector<std::string> commands() const {
    std::lock_guard lock(mutex_);
    return commands_;
  }
  int sessions() const { return sessions_.load(); }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      timeval tv{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ++sessions_;
      session(fd);
      ::close(fd);
    }
  }

  bool read_line(int fd, std::string& buffer, std::string& line) {
    for (;;) {
      std::size_t end = buffer.find("\r\n");
      if (end != std::string::npos) {
        line = buffer.substr(0, end);
        buffer.erase(0, end + 2);
        return true;
      }
      char chunk[4096];
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
  }
  static void send(int fd, std::string_view text) {
    ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  }

  void session(int fd) {
    std::string buffer, line;
    bool authed = options_.username.empty();
    Message tx;
    int accepted = 0;
    send(fd, "220 fake.test ESMTP ready\r\n");
    while (read_line(fd, buffer, line)) {
      {
        std::lock_guard lock(mutex_);
        commands_.push_back(line);
      }
      std::string verb = line.substr(0, line.find(' '));
      if (verb == "EHLO") {
        send(fd, std::string("250-fake.test greets you\r\n") +
                     (options_.offer_8bitmime ? "250-8BITMIME\r\n" : "") +
                     "250-AUTH PLAIN LOGIN\r\n250 SIZE 1000000\r\n");
      } else if (verb == "AUTH" && line.starts_with("AUTH PLAIN ")) {
        auto decoded = crypto::base64_decode(line.substr(11));
        std::string expected = std::string(1, '\0') + options_.username + '\0' + options_.password;
        authed = decoded.ok() && *decoded == expected;
        send(fd, authed ? "235 2.7.0 Authentication successful\r\n"
                        : "535 5.7.8 Authentication credentials invalid\r\n");
      } else if (line == "AUTH LOGIN") {
        send(fd, "334 VXNlcm5hbWU6\r\n");
        std::string user, pass;
        if (!read_line(fd, buffer, user)) return;
        send(fd, "334 UGFzc3dvcmQ6\r\n");
        if (!read_line(fd, buffer, pass)) return;
        auto u = crypto::base64_decode(user);
        auto p = crypto::base64_decode(pass);
        authed = u.ok() && p.ok() && *u == options_.username && *p == options_.password;
        send(fd, authed ? "235 2.7.0 ok\r\n" : "535 5.7.8 no\r\n");
      } else if (verb == "MAIL") {
        if (options_.drop_after_messages >= 0 && accepted >= options_.drop_after_messages) return;
        if (!authed) {
          send(fd, "530 5.7.0 Authentication required\r\n");
          continue;
        }
        tx = Message{};
        tx.mail_from = line.substr(10);
        send(fd, "250 2.1.0 ok\r\n");
      } else if (verb == "RCPT") {
        std::string address = line.substr(9, line.find('>') - 9);
        if (options_.refuse.count(address) > 0) {
          send(fd, "550 5.1.1 <" + address + ">: Recipient address rejected\r\n");
        } else if (options_.tempfail.count(address) > 0) {
          send(fd, "451 4.3.0 <" + address + ">: try again later\r\n");
        } else {
          tx.rcpt_to.push_back(address);
          send(fd, "250 2.1.5 ok\r\n");
        }
      } else if (verb == "DATA") {
        if (tx.rcpt_to.empty()) {
          send(fd, "503 5.5.1 no valid recipients\r\n");
          continue;
        }
        send(fd, "354 End data with <CR><LF>.<CR><LF>\r\n");
        while (read_line(fd, buffer, line) && line != ".") {
          tx.wire += line + "\r\n";
          tx.text += (line.starts_with(".") ? line.substr(1) : line) + "\r\n";
        }
        {
          std::lock_guard lock(mutex_);
          messages_.push_back(tx);
        }
        ++accepted;
        send(fd, "250 2.0.0 queued as " + std::to_string(accepted) + "\r\n");
      } else if (verb == "RSET") {
        tx = Message{};
        send(fd, "250 2.0.0 ok\r\n");
      } else if (verb == "QUIT") {
        send(fd, "221 2.0.0 bye\r\n");
        return;
      } else {
        send(fd, "500 5.5.2 what?\r\n");
      }
    }
  }

  Options options_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> sessions_{0};
  mutable std::mutex mutex_;
  std::vector<Message> messages_;
  std::vector<std::string> commands_;
  std::thread thread_;
};

Json smtp_config(int port) {
  return Json::object({{"host", "127.0.0.1"},
                       {"port", port},
                       {"username", "clerk"},
                       {"password", "s3cret"},
                       {"from", "permits@city.example"},
                       {"from_name", "City Permits"},
                       {"to_field", "email"},
                       {"subject", "Permit {permit} für {name}"},
                       {"body", "Hello {name},\n.hidden line\nPermit {permit} is issued.\n"}});
}

RecordBatch mail_batch() {
  RecordBatch batch("notices", {"email", "name", "permit"});
  batch.records.push_back(Record{{Json("alice@example.org"), Json("Zoë"), Json("P-1")}, 1});
  batch.records.push_back(Record{{Json(), Json("Nobody"), Json("P-2")}, 2});
  batch.records.push_back(Record{{Json("ghost@example.org"), Json("Ghost"), Json("P-3")}, 3});
  batch.records.push_back(Record{{Json("bob@example.org"), Json("Bob"), Json("P-4")}, 4});
  return batch;
}

// The header `name`'s value (unfolded) in a message text; empty when absent.
std::string header(const std::string& text, const std::string& name) {
  std::size_t at = text.find(name + ": ");
  if (at == std::string::npos) return {};
  std::size_t end = at;
  do {
    end = text.find("\r\n", end + 1);
  } while (end != std::string::npos && end + 2 < text.size() &&
           (text[end + 2] == ' ' || text[end + 2] == '\t'));
  std::string value = text.substr(at + name.size() + 2, end - at - name.size() - 2);
  std::string unfolded;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value.compare(i, 3, "\r\n ") == 0) {
      i += 2;
      continue;
    }
    unfolded += value[i];
  }
  return unfolded;
}

// Decodes a run of RFC 2047 "=?UTF-8?B?...?=" words (adjacent words join without space).
std::string decode_words(const std::string& value) {
  std::string out;
  std::size_t i = 0;
  while ((i = value.find("=?UTF-8?B?", i)) != std::string::npos) {
    std::size_t end = value.find("?=", i + 10);
    auto bytes = crypto::base64_decode(value.substr(i + 10, end - i - 10));
    REQUIRE(bytes.ok());
    out += *bytes;
    i = end + 2;
  }
  return out;
}

TEST_CASE(
    "smtp sends one email per record in one session and rejects refused "
    "recipients") {
  FakeSmtpServer::Options options;
  options.refuse = {"ghost@example.org"};
  FakeSmtpServer server(options);
  auto smtp = make("smtp");
  ConnectorContext context = context_with(smtp_config(server.port()));
  REQUIRE(smtp->check(context).ok());
  const int after_check = server.sessions();

  auto result = smtp->write(context, write_to("notices"), mail_batch());
  REQUIRE(result.ok());
  CHECK(result->written == 2);
  REQUIRE(result->rejected.size() == 2);
  CHECK(result->rejected[0].position == 2);
  CHECK(result->rejected[0].field == "email");
  CHECK(result->rejected[1].position == 3);
  CHECK(result->rejected[1].reason.find("550 5.1.1 <ghost@example.org>") != std::string::npos);

  CHECK(server.sessions() == after_check + 1);  // one session for the batch
  auto commands = server.commands();
  CHECK(std::count(commands.begin(), commands.end(), "RSET") == 2);  // before records 3 and 4
  CHECK(std::count(commands.begin(), commands.end(), "QUIT") == 2);  // check() and write()

  auto messages = server.messages();
  REQUIRE(messages.size() == 2);
  CHECK(messages[0].rcpt_to == std::vector<std::string>{"alice@example.org"});
  CHECK(messages[1].rcpt_to == std::vector<std::string>{"bob@example.org"});
  CHECK(messages[0].mail_from == "<permits@city.example> BODY=8BITMIME");
  const std::string& text = messages[0].text;
  CHECK(header(text, "From") == "\"City Permits\" <permits@city.example>");
  CHECK(header(text, "To") == "alice@example.org");
  CHECK(header(text, "MIME-Version") == "1.0");
  CHECK(header(text, "Content-Type") == "text/plain; charset=utf-8");
  CHECK(header(text, "Content-Transfer-Encoding") == "8bit");
  std::string date = header(text, "Date");
  CHECK(date.size() == 31);  // "Tue, 01 Dec 2026 22:16:50 +0000"
  CHECK(date.ends_with(" +0000"));
  std::string id = header(text, "Message-ID");
  CHECK(id.starts_with("<"));
  CHECK(id.ends_with("@city.example>"));
  CHECK(header(messages[1].text, "Message-ID") != id);
  // UTF-8 subject as RFC 2047 encoded words.
  std::string subject = header(text, "Subject");
  CHECK(subject.starts_with("=?UTF-8?B?"));
  CHECK(decode_words(subject) == "Permit P-1 für Zoë");
  // The body's line starting with '.' is dot-stuffed on the wire, and only there.
  CHECK(messages[0].wire.find("\r\n..hidden line\r\n") != std::string::npos);
  CHECK(text.find("\r\n\r\nHello Zoë,\r\n.hidden line\r\nPermit P-1 is issued.\r\n") !=
        std::string::npos);
}

TEST_CASE("smtp uses quoted-printable without 8BITMIME and AUTH LOGIN when asked") {
  FakeSmtpServer::Options options;
  options.offer_8bitmime = false;
  FakeSmtpServer server(options);
  Json config = smtp_config(server.port());
  config.set("auth_mechanism", "login");
  config.set("subject", "Notice");
  config.set("body", "Grüße = {name}\n.dot");
  auto smtp = make("smtp");
  RecordBatch batch("notices", {"email", "name"});
  batch.records.push_back(Record{{Json("alice@example.org"), Json("Zoë")}, 1});
  auto result = smtp->write(context_with(config), write_to("notices"), batch);
  REQUIRE(result.ok());
  CHECK(result->written == 1);
  auto commands = server.commands();
  CHECK(std::find(commands.begin(), commands.end(), "AUTH LOGIN") != commands.end());
  auto messages = server.messages();
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].mail_from == "<permits@city.example>");
  CHECK(header(messages[0].text, "Content-Transfer-Encoding") == "quoted-printable");
  CHECK(header(messages[0].text, "Subject") == "Notice");
  CHECK(messages[0].text.find("\r\n\r\nGr=C3=BC=C3=9Fe =3D Zo=C3=AB\r\n.dot\r\n") !=
        std::string::npos);
  CHECK(messages[0].wire.find("\r\n..dot\r\n") != std::string::npos);
}

TEST_CASE(
    "smtp fails the whole write as unavailable on a 4xx or a dropped "
    "connection") {
  {
    FakeSmtpServer::Options options;
    options.tempfail = {"bob@example.org"};
    FakeSmtpServer server(options);
    auto result =
        make("smtp")->write(context_with(smtp_config(server.port())), write_to("n"), mail_batch());
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == ErrorCode::kUnavailable);
    CHECK(result.status().message().find("451") != std::string::npos);
  }
  {
    FakeSmtpServer::Options options;
    options.drop_after_messages = 1;
    FakeSmtpServer server(options);
    auto result =
        make("smtp")->write(context_with(smtp_config(server.port())), write_to("n"), mail_batch());
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == ErrorCode::kUnavailable);
    CHECK(result.status().message().find("connection lost") != std::string::npos);
    CHECK(server.messages().size() == 1);
  }
}

TEST_CASE("smtp check reports bad credentials and unreachable servers") {
  FakeSmtpServer server(FakeSmtpServer::Options{});
  Json wrong = smtp_config(server.port());
  wrong.set("password", "guess");
  Status refused = make("smtp")->check(context_with(wrong));
  CHECK(refused.code() == ErrorCode::kUnauthenticated);
  CHECK(refused.message().find("535") != std::string::npos);
  CHECK(refused.message().find("guess") == std::string::npos);  // never the secret

  const int port = testing::free_loopback_port();
  Status unreachable = make("smtp")->check(context_with(smtp_config(port)));
  CHECK(unreachable.code() == ErrorCode::kUnavailable);
  CHECK(unreachable.message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

}  // namespace
}  // namespace civicbus::connect

// The `smtp` sink: one email per record over an RFC 5321 session (one session per batch, RSET
// between messages), with AUTH PLAIN / LOGIN, templated subject and body, RFC 5322 headers and a
// UTF-8 text/plain body (8bit when the server offers 8BITMIME, else quoted-printable).
#include <algorithm>
#include <asio.hpp>
#include <cctype>
#include <string>
#include <vector>

#include "builtin_connectors.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/random.hpp"
#include "http_connectors.hpp"
#include "record_template.hpp"
#include "rest_client.hpp"

namespace civicbus::connect::detail {
namespace {

using asio::ip::tcp;

Json string_schema(bool secret = false) {
  Json s = Json::object({{"type", "string"}});
  if (secret) s.set("secret", true);
  return s;
}

ConnectorSpec smtp_spec() {
  ConnectorSpec spec;
  spec.name = "smtp";
  spec.title = "Email (SMTP)";
  spec.description =
      "Sends one plain-text UTF-8 email per record through an SMTP server "
      "(AUTH PLAIN or "
      "LOGIN), the recipient taken from a record field and the subject and "
      "body from "
      "templates with {field} placeholders. A recipient the server refuses "
      "rejects that "
      "record only; a temporary failure fails the batch so that it is retried.";
  spec.format_source =
      "RFC 5321 (SMTP), RFC 5322 (message format), RFC 4954 "
      "and RFC 4616 (AUTH PLAIN), "
      "RFC 6152 (8BITMIME), RFC 2045 (MIME, "
      "quoted-printable), RFC 2047 (encoded words)";
  spec.is_source = false;
  spec.is_sink = true;
  spec.config_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"host", "from"})},
       {"properties",
        Json::object(
            {{"host", string_schema()},
             {"port", Json::object({{"type", "integer"}, {"minimum", 1}, {"maximum", 65535}})},
             {"helo_name", string_schema()},
             {"username", string_schema()},
             {"password", string_schema(true)},
             {"auth_mechanism", Json::object({{"enum", Json::array({"auto", "plain", "login"})}})},
             {"from", string_schema()},
             {"from_name", string_schema()},
             {"reply_to", string_schema()},
             {"to_field", string_schema()},
             {"subject", string_schema()},
             {"body", string_schema()}})}});
  return spec;
}

struct SmtpSettings {
  std::string host;
  std::uint16_t port = 25;
  std::string helo_name = "localhost";
  std::string username;
  std::string password;
  std::string auth_mechanism = "auto";
  std::string from;
  std::string from_name;
  std::string reply_to;
  std::string to_field = "to";
  std::string subject = "{subject}";
  std::string body;  // empty: one "name: value" line per field
};

// A mailbox we put in an envelope or a header: no spaces, controls or angle brackets, and one '@'
// with something on both sides.
bool plausible_address(std::string_view address) {
  std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) return false;
  for (char c : address) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == '<' || c == '>' || c == ',' || c == 0x7F) {
      return false;
    }
  }
  return true;
}

Result<SmtpSettings> parse_smtp_settings(const Json& config) {
  SmtpSettings s;
  CIVICBUS_ASSIGN_OR_RETURN(s.host, required_string(config, "host"));
  std::int64_t port = config.get_int("port", 25);
  if (port < 1 || port > 65535) return invalid_argument("smtp 'port' must be 1..65535");
  s.port = static_cast<std::uint16_t>(port);
  s.helo_name = config.get_string("helo_name", s.helo_name);
  s.username = config.get_string("username");
  s.password = config.get_string("password");
  s.auth_mechanism = config.get_string("auth_mechanism", s.auth_mechanism);
  if (s.auth_mechanism != "auto" && s.auth_mechanism != "plain" && s.auth_mechanism != "login") {
    return invalid_argument("smtp 'auth_mechanism' must be auto, plain or login");
  }
  CIVICBUS_ASSIGN_OR_RETURN(s.from, required_string(config, "from"));
  if (!plausible_address(s.from)) {
    return invalid_argument("smtp 'from' '" + s.from + "' is not an address (local@domain)");
  }
  s.from_name = config.get_string("from_name");
  s.reply_to = config.get_string("reply_to");
  if (!s.reply_to.empty() && !plausible_address(s.reply_to)) {
    return invalid_argument("smtp 'reply_to' '" + s.reply_to + "' is not an address");
  }
  s.to_field = config.get_string("to_field", s.to_field);
  s.subject = config.get_string("subject", s.subject);
  s.body = config.get_string("body");
  return s;
}

bool is_ascii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Header text on one line: CR and LF (header injection) become spaces.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return text;
}

// RFC 2047 §4.1 B-encoded words for a UTF-8 header value that is not ASCII, each at most 75
// characters and cut between characters (§5 (3)), folded onto continuation lines.
std::string encode_header_text(std::string_view text) {
  if (is_ascii(text)) return std::string(text);
  constexpr std::size_t kMaxBytes = 45;  // 60 base64 characters + "=?UTF-8?B?" + "?="
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = std::min(text.size(), i + kMaxBytes);
    while (end < text.size() && end > i && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
      --end;  // back to the start of a character
    }
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + crypto::base64_encode(text.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

// Lines split on LF, a CR before it dropped.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t lf = text.find('\n', start);
    std::string_view line =
        text.substr(start, lf == std::string_view::npos ? std::string_view::npos : lf - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (lf == std::string_view::npos) break;
    start = lf + 1;
  }
  return lines;
}

// RFC 2045 §6.7 quoted-printable, CRLF line breaks, soft breaks keeping lines at 76.
std::string quoted_printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  bool first = true;
  for (std::string_view line : split_lines(text)) {
    if (!first) out += "\r\n";
    first = false;
    std::size_t column = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      auto c = static_cast<unsigned char>(line[i]);
      bool last = i + 1 == line.size();
      std::string piece;
      if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
        piece.assign(1, static_cast<char>(c));
      } else {
        piece = {'=', kHex[c >> 4], kHex[c & 0xF]};
      }
      if (column + piece.size() > 75) {  // room for the soft break's '='
        out += "=\r\n";
        column = 0;
      }
      out += piece;
      column += piece.size();
    }
  }
  return out;
}

// "Tue, 01 Dec 2026 22:16:50 +0000" (RFC 5322 §3.3).
std::string rfc5322_date(SystemTime t) {
  std::string date = format_http_date(t);  // "... GMT"
  if (date.ends_with(" GMT")) date.replace(date.size() - 3, 3, "+0000");
  return date;
}

struct Reply {
  int code = 0;
  std::string text;  // every line, joined by " / ", without the codes
  std::vector<std::string> lines;
  std::string describe() const { return std::to_string(code) + " " + text; }
};

// One SMTP client session over a blocking-with-deadline Asio socket. Not thread-safe.
class SmtpSession {
 public:
  SmtpSession(const SmtpSettings& settings, std::chrono::milliseconds timeout)
      : settings_(settings), timeout_(timeout), socket_(io_) {
    server_ = "smtp server " + settings.host + ":" + std::to_string(settings.port);
  }
  ~SmtpSession() {
    asio::error_code ec;
    socket_.close(ec);
  }

  const std::string& server() const { return server_; }
  bool eight_bit() const { return eight_bit_; }

  // Connects, reads the greeting, EHLO (HELO when EHLO is refused) and AUTH when configured.
  Status open() {
    tcp::resolver resolver(io_);
    asio::error_code ec;
    auto endpoints = resolver.resolve(settings_.host, std::to_string(settings_.port), ec);
    if (ec) return unavailable(server_ + ": cannot resolve the host: " + ec.message());
    ec = run([&](auto handler) { asio::async_connect(socket_, endpoints, handler); });
    if (ec) return unavailable(server_ + ": cannot connect: " + ec.message());
    CIVICBUS_ASSIGN_OR_RETURN(Reply greeting, read_reply("the greeting"));
    if (greeting.code != 220)
      return unavailable(server_ + " greeted with '" + greeting.describe() + "'");
    CIVICBUS_ASSIGN_OR_RETURN(Reply ehlo, command("EHLO " + settings_.helo_name));
    if (ehlo.code == 250) {
      for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
        std::string upper = ehlo.lines[i];
        for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (upper == "8BITMIME") eight_bit_ = true;
        if (upper.starts_with("AUTH ") || upper.starts_with("AUTH=")) {
          auth_plain_ = upper.find("PLAIN") != std::string::npos;
          auth_login_ = upper.find("LOGIN") != std::string::npos;
          auth_offered_ = true;
        }
      }
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(Reply helo, command("HELO " + settings_.helo_name));
      CIVICBUS_RETURN_IF_ERROR(expect(helo, 250, "HELO"));
    }
    if (!settings_.username.empty()) CIVICBUS_RETURN_IF_ERROR(authenticate());
    return Status();
  }

  Status quit() {
    auto reply = command("QUIT");
    return reply.ok() ? Status() : reply.status();
  }

  // Sends a command line and reads the reply; a lost connection is kUnavailable. Errors name
  // `what`, by default the command's verb (never an AUTH line's credentials).
  Result<Reply> command(std::string_view line, std::string_view what = {}) {
    std::string label(what.empty() ? line.substr(0, line.find(' ')) : what);
    CIVICBUS_RETURN_IF_ERROR(send(std::string(line) + "\r\n", label));
    return read_reply(label);
  }

  Status send(std::string_view wire, std::string_view what) {
    asio::error_code ec =
        run([&](auto handler) { asio::async_write(socket_, asio::buffer(wire), handler); });
    if (ec) {
      return unavailable(server_ + ": connection lost while sending " + std::string(what) + ": " +
                         ec.message());
    }
    return Status();
  }

  Result<Reply> read_reply(std::string_view after) {
    Reply reply;
    for (;;) {
      asio::error_code ec = run([&](auto handler) {
        asio::async_read_until(socket_, asio::dynamic_buffer(buffer_, 64 * 1024), "\r\n", handler);
      });
      if (ec) {
        return unavailable(server_ + ": connection lost waiting for the reply to " +
                           std::string(after) + ": " + ec.message());
      }
      std::size_t end = buffer_.find("\r\n");
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
          !std::isdigit(static_cast<unsigned char>(line[1])) ||
          !std::isdigit(static_cast<unsigned char>(line[2])) ||
          (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
        return unavailable(server_ + " answered '" + line + "' to " + std::string(after) +
                           ", which is not an SMTP reply");
      }
      int code = std::stoi(line.substr(0, 3));
      if (reply.code != 0 && code != reply.code) {
        return unavailable(server_ + " changed the reply code within a reply to " +
                           std::string(after));
      }
      reply.code = code;
      std::string text = line.size() > 4 ? line.substr(4) : "";
      reply.text += (reply.lines.empty() ? "" : " / ") + text;
      reply.lines.push_back(std::move(text));
      if (line.size() == 3 || line[3] == ' ') return reply;
    }
  }

  // `reply` must carry `code`: a 4xx (or anything unexpected) is kUnavailable, so that the hub
  // retries; a 5xx is kFailedPrecondition (the configuration needs a fix).
  Status expect(const Reply& reply, int code, std::string_view after) const {
    if (reply.code == code) return Status();
    std::string message = server_ + " answered '" + reply.describe() + "' to " + std::string(after);
    if (reply.code >= 500) return failed_precondition(message);
    return unavailable(message);
  }

 private:
  Status authenticate() {
    bool plain = settings_.auth_mechanism == "plain" ||
                 (settings_.auth_mechanism == "auto" && (auth_plain_ || !auth_login_));
    if (!auth_offered_) {
      return failed_precondition(server_ + " does not offer AUTH, but 'username' is set");
    }
    Reply reply;
    if (plain) {
      // RFC 4616: authzid NUL authcid NUL passwd.
      std::string token = std::string(1, '\0') + settings_.username + '\0' + settings_.password;
      CIVICBUS_ASSIGN_OR_RETURN(reply, command("AUTH PLAIN " + crypto::base64_encode(token)));
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(reply, command("AUTH LOGIN"));
      if (reply.code == 334) {
        CIVICBUS_ASSIGN_OR_RETURN(
            reply, command(crypto::base64_encode(settings_.username), "the AUTH LOGIN user name"));
      }
      if (reply.code == 334) {
        CIVICBUS_ASSIGN_OR_RETURN(
            reply, command(crypto::base64_encode(settings_.password), "the AUTH LOGIN password"));
      }
    }
    if (reply.code == 235) return Status();
    std::string message = server_ + " refused AUTH " + (plain ? "PLAIN" : "LOGIN") + " for '" +
                          settings_.username + "': " + reply.describe();
    if (reply.code >= 500) return unauthenticated(message);
    return unavailable(message);
  }

  // Runs one asynchronous operation to completion or the deadline (which closes the socket).
  template <typename Start>
  asio::error_code run(Start start) {
    asio::error_code result = asio::error::would_block;
    bool done = false;
    start([&](const asio::error_code& ec, auto&&...) {
      result = ec;
      done = true;
    });
    io_.restart();
    io_.run_for(timeout_);
    if (!done) {
      asio::error_code ignored;
      socket_.close(ignored);
      io_.restart();
      io_.run();
      return asio::error::timed_out;
    }
    return result;
  }

  const SmtpSettings& settings_;
  std::chrono::milliseconds timeout_;
  std::string server_;
  asio::io_context io_;
  tcp::socket socket_;
  std::string buffer_;
  bool eight_bit_ = false;
  bool auth_offered_ = false;
  bool auth_plain_ = false;
  bool auth_login_ = false;
};

// The message text (headers, blank line, body) with CRLF line ends, not yet dot-stuffed.
std::string build_message(const SmtpSettings& s, const std::vector<std::string>& to,
                          const std::string& subject, const std::string& body, bool eight_bit,
                          SystemTime now, RandomSource& random) {
  std::string domain = s.from.substr(s.from.rfind('@') + 1);
  std::string m;
  m += "Date: " + rfc5322_date(now) + "\r\n";
  m += "Message-ID: <" + crypto::to_hex(random.bytes(16)) + "@" + domain + ">\r\n";
  if (s.from_name.empty()) {
    m += "From: " + s.from + "\r\n";
  } else if (is_ascii(s.from_name)) {
    std::string quoted;
    for (char c : one_line(s.from_name)) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    m += "From: \"" + quoted + "\" <" + s.from + ">\r\n";
  } else {
    m += "From: " + encode_header_text(one_line(s.from_name)) + " <" + s.from + ">\r\n";
  }
  std::string to_line;
  for (const auto& a : to) to_line += (to_line.empty() ? "" : ", ") + a;
  m += "To: " + to_line + "\r\n";
  if (!s.reply_to.empty()) m += "Reply-To: " + s.reply_to + "\r\n";
  m += "Subject: " + encode_header_text(one_line(subject)) + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\n";
  bool long_line = false;
  for (auto line : split_lines(body)) long_line = long_line || line.size() > 998;
  if (eight_bit && !long_line) {
    m += "Content-Transfer-Encoding: 8bit\r\n\r\n";
    bool first = true;
    for (auto line : split_lines(body)) {
      if (!first) m += "\r\n";
      first = false;
      m += line;
    }
  } else {
    m += "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    m += quoted_printable(body);
  }
  return m;
}

// RFC 5321 §4.5.2: a line starting with '.' gets another; then the terminating "CRLF.CRLF".
std::string dot_stuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + 16);
  bool line_start = true;
  for (char c : message) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  if (!out.ends_with("\r\n")) out += "\r\n";
  out += ".\r\n";
  return out;
}

std::vector<std::string> split_recipients(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find_first_of(",;", start);
    std::string_view part = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// Stateless between calls: each check() and write() opens its own session. STARTTLS and implicit
// TLS (port 465) are not supported: use a relay on a trusted network or loopback.
class SmtpConnector final : public Connector {
 public:
  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(SmtpSettings s, parse_smtp_settings(context.config));
    SmtpSession session(s, context.timeout);
    CIVICBUS_RETURN_IF_ERROR(session.open());
    return session.quit();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(SmtpSettings s, parse_smtp_settings(context.config));
    StreamSpec stream;
    stream.name = "messages";
    stream.fields.push_back(FieldSpec{s.to_field, FieldType::kString, false});
    return std::vector<StreamSpec>{std::move(stream)};
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    (void)request;
    CIVICBUS_ASSIGN_OR_RETURN(SmtpSettings s, parse_smtp_settings(context.config));
    WriteResult result;
    if (batch.empty()) return result;
    int to_column = batch.column_index(s.to_field);
    SmtpSession session(s, context.timeout);
    CIVICBUS_RETURN_IF_ERROR(session.open());
    std::string body_template = s.body;
    if (body_template.empty()) {
      for (const auto& c : batch.columns) body_template += c + ": {" + c + "}\n";
    }
    bool dirty = false;  // a transaction was started since the last RSET
    std::string subject, body, missing;
    for (const Record& record : batch.records) {
      auto reject = [&](std::string field, std::string value, std::string reason) {
        result.rejected.push_back(
            RowError{record.position, std::move(field), std::move(value), std::move(reason)});
      };
      const Json& to_value = to_column < 0 ? Json() : RecordBatch::value(record, to_column);
      std::string to_text = to_value.is_null() ? "" : scalar_text(to_value);
      std::vector<std::string> to = split_recipients(to_text);
      if (to.empty()) {
        reject(s.to_field, "", "no recipient: field '" + s.to_field + "' is missing or empty");
        continue;
      }
      auto bad = std::find_if(to.begin(), to.end(), [](auto& a) { return !plausible_address(a); });
      if (bad != to.end()) {
        reject(s.to_field, to_text, "'" + *bad + "' is not an email address (local@domain)");
        continue;
      }
      if (!fill_template(s.subject, batch, record, false, subject, missing) ||
          !fill_template(body_template, batch, record, false, body, missing)) {
        reject(missing, "",
               "the subject or body template needs field '" + missing +
                   "', which the batch does not have");
        continue;
      }
      if (dirty) {
        CIVICBUS_ASSIGN_OR_RETURN(Reply rset, session.command("RSET"));
        CIVICBUS_RETURN_IF_ERROR(session.expect(rset, 250, "RSET"));
      }
      dirty = true;
      bool eight_bit = session.eight_bit();
      CIVICBUS_ASSIGN_OR_RETURN(Reply mail, session.command("MAIL FROM:<" + s.from + ">" +
                                                            (eight_bit ? " BODY=8BITMIME" : "")));
      CIVICBUS_RETURN_IF_ERROR(session.expect(mail, 250, "MAIL FROM:<" + s.from + ">"));
      std::string refused;
      for (const auto& address : to) {
        CIVICBUS_ASSIGN_OR_RETURN(Reply rcpt, session.command("RCPT TO:<" + address + ">"));
        if (rcpt.code == 250 || rcpt.code == 251) continue;
        if (rcpt.code >= 500) {
          refused = "the server refused recipient '" + address + "': " + rcpt.describe();
          break;
        }
        return session.expect(rcpt, 250, "RCPT TO:<" + address + ">");
      }
      if (!refused.empty()) {
        reject(s.to_field, to_text, refused);
        continue;
      }
      CIVICBUS_ASSIGN_OR_RETURN(Reply data, session.command("DATA"));
      CIVICBUS_RETURN_IF_ERROR(session.expect(data, 354, "DATA"));
      std::string message = build_message(s, to, subject, body, eight_bit, context.now(), random_);
      CIVICBUS_RETURN_IF_ERROR(session.send(dot_stuff(message), "the message"));
      CIVICBUS_ASSIGN_OR_RETURN(Reply accepted, session.read_reply("the message"));
      if (accepted.code == 250) {
        ++result.written;
        continue;
      }
      if (accepted.code >= 500) {
        reject("", "", "the server refused the message: " + accepted.describe());
        continue;
      }
      return session.expect(accepted, 250, "the end of the message data");
    }
    // The messages are accepted already; a failed QUIT changes nothing.
    session.quit().ignore_error();
    return result;
  }

 private:
  ConnectorSpec spec_ = smtp_spec();
  SecureRandom random_;
};

}  // namespace

std::unique_ptr<Connector> make_smtp_connector() {
  return std::make_unique<SmtpConnector>();
}

}  // namespace civicbus::connect::detail

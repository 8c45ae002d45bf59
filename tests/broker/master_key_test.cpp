#include "broker/master_key.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/crypto.hpp"
#include "support/test_support.hpp"

namespace civicbus::broker {
namespace {

const std::string kKey = [] {
  std::string k(32, '\0');
  for (int i = 0; i < 32; ++i) k[i] = static_cast<char>(i * 7 + 1);
  return k;
}();
const std::string kHex = crypto::to_hex(kKey);

// An environment variable private to this process and test, unset again on destruction.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::string_view suffix)
      : name_(fmt::format("CIVICBUS_TEST_MASTER_KEY_{}_{}", ::getpid(), suffix)) {
    ::unsetenv(name_.c_str());
  }
  ~ScopedEnv() { ::unsetenv(name_.c_str()); }
  void set(const std::string& value) { ::setenv(name_.c_str(), value.c_str(), 1); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

std::string key_file(const testing::TempDir& dir, const std::string& content, mode_t mode) {
  const std::string path = dir.file("master.key");
  ::unlink(path.c_str());
  testing::write_file(path, content);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  return path;
}

TEST_CASE("master key: hex or base64 from the environment, whitespace trimmed") {
  ScopedEnv env("a");
  SUBCASE("hex") {
    env.set(kHex);
  }
  SUBCASE("upper-case hex with a newline") {
    std::string upper = kHex;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    env.set("  " + upper + "\n");
  }
  SUBCASE("base64") {
    env.set(crypto::base64_encode(kKey) + "\r\n");
  }
  auto key = load_master_key(env.name(), "");
  REQUIRE_MESSAGE(key.ok(), key.status().to_string());
  CHECK(*key == kKey);
}

TEST_CASE("master key: the environment wins over the file; the file is used otherwise") {
  testing::TempDir dir;
  ScopedEnv env("b");
  const std::string other = std::string(32, '\x42');
  const std::string path = key_file(dir, crypto::to_hex(other) + "\n", 0600);

  auto from_file = load_master_key(env.name(), path);
  REQUIRE_MESSAGE(from_file.ok(), from_file.status().to_string());
  CHECK(*from_file == other);

  env.set(kHex);
  auto from_env = load_master_key(env.name(), path);
  REQUIRE(from_env.ok());
  CHECK(*from_env == kKey);

  env.set("");  // empty counts as unset
  CHECK(*load_master_key(env.name(), path) == other);
  CHECK(*load_master_key("", path) == other);
}

TEST_CASE("master key: a file readable by group or others is refused") {
  testing::TempDir dir;
  ScopedEnv env("c");
  const std::string path = key_file(dir, kHex, 0644);
  auto key = load_master_key(env.name(), path);
  REQUIRE_FALSE(key.ok());
  CHECK(key.status().code() == ErrorCode::kPermissionDenied);
  CHECK(key.status().message() ==
        fmt::format("master key file {} has mode 0644; it must not be readable by group or "
                    "others (chmod 600)",
                    path));
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  CHECK(load_master_key(env.name(), path).status().message().find("mode 0640") !=
        std::string::npos);
  REQUIRE(::chmod(path.c_str(), 0400) == 0);
  CHECK(load_master_key(env.name(), path).ok());
}

TEST_CASE("master key: errors name the source and never the key") {
  testing::TempDir dir;
  ScopedEnv env("d");

  SUBCASE("nothing configured") {
    auto key = load_master_key(env.name(), "");
    CHECK(key.status().code() == ErrorCode::kNotFound);
    CHECK(key.status().message().find(env.name()) != std::string::npos);
  }
  SUBCASE("missing file") {
    const std::string path = dir.file("absent.key");
    auto key = load_master_key(env.name(), path);
    CHECK(key.status().code() == ErrorCode::kNotFound);
    CHECK(key.status().message().find(path) != std::string::npos);
    CHECK(key.status().message().find(env.name()) != std::string::npos);
  }
  SUBCASE("too short in the environment") {
    const std::string short_hex = kHex.substr(0, 62);
    env.set(short_hex);
    auto key = load_master_key(env.name(), "");
    CHECK(key.status().code() == ErrorCode::kInvalidArgument);
    CHECK(key.status().message().find("environment variable " + env.name()) != std::string::npos);
    CHECK(key.status().message().find(short_hex.substr(0, 16)) == std::string::npos);
  }
  SUBCASE("base64 of the wrong length") {
    env.set(crypto::base64_encode(std::string(16, 'x')));
    auto key = load_master_key(env.name(), "");
    CHECK(key.status().code() == ErrorCode::kInvalidArgument);
    CHECK(key.status().message().find("16 bytes") != std::string::npos);
  }
  SUBCASE("garbage in the file") {
    const std::string secretish = "correct horse battery staple";
    const std::string path = key_file(dir, secretish, 0600);
    auto key = load_master_key(env.name(), path);
    CHECK(key.status().code() == ErrorCode::kInvalidArgument);
    CHECK(key.status().message().find(path) != std::string::npos);
    CHECK(key.status().message().find("horse") == std::string::npos);
  }
  SUBCASE("empty file") {
    const std::string path = key_file(dir, "\n", 0600);
    CHECK(load_master_key(env.name(), path).status().code() == ErrorCode::kInvalidArgument);
  }
  SUBCASE("a directory") {
    REQUIRE(::chmod(dir.path().c_str(), 0700) == 0);
    CHECK_FALSE(load_master_key(env.name(), dir.path().string()).ok());
  }
}

TEST_CASE("master key: write_new_master_key creates a 0600 file that loads") {
  testing::TempDir dir;
  SecureRandom random;
  const std::string path = dir.file("new.key");
  REQUIRE(write_new_master_key(path, random).ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string text = testing::read_file(path);
  CHECK(text.size() == 65);
  CHECK(text.back() == '\n');
  auto key = load_master_key("", path);
  REQUIRE_MESSAGE(key.ok(), key.status().to_string());
  CHECK(key->size() == 32);

  // Never replaces a key: data under it would become unreadable.
  Status again = write_new_master_key(path, random);
  CHECK(again.code() == ErrorCode::kAlreadyExists);
  CHECK(again.message().find(path) != std::string::npos);
  CHECK(*load_master_key("", path) == *key);

  // Two fresh keys differ.
  const std::string second = dir.file("second.key");
  REQUIRE(write_new_master_key(second, random).ok());
  CHECK(*load_master_key("", second) != *key);

  CHECK(write_new_master_key(dir.file("no/such/dir.key"), random).code() == ErrorCode::kIoError);
}

TEST_CASE("master key: parse_master_key accepts exactly 32 bytes") {
  CHECK(*parse_master_key(kHex, "test") == kKey);
  CHECK(*parse_master_key(crypto::base64_encode(kKey), "test") == kKey);
  CHECK(parse_master_key(kHex + "00", "test").status().code() == ErrorCode::kInvalidArgument);
  CHECK(parse_master_key("   ", "test").status().message() == "test is empty");
}

}  // namespace
}  // namespace civicbus::broker

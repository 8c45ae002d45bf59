// Conan test package: the headers and the library of the package agree on the version, and a
// little of the API works.
#include <cstdio>
#include <string>

#include "civicbus/core/json.hpp"
#include "civicbus/version.hpp"

int main() {
  std::printf("civicbus %s (headers %s)\n", std::string(civicbus::version()).c_str(),
              CIVICBUS_VERSION_STRING);
  if (civicbus::version() != civicbus::kHeaderVersion) return 1;
  auto doc = civicbus::Json::parse(R"({"topic": "permit.issued"})");
  if (!doc.ok() || doc->get_string("topic") != "permit.issued") return 1;
  return 0;
}

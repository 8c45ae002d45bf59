#include "civicbus/version.hpp"

namespace civicbus {

// Compiled into the library, so these report the library's version, whatever headers the
// calling program saw.
std::string_view version() {
  return CIVICBUS_VERSION_STRING;
}

int version_number() {
  return CIVICBUS_VERSION_NUMBER;
}

}  // namespace civicbus

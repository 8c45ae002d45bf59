// Reads a whole file into memory (key files, JWKS, schemas named by configuration).
#pragma once

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "civicbus/core/status.hpp"

namespace civicbus {

// kNotFound naming the path and the system's reason when it cannot be opened; kIoError when
// reading fails part way.
inline Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot read '" + path + "': " + std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return io_error("cannot read '" + path + "'");
  return out.str();
}

}  // namespace civicbus

// For the library's own components: the event loops of an HttpServer's workers, so that work
// done for a connection (an upstream exchange of the gateway) runs on the connection's thread
// without locks or thread hops.
#pragma once

#include <asio/io_context.hpp>
#include <cstddef>

#include "civicbus/http/server.hpp"

namespace civicbus::http::detail {

struct ServerAccess {
  // Valid from the server's construction until its destruction; worker < options.threads.
  static asio::io_context& worker_io(HttpServer& server, std::size_t worker);
  static std::size_t worker_count(const HttpServer& server);
};

}  // namespace civicbus::http::detail

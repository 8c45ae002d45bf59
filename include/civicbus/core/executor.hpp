// Executor: where civicbus runs its asynchronous work. The Node owns one backed by an Asio
// io_context and a pool of worker threads; components only see this interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "civicbus/export.hpp"

namespace civicbus {

class CIVICBUS_EXPORT Executor {
 public:
  virtual ~Executor() = default;
  // Runs `fn` soon on a worker thread.
  virtual void post(std::function<void()> fn) = 0;
  // Runs `fn` on a worker thread after `delay` (steady time).
  virtual void post_after(std::chrono::steady_clock::duration delay, std::function<void()> fn) = 0;
  virtual std::size_t thread_count() const = 0;
};

// An Asio io_context run by `threads` worker threads (at least 1). The destructor stops the
// context, drops work not yet started and joins the threads.
CIVICBUS_EXPORT std::unique_ptr<Executor> make_thread_pool(std::size_t threads);

}  // namespace civicbus

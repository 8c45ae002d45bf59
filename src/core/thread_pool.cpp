#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <thread>
#include <vector>

#include "civicbus/core/executor.hpp"

namespace civicbus {
namespace {

class ThreadPool final : public Executor {
 public:
  explicit ThreadPool(std::size_t threads) : guard_(asio::make_work_guard(io_)) {
    if (threads == 0) threads = 1;
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { io_.run(); });
  }

  ~ThreadPool() override {
    guard_.reset();
    io_.stop();
    for (auto& t : workers_) t.join();
  }

  void post(std::function<void()> fn) override { asio::post(io_, std::move(fn)); }

  void post_after(std::chrono::steady_clock::duration delay, std::function<void()> fn) override {
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    timer->async_wait([timer, fn = std::move(fn)](const std::error_code& ec) {
      if (!ec) fn();
    });
  }

  std::size_t thread_count() const override { return workers_.size(); }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<Executor> make_thread_pool(std::size_t threads) {
  return std::make_unique<ThreadPool>(threads);
}

}  // namespace civicbus

// Progress of long commands (`devices import`, `pipeline run`): a bar redrawn in place on a
// terminal, a plain line per 10% otherwise (logs, CI), as DESIGN.md asks.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace civicbus::cli {

class Progress {
 public:
  Progress(std::string_view what, bool tty) : what_(what), tty_(tty) {}

  // `suffix` is shown after the counts ("12,345 rows/s, ETA 4s").
  void update(std::size_t done, std::size_t total, std::string_view suffix = {}) {
    std::lock_guard lock(mu_);
    if (total == 0) return;
    if (done > total) done = total;
    const int percent = static_cast<int>(done * 100 / total);
    if (tty_) {
      if (percent == last_ && done != total) return;
      const int width = 30;
      const int filled = percent * width / 100;
      std::fprintf(stderr, "\r%s [%s%s] %3d%% %zu/%zu %.*s\033[K", what_.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
                   percent, done, total, static_cast<int>(suffix.size()), suffix.data());
      if (done == total) std::fprintf(stderr, "\n");
    } else if (percent / 10 != last_ / 10 || done == total) {
      std::fprintf(stderr, "%s: %zu/%zu (%d%%) %.*s\n", what_.c_str(), done, total, percent,
                   static_cast<int>(suffix.size()), suffix.data());
    }
    std::fflush(stderr);
    last_ = percent;
  }

 private:
  std::mutex mu_;
  std::string what_;
  bool tty_;
  int last_ = -1;
};

}  // namespace civicbus::cli

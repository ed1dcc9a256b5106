#include "client/progress_bar.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_format.h"

namespace kvstream::client {

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)), total_(total > 0 ? total : 1), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {
  std::lock_guard<std::mutex> lock(mu_);
  DrawLocked();
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Advance(const std::string& note) {
  std::lock_guard<std::mutex> lock(mu_);
  ++done_;
  note_ = note;
  DrawLocked();
}

void ProgressBar::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (tty_) std::fputc('\n', stderr);
}

void ProgressBar::DrawLocked() {
  if (finished_) return;
  const double frac = static_cast<double>(done_) / static_cast<double>(total_);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done_ > 0 ? elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_) : 0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
  const std::string line = absl::StrFormat("%s [%s] %d/%d %3.0f%% %.0fs elapsed, ~%.0fs left%s%s", label_, bar,
                                           done_, total_, frac * 100, elapsed, eta, note_.empty() ? "" : " | ",
                                           note_);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    return;
  }
  const int decile = static_cast<int>(frac * 10);
  if (decile == last_decile_) return;
  last_decile_ = decile;
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace kvstream::client

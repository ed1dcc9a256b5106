// A progress bar on stderr for the long-running commands. On a terminal it
// redraws one line ("\r"); otherwise (a pipe, a test log) it prints a line
// at every 10% so logs stay short. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace kvstream::client {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  ~ProgressBar();  // ends the line

  // One more item done; `note` (e.g. "2 errors") is shown after the count.
  void Advance(const std::string& note = "");
  // Ends the bar's line early (idempotent).
  void Finish();

 private:
  void DrawLocked();

  std::mutex mu_;
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  int last_decile_ = -1;
  std::string note_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace kvstream::client

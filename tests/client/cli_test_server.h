// The real kvstream-server on a loopback port for CLI tests, header-only so
// a tests/client/*_test.cc needs nothing beyond kvstream_client: readiness
// is asked of the CLI itself (`kvstream health`, exit 0 iff SERVING), so no
// gRPC stub is linked. (tests/server/server_harness.h is the gRPC-level
// counterpart for server tests.)
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_paths.h"

namespace kvstream::client::testing {

class CliTestServer {
 public:
  // Spawns build/kvstream-server --port=0 --model=<bundled> <args>, reads the
  // port from its log and waits until `kvstream health` says SERVING. Null
  // (with a test failure carrying the log) if it does not come up in time.
  static std::unique_ptr<CliTestServer> Start(const std::vector<std::string>& args, int timeout_s = 180) {
    auto s = std::unique_ptr<CliTestServer>(new CliTestServer());
    s->log_path_ = ::testing::TempDir() + "/kvstream-cli-server-" + std::to_string(getpid()) + ".log";
    std::vector<std::string> argv_s = {::kvstream::testing::BinaryDir() + "/kvstream-server", "--port=0",
                                       "--model=" + ::kvstream::testing::DefaultModelPath()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    s->pid_ = fork();
    if (s->pid_ == 0) {
      const int fd = open(s->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    const std::regex listening("listening on [0-9.]+:([0-9]+)");
    while (std::chrono::steady_clock::now() < until) {
      std::smatch m;
      const std::string log = s->Log();
      if (s->port_ == 0 && std::regex_search(log, m, listening)) s->port_ = std::stoi(m[1]);
      if (s->port_ != 0 && s->Serving()) return s;
      if (waitpid(s->pid_, nullptr, WNOHANG) == s->pid_) {
        s->pid_ = -1;
        ADD_FAILURE() << "kvstream-server exited early:\n" << log;
        return nullptr;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ADD_FAILURE() << "kvstream-server not SERVING after " << timeout_s << " s:\n" << s->Log();
    return nullptr;
  }

  ~CliTestServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      for (int i = 0; i < 300 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (waitpid(pid_, nullptr, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    std::remove(log_path_.c_str());
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  std::string Log() const {
    std::ifstream in(log_path_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  CliTestServer() = default;

  bool Serving() const {
    std::string cmd = "'";
    cmd.append(::kvstream::testing::BinaryDir());
    cmd.append("/kvstream' health --timeout=2 --target=");
    cmd.append(target());
    cmd.append(" >/dev/null 2>&1");
    return std::system(cmd.c_str()) == 0;
  }

  int pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

}  // namespace kvstream::client::testing

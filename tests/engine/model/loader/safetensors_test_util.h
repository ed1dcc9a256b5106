// Test-only safetensors writer and temporary folders for the HF reader tests.
#pragma once

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model/loader/gguf_test_builder.h"

namespace kvstream::testing {

// u64 header length + the header's JSON text + `data`.
inline Bytes MakeSafetensors(const nlohmann::json& header, const Bytes& data) {
  const std::string text = header.dump();
  Bytes b;
  Put<uint64_t>(b, text.size());
  b.insert(b.end(), text.begin(), text.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// A header + data holding the given fp32 tensors back to back.
struct F32Entry {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};
inline Bytes MakeF32Safetensors(const std::vector<F32Entry>& entries) {
  nlohmann::json header = nlohmann::json::object();
  Bytes data;
  for (const F32Entry& e : entries) {
    const size_t begin = data.size();
    data.resize(begin + e.values.size() * 4);
    std::memcpy(data.data() + begin, e.values.data(), e.values.size() * 4);
    header[e.name] = {{"dtype", "F32"}, {"shape", e.shape}, {"data_offsets", {begin, data.size()}}};
  }
  return MakeSafetensors(header, data);
}

inline void WriteFile(const std::filesystem::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
inline void WriteText(const std::filesystem::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// A fresh folder under the temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("kvstream_" + std::string(info ? info->name() : "t") + "_" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace kvstream::testing

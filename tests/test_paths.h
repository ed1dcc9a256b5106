// Paths the tests need, baked in by CMake (see cmake/KvstreamTests.cmake).
#pragma once

#include <cstdlib>
#include <string>

namespace kvstream::testing {

inline std::string SourceDir() { return KVSTREAM_SOURCE_DIR; }
inline std::string FixtureDir() { return SourceDir() + "/tests/fixtures"; }
#ifdef KVSTREAM_BINARY_DIR
inline std::string BinaryDir() { return KVSTREAM_BINARY_DIR; }
#endif
// The venv python with torch/transformers/gguf ("" if setup has not run).
inline std::string Python() { return KVSTREAM_PYTHON; }
// The bundled real model (present after scripts/setup.sh).
inline std::string DefaultModelPath() {
  if (const char* p = std::getenv("KVSTREAM_MODEL")) return p;
  return SourceDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace kvstream::testing

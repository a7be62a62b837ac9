// Helpers shared by the test files: where the shared test data is, temporary files.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace straw::test {

// ../shared/testdata from the source tree, or $STRAW_TESTDATA when set.
inline std::filesystem::path testdata_dir() {
  if (const char* env = std::getenv("STRAW_TESTDATA")) return env;
  return STRAW_TESTDATA_DIR;
}

inline bool have_testdata() { return std::filesystem::is_directory(testdata_dir() / "models"); }

// A fresh path under the system temp folder, unique per test process.
inline std::filesystem::path temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("straw-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace straw::test

// Skips the current test with a message when the shared test data folder is absent.
#define STRAW_REQUIRE_TESTDATA()                                                       \
  do {                                                                                 \
    if (!::straw::test::have_testdata())                                               \
      GTEST_SKIP() << "shared test data not found at " << ::straw::test::testdata_dir() \
                   << " (set STRAW_TESTDATA or place it at ../shared/testdata)";       \
  } while (0)

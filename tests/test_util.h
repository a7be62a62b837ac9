// Helpers shared by the test files: where the shared test data is, temporary files.
#pragma once

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <span>
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

// ||a - ref|| / ||ref - mean(ref)||: the distance of a row of logits from a reference row.
inline double nrmse(std::span<const float> a, std::span<const float> ref) {
  double mean = 0;
  for (float x : ref) mean += x;
  mean /= double(ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += (double(ref[i]) - mean) * (double(ref[i]) - mean);
  }
  return std::sqrt(num / den);
}

}  // namespace straw::test

// Skips the current test with a message when the shared test data folder is absent.
#define STRAW_REQUIRE_TESTDATA()                                                       \
  do {                                                                                 \
    if (!::straw::test::have_testdata())                                               \
      GTEST_SKIP() << "shared test data not found at " << ::straw::test::testdata_dir() \
                   << " (set STRAW_TESTDATA or place it at ../shared/testdata)";       \
  } while (0)

// Running the built `straw` binary from tests: its path, one runner that captures the exit code,
// stdout and stderr, and a skip when the binary is not built (a library-only build).
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "test_util.h"

namespace straw::test {

inline std::filesystem::path straw_bin() {
  return std::filesystem::path(STRAW_BIN_DIR) / "straw";
}

struct CliResult {
  int code = -1;    // exit status; -1 when it could not start or was killed
  std::string out;  // stdout
  std::string err;  // stderr
  std::string all() const { return out + err; }
};

inline std::string read_all(FILE* f) {
  std::string s;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) s.append(buf.data(), n);
  return s;
}

// Runs `ENV straw ARGS` (env: variable assignments for the shell, or empty). stderr goes through a
// file so that stdout stays parseable (JSON) and both are kept.
inline CliResult run_straw(const std::string& args, const std::string& env = "") {
  CliResult r;
  const std::string err_path = temp_path("cli-stderr.txt").string();
  const std::string cmd = env + " " + straw_bin().string() + " " + args + " 2>" + err_path;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  r.out = read_all(p);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* f = std::fopen(err_path.c_str(), "r")) {
    r.err = read_all(f);
    std::fclose(f);
  }
  return r;
}

}  // namespace straw::test

// Skips the current test with a message when the CLI binary is not built.
#define STRAW_REQUIRE_CLI()                                               \
  do {                                                                    \
    if (!std::filesystem::exists(::straw::test::straw_bin()))             \
      GTEST_SKIP() << ::straw::test::straw_bin()                          \
                   << " is not built (build the straw_cli target first)"; \
  } while (0)

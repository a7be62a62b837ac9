// The straw CLI's shared plumbing: a small option parser and the subcommand table.
//
// Exit codes (a contract other programs rely on): 0 success, 1 a runtime failure (bad file, missing
// tensor, ...), 2 bad arguments (usage printed to stderr).
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace straw::cli {

// Thrown for bad arguments; main() prints the message and the command's usage, then exits with 2.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& what) : std::runtime_error(what) {}
};

struct Option {
  std::string name;   // long form without dashes: "threads"
  char short_name;    // 't', or 0
  bool takes_value;   // --threads 4 / -t 4 / --threads=4
  std::string help;   // one line; for valued options start with the value's name: "N  threads to use"
  std::string dash_name = {};  // one-dash multi-letter name (llama.cpp's -ctk), or empty
};

// Parsed command line of one subcommand.
class Args {
 public:
  // Parses argv[first..argc) against `options`; throws UsageError on unknown options or a missing value.
  Args(const std::vector<Option>& options, int argc, char** argv, int first);

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // Typed getters; a value that does not parse is a UsageError naming the option.
  int64_t get_int(const std::string& name, int64_t fallback) const;
  double get_float(const std::string& name, double fallback) const;
  std::string require(const std::string& name) const;  // UsageError when absent
  const std::vector<std::string>& positional() const { return positional_; }
  // Every value of a repeatable option, in command-line order (get() returns the last one).
  std::vector<std::string> get_all(const std::string& name) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

std::string format_options(const std::vector<Option>& options);

struct Command {
  const char* name;
  const char* summary;                         // one line for `straw --help`
  const char* usage;                           // synopsis after "straw "
  std::vector<Option> (*options)();            // the command's options (for parsing and help)
  int (*run)(const Args& args);                // returns the exit code
};

// Each command file defines one of these; tools/main.cpp lists them.
extern const Command kInspect;
extern const Command kDequant;
extern const Command kTokenize;
extern const Command kRun;
extern const Command kEval;
extern const Command kPerplexity;
extern const Command kPlan;
extern const Command kCalibrate;
extern const Command kSynth;
extern const Command kBench;
extern const Command kServe;

// Parses "8GiB", "7.5G", "512MiB", "1000000" into bytes; UsageError on junk.
uint64_t parse_size(const std::string& s);

}  // namespace straw::cli

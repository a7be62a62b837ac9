// straw: the command-line front end. One file per subcommand (tools/cmd_*.cpp); this file only
// dispatches and maps failures to exit codes (1: runtime failure, 2: bad arguments).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli.h"
#include "straw/error.h"

namespace {

using straw::cli::Command;

const Command* const kCommands[] = {
    &straw::cli::kRun,     &straw::cli::kEval,     &straw::cli::kTokenize,
    &straw::cli::kPerplexity, &straw::cli::kInspect, &straw::cli::kDequant,
    &straw::cli::kPlan,    &straw::cli::kCalibrate, &straw::cli::kSynth, &straw::cli::kBench, &straw::cli::kServe,
};

void print_main_help(FILE* out) {
  std::fprintf(out,
               "straw: run GGUF language models on the CPU and GPU\n\n"
               "usage: straw COMMAND [options]   (straw COMMAND --help for its options)\n\n"
               "commands:\n");
  for (const Command* c : kCommands) std::fprintf(out, "  %-12s %s\n", c->name, c->summary);
}

void print_command_help(const Command& c, FILE* out) {
  std::fprintf(out, "usage: straw %s\n\n%s\n\noptions:\n%s", c.usage, c.summary,
               straw::cli::format_options(c.options()).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_main_help(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_main_help(stdout);
    return 0;
  }
  const Command* cmd = nullptr;
  for (const Command* c : kCommands)
    if (name == c->name) cmd = c;
  if (!cmd) {
    std::fprintf(stderr, "straw: unknown command '%s'\n\n", name.c_str());
    print_main_help(stderr);
    return 2;
  }
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      print_command_help(*cmd, stdout);
      return 0;
    }
  }
  try {
    std::vector<straw::cli::Option> opts = cmd->options();
    straw::cli::Args args(opts, argc, argv, 2);
    return cmd->run(args);
  } catch (const straw::cli::UsageError& e) {
    std::fprintf(stderr, "straw %s: %s\n\n", cmd->name, e.what());
    print_command_help(*cmd, stderr);
    return 2;
  } catch (const straw::Error& e) {
    std::fprintf(stderr, "straw %s: error: %s\n", cmd->name, e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "straw %s: error: out of memory\n", cmd->name);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "straw %s: internal error: %s\n", cmd->name, e.what());
    return 1;
  }
}

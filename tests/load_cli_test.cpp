// What the CLI prints while loading (stderr not a terminal: one line, no carriage returns),
// --quiet, --no-repack, and the refusal of a model larger than RAM through `straw run` and
// `straw plan` (skipped when the CLI is not built).
#include <filesystem>
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "model/presets.h"
#include "model/synth.h"

namespace {

// Runs `straw ARGS` with `env` before it; out: what it wrote to stderr (stdout_too: and stdout).
struct Result {
  int code = -1;
  std::string out;
};
Result straw(const std::string& env, const std::string& args, bool stdout_too = false) {
  const straw::test::CliResult r = straw::test::run_straw(args, env);
  return {r.code, stdout_too ? r.all() : r.err};
}

std::string small_model(const std::string& name) {
  const std::string path = straw::test::temp_path(name).string();
  straw::model::SynthOptions o;
  o.shape = straw::model::custom_shape(straw::model::Arch::Qwen2, 2, 256, 512, 4, 2, 0, 512, false);
  o.type = straw::model::FileType::Q4_K_M;
  straw::model::synthesize(path, o);
  return path;
}

const char* const kSize = "[0-9]+(\\.[0-9]{2} (KiB|MiB|GiB|TiB)| B)";

TEST(LoadCli, OneProgressLineWhenStderrIsNotATerminal) {
  STRAW_REQUIRE_CLI();
  const std::string path = small_model("cli-progress.gguf");
  const Result r = straw("", "run -m " + path + " -p hi -n 1 -t 1 --seed 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find('\r'), std::string::npos) << "a live line was drawn on a pipe: " << r.out;
  EXPECT_EQ(r.out.find("\033["), std::string::npos) << r.out;
  const std::string size = kSize;
  const std::regex load("(^|\n)straw: load: mapped " + size + "; repacked " + size +
                        " in [0-9]+\\.[0-9]{2} s \\(" + size + "/s\\)\n");
  EXPECT_TRUE(std::regex_search(r.out, load)) << r.out;
  const std::regex loaded("\nstraw: loaded [^\n]+ in [0-9.]+ s; 1 threads, ctx [0-9]+; cpu\n");
  EXPECT_TRUE(std::regex_search(r.out, loaded)) << r.out;
  const std::regex weights("\nstraw: weights: " + size + " repacked in RAM[^\n]*; RAM " + size +
                           " of " + size + " available\n");
  EXPECT_TRUE(std::regex_search(r.out, weights)) << r.out;

  // --quiet: none of the three.
  const Result q = straw("", "run -m " + path + " -p hi -n 1 -t 1 --seed 1 --quiet");
  ASSERT_EQ(q.code, 0) << q.out;
  for (const char* s : {"straw: load:", "straw: loaded", "straw: weights:"})
    EXPECT_EQ(q.out.find(s), std::string::npos) << s << " with --quiet: " << q.out;

  // --no-repack: nothing repacked, the weights stay in the mapping.
  const Result n = straw("", "run -m " + path + " -p hi -n 1 -t 1 --seed 1 --no-repack");
  ASSERT_EQ(n.code, 0) << n.out;
  EXPECT_TRUE(std::regex_search(n.out, std::regex("(^|\n)straw: load: mapped " + size + "\n")))
      << n.out;
  EXPECT_NE(n.out.find("read from the file mapping (--no-repack)"), std::string::npos) << n.out;

  // bench shows the same line (its results go to stdout).
  const Result b = straw("", "bench -m " + path + " -p 4 -n 2 -r 1 -t 1 --bandwidth-buffer 16MiB");
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_TRUE(std::regex_search(b.out, load)) << b.out;
  std::filesystem::remove(path);
}

// A 32B model (header only: the data is a sparse hole) against a 4 GiB RAM limit: `straw run`
// refuses before repacking anything, with the numbers; `straw plan` says the same.
// straw run --context-shift (--keep N) goes on past the context; without it generation stops
// there and says how to go on; quantized K and V types apart with llama.cpp's flags.
TEST(RunCli, ContextShiftGoesOnPastTheContext) {
  STRAW_REQUIRE_CLI();
  const std::string path = small_model("cli-shift.gguf");
  const std::string base = "run -m " + path + " -p hi -n 100 -t 1 --temp 0 --ctx 32 -q";
  const Result off = straw("", base);
  ASSERT_EQ(off.code, 0) << off.out;
  EXPECT_NE(off.out.find("the context is full (32 tokens)"), std::string::npos) << off.out;
  EXPECT_NE(off.out.find("--context-shift"), std::string::npos) << off.out;
  const Result on = straw("", base + " --context-shift --keep 1 -ctk q4_0 -ctv q8_0");
  ASSERT_EQ(on.code, 0) << on.out;
  EXPECT_NE(on.out.find("generated 100 tokens"), std::string::npos) << on.out;
  EXPECT_NE(on.out.find("context shifts"), std::string::npos) << on.out;
  EXPECT_EQ(straw("", base + " --keep 1").code, 2);
  EXPECT_EQ(straw("", base + " --context-shift --keep -2").code, 2);
  std::filesystem::remove(path);
}

// straw plan --kv-type A,B: every type's plan side by side (table and JSON); -ctk/-ctv apart.
TEST(PlanCli, KvTypesSideBySide) {
  STRAW_REQUIRE_CLI();
  const std::string path = small_model("cli-plan-kv.gguf");
  const std::string base = "plan -m " + path + " --ctx 256 --vram-budget 2GiB";
  const Result t = straw("", base + " --kv-type q4_0,q8_0,f16", true);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("KV cache types at ctx 256"), std::string::npos) << t.out;
  for (const char* type : {"  q4_0 ", "  q8_0 ", "  f16 "})
    EXPECT_NE(t.out.find(type), std::string::npos) << type << " in\n" << t.out;
  const Result j = straw("", base + " --kv-type q4_0,f16 -o json", true);
  ASSERT_EQ(j.code, 0) << j.out;
  EXPECT_NE(j.out.find("\"kv_types\": [{\"kv_type\": \"q4_0\""), std::string::npos) << j.out;
  EXPECT_EQ(straw("", base + " -ctk q4_0 -ctv q8_0").code, 0);
  EXPECT_EQ(straw("", base + " --kv-type q4_0,f16 -ctk q8_0").code, 2);
  EXPECT_EQ(straw("", base + " --kv-type q4_0,q5_1").code, 2);
  std::filesystem::remove(path);
}

TEST(LoadCli, RefusesAModelLargerThanRam) {
  STRAW_REQUIRE_CLI();
  const std::string path = straw::test::temp_path("cli-32b-nodata.gguf").string();
  Result r = straw("", "synth --preset qwen2.5-32b --type IQ4_XS --no-data -o " + path, true);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string env = "STRAW_RAM_LIMIT=4GiB";
  r = straw(env, "run -m " + path + " -p hi -n 1 --ctx 8192");
  EXPECT_EQ(r.code, 1) << r.out;
  for (const char* s :
       {"straw run: error: ", "does not fit in memory: it needs 18.", " GiB of RAM (16.",
        " GiB of weight copies, 2.00 GiB of KV cache at ctx 8192, ",
        "but 4.00 GiB is available (STRAW_RAM_LIMIT)", "smaller quantization", "--vram-budget",
        "--no-repack: use the weights from the file mapping"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in: " << r.out;
  EXPECT_EQ(r.out.find("repacked"), std::string::npos) << "refused after repacking: " << r.out;

  // straw serve checks the same before loading, with one KV cache per slot.
  r = straw(env, "serve -m " + path + " --ctx 8192 --parallel 2 --port 0");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("does not fit in memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4.00 GiB of KV cache at ctx 8192 for 2 sessions"), std::string::npos)
      << r.out;

  r = straw(env, "plan -m " + path + " --ctx 8192", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(4.00 GiB available, STRAW_RAM_LIMIT)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("does not fit in memory: it needs 18."), std::string::npos) << r.out;
  r = straw(env, "plan -m " + path + " --ctx 8192 -o json", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"available_bytes\": 4294967296, \"available_source\": "
                       "\"STRAW_RAM_LIMIT\", \"fits\": false}"),
            std::string::npos)
      << r.out.substr(0, 1200);
  std::filesystem::remove(path);
}

}  // namespace

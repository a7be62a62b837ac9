// `straw synth` and `straw bench` through the built CLI binary (skipped when it is not built).
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "model/presets.h"
#include "model/synth.h"
#include "straw/straw.h"

namespace {

using straw::test::CliResult;

CliResult run(const std::string& args) {
  return straw::test::run_straw(args);
}

TEST(SynthCli, WritesPresetsAndRejectsBadArguments) {
  STRAW_REQUIRE_CLI();
  const auto path = straw::test::temp_path("cli-synth.gguf");
  CliResult r = run("synth --preset qwen2.5-1.5b --type Q4_K_M --no-data -o " + path.string());
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("1543714304 parameters"), std::string::npos) << r.out;
  r = run("inspect --json " + path.string());
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("\"blk.27.ffn_down.weight\", \"type\": \"Q6_K\", \"shape\": [8960, 1536]"),
            std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(run("synth --type Q4_K_M -o " + path.string()).code, 2);  // no shape
  EXPECT_EQ(run("synth --preset qwen2.5-0.5b --type Q3_K -o " + path.string()).code, 2);
  EXPECT_EQ(run("synth --preset nope --type Q4_K_M -o " + path.string()).code, 2);
  // --layers with a preset keeps its first N layers (1..n_layer).
  EXPECT_EQ(run("synth --preset qwen2.5-0.5b --layers 25 --type Q4_K_M -o " + path.string()).code,
            2);
  EXPECT_EQ(run("synth --preset qwen2.5-0.5b --layers 0 --type Q4_K_M -o " + path.string()).code,
            2);
  EXPECT_EQ(run("synth --preset qwen2.5-0.5b --heads 3 --type Q4_K_M -o " + path.string()).code, 2);
  r = run("synth --preset qwen2.5-0.5b --layers 3 --type Q4_K_M --no-data -o " + path.string());
  EXPECT_EQ(r.code, 0) << r.out;
  r = run("inspect --json " + path.string());
  EXPECT_NE(r.out.find("\"blk.2.ffn_down.weight\""), std::string::npos);
  EXPECT_EQ(r.out.find("\"blk.3."), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(run("synth --arch qwen2 --layers 2 --embd 256 --ff 512 --heads 6 --kv-heads 4 "
                "--type Q8_0 -o " +
                path.string())
                .code,
            2);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(BenchCli, JsonHasTheFields) {
  STRAW_REQUIRE_CLI();
  const auto path = straw::test::temp_path("cli-bench.gguf");
  straw::model::SynthOptions o;
  o.shape = straw::model::custom_shape(straw::model::Arch::Qwen2, 2, 256, 512, 4, 2, 0, 512, false);
  o.type = straw::model::FileType::Q4_K_M;
  straw::model::synthesize(path.string(), o);
  const CliResult r =
      run("bench -m " + path.string() + " -p 8 -n 4 -r 2 -t 1 --bandwidth-buffer 64MiB -o json");
  ASSERT_EQ(r.code, 0);
  for (const char* key :
       {"\"n_prompt\": 8", "\"n_gen\": 4", "\"avg_ts\"", "\"stddev_ts\"", "\"samples_ts\"",
        "\"threads\": 1", "\"model_bytes\"", "\"bytes_per_token\"", "\"roofline_fraction\""})
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " missing in\n" << r.out;
  EXPECT_EQ(r.out.front(), '[');
  const CliResult md = run("bench -m " + path.string() + " -p 8 -n 0 -r 1 -t 1");
  ASSERT_EQ(md.code, 0);
  EXPECT_NE(md.out.find("pp8"), std::string::npos);
  // Depth (llama-bench's -d) and a q8_0 KV cache.
  const CliResult depth =
      run("bench -m " + path.string() + " -p 0 -n 2 -d 8 -r 1 -t 1 --kv-type q8_0 -o json");
  ASSERT_EQ(depth.code, 0) << depth.out;
  EXPECT_NE(depth.out.find("\"n_depth\": 8"), std::string::npos) << depth.out;
  EXPECT_NE(depth.out.find("\"test\": \"tg2 @ d8\""), std::string::npos) << depth.out;
  // K and V types apart, with llama.cpp's one-dash names.
  const CliResult split =
      run("bench -m " + path.string() + " -p 0 -n 2 -d 8 -r 1 -t 1 -ctk q4_0 -ctv q8_0 -o json");
  ASSERT_EQ(split.code, 0) << split.out;
  EXPECT_NE(split.out.find("\"type_k\": \"q4_0\""), std::string::npos) << split.out;
  EXPECT_NE(split.out.find("\"type_v\": \"q8_0\""), std::string::npos) << split.out;
  EXPECT_EQ(run("bench -m " + path.string() + " --kv-type q4_1").code, 2);
  EXPECT_EQ(run("bench -m " + path.string() + " --cache-type-v q5_1").code, 2);
  EXPECT_EQ(run("bench -m " + path.string() + " -o xml").code, 2);
  EXPECT_EQ(run("bench -m " + path.string() + " -t 0").code, 2);
  const CliResult bw = run("bench --bandwidth -t 1 --bandwidth-buffer 64MiB -o json");
  ASSERT_EQ(bw.code, 0);
  EXPECT_NE(bw.out.find("\"bandwidth_bytes_per_s\""), std::string::npos);
  std::filesystem::remove(path);
}

// --profile / ModelOptions::profile_ops: every CPU op of the timed repetitions is counted once.
TEST(BenchCli, ProfileCountsEveryOp) {
  STRAW_REQUIRE_CLI();
  const auto path = straw::test::temp_path("cli-profile.gguf");
  straw::model::SynthOptions o;
  o.shape = straw::model::custom_shape(straw::model::Arch::Qwen2, 2, 256, 512, 4, 2, 0, 512, false);
  o.type = straw::model::FileType::Q4_K_M;
  straw::model::synthesize(path.string(), o);

  // The API: 7 matmuls per qwen2 layer (q, k, v, o, gate, up, down) plus the LM head, per token.
  auto model = straw::Model::load({.path = path.string(), .threads = 1, .profile_ops = true});
  straw::Session session(*model);
  for (int32_t t : {1, 2, 3, 4}) session.eval(std::span<const int32_t>(&t, 1));
  int64_t matmuls = 0, attention = 0;
  for (const straw::OpProfile& p : model->op_profile()) {
    if (p.op == "matmul") {
      matmuls += p.calls;
      EXPECT_GT(p.bytes, 0u) << p.type;
    }
    if (p.op == "attention") attention += p.calls;
    EXPECT_GE(p.seconds, 0.0);
  }
  EXPECT_EQ(matmuls, 4 * (2 * 7 + 1));
  EXPECT_EQ(attention, 4 * 2);
  model->reset_op_profile();
  EXPECT_TRUE(model->op_profile().empty());
  auto plain = straw::Model::load({.path = path.string(), .threads = 1});
  straw::Session s2(*plain);
  s2.eval(std::span<const int32_t>(std::array<int32_t, 2>{1, 2}));
  EXPECT_TRUE(plain->op_profile().empty());  // not loaded with profile_ops

  // The CLI: a table per test in md, a "profile" list per row in json; csv refuses.
  const CliResult md = run("bench -m " + path.string() + " -p 8 -n 4 -r 2 -t 1 --profile");
  ASSERT_EQ(md.code, 0);
  EXPECT_NE(md.out.find("profile: tg4, 1 threads"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("profile: pp8"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| (outside ops)"), std::string::npos) << md.out;
  const CliResult js = run("bench -m " + path.string() + " -p 0 -n 4 -r 2 -t 1 --profile -o json");
  ASSERT_EQ(js.code, 0);
  EXPECT_NE(js.out.find("\"profile\": [{\"op\": "), std::string::npos) << js.out;
  EXPECT_NE(js.out.find("\"op\": \"matmul\", \"type\": \"Q4_K\", \"calls\": "), std::string::npos)
      << js.out;
  EXPECT_EQ(run("bench -m " + path.string() + " --profile -o csv").code, 2);
  std::filesystem::remove(path);
}

// Profiling changes nothing but the timing: the same logits with and without it, on every
// architecture of the test models (their ops all go through ops::ProfiledBackend, the expert
// matmuls included).
TEST(Profile, SameLogitsOnEveryArchitecture) {
  if (!straw::test::have_testdata())
    GTEST_SKIP() << "test data not found at " << straw::test::testdata_dir()
                 << " (set STRAW_TESTDATA to ../shared/testdata)";
  for (const char* name : {"llama-tiny-f16", "qwen2-tiny-q4_k_m", "qwen3-tiny-iq4_xs",
                           "qwen35-tiny-f16", "qwen3moe-tiny-iq4_xs", "qwen35moe-tiny-q4_k_m"}) {
    const auto file = straw::test::testdata_dir() / "models" / (std::string(name) + ".gguf");
    const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
    std::vector<std::vector<float>> logits;
    for (bool profile : {false, true}) {
      auto model =
          straw::Model::load({.path = file.string(), .threads = 2, .profile_ops = profile});
      straw::Session s(*model);
      s.eval(prompt);  // batched
      const int32_t next = 9;
      s.eval(std::span<const int32_t>(&next, 1));  // one token
      logits.emplace_back(s.logits().begin(), s.logits().end());
      EXPECT_EQ(model->op_profile().empty(), !profile) << name;
      // The expert matmuls are timed too (the experts' backend is wrapped like the rest).
      if (profile && std::string(name).find("moe") != std::string::npos) {
        int64_t moe = 0;
        for (const straw::OpProfile& p : model->op_profile())
          if (p.op == "moe_matmul") moe += p.calls;
        EXPECT_GT(moe, 0) << name;
      }
    }
    EXPECT_EQ(logits[0], logits[1]) << name;
  }
}

}  // namespace

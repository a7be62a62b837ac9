// The CLI on mixture-of-experts files: `straw plan`'s expert fields and lines, --cpu-moe and
// --n-cpu-moe on every command with placement flags, and their errors (skipped when the CLI is
// not built; the plan tests also need shared/testdata's qwen3moe-tiny).
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "gguf/gguf.h"
#include "quant/types.h"

namespace {

// out: stdout; all: stdout and stderr.
struct Result {
  int code = -1;
  std::string out, all;
};
Result straw(const std::string& args) {
  const straw::test::CliResult r = straw::test::run_straw(args);
  return {r.code, r.out, r.all()};
}

std::string tiny_moe() {
  return (straw::test::testdata_dir() / "models" / "qwen3moe-tiny-q4_k_m.gguf").string();
}

TEST(MoeCli, PlanJsonHasTheExpertFields) {
  STRAW_REQUIRE_CLI();
  STRAW_REQUIRE_TESTDATA();
  const Result r = straw("plan -m " + tiny_moe() + " -o json --vram-budget 1GiB --ctx 256");
  ASSERT_EQ(r.code, 0) << r.all;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  // Every field a dense plan has is still there.
  for (const char* k : {"vram_budget", "vram_bytes", "ram_bytes", "gpu_weight_bytes",
                        "cpu_weight_bytes", "kv_gpu_bytes", "kv_cpu_bytes", "compute_gpu_bytes",
                        "output", "transitions", "tensors", "layers", "predicted", "ram"})
    EXPECT_TRUE(j.contains(k)) << k;
  ASSERT_TRUE(j.contains("experts"));
  EXPECT_EQ(j["experts"]["count"], 8);
  EXPECT_EQ(j["experts"]["used"], 2);
  const uint64_t exps = j["expert_bytes"], gpu = j["expert_gpu_bytes"], cpu = j["expert_cpu_bytes"];
  EXPECT_GT(exps, 0u);
  EXPECT_EQ(exps, gpu + cpu);
  // No GPU MoE ops yet: every expert and router on the CPU, and a note saying why (attention
  // stays too on a model this small: the hand-overs would cost more than its reads).
  EXPECT_EQ(gpu, 0u);
  EXPECT_EQ(j["experts"]["cpu_layers"], j["layers"].size());
  for (const auto& l : j["layers"]) {
    EXPECT_EQ(l["experts"], "cpu");
    EXPECT_EQ(l["ffn"], "cpu");
    EXPECT_GT(l["expert_bytes"].get<uint64_t>(), 0u);
  }
  ASSERT_EQ(j["notes"].size(), 1u);
  // A token reads 2 of the 8 experts: less than all the weights.
  const uint64_t weights =
      j["gpu_weight_bytes"].get<uint64_t>() + j["cpu_weight_bytes"].get<uint64_t>();
  const uint64_t read = j["read_bytes_per_token"];
  EXPECT_LT(read, weights);
  EXPECT_GT(read, exps / 4);

  // The table shows the experts column and line, and the note.
  const Result t = straw("plan -m " + tiny_moe() + " --vram-budget 1GiB --ctx 256 --cpu-moe");
  ASSERT_EQ(t.code, 0) << t.all;
  EXPECT_NE(t.out.find(" exps "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("experts (8 per layer, 2 used per token): gpu 0 layers"), std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("note: mixture-of-experts FFNs"), std::string::npos) << t.out;
}

TEST(MoeCli, DenseJsonHasZeroExperts) {
  STRAW_REQUIRE_CLI();
  STRAW_REQUIRE_TESTDATA();
  const std::string dense =
      (straw::test::testdata_dir() / "models" / "qwen3-tiny-q4_k_m.gguf").string();
  if (!std::filesystem::exists(dense)) GTEST_SKIP() << dense << " not found";
  const Result r = straw("plan -m " + dense + " -o json --n-cpu-moe 3");
  ASSERT_EQ(r.code, 0) << r.all;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["expert_bytes"], 0);
  EXPECT_EQ(j["experts"]["count"], 0);
  EXPECT_TRUE(j["notes"].empty());
  EXPECT_GT(j["read_bytes_per_token"].get<uint64_t>(), 0u);
}

// straw bench's roofline counts n_expert_used / n_expert of the experts' bytes (2 of 8 here).
TEST(MoeCli, BenchCountsOnlyTheActiveExperts) {
  STRAW_REQUIRE_CLI();
  STRAW_REQUIRE_TESTDATA();
  const Result r =
      straw("bench -m " + tiny_moe() + " -p 0 -n 4 -r 1 -t 1 -o json -q --bandwidth-buffer 16MiB");
  ASSERT_EQ(r.code, 0) << r.all;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  const double measured = j[0]["bytes_per_token"];
  auto reader = straw::gguf::Reader::open(tiny_moe());
  double weights = 0, experts = 0;
  for (const auto& t : reader->tensors()) {
    if (t.name == "token_embd.weight") continue;
    (t.name.find("_exps.") != std::string::npos ? experts : weights) += double(t.bytes);
  }
  const auto& embd = reader->tensor("token_embd.weight");
  // Tied: the LM head reads the whole table, the lookup one row.
  weights += double(embd.bytes + straw::quant::row_bytes(embd.type, embd.ne[0]));
  const double expect = weights + experts * 2 / 8;
  // Plus the KV cache of a few positions (3 layers, 2 KV heads of 128, F16).
  EXPECT_GE(measured, expect);
  EXPECT_LT(measured, expect + 16 * 1024) << "all experts: " << weights + experts;
}

TEST(MoeCli, FlagsAreAcceptedAndCheckedByEveryPlacementCommand) {
  STRAW_REQUIRE_CLI();
  // Bad values are usage errors (exit code 2) naming the flag, before any file is opened.
  for (const char* cmd : {"plan", "run", "eval", "bench", "perplexity", "serve"}) {
    const std::string base = std::string(cmd) + " -m /nonexistent.gguf ";
    const Result neg = straw(base + "--n-cpu-moe -1");
    EXPECT_EQ(neg.code, 2) << cmd << ": " << neg.all;
    EXPECT_NE(neg.all.find("--n-cpu-moe"), std::string::npos) << cmd << ": " << neg.all;
    const Result word = straw(base + "--n-cpu-moe many");
    EXPECT_EQ(word.code, 2) << cmd << ": " << word.all;
    EXPECT_NE(word.all.find("n-cpu-moe"), std::string::npos) << cmd << ": " << word.all;
    // Both are in the command's help.
    const Result help = straw(std::string(cmd) + " --help");
    EXPECT_EQ(help.code, 0) << cmd << ": " << help.all;
    EXPECT_NE(help.all.find("--cpu-moe"), std::string::npos) << cmd << ": " << help.all;
    EXPECT_NE(help.all.find("--n-cpu-moe N"), std::string::npos) << cmd << ": " << help.all;
  }
  // --cpu-moe takes no value: accepted, so the failure is the missing file (1), not usage (2).
  for (const char* cmd : {"plan", "run", "bench"}) {
    const Result ok = straw(std::string(cmd) + " -m /nonexistent.gguf --cpu-moe --n-cpu-moe 4");
    EXPECT_EQ(ok.code, 1) << cmd << ": " << ok.all;
    EXPECT_NE(ok.all.find("cannot open"), std::string::npos) << cmd << ": " << ok.all;
  }
  const Result value = straw("plan -m /nonexistent.gguf --cpu-moe=1");
  EXPECT_EQ(value.code, 2) << value.all;
  EXPECT_NE(value.all.find("takes no value"), std::string::npos) << value.all;
}

// `straw synth` with a custom MoE shape (--experts, --experts-used, --ff-exp, --ff-shexp): the file
// holds those experts and runs; the flags are refused where they make no sense.
TEST(MoeCli, SynthWritesCustomExpertShapesThatRun) {
  STRAW_REQUIRE_CLI();
  const std::string path = straw::test::temp_path("custom-moe.gguf").string();
  const std::string shape = "--layers 2 --embd 256 --ff 512 --heads 4 --kv-heads 2 --vocab 512 ";
  for (const char* arch : {"qwen3moe", "qwen35moe"}) {
    SCOPED_TRACE(arch);
    Result r = straw(std::string("synth --arch ") + arch + " " + shape +
                     "--experts 6 --experts-used 3 --ff-exp 128 --type Q4_K_M -o " + path);
    ASSERT_EQ(r.code, 0) << r.all;
    auto file = straw::gguf::Reader::open(path);
    EXPECT_EQ(file->get_u32(std::string(arch) + ".expert_count"), 6u);
    EXPECT_EQ(file->get_u32(std::string(arch) + ".expert_used_count"), 3u);
    EXPECT_EQ(file->tensor("blk.1.ffn_up_exps.weight").ne[1], 128);
    EXPECT_EQ(file->tensor("blk.1.ffn_up_exps.weight").ne[2], 6);
    // qwen35moe: a shared expert as wide as an expert unless --ff-shexp says otherwise.
    EXPECT_EQ(file->find_tensor("blk.1.ffn_up_shexp.weight") != nullptr,
              std::string(arch) == "qwen35moe");
    file.reset();
    r = straw("run -m " + path + " -p hi -n 2 -t 1 --seed 1");
    EXPECT_EQ(r.code, 0) << r.all;
  }
  std::filesystem::remove(path);
  const std::string out = " --type Q4_K_M -o " + path;
  Result r = straw("synth --arch qwen3moe " + shape + out);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.all.find("needs --experts"), std::string::npos) << r.all;
  EXPECT_EQ(straw("synth --arch qwen2 " + shape + "--experts 4" + out).code, 2);
  EXPECT_EQ(straw("synth --arch qwen3moe " + shape + "--experts 4 --ff-shexp 64" + out).code, 2);
  EXPECT_EQ(straw("synth --arch qwen3moe " + shape + "--experts 4 --experts-used 5" + out).code, 2);
  EXPECT_EQ(straw("synth --preset qwen3-30b-a3b --experts 4" + out).code, 2);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace

// Model::load's progress reports, the RAM accounting of api/memory.h against what loading really
// allocates, the memory check's refusal and the STRAW_RAM_LIMIT override.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api/memory.h"
#include "api/model_impl.h"
#include "cpu/weight_arena.h"
#include "model/presets.h"
#include "model/synth.h"
#include "straw/straw.h"
#include "test_util.h"

namespace {

using straw::LoadProgress;

// Sets STRAW_RAM_LIMIT for the scope (each test runs in its own process under ctest).
class RamLimit {
 public:
  explicit RamLimit(const char* value) { ::setenv("STRAW_RAM_LIMIT", value, 1); }
  ~RamLimit() { ::unsetenv("STRAW_RAM_LIMIT"); }
};

std::string synth_model(const std::string& name, bool tied, straw::model::FileType type) {
  const std::string path = straw::test::temp_path(name).string();
  straw::model::SynthOptions o;
  o.shape = straw::model::custom_shape(straw::model::Arch::Qwen2, 2, 256, 512, 4, 2, 0, 512, tied);
  o.type = type;
  straw::model::synthesize(path, o);
  return path;
}

TEST(LoadProgress, StagesRunInOrderAndEndComplete) {
  const std::string path = synth_model("progress.gguf", false, straw::model::FileType::Q4_K_M);
  std::vector<LoadProgress> seen;
  auto model =
      straw::Model::load({.path = path, .threads = 1, .on_progress = [&](const LoadProgress& p) {
                            seen.push_back(p);
                          }});
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen[0].stage, LoadProgress::Stage::Map);
  EXPECT_EQ(seen[0].done_bytes, model->info().weight_bytes);
  EXPECT_EQ(seen[0].total_bytes, model->info().weight_bytes);
  // Then the repack, from 0 to its total, never backwards.
  EXPECT_EQ(seen[1].stage, LoadProgress::Stage::Repack);
  EXPECT_EQ(seen[1].done_bytes, 0u);
  uint64_t total = seen[1].total_bytes;
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].stage, LoadProgress::Stage::Repack);  // no GPU here
    EXPECT_EQ(seen[i].total_bytes, total);
    EXPECT_GE(seen[i].done_bytes, seen[i - 1].stage == seen[i].stage ? seen[i - 1].done_bytes : 0);
    EXPECT_GE(seen[i].seconds, seen[i - 1].seconds);
  }
  EXPECT_EQ(seen.back().done_bytes, total);
  // What was repacked: every matrix but the embedding table, in bytes of the file.
  const straw::gguf::Reader& r = *model->impl().reader;
  uint64_t expect = 0;
  for (const auto& t : r.tensors())
    if (t.n_rows() > 1 && t.name != "token_embd.weight") expect += t.bytes;
  EXPECT_EQ(total, expect);
  EXPECT_NE(model->info().weights.find("repacked in RAM"), std::string::npos)
      << model->info().weights;
  // The callback is not kept by the model (it may capture the caller's locals).
  EXPECT_FALSE(model->options().on_progress);
  std::filesystem::remove(path);
}

// An expert tensor ([n_expert][rows][cols]) counts whole in the repack stage, as it is repacked.
TEST(LoadProgress, ExpertTensorsCountWhole) {
  STRAW_REQUIRE_TESTDATA();
  const auto path = straw::test::testdata_dir() / "models" / "qwen3moe-tiny-iq4_xs.gguf";
  uint64_t total = 0;
  auto model = straw::Model::load(
      {.path = path.string(), .threads = 1, .on_progress = [&](const LoadProgress& p) {
         if (p.stage == LoadProgress::Stage::Repack) total = p.total_bytes;
       }});
  const straw::gguf::Reader& r = *model->impl().reader;
  // Every matrix but the embedding table, which is repacked too when it is also the LM head.
  const bool tied = r.find_tensor("output.weight") == nullptr;
  uint64_t expect = 0, experts = 0;
  for (const auto& t : r.tensors()) {
    if (t.n_rows() > 1 && (tied || t.name != "token_embd.weight")) expect += t.bytes;
    if (t.name.find("_exps.") != std::string::npos) experts += t.bytes;
  }
  EXPECT_GT(experts, 0u);
  EXPECT_EQ(total, expect);
}

TEST(LoadProgress, NoRepackHasNoRepackStage) {
  const std::string path =
      synth_model("progress-norepack.gguf", false, straw::model::FileType::Q8_0);
  std::vector<LoadProgress> seen;
  auto model =
      straw::Model::load({.path = path,
                          .threads = 1,
                          .repack_weights = false,
                          .on_progress = [&](const LoadProgress& p) { seen.push_back(p); }});
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].stage, LoadProgress::Stage::Map);
  EXPECT_EQ(model->impl().cpu->prepare_status().copied_bytes, 0u);
  EXPECT_NE(model->info().weights.find("read from the file mapping (--no-repack)"),
            std::string::npos)
      << model->info().weights;
  std::filesystem::remove(path);
}

// The memory check's weight count is what CpuBackend::prepare_weight really copies, for tied and
// untied outputs, quantized and float files, and the golden models when the test data is there.
void expect_exact_accounting(const std::string& path, bool repack) {
  straw::ModelOptions o{.path = path, .threads = 1, .repack_weights = repack};
  auto model = straw::Model::load(o);
  const straw::Model::Impl& m = model->impl();
  const straw::RamNeed need = straw::ram_need(*m.reader, m.plan, m.cpu->isa(), repack);
  EXPECT_EQ(need.weights, m.cpu->prepare_status().copied_bytes) << path;
  EXPECT_EQ(need.kv, m.plan.kv_cpu_bytes) << path;
  EXPECT_EQ(model->info().ram_bytes, need.total()) << path;
  if (!repack) {
    EXPECT_EQ(need.weights, 0u);
  }
}

TEST(RamNeed, CountsWhatPrepareWeightCopies) {
  using straw::model::FileType;
  for (bool tied : {false, true}) {
    for (FileType t : {FileType::Q4_K_M, FileType::IQ4_XS, FileType::F16}) {
      const std::string path = synth_model("ram-need.gguf", tied, t);
      expect_exact_accounting(path, true);
      expect_exact_accounting(path, false);
      std::filesystem::remove(path);
    }
  }
}

TEST(RamNeed, GoldenModels) {
  STRAW_REQUIRE_TESTDATA();
  for (const char* f : {"stories260K.gguf", "llama-tiny-q4_k_m.gguf", "qwen2-tiny-q8_0.gguf",
                        "qwen3-tiny-iq4_xs.gguf", "qwen3moe-tiny-q4_k_m.gguf"})
    expect_exact_accounting((straw::test::testdata_dir() / "models" / f).string(), true);
}

TEST(RamCheck, RefusesBeforeLoadingWithTheNumbers) {
  const std::string path = synth_model("ram-refuse.gguf", false, straw::model::FileType::Q4_K_M);
  {
    RamLimit limit("64KiB");
    try {
      straw::Model::load({.path = path, .threads = 1});
      FAIL() << "a model larger than STRAW_RAM_LIMIT loaded";
    } catch (const straw::Error& e) {
      const std::string msg = e.what();
      for (const char* s : {"does not fit in memory", "64.00 KiB is available (STRAW_RAM_LIMIT)",
                            "of weight copies", "KV cache at ctx", "--no-repack", "--ctx"})
        EXPECT_NE(msg.find(s), std::string::npos) << s << " in: " << msg;
    }
  }
  // Without repacking only the KV cache and the compute buffers count.
  straw::ModelOptions o{.path = path, .threads = 1, .ctx = 64, .repack_weights = false};
  auto probe = straw::Model::load(o);
  const uint64_t in_place = probe->info().ram_bytes;
  probe.reset();
  RamLimit limit(std::to_string(in_place).c_str());
  auto model = straw::Model::load(o);
  EXPECT_EQ(model->info().ram_available, in_place);
  EXPECT_THROW(straw::Model::load({.path = path, .threads = 1, .ctx = 64}), straw::Error);
  std::filesystem::remove(path);
}

TEST(RamCheck, LimitFromTheEnvironment) {
  std::string source;
  {
    RamLimit limit("1.5GiB");
    EXPECT_EQ(straw::cpu::available_memory(&source), size_t(1536) << 20);
    EXPECT_EQ(source, "STRAW_RAM_LIMIT");
  }
  {
    RamLimit limit("123456");
    EXPECT_EQ(straw::cpu::available_memory(), 123456u);
  }
  {
    RamLimit limit("lots");
    EXPECT_THROW(straw::cpu::available_memory(), straw::Error);
  }
  straw::cpu::available_memory(&source);
  EXPECT_EQ(source, "MemAvailable");
}

}  // namespace

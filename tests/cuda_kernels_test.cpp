// Every CUDA kernel against the CPU reference backend on random data, through the ops of
// CudaBackend (and the launchers of cuda/kernels.h for the paths the ops do not pick). Skipped with
// a message when the build has no CUDA or no GPU can be used.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef STRAW_HAVE_CUDA
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/kernels.h"
#include "cuda_test_util.h"
#include "quant/f16.h"
#include "quant/quant.h"
#include "straw/error.h"
#endif

namespace {

#ifndef STRAW_HAVE_CUDA

TEST(CudaKernels, NeedACudaBuild) {
  GTEST_SKIP() << "built without CUDA: configure with -DSTRAW_CUDA=ON to build the GPU kernels "
                  "and run these tests on a machine with an NVIDIA GPU";
}

#else

using namespace straw;
using quant::Type;

using test::rel_error;

struct HostWeight {
  std::vector<uint8_t> bytes;
  ops::Weight w;
};

class CudaKernels : public test::CudaOpsTest {
 protected:
  CudaKernels() : CudaOpsTest(20251126) {}

  // Returned by reference and kept for the fixture's life: the backend finds uploads by host
  // address, and a freed weight's address could come back for the next one.
  HostWeight& make_weight(Type t, int64_t n_in, int64_t n_out, float scale = 1.0f) {
    HostWeight& h = *weights_.emplace_back(std::make_unique<HostWeight>());
    const size_t rb = quant::row_bytes(t, n_in);
    h.bytes.resize(rb * n_out);
    const std::vector<float> f = random(size_t(n_in * n_out), -scale, scale);
    for (int64_t r = 0; r < n_out; ++r)
      quant::quantize_row(t, f.data() + r * n_in, h.bytes.data() + r * rb, n_in);
    h.w = {t, n_in, n_out, rb, h.bytes.data(), 0};
    return h;
  }

  // The exact product y[t][o] = sum_i W[o][i] x[t][i] over the scalar reference's dequantized rows,
  // summed in double. Not CpuBackend::matmul: its SIMD paths round the activations (8-bit or
  // binary16), an error of their own that the GPU's float paths must not be measured against.
  static std::vector<float> exact_matmul(const ops::Weight& w, const std::vector<float>& x, int T) {
    std::vector<float> row(size_t(w.n_in)), y(size_t(T) * w.n_out);
    for (int64_t o = 0; o < w.n_out; ++o) {
      quant::dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + o * w.row_bytes,
                            row.data(), w.n_in);
      for (int t = 0; t < T; ++t) {
        double acc = 0;
        for (int64_t i = 0; i < w.n_in; ++i) acc += double(row[i]) * x[size_t(t) * w.n_in + i];
        y[size_t(t) * w.n_out + o] = float(acc);
      }
    }
    return y;
  }

  // Rows of a table through the scalar reference's dequantization.
  static std::vector<float> exact_rows(const ops::Weight& w, const std::vector<int32_t>& ids) {
    std::vector<float> out(ids.size() * size_t(w.n_in));
    for (size_t t = 0; t < ids.size(); ++t)
      quant::dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + ids[t] * w.row_bytes,
                            out.data() + t * w.n_in, w.n_in);
    return out;
  }

  ops::Weight vec(const std::vector<float>& v) {
    return {Type::F32, int64_t(v.size()), 1, v.size() * sizeof(float), v.data(), 0};
  }

  std::vector<std::unique_ptr<HostWeight> > weights_;
};

// Tolerance (nrmse) of y = W x for a format and batch: 8-bit activations below 9 tokens for the
// quantized formats, binary16 operands in cuBLAS above 8 tokens (except F32: SGEMM).
double matmul_tolerance(Type t, int n_tokens) {
  const bool quantized = t != Type::F32 && t != Type::F16 && t != Type::BF16;
  if (n_tokens <= cuda::kMaxMatvecTokens) return quantized ? 2e-2 : 1e-5;
  return t == Type::F32 ? 1e-5 : 3e-3;
}

TEST_F(CudaKernels, MatmulMatchesTheCpuForEveryFormatAndBatch) {
  const Type types[] = {Type::F32,  Type::F16,  Type::BF16, Type::Q4_0,   Type::Q4_1,
                        Type::Q5_0, Type::Q5_1, Type::Q8_0, Type::IQ4_NL, Type::IQ4_XS,
                        Type::Q4_K, Type::Q5_K, Type::Q6_K};
  const int64_t n_in = 768, n_out = 67;  // 3 super-blocks; rows not a multiple of 4 warps
  for (Type t : types) {
    HostWeight& h = make_weight(t, n_in, n_out);
    const ops::Weight wd = gpu_->prepare_weight(h.w);
    for (int T : {1, 2, 3, 5, 8, 9, 17, 40}) {
      const std::vector<float> x = random(size_t(T) * n_in);
      const std::vector<float> ref = exact_matmul(h.w, x, T);
      auto xd = up(x);
      auto yd = poisoned(ref.size());
      gpu_->matmul(wd, static_cast<float*>(xd->data()), static_cast<float*>(yd->data()), T);
      const double e = rel_error(down(*yd, ref.size()), ref);
      EXPECT_LE(e, matmul_tolerance(t, T)) << quant::type_name(t) << " x " << T << " tokens";
    }
  }
}

TEST_F(CudaKernels, FloatMatvecOfQuantizedFormatsMatchesTheCpu) {
  // The dequantize-on-the-fly path (the benchmarks' alternative to int8 dot products).
  const Type types[] = {Type::Q4_0,   Type::Q4_1,   Type::Q5_0, Type::Q5_1, Type::Q8_0,
                        Type::IQ4_NL, Type::IQ4_XS, Type::Q4_K, Type::Q5_K, Type::Q6_K};
  const int64_t n_in = 512, n_out = 45;
  for (Type t : types) {
    HostWeight& h = make_weight(t, n_in, n_out);
    const ops::Weight wd = gpu_->prepare_weight(h.w);
    for (int T : {1, 3, 7}) {
      const std::vector<float> x = random(size_t(T) * n_in);
      const std::vector<float> ref = exact_matmul(h.w, x, T);
      auto xd = up(x);
      auto yd = poisoned(ref.size());
      cuda::MatvecArgs a;
      a.type = t, a.w = wd.data, a.row_bytes = wd.row_bytes, a.n_in = n_in, a.n_out = n_out;
      a.y = static_cast<float*>(yd->data()), a.n_tokens = T;
      cuda::matvec_float(a, static_cast<const float*>(xd->data()), gpu_->stream());
      EXPECT_LE(rel_error(down(*yd, ref.size()), ref), 1e-5) << quant::type_name(t) << " x " << T;
    }
  }
}

TEST_F(CudaKernels, ActivationQuantizerMatchesItsDefinition) {
  const int64_t n = 1024;
  const int rows = 3;
  std::vector<float> x = random(size_t(n) * rows, -4.0f, 4.0f);
  std::fill_n(x.begin() + 64, 32, 0.0f);  // an all-zero block: d = 0, q = 0
  auto xd = up(x);
  auto buf = gpu_->alloc(cuda::act_q8_bytes(n, rows));
  cuda::quantize_act_q8(static_cast<const float*>(xd->data()), n, rows, buf->data(),
                        gpu_->stream());
  std::vector<uint8_t> host(cuda::act_q8_bytes(n, rows));
  gpu_->to_host(buf->data(), host.data(), host.size());
  const cuda::ActQ8 v = cuda::act_q8_view(host.data(), n, rows);
  for (int r = 0; r < rows; ++r)
    for (int64_t b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[r * n + b * 32 + i]));
      const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        const int q = int(std::nearbyint(x[r * n + b * 32 + i] * id));
        ASSERT_EQ(v.qs[r * n + b * 32 + i], q) << "row " << r << " block " << b;
        sum += q;
      }
      EXPECT_EQ(v.ds[r * (n / 32) + b].d, d);
      EXPECT_NEAR(v.ds[r * (n / 32) + b].s, d * float(sum), 1e-5f * std::fabs(d * float(sum)));
    }
}

TEST_F(CudaKernels, GetRowsMatchesTheCpuFromDeviceAndHostTables) {
  const std::vector<int32_t> tokens = {5, 0, 63, 17, 17, 42};
  for (Type t : {Type::F32, Type::F16, Type::Q4_K, Type::Q6_K, Type::Q8_0, Type::IQ4_XS}) {
    HostWeight& h = make_weight(t, 256, 64);
    const std::vector<float> ref = exact_rows(h.w, tokens);
    for (bool on_device : {false, true}) {
      const ops::Weight table = on_device ? gpu_->prepare_weight(h.w) : h.w;
      auto out = poisoned(ref.size());
      gpu_->get_rows(table, tokens, static_cast<float*>(out->data()));
      // 1e-6: the device's decode may contract d*q - m into one FMA (one rounding fewer).
      EXPECT_LE(rel_error(down(*out, ref.size()), ref), 1e-6)
          << quant::type_name(t) << (on_device ? " device table" : " host table");
    }
  }
  HostWeight& h = make_weight(Type::F32, 64, 8);
  auto out = poisoned(64);
  const std::vector<int32_t> bad = {8};
  EXPECT_THROW(gpu_->get_rows(h.w, bad, static_cast<float*>(out->data())), straw::Error);
}

TEST_F(CudaKernels, RmsNormMatchesTheCpu) {
  for (int64_t width : {64, 128, 1000, 4096}) {
    const int64_t rows = 7;
    const std::vector<float> x = random(size_t(rows * width), -3.0f, 3.0f);
    const std::vector<float> g = random(size_t(width), 0.5f, 1.5f);
    std::vector<float> ref(x.size());
    cpu_.rmsnorm(x.data(), vec(g), ref.data(), rows, width, 1e-6f);
    auto xd = up(x);
    auto yd = poisoned(x.size());
    gpu_->rmsnorm(static_cast<float*>(xd->data()), vec(g), static_cast<float*>(yd->data()), rows,
                  width, 1e-6f);
    EXPECT_LE(rel_error(down(*yd, x.size()), ref), 1e-6) << "width " << width;
    // In place (per-head q/k norms alias input and output).
    gpu_->rmsnorm(static_cast<float*>(xd->data()), vec(g), static_cast<float*>(xd->data()), rows,
                  width, 1e-6f);
    EXPECT_LE(rel_error(down(*xd, x.size()), ref), 1e-6) << "in place, width " << width;
  }
}

TEST_F(CudaKernels, RopeMatchesTheCpu) {
  const int T = 5, H = 3, D = 128;
  const std::vector<float> ff = random(32, 1.0f, 8.0f);
  for (ops::RopeMode mode : {ops::RopeMode::Norm, ops::RopeMode::Neox})
    for (int n_rot : {128, 64})
      for (int64_t pos0 : {int64_t(0), int64_t(7), int64_t(100000)})
        for (bool factors : {false, true}) {
          if (factors && n_rot != 64) continue;
          ops::RopeParams p;
          p.mode = mode, p.n_rot = n_rot, p.base = 1e6f, p.freq_scale = 0.5f;
          p.freq_factors = factors ? ff.data() : nullptr;
          std::vector<float> x = random(size_t(T) * H * D, -2.0f, 2.0f);
          auto xd = up(x);
          cpu_.rope(x.data(), T, H, D, pos0, p);
          gpu_->rope(static_cast<float*>(xd->data()), T, H, D, pos0, p);
          EXPECT_LE(rel_error(down(*xd, x.size()), x), 1e-6)
              << (mode == ops::RopeMode::Neox ? "neox" : "norm") << " n_rot " << n_rot << " pos "
              << pos0 << (factors ? " with factors" : "");
        }
  // YaRN (factor 4, correction range 3..20 of 64 pairs, attention factor 1.139).
  for (ops::RopeMode mode : {ops::RopeMode::Norm, ops::RopeMode::Neox})
    for (int64_t pos0 : {int64_t(0), int64_t(5000), int64_t(100000)}) {
      ops::RopeParams p;
      p.mode = mode, p.n_rot = 128, p.base = 1e6f, p.freq_scale = 0.25f;
      p.ext_factor = 1.0f, p.yarn_low = 3.0f, p.yarn_high = 20.0f, p.mscale = 1.1386f;
      std::vector<float> x = random(size_t(T) * H * D, -2.0f, 2.0f);
      auto xd = up(x);
      cpu_.rope(x.data(), T, H, D, pos0, p);
      gpu_->rope(static_cast<float*>(xd->data()), T, H, D, pos0, p);
      EXPECT_LE(rel_error(down(*xd, x.size()), x), 1e-6) << "yarn pos " << pos0;
    }
}

TEST_F(CudaKernels, ElementWiseOpsMatchTheCpu) {
  const int64_t n = 100003;
  const std::vector<float> a = random(size_t(n), -6.0f, 6.0f), b = random(size_t(n));
  auto ad = up(a), bd = up(b), od = poisoned(size_t(n));
  std::vector<float> ref(static_cast<size_t>(n));
  cpu_.swiglu(a.data(), b.data(), ref.data(), n);
  gpu_->swiglu(static_cast<float*>(ad->data()), static_cast<float*>(bd->data()),
               static_cast<float*>(od->data()), n);
  EXPECT_LE(rel_error(down(*od, size_t(n)), ref), 1e-6) << "swiglu";

  std::vector<float> x = a;
  cpu_.add(x.data(), b.data(), n);
  gpu_->add(static_cast<float*>(ad->data()), static_cast<float*>(bd->data()), n);
  EXPECT_LE(rel_error(down(*ad, size_t(n)), x), 1e-7) << "add";

  const int64_t rows = 7, width = 300;
  std::vector<float> y = random(size_t(rows * width));
  const std::vector<float> bias = random(size_t(width));
  auto yd = up(y);
  cpu_.add_bias(y.data(), vec(bias), rows, width);
  gpu_->add_bias(static_cast<float*>(yd->data()), vec(bias), rows, width);
  EXPECT_LE(rel_error(down(*yd, y.size()), y), 1e-7) << "add_bias";
}

struct AttnCase {
  int n_heads, n_kv_heads, head_dim;
  int64_t pos0;
  int n_tokens;
  ops::KvType kv;
};

TEST_F(CudaKernels, KvStoreAndAttentionMatchTheCpu) {
  const AttnCase cases[] = {
      {8, 2, 64, 0, 1, ops::KvType::F16},
      {8, 2, 64, 37, 1, ops::KvType::F32},
      {28, 4, 128, 1000, 1, ops::KvType::F16},
      {28, 4, 128, 5, 3, ops::KvType::F16},
      {40, 8, 128, 300, 8, ops::KvType::F16},
      {4, 4, 256, 20, 2, ops::KvType::F32},
      {6, 2, 80, 50, 4, ops::KvType::F16},
      {8, 2, 64, 0, 9, ops::KvType::F16},
      {8, 2, 64, 70, 33, ops::KvType::F32},
      {28, 4, 128, 0, 100, ops::KvType::F16},
      {28, 4, 128, 200, 77, ops::KvType::F16},
      {4, 2, 256, 10, 40, ops::KvType::F16},
      {6, 2, 80, 3, 20, ops::KvType::F16},
      // Quantized caches (flash-decoding kernel for every batch size).
      {8, 2, 64, 37, 1, ops::KvType::Q8_0},
      {28, 4, 128, 1000, 1, ops::KvType::Q4_0},
      {8, 2, 64, 70, 33, ops::KvType::Q4_0},
      {28, 4, 128, 200, 77, ops::KvType::Q8_0},
      {6, 2, 96, 3, 20, ops::KvType::Q4_0},
  };
  for (const AttnCase& c : cases) {
    const int64_t n_ctx = c.pos0 + c.n_tokens + 5;
    const int64_t kw = int64_t(c.n_kv_heads) * c.head_dim;
    const size_t row_bytes = ops::kv_row_bytes(c.kv, kw);
    const int64_t n_fill = c.pos0 + c.n_tokens;
    const std::vector<float> k = random(size_t(n_fill * kw), -2.0f, 2.0f);
    const std::vector<float> v = random(size_t(n_fill * kw), -2.0f, 2.0f);
    const std::vector<float> q = random(size_t(c.n_tokens) * c.n_heads * c.head_dim, -2.0f, 2.0f);
    std::vector<uint8_t> kc(size_t(n_ctx) * row_bytes), vc(kc.size());
    const ops::KvLayer cpu_kv{c.kv, c.kv, kc.data(), vc.data(), n_ctx, c.n_kv_heads};
    auto kcd = gpu_->alloc(kc.size()), vcd = gpu_->alloc(vc.size());
    const ops::KvLayer gpu_kv{c.kv, c.kv, kcd->data(), vcd->data(), n_ctx, c.n_kv_heads};
    auto kd = up(k), vd = up(v), qd = up(q);
    // Two stores: the history, then the batch's own rows at pos0.
    cpu_.kv_store(cpu_kv, k.data(), v.data(), int(c.pos0), 0, kw, kw);
    cpu_.kv_store(cpu_kv, k.data() + c.pos0 * kw, v.data() + c.pos0 * kw, c.n_tokens, c.pos0, kw,
                  kw);
    gpu_->kv_store(gpu_kv, static_cast<float*>(kd->data()), static_cast<float*>(vd->data()),
                   int(c.pos0), 0, kw, kw);
    gpu_->kv_store(gpu_kv, static_cast<float*>(kd->data()) + c.pos0 * kw,
                   static_cast<float*>(vd->data()) + c.pos0 * kw, c.n_tokens, c.pos0, kw, kw);
    // The same rows in each backend's order: the GPU's [n_ctx][n_kv_heads], the CPU's
    // [n_kv_heads][n_ctx] (ops::KvLayer).
    std::vector<uint8_t> kc_gpu(kc.size());
    gpu_->to_host(kcd->data(), kc_gpu.data(), kc_gpu.size());
    const size_t head_bytes = row_bytes / size_t(c.n_kv_heads);
    int differ = 0;
    for (int64_t j = 0; j < n_fill; ++j)
      for (int h = 0; h < c.n_kv_heads; ++h)
        differ += std::memcmp(kc_gpu.data() + size_t(j) * row_bytes + size_t(h) * head_bytes,
                              kc.data() + (size_t(h) * size_t(n_ctx) + size_t(j)) * head_bytes,
                              head_bytes) != 0;
    EXPECT_EQ(differ, 0) << "K cache rows differ";

    ops::AttentionParams p;
    p.n_tokens = c.n_tokens, p.pos0 = c.pos0, p.n_heads = c.n_heads, p.n_kv_heads = c.n_kv_heads;
    p.head_dim = c.head_dim, p.head_dim_v = c.head_dim,
    p.scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> ref(size_t(c.n_tokens) * c.n_heads * c.head_dim);
    cpu_.attention(q.data(), cpu_kv, ref.data(), p);
    auto od = poisoned(ref.size());
    gpu_->attention(static_cast<float*>(qd->data()), gpu_kv, static_cast<float*>(od->data()), p);
    // The tiled (tensor-core) kernel rounds q and the probabilities to binary16.
    const bool tiled =
        c.n_tokens > cuda::kMaxMatvecTokens && c.head_dim != 80 && !ops::kv_quantized(c.kv);
    EXPECT_LE(rel_error(down(*od, ref.size()), ref), tiled ? 5e-3 : 1e-5)
        << c.n_heads << "/" << c.n_kv_heads << " heads of " << c.head_dim << ", pos " << c.pos0
        << ", " << c.n_tokens << " tokens, " << ops::kv_type_name(c.kv);
  }
}

TEST_F(CudaKernels, BudgetIsNeverExceededAndSaysWhatIsMissing) {
  cuda::CudaOptions o;
  o.vram_budget = uint64_t(64) << 20;
  cuda::CudaBackend small(o);
  auto a = small.alloc(uint64_t(40) << 20);
  try {
    auto b = small.alloc(uint64_t(40) << 20);
    FAIL() << "an allocation beyond the budget succeeded";
  } catch (const straw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  EXPECT_LE(small.stats().vram_used, o.vram_budget);
}

TEST_F(CudaKernels, UnsupportedFormatsAreRefusedWithAnError) {
  std::vector<uint8_t> bytes(quant::row_bytes(Type::Q2_K, 256) * 4);
  const ops::Weight w{Type::Q2_K, 256, 4, quant::row_bytes(Type::Q2_K, 256), bytes.data(), 0};
  EXPECT_THROW(gpu_->prepare_weight(w), straw::Error);
}

#endif  // STRAW_HAVE_CUDA

}  // namespace

// The attention kernel (attention_impl.h) built with AVX-512: integer scores with EVEX vpdpbusd on
// 256-bit registers (AVX512-VNNI + VL); the 8-key tiles and 32-element blocks fit them exactly,
// and the float parts gain the 32 registers without changing the code.
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"

namespace straw::cpu {

namespace {

// vpdpbusd does not saturate: Q8_0 keys as k + 128.
struct EvexVnni {
  static constexpr bool kUnsignedQ8 = true;
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    static_assert(!kSigned, "vpdpbusd multiplies unsigned levels");
    return _mm256_dpbusd_epi32(acc, k, x);
  }
};

}  // namespace

void attention_avx512(const float* q, const ops::KvLayer& kv, float* out,
                      const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                      int64_t k1, float* partial, float* scratch) {
  attention_kernel<EvexVnni>(q, kv, out, p, kv_head, t0, t1, k0, k1, partial, scratch);
}

}  // namespace straw::cpu

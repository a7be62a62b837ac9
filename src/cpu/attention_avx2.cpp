// The attention kernel (attention_impl.h) on AVX2 + FMA + F16C with vpmaddubsw integer scores, and
// for AVX-VNNI with VEX vpdpbusd (only called when cpu_features().avx_vnni).
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"

namespace straw::cpu {

namespace {

// vpmaddubsw (to 16-bit pairs) + vpmaddwd (to 32-bit). vpmaddubsw saturates above 32767, so Q8_0
// keys stay signed and use |k| and sign(x, k): |k| <= 128 and |x| <= 127 keep a pair below it.
struct Maddubs {
  static constexpr bool kUnsignedQ8 = false;
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    __m256i p;
    if constexpr (kSigned)
      p = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(x, k));
    else
      p = _mm256_maddubs_epi16(k, x);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
};

// VEX vpdpbusd, which does not saturate: Q8_0 keys as k + 128. Inline assembly, as in
// matmul_avx2.cpp: the intrinsic would need -mavxvnni on the shared kernel template, letting the
// compiler use AVX-VNNI in the AVX2 build too.
struct VexVnni {
  static constexpr bool kUnsignedQ8 = true;
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    static_assert(!kSigned, "vpdpbusd multiplies unsigned levels");
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(k), "x"(x));
    return acc;
  }
};

}  // namespace

void attention_avx2(const float* q, const ops::KvLayer& kv, float* out,
                    const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                    int64_t k1, float* partial, float* scratch) {
  attention_kernel<Maddubs>(q, kv, out, p, kv_head, t0, t1, k0, k1, partial, scratch);
}

void attention_avx_vnni(const float* q, const ops::KvLayer& kv, float* out,
                        const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                        int64_t k1, float* partial, float* scratch) {
  attention_kernel<VexVnni>(q, kv, out, p, kv_head, t0, t1, k0, k1, partial, scratch);
}

}  // namespace straw::cpu

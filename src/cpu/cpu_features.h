// What the CPU we run on can do, read once from CPUID (and XGETBV for the OS-enabled register
// state), and the instruction-set level the CPU backend picks its kernels for.
//
// The library is built for baseline x86-64; kernels for wider instruction sets live in files built
// with those sets enabled (*_avx2.cpp, *_avx512.cpp; the AVX-VNNI kernels are in matmul_avx2.cpp)
// and are only called when these flags say the CPU and the OS support them.
#pragma once

#include <cstddef>
#include <string>

namespace straw::cpu {

struct CpuFeatures {
  bool avx2 = false;    // with FMA, F16C and BMI2 (the *_avx2.cpp build flags)
  bool avx512 = false;  // F, BW, VL, DQ, VNNI, BF16 and VBMI (the *_avx512.cpp build flags)
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx_vnni = false;  // VEX-encoded VNNI on 256-bit registers
  bool amx = false;       // AVX-512 above plus AMX-TILE and AMX-INT8 with the OS's tile state
                          // (isa_supported(Isa::Amx) also needs Linux's grant, asked for then)
  bool intel = false;     // CPUID vendor "GenuineIntel" (tunings that differ by vendor)
};

// Detected once, on first use.
const CpuFeatures& cpu_features();

// The instruction-set levels with their own kernels, in increasing order. AvxVnni: AVX2 plus
// AVX-VNNI (VEX vpdpbusd on ymm; Alder Lake and later, Zen 5), for CPUs without AVX-512. Amx: the
// AVX-512 level whose prompt matmuls (16 tokens and more) of quantized weights run as AMX int8 tile
// products (Intel Xeon from Sapphire Rapids on).
enum class Isa { Scalar, Avx2, AvxVnni, Avx512, Amx };

const char* isa_name(Isa isa);

// The best level the CPU supports.
Isa best_isa();

// Whether the CPU supports the kernels of `isa` (Scalar always).
bool isa_supported(Isa isa);

// The matmul kernels' software prefetch distances for this CPU, in bytes ahead of what they read:
// into L1 (prefetcht0) and, where it helps, also into L2 (prefetcht2; 0: none). Intel 2 KB and
// 4 KB, other CPUs 8 KB and none (kPrefetch in kernels.h has the measurements).
// The L2 prefetch runs only where its distance is beyond L1's (the tile kernels' StreamPrefetch
// prefetches each line into L2 that much further ahead).
// STRAW_PREFETCH_BYTES="L1[,L2]" overrides them for tuning on other CPUs (each rounded down to 64,
// at most 1 MiB).
struct PrefetchDistances {
  size_t l1 = 0, l2 = 0;
};
PrefetchDistances default_prefetch();

// "amx", "avx512 (vnni, bf16)", "avx-vnni", "avx2", "scalar": for logs and benchmark labels.
std::string describe_cpu();

}  // namespace straw::cpu

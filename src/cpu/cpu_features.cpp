#include "cpu/cpu_features.h"

#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define STRAW_X86 1
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace straw::cpu {

namespace {

#ifdef STRAW_X86
// XCR0: which register states the OS saves on context switches. AVX needs XMM|YMM (bits 1-2);
// AVX-512 also needs opmask, upper ZMM and high ZMM (bits 5-7).
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

// Linux hands a process the AMX tile state (8 KiB per thread, saved on context switches) only on
// request: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). Without it the first tile
// instruction faults. Other systems: no AMX.
bool request_amx_state() {
#if defined(__x86_64__) && defined(__linux__)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid(0, a, b, c, d);
  f.intel = b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;  // "Genu" "ineI" "ntel"
  __cpuid_count(1, 0, a, b, c, d);
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  const bool avx512vbmi = c & (1u << 1), avx512vnni = c & (1u << 11);
  const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG and XTILEDATA
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  const bool avx_vnni = a1 & (1u << 4), avx512bf16 = a1 & (1u << 5);

  f.avx2 = os_avx && avx2 && fma && f16c && bmi2;
  f.avx_vnni = f.avx2 && avx_vnni;
  const bool base512 = f.avx2 && os_avx512 && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = base512 && avx512vnni;
  f.avx512_bf16 = base512 && avx512bf16;
  f.avx512 = base512 && avx512vnni && avx512bf16 && avx512vbmi;
  f.amx = f.avx512 && amx_tile && amx_int8 && os_amx;
  return f;
}
#else
CpuFeatures detect() {
  return {};
}
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

PrefetchDistances default_prefetch() {
  PrefetchDistances d =
      cpu_features().intel ? PrefetchDistances{2048, 4096} : PrefetchDistances{8192, 0};
  if (const char* e = std::getenv("STRAW_PREFETCH_BYTES"); e && *e) {
    // A number, or two separated by a comma; anything else leaves the defaults.
    char* end = nullptr;
    const unsigned long long l1 = std::strtoull(e, &end, 10);
    bool ok = end != e;
    unsigned long long l2 = 0;
    if (ok && *end == ',') {
      const char* second = end + 1;
      l2 = std::strtoull(second, &end, 10);
      ok = end != second;
    }
    if (ok && *end == 0 && l1 <= (1u << 20) && l2 <= (1u << 20))
      d = {size_t(l1) / 64 * 64, size_t(l2) / 64 * 64};
  }
  return d;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
    case Isa::AvxVnni:
      return "avx-vnni";
    case Isa::Avx512:
      return "avx512";
    case Isa::Amx:
      return "amx";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return true;
    case Isa::Avx2:
      return cpu_features().avx2;
    case Isa::AvxVnni:
      return cpu_features().avx_vnni;
    case Isa::Avx512:
      return cpu_features().avx512;
    case Isa::Amx: {
      // Asked for once, when a kernel level is first chosen, not at load: the grant enlarges
      // every thread's saved state and signal frames (Linux then refuses small sigaltstacks), so
      // a process that never picks its CPU kernels does not take it.
      static const bool granted = cpu_features().amx && request_amx_state();
      return granted;
    }
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::Amx)) return Isa::Amx;
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::AvxVnni)) return Isa::AvxVnni;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

std::string describe_cpu() {
  const CpuFeatures& f = cpu_features();
  std::string s = isa_name(best_isa());
  if (f.avx512 && best_isa() != Isa::Amx) s += " (vnni, bf16)";
  return s;
}

}  // namespace straw::cpu

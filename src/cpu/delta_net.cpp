// The gated delta rule on the CPU: the reference build of the kernels (cpu/delta_net_impl.h) and
// the op, split over value heads.
#include "cpu/delta_net.h"

#include "cpu/cpu_backend.h"
#include "cpu/delta_net_impl.h"
#include "util/str.h"

namespace straw::cpu {

constinit const DeltaNetKernels kDeltaNetRef = {&dn_recurrent, &dn_chunked};

const DeltaNetKernels& delta_net_kernels(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
    case Isa::Amx:
      return kDeltaNetAvx512;
    case Isa::Avx2:
    case Isa::AvxVnni:
      return kDeltaNetAvx2;
    case Isa::Scalar:
      break;
  }
  return kDeltaNetRef;
}

void CpuBackend::gated_delta_net(const ops::DeltaNetParams& p) {
  if (p.n_tokens <= 0) return;
  if (p.n_k_heads <= 0 || p.n_v_heads % p.n_k_heads != 0 || p.head_dim <= 0 ||
      (p.snapshot && (p.snapshot_after < 0 || p.snapshot_after >= p.n_tokens)))
    fail("internal error: gated_delta_net with ", p.n_v_heads, " value heads over ", p.n_k_heads,
         " key heads of ", p.head_dim, ", snapshot after token ", p.snapshot_after, " of ",
         p.n_tokens);
  // The token loop for every batch: on the CPU it is the faster form (delta_net.h).
  const auto form = delta_net_kernels(isa_).recurrent;
  const size_t need = delta_net_scratch_floats(p.head_dim);
  pool_.parallel_for(p.n_v_heads, 1, [&](int64_t h0, int64_t h1, int thread) {
    float* s = scratch(thread, need);
    for (int64_t h = h0; h < h1; ++h) form(p, int(h), s);
  });
}

}  // namespace straw::cpu

// The delta-rule kernels (cpu/delta_net_impl.h) built with AVX2 + FMA.
#include "cpu/delta_net_impl.h"

namespace straw::cpu {

constinit const DeltaNetKernels kDeltaNetAvx2 = {&dn_recurrent, &dn_chunked};

}  // namespace straw::cpu

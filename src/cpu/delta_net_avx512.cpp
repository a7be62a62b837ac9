// The delta-rule kernels (cpu/delta_net_impl.h) built with AVX-512.
#include "cpu/delta_net_impl.h"

namespace straw::cpu {

constinit const DeltaNetKernels kDeltaNetAvx512 = {&dn_recurrent, &dn_chunked};

}  // namespace straw::cpu

// The defaults of the optional op families: a backend that lacks them refuses with a clear error.
// The placement keeps the layers that need them off such a backend, so these never run in a model;
// they guard against a wrong placement.
#include "ops/backend.h"

#include "util/str.h"

namespace straw::ops {

namespace {

[[noreturn]] void missing(const char* op) {
  fail("internal error: this backend has no '", op,
       "' op (linear-attention and gated-attention layers run on the CPU only so far)");
}

}  // namespace

void Backend::kv_shift(const KvLayer&, const KvShiftParams&) {
  fail(
      "context shift runs on the CPU only so far, and this placement keeps a KV cache on the GPU: "
      "use --device cpu, or a larger --ctx without --context-shift");
}
void Backend::copy_rows(const float*, int64_t, float*, int64_t, int64_t, int64_t) {
  missing("copy_rows");
}
void Backend::sigmoid_mul(float*, const float*, int64_t) {
  missing("sigmoid_mul");
}
void Backend::sigmoid_scale_rows(float*, const float*, int64_t, int64_t) {
  missing("sigmoid_scale_rows");
}
void Backend::l2norm(float*, int, int, int64_t, int64_t, float) {
  missing("l2norm");
}
void Backend::rmsnorm_gated(const float*, const Weight&, const float*, float*, int64_t, int64_t,
                            float) {
  missing("rmsnorm_gated");
}
void Backend::delta_net_gates(float*, float*, const Weight&, const Weight&, int, int) {
  missing("delta_net_gates");
}
void Backend::ssm_conv(const ConvParams&) {
  missing("ssm_conv");
}
void Backend::gated_delta_net(const DeltaNetParams&) {
  missing("gated_delta_net");
}

}  // namespace straw::ops

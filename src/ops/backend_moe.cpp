// The defaults of the mixture-of-experts ops: a backend that lacks them refuses with a clear
// error. The placement keeps MoE FFNs off such a backend, so these guard against a wrong placement.
#include "ops/backend.h"
#include "util/str.h"

namespace straw::ops {

namespace {

[[noreturn]] void missing(const char* op) {
  fail("internal error: this backend has no '", op,
       "' op (mixture-of-experts FFNs run on the CPU only so far)");
}

}  // namespace

void Backend::moe_route(const float*, int, int, int, bool, float, int32_t*, float*) {
  missing("moe_route");
}
void Backend::moe_matmul(const Weight&, const float*, bool, const int32_t*, int, int, float*) {
  missing("moe_matmul");
}
void Backend::moe_combine(const float*, const float*, int, int, int64_t, float*) {
  missing("moe_combine");
}

}  // namespace straw::ops

// int8 matvec instantiations for the super-block formats, the activation quantizer, and the
// public matvec_int8 entry point.
#include "cuda/matvec.cuh"

namespace straw::cuda {

namespace {

// One warp per 32 values (quantize_q8_block).
__global__ void k_quantize_q8(const float* __restrict__ x, int64_t n_in, int n_blocks,
                              int8_t* __restrict__ qs, DS* __restrict__ ds) {
  const int b = int(blockIdx.x) * int(blockDim.x / 32) + int(threadIdx.x >> 5);
  if (b >= n_blocks) return;
  const int64_t row = blockIdx.y;
  quantize_q8_block(x + row * n_in, b, qs + row * n_in, ds + row * n_blocks);
}

size_t levels_bytes(int64_t n_in, int n_rows) {
  return (size_t(n_in) * size_t(n_rows) + 15) / 16 * 16;
}

}  // namespace

size_t act_q8_bytes(int64_t n_in, int n_rows) {
  return levels_bytes(n_in, n_rows) + size_t(n_in / 32) * size_t(n_rows) * sizeof(DS);
}

ActQ8 act_q8_view(const void* buf, int64_t n_in, int n_rows) {
  const auto* base = static_cast<const uint8_t*>(buf);
  return ActQ8{reinterpret_cast<const int8_t*>(base),
               reinterpret_cast<const DS*>(base + levels_bytes(n_in, n_rows)), n_in};
}

void quantize_act_q8(const float* x, int64_t n_in, int n_rows, void* buf, Stream stream) {
  if (n_in % 32 != 0) fail("internal error: activation rows of ", n_in, " values (need 32k)");
  if (n_rows <= 0 || n_rows > 65535) fail("internal error: ", n_rows, " activation rows");
  const int n_blocks = int(n_in / 32);
  auto* base = static_cast<uint8_t*>(buf);
  const dim3 grid(unsigned(ceil_div(n_blocks, 8)), unsigned(n_rows));
  k_quantize_q8<<<grid, 256, 0, stream>>>(x, n_in, n_blocks, reinterpret_cast<int8_t*>(base),
                                          reinterpret_cast<DS*>(base + levels_bytes(n_in, n_rows)));
  STRAW_CUDA_CHECK_LAUNCH();
}

void matvec_int8_superblocks(const MatvecArgs& a, const ActQ8& x, Stream stream) {
  using quant::Type;
  switch (a.type) {
    case Type::IQ4_XS:
      return launch_matvec_int8<Type::IQ4_XS>(a, x, stream);
    case Type::Q4_K:
      return launch_matvec_int8<Type::Q4_K>(a, x, stream);
    case Type::Q5_K:
      return launch_matvec_int8<Type::Q5_K>(a, x, stream);
    case Type::Q6_K:
      return launch_matvec_int8<Type::Q6_K>(a, x, stream);
    default:
      fail("internal error: ", quant::type_name(a.type), " is not a super-block format");
  }
}

void matvec_int8(const MatvecArgs& a, const ActQ8& x, Stream stream) {
  if (!is_int8_format(a.type))
    fail("internal error: matvec_int8 on ", quant::type_name(a.type), " weights");
  if (a.n_tokens < 1 || a.n_tokens > kMaxMatvecTokens)
    fail("internal error: matvec for ", a.n_tokens, " tokens (1..", kMaxMatvecTokens, ")");
  if (a.n_in % quant::type_info(a.type).block_size != 0 || x.stride != a.n_in)
    fail("internal error: matvec rows of ", a.n_in, " ", quant::type_name(a.type), " weights");
  if (a.n_out <= 0) return;
  if (quant::type_info(a.type).block_size == 32)
    matvec_int8_blocks32(a, x, stream);
  else
    matvec_int8_superblocks(a, x, stream);
}

// int8 dot products for every quantized format: at one token a matvec is bound by reading the
// weights, and decoding a 4-bit weight into an int8 lane for dp4a takes fewer instructions than
// converting it to float and doing a float FMA per token; with 8-bit activations the arithmetic
// stays far from the limit at 8 tokens too. Float formats multiply floats. The benchmarks
// (bench/cuda_kernels_bench.cpp) time both paths per format to confirm the choice on a device.
bool matvec_prefers_int8(quant::Type t) {
  return is_int8_format(t);
}

}  // namespace straw::cuda

// Float matvec: F32 / F16 / BF16 weights for 1..8 tokens, and every quantized format dequantized
// on the fly (the alternative to int8 dot products, in token groups of 8, 4, 2, 1).
#include "cuda/matvec.cuh"

namespace straw::cuda {

namespace {

template <quant::Type T>
void launch_any_tokens(const MatvecArgs& a, const float* x, Stream stream) {
  switch (a.n_tokens) {
    case 1:
      return launch_matvec_float_nt<T, 1>(a, x, stream);
    case 2:
      return launch_matvec_float_nt<T, 2>(a, x, stream);
    case 3:
      return launch_matvec_float_nt<T, 3>(a, x, stream);
    case 4:
      return launch_matvec_float_nt<T, 4>(a, x, stream);
    case 5:
      return launch_matvec_float_nt<T, 5>(a, x, stream);
    case 6:
      return launch_matvec_float_nt<T, 6>(a, x, stream);
    case 7:
      return launch_matvec_float_nt<T, 7>(a, x, stream);
    case 8:
      return launch_matvec_float_nt<T, 8>(a, x, stream);
    default:
      fail("internal error: matvec for ", a.n_tokens, " tokens (1..8 supported)");
  }
}

// Quantized formats: fewer instantiations; a token count is covered by groups of 8, 4, 2 and 1.
template <quant::Type T>
void launch_token_groups(const MatvecArgs& a, const float* x, Stream stream) {
  int t0 = 0;
  for (int g : {8, 4, 2, 1}) {
    while (a.n_tokens - t0 >= g) {
      MatvecArgs part = a;
      part.n_tokens = g;
      part.y = a.y + t0 * a.n_out;
      const float* xp = x + t0 * a.n_in;
      switch (g) {
        case 8:
          launch_matvec_float_nt<T, 8>(part, xp, stream);
          break;
        case 4:
          launch_matvec_float_nt<T, 4>(part, xp, stream);
          break;
        case 2:
          launch_matvec_float_nt<T, 2>(part, xp, stream);
          break;
        default:
          launch_matvec_float_nt<T, 1>(part, xp, stream);
          break;
      }
      t0 += g;
    }
  }
}

}  // namespace

void matvec_float(const MatvecArgs& a, const float* x, Stream stream) {
  using quant::Type;
  if (a.n_tokens < 1 || a.n_tokens > kMaxMatvecTokens)
    fail("internal error: matvec for ", a.n_tokens, " tokens (1..", kMaxMatvecTokens, ")");
  if (a.n_in % 8 != 0 || a.n_in % quant::type_info(a.type).block_size != 0)
    fail("the CUDA backend needs weight rows of a multiple of 8 elements; ",
         quant::type_name(a.type), " rows of ", a.n_in, " elements are not supported");
  if (a.n_out <= 0) return;
  switch (a.type) {
    case Type::F32:
      return launch_any_tokens<Type::F32>(a, x, stream);
    case Type::F16:
      return launch_any_tokens<Type::F16>(a, x, stream);
    case Type::BF16:
      return launch_any_tokens<Type::BF16>(a, x, stream);
    case Type::Q4_0:
      return launch_token_groups<Type::Q4_0>(a, x, stream);
    case Type::Q4_1:
      return launch_token_groups<Type::Q4_1>(a, x, stream);
    case Type::Q5_0:
      return launch_token_groups<Type::Q5_0>(a, x, stream);
    case Type::Q5_1:
      return launch_token_groups<Type::Q5_1>(a, x, stream);
    case Type::Q8_0:
      return launch_token_groups<Type::Q8_0>(a, x, stream);
    case Type::IQ4_NL:
      return launch_token_groups<Type::IQ4_NL>(a, x, stream);
    case Type::IQ4_XS:
      return launch_token_groups<Type::IQ4_XS>(a, x, stream);
    case Type::Q4_K:
      return launch_token_groups<Type::Q4_K>(a, x, stream);
    case Type::Q5_K:
      return launch_token_groups<Type::Q5_K>(a, x, stream);
    case Type::Q6_K:
      return launch_token_groups<Type::Q6_K>(a, x, stream);
    default:
      fail("the CUDA backend has no kernels for ", quant::type_name(a.type),
           " weights (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL IQ4_XS Q4_K Q5_K "
           "Q6_K)");
  }
}

}  // namespace straw::cuda

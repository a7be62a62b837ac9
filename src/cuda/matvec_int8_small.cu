// int8 matvec instantiations for the 32-element block formats.
#include "cuda/matvec.cuh"

namespace straw::cuda {

void matvec_int8_blocks32(const MatvecArgs& a, const ActQ8& x, Stream stream) {
  using quant::Type;
  switch (a.type) {
    case Type::Q4_0:
      return launch_matvec_int8<Type::Q4_0>(a, x, stream);
    case Type::Q4_1:
      return launch_matvec_int8<Type::Q4_1>(a, x, stream);
    case Type::Q5_0:
      return launch_matvec_int8<Type::Q5_0>(a, x, stream);
    case Type::Q5_1:
      return launch_matvec_int8<Type::Q5_1>(a, x, stream);
    case Type::Q8_0:
      return launch_matvec_int8<Type::Q8_0>(a, x, stream);
    case Type::IQ4_NL:
      return launch_matvec_int8<Type::IQ4_NL>(a, x, stream);
    default:
      fail("internal error: ", quant::type_name(a.type), " is not a 32-element block format");
  }
}

}  // namespace straw::cuda

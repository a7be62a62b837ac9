// Every implemented quant format (one header each); include this to name any of them.
//
// Weight and storage formats: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2K Q3K Q4K Q5K Q6K IQ4NL
// IQ4XS. Activation formats (what the CPU multiplies quantized weights with): Q8_0, Q8_1, Q8K.
#pragma once

#include "quant/format.h"
#include "quant/iq4_nl.h"
#include "quant/iq4_xs.h"
#include "quant/plain.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q4_k.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"
#include "quant/q8_1.h"
#include "quant/q8_k.h"

namespace straw::quant {

// Every format's block agrees with the one type table (types.h).
template <Format F>
constexpr bool matches_type_table() {
  return sizeof(typename F::Block) == type_info_ce(F::kType).type_size &&
         F::kBlockSize == type_info_ce(F::kType).block_size && type_info_ce(F::kType).supported;
}
static_assert(matches_type_table<F32>() && matches_type_table<F16>() && matches_type_table<BF16>());
static_assert(matches_type_table<Q4_0>() && matches_type_table<Q4_1>() && matches_type_table<Q5_0>() &&
              matches_type_table<Q5_1>() && matches_type_table<Q8_0>() && matches_type_table<Q8_1>());
static_assert(matches_type_table<Q2K>() && matches_type_table<Q3K>() && matches_type_table<Q4K>() &&
              matches_type_table<Q5K>() && matches_type_table<Q6K>() && matches_type_table<Q8K>());
static_assert(matches_type_table<IQ4NL>() && matches_type_table<IQ4XS>());

}  // namespace straw::quant

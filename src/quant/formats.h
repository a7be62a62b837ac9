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

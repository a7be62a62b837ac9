// Which backend runs each part of a model.
#pragma once

#include <vector>

#include "ops/backend.h"

namespace straw::model {

// Which backend runs each part of the model (one backend for everything in a single-device
// run; CPU and GPU backends mixed in a hybrid run). Each layer's KV cache lives with its attention.
struct DeviceMap {
  std::vector<ops::Backend*> attn;  // [n_layer]
  std::vector<ops::Backend*> ffn;   // [n_layer]: the whole FFN (an MoE FFN's experts included)
  ops::Backend* output = nullptr;   // final norm + LM head
  ops::Backend* embed = nullptr;    // embedding lookup (the CPU: one row is read per token)

  static DeviceMap single(ops::Backend& be, int n_layer);
};

}  // namespace straw::model

// Which backend runs each part of a model.
#pragma once

#include <vector>

#include "ops/backend.h"

namespace straw::model {

// Which backend runs each part of the model (one backend for everything in a single-device
// run; CPU and GPU backends mixed in a hybrid run). Each layer's KV cache lives with its attention.
struct DeviceMap {
  std::vector<ops::Backend*> attn;  // [n_layer]
  std::vector<ops::Backend*> ffn;   // [n_layer]: the FFN (an MoE FFN's norm, router, shared expert)
  // [n_layer]: an MoE FFN's expert tensors (ffn_*_exps) and their matmuls; the routed tokens go
  // there and the weighted sum of the experts' outputs comes back (ffn[i] for dense layers, and
  // wherever the whole FFN runs on one device)
  std::vector<ops::Backend*> experts;
  ops::Backend* output = nullptr;  // final norm + LM head
  ops::Backend* embed = nullptr;   // embedding lookup (the CPU: one row is read per token)

  static DeviceMap single(ops::Backend& be, int n_layer);
};

}  // namespace straw::model

// The recurrent state of one sequence: what a linear-attention (Gated DeltaNet) layer carries from
// token to token instead of a KV cache. Fixed size: it does not grow with the context.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/device_map.h"
#include "model/hparams.h"
#include "ops/backend.h"

namespace straw::model {

// Per linear layer, in the memory of the backend that runs that layer's attention part: the conv
// state ([conv_kernel - 1][ssm_conv_dim] floats, the layer's last inputs) and the delta-rule state
// ([v_heads][S][S] floats, ops::DeltaNetParams::state), zero for an empty sequence; and a snapshot
// of both, which a forward step can fill with the state after one of its tokens.
//
// Checkpoints: copies of the whole state in host memory at chosen positions (at most
// kCheckpoints, the most recent kept). Going back to an earlier position (Session::truncate)
// restores the latest checkpoint at or before it and evaluates the tokens from there again: the
// state cannot be rewound otherwise.
class RecurrentState {
 public:
  static constexpr int kCheckpoints = 3;

  RecurrentState(const HParams& hp, const DeviceMap& devices);

  struct Layer {
    float* conv = nullptr;
    float* ssm = nullptr;
    float* conv_snapshot = nullptr;
    float* ssm_snapshot = nullptr;
  };
  Layer layer(int il) const { return layers_[size_t(il)]; }
  bool empty() const { return storage_.empty(); }
  // Backend memory: state and snapshot of every linear layer (checkpoints not counted).
  size_t bytes() const { return 2 * total_bytes_; }
  size_t checkpoint_bytes() const;               // host memory the checkpoints take now

  void clear();  // zero every layer: an empty sequence, no checkpoints

  // Copies the state (the one after `pos` tokens), or the snapshot when from_snapshot, to a
  // checkpoint, replacing the one at the lowest position when all are taken.
  void save(int64_t pos, bool from_snapshot = false);
  // Loads the latest checkpoint at a position <= pos and returns that position; with none, clears
  // the state and returns 0. Checkpoints past pos are dropped.
  int64_t restore(int64_t pos);

 private:
  struct Checkpoint {
    int64_t pos = -1;  // -1: unused
    std::vector<float> data;
  };
  const HParams& hp_;
  std::vector<ops::Backend*> backends_;                // [n_layer], null for attention layers
  std::vector<std::unique_ptr<ops::Buffer>> storage_;  // one per linear layer
  std::vector<Layer> layers_;                          // [n_layer]
  size_t total_bytes_ = 0;  // of one copy of the state
  std::vector<Checkpoint> checkpoints_;
};

}  // namespace straw::model

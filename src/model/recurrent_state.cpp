#include "model/recurrent_state.h"

#include <algorithm>

namespace straw::model {

RecurrentState::RecurrentState(const HParams& hp, const DeviceMap& devices)
    : hp_(hp), backends_(size_t(hp.n_layer), nullptr), layers_(size_t(hp.n_layer)) {
  const size_t bytes = hp.recurrent_layer_bytes();
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_recurrent(il)) continue;
    ops::Backend* be = devices.attn[size_t(il)];
    storage_.push_back(be->alloc(2 * bytes));  // zeroed: the state of an empty sequence
    auto* base = static_cast<float*>(storage_.back()->data());
    auto* snap = base + bytes / sizeof(float);
    const int64_t conv = hp.ssm_conv_state_elements();
    layers_[size_t(il)] = {base, base + conv, snap, snap + conv};
    backends_[size_t(il)] = be;
    total_bytes_ += bytes;
  }
  checkpoints_.resize(kCheckpoints);
}

size_t RecurrentState::checkpoint_bytes() const {
  size_t b = 0;
  for (const Checkpoint& c : checkpoints_) b += c.data.capacity() * sizeof(float);
  return b;
}

void RecurrentState::clear() {
  const size_t bytes = hp_.recurrent_layer_bytes();
  const std::vector<float> zeros(bytes / sizeof(float), 0.0f);
  for (int il = 0; il < hp_.n_layer; ++il)
    if (backends_[size_t(il)])
      backends_[size_t(il)]->from_host(zeros.data(), layers_[size_t(il)].conv, bytes);
  for (Checkpoint& c : checkpoints_) c.pos = -1;
}

void RecurrentState::save(int64_t pos, bool from_snapshot) {
  if (empty()) return;
  Checkpoint* slot = &checkpoints_[0];
  for (Checkpoint& c : checkpoints_) {
    if (c.pos == pos || c.pos < 0) {
      slot = &c;
      break;
    }
    if (c.pos < slot->pos) slot = &c;
  }
  const size_t bytes = hp_.recurrent_layer_bytes();
  slot->data.resize(total_bytes_ / sizeof(float));
  float* dst = slot->data.data();
  for (int il = 0; il < hp_.n_layer; ++il) {
    if (!backends_[size_t(il)]) continue;
    const Layer& l = layers_[size_t(il)];
    backends_[size_t(il)]->to_host(from_snapshot ? l.conv_snapshot : l.conv, dst, bytes);
    dst += bytes / sizeof(float);
  }
  slot->pos = pos;
}

int64_t RecurrentState::restore(int64_t pos) {
  Checkpoint* best = nullptr;
  for (Checkpoint& c : checkpoints_) {
    if (c.pos > pos)
      c.pos = -1;  // from a future this sequence no longer has
    else if (c.pos >= 0 && (!best || c.pos > best->pos))
      best = &c;
  }
  if (!best) {
    clear();
    return 0;
  }
  const size_t bytes = hp_.recurrent_layer_bytes();
  const float* src = best->data.data();
  for (int il = 0; il < hp_.n_layer; ++il) {
    if (!backends_[size_t(il)]) continue;
    backends_[size_t(il)]->from_host(src, layers_[size_t(il)].conv, bytes);
    src += bytes / sizeof(float);
  }
  return best->pos;
}

}  // namespace straw::model

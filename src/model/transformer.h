// The decoder forward pass shared by llama / qwen2 / qwen3 / qwen3moe: embeddings -> n_layer blocks
// -> final norm -> LM head. Each architecture file (arch_*.cpp) defines its block as a short
// sequence of the shared sub-blocks below; the backend decides where and how each op runs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/device_map.h"
#include "model/hparams.h"
#include "model/recurrent_state.h"
#include "model/weights.h"
#include "ops/backend.h"

namespace straw::model {

// KV cache storage of one session: per layer, K and V rows for positions 0..n_ctx-1, in the
// memory of the backend that runs that layer's attention.
class KvCache {
 public:
  KvCache(const HParams& hp, int64_t n_ctx, ops::KvType k_type, ops::KvType v_type,
          const DeviceMap& devices);
  // The cache of the MTP / NextN blocks only (layers n_layer .. n_layer + n_mtp - 1, in `be`'s
  // memory, zero-filled so that rows never written read as zeros, not as garbage).
  KvCache(const HParams& hp, int64_t n_ctx, ops::KvType k_type, ops::KvType v_type,
          ops::Backend& be);
  const ops::KvLayer& layer(int i) const { return layers_[i]; }
  int64_t n_ctx() const { return n_ctx_; }
  size_t bytes() const;
  // Bytes one layer's cache of n_ctx positions takes (for planning before allocation).
  static size_t layer_bytes(const HParams& hp, int64_t n_ctx, ops::KvType k_type,
                            ops::KvType v_type);

 private:
  int64_t n_ctx_;
  std::vector<std::unique_ptr<ops::Buffer>> storage_;  // one per layer
  std::vector<ops::KvLayer> layers_;
};

// Activation buffers of one micro-batch in the backend's memory, sized once for the largest
// batch (no per-token allocation). Shapes are [n_tokens][width].
struct Activations {
  float* x = nullptr;       // [ub][n_embd]   residual stream
  float* xn = nullptr;      // [ub][n_embd]   normalized input of a sub-block
  float* q = nullptr;       // [ub][n_head*head_dim]
  float* k = nullptr;       // [ub][n_head_kv*head_dim]
  float* v = nullptr;       // [ub][n_head_kv*head_dim_v]
  float* attn = nullptr;    // [ub][n_head*head_dim_v]  attention output before Wo
  float* gate = nullptr;    // [ub][n_ff]  (MoE: [ub][n_used][n_ff_exp], when larger)
  float* up = nullptr;      // [ub][n_ff]  (MoE: as gate)
  float* proj = nullptr;    // [ub][n_embd]   output of Wo / W_down before the residual add
  float* logits = nullptr;  // [min(ub, 64)][n_vocab]  LM head output before the copy to the host
  // qwen35 only (null otherwise):
  float* mix = nullptr;    // [ub][max(2*n_head*head_dim, ssm_conv_dim)]  fused q+gate or qkv
  float* conv = nullptr;   // [ub][ssm_conv_dim]  conv output: q, k, v of the delta rule
  float* z = nullptr;      // [ub][max(n_head*head_dim, ssm_inner)]  output gate
  float* alpha = nullptr;  // [ub][ssm_v_heads]  decay input, then its log g
  float* beta = nullptr;   // [ub][ssm_v_heads]  update strength
  // Mixture-of-experts FFN (null for dense models):
  float* router = nullptr;        // [ub][n_expert]  router logits
  int32_t* expert_ids = nullptr;  // [ub][n_used]    chosen experts, best first
  float* expert_w = nullptr;      // [ub][n_used]    their weights
  float* experts = nullptr;       // [ub][n_used][n_embd]  expert outputs before the weighted sum
  // MTP / NextN (files with such blocks; null otherwise):
  float* mtp_in = nullptr;  // [ub][2*n_embd]  [RMSNorm(e) | RMSNorm(h)], the input of eh_proj
};

class Transformer;

// One sequence's part of a forward step: its tokens, where they go, and where its logits go. A step
// may carry several sequences (batched decode): every matmul runs over the rows of all of them at
// once, while the ops that read a sequence's own state (RoPE at its positions, its KV cache) run
// once per sequence on its rows.
struct SeqStep {
  std::span<const int32_t> tokens;  // at positions pos0 .. pos0 + tokens.size() - 1
  int64_t pos0 = 0;
  KvCache* kv = nullptr;    // this sequence's cache; its K/V rows are appended
  float* logits = nullptr;  // host memory: [tokens.size()][n_vocab] when all_logits, else
                            // [n_vocab] for the last token; null: no LM head for it
  bool all_logits = false;
  RecurrentState* rs = nullptr;  // its recurrent state (required for models with linear layers)
  int snapshot_after = -1;       // >= 0: also keep rs's state after this token in rs's snapshot
  float* hidden = nullptr;  // host [tokens.size()][n_embd]: every token's last hidden state after
                            // output_norm (what the MTP block reads); null: not kept
};

// One step of the MTP / NextN block for one sequence: row r pairs the main model's hidden state
// at position pos0 + r with the token that follows it, and predicts the token after that.
struct MtpStep {
  std::span<const int32_t> tokens;  // t_{i+1} for i = pos0 .. pos0 + n - 1
  const float* hidden = nullptr;    // host [n][n_embd]: h_i, output-normed (SeqStep::hidden, or
                                    // the previous MTP step's hidden_out when chaining)
  int64_t pos0 = 0;                 // i of row 0; the rows' K/V go to kv at pos0..
  KvCache* kv = nullptr;            // the sequence's MTP cache (KvCache's MTP constructor)
  float* logits = nullptr;          // host [n_vocab]: the last row's logits, for t_{pos0+n+1}
  float* hidden_out = nullptr;      // host [n_embd]: the last row's shared_head_norm output
  int block = 0;                    // which MTP block (0 .. n_mtp - 1)
};

// A sequence's rows inside the step's activation buffers.
struct SeqRows {
  int row0 = 0;      // first row of this sequence in the step's [n_tokens][width] buffers
  int n = 0;         // its rows
  int64_t pos0 = 0;  // position of its first row
  KvCache* kv = nullptr;
  RecurrentState* rs = nullptr;
  int snapshot_after = -1;  // as SeqStep's, relative to row0
};

// Everything one block needs: the model, the batch being processed, and the device it runs on
// now. Sub-blocks start with enter(), which moves the residual stream to the backend that holds
// that sub-block's weights (a no-op when it is already there).
struct BlockContext {
  const HParams& hp;
  const Weights& w;
  std::span<const SeqRows> seqs;  // the sequences of this step, in row order
  Transformer& exec;
  int n_tokens;                // rows in this step (all sequences)
  ops::Backend* be = nullptr;  // current backend
  Activations* a = nullptr;    // its activation buffers

  enum class Part { Attn, Ffn, Output };
  void enter(Part part, int il);
  // The backend of layer il's expert matmuls (DeviceMap::experts; an MTP block's: the output's).
  ops::Backend* experts_backend(int il) const;
};

// Shared sub-blocks (blocks.cpp).
struct AttentionOptions {
  bool qk_norm = false;      // qwen3: per-head RMSNorm of q and k before RoPE
  bool output_gate = false;  // qwen35: Wq gives [q | gate] per head; attn *= sigmoid(gate)
};
// x += Wo · Attn(RoPE(Wq·n + bq), RoPE(Wk·n + bk), Wv·n + bv),  n = RMSNorm(x)·attn_norm
void attention_block(BlockContext& c, const LayerWeights& l, int il, const AttentionOptions& o);
// x += W_down · (silu(W_gate·n) ⊙ (W_up·n)),  n = RMSNorm(x)·ffn_norm
void swiglu_ffn_block(BlockContext& c, const LayerWeights& l, int il);
// x += W_out · GatedRMSNorm(DeltaRule(L2(q), L2(k), v; g, beta), z),  [q k v] = SiLU(Conv(W_qkv·n))
// (blocks_linear.cpp: Gated DeltaNet linear attention)
void delta_net_block(BlockContext& c, const LayerWeights& l, int il);
// x = W_eh · [RMSNorm(x)·enorm | RMSNorm(h)·hnorm],  x: the next token's embedding, h: the hidden
// state at the current position (on the current backend, [n_tokens][n_embd]); the MTP input.
void mtp_input_block(BlockContext& c, const MtpWeights& m, const float* h);
// x += sum_k p_k W_down[e_k] · (silu(W_gate[e_k]·n) ⊙ (W_up[e_k]·n)),  n = RMSNorm(x)·ffn_norm,
// (e_k, p_k) = the top n_used of softmax(W_router·n), renormalised (moe_blocks.cpp)
void moe_ffn_block(BlockContext& c, const LayerWeights& l, int il);

// One repeating block of an architecture (arch_llama.cpp, arch_qwen2.cpp, arch_qwen3.cpp).
using LayerFn = void (*)(BlockContext& c, const LayerWeights& l, int il);
LayerFn llama_layer();
LayerFn qwen2_layer();
LayerFn qwen3_layer();
LayerFn qwen35_layer();
LayerFn qwen3moe_layer();
LayerFn qwen35moe_layer();

// One MTP / NextN block of an architecture (x: the next token's embedding, h: the hidden state;
// the caller applies shared_head_norm and the head). Null for architectures without one.
using MtpFn = void (*)(BlockContext& c, const MtpWeights& m, int il, const float* h);
MtpFn qwen35_mtp();
MtpFn qwen35moe_mtp();

class Transformer {
 public:
  Transformer(const HParams& hp, const Weights& w, const DeviceMap& devices, int max_batch);

  // Runs one step: the tokens of every sequence in `seqs` (at most max_batch() in all) through the
  // model, appending their K/V to each sequence's cache, advancing its recurrent state (models with
  // linear layers) and writing the logits each asks for.
  void forward(std::span<const SeqStep> seqs);
  // One sequence: tokens at positions pos0.., logits of every token ([n][n_vocab]) when all_logits,
  // else of the last one ([n_vocab]); logits == nullptr skips the LM head.
  void forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& kv, float* logits,
               bool all_logits, RecurrentState* rs = nullptr);
  // Runs an MTP / NextN block (w.mtp bound) over at most max_batch() rows on the output backend.
  void forward_mtp(const MtpStep& s);

  // Context shift of one sequence holding n_past positions: positions [n_keep, n_keep + n_discard)
  // leave its cache, those after move down by n_discard with their keys turned to their new
  // positions (no re-evaluation). Attention-only models (a recurrent state cannot forget tokens).
  void shift(KvCache& kv, int64_t n_keep, int64_t n_discard, int64_t n_past);

  int max_batch() const { return max_batch_; }
  // Moves the residual stream x of the current batch from c.be to `to` (BlockContext::enter).
  void move_to(BlockContext& c, ops::Backend* to);
  // The activation buffers on backend `be` (one of the device map's).
  Activations& activations(ops::Backend* be) { return activations_of(be); }
  // dst (on `to`) = src (on `from`), `bytes` of at most one [max_batch][n_embd] float buffer,
  // through host memory; nothing when the backends are the same.
  void transfer(ops::Backend* from, const void* src, ops::Backend* to, void* dst, size_t bytes);
  const DeviceMap& devices() const { return devices_; }

 private:
  struct DeviceBuffers {
    ops::Backend* be;
    std::unique_ptr<ops::Buffer> storage;  // every activation buffer, carved into a
    Activations a;
  };
  Activations& activations_of(ops::Backend* be);

  const HParams& hp_;
  const Weights& w_;
  DeviceMap devices_;
  int max_batch_;
  LayerFn layer_;
  MtpFn mtp_ = nullptr;
  std::vector<DeviceBuffers> buffers_;  // one set per distinct backend
  std::vector<float> staging_;          // host copy of what crosses devices
  // Copies LM-head rows r0..r0+n (held at src in the output backend's memory) to their hosts rows.
  void copy_logits(ops::Backend* be, const float* src, int r0, int n);

  // The current step (members so that a step allocates nothing once they have grown).
  std::vector<SeqRows> rows_;              // its sequences, in row order
  std::vector<const SeqStep*> row_steps_;  // the SeqStep of each entry of rows_
  std::vector<int32_t> step_tokens_;       // every row's token id
  struct OutRow {
    float* dst;  // host row of n_vocab floats
  };
  std::vector<OutRow> out_rows_;  // its logit rows, in LM-head row order
};

}  // namespace straw::model

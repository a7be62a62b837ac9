// Named views of a model's weights: the tensors each block of the forward pass reads.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "model/device_map.h"
#include "model/hparams.h"
#include "ops/backend.h"

namespace straw::gguf {
class Reader;
}

namespace straw::model {

// One repeating block. Optional tensors have data == nullptr.
struct LayerWeights {
  ops::Weight attn_norm;   // [n_embd] F32
  ops::Weight wq;          // [n_head*head_dim rows][n_embd]
  ops::Weight wk;          // [n_head_kv*head_dim rows][n_embd]
  ops::Weight wv;          // [n_head_kv*head_dim_v rows][n_embd]
  ops::Weight wo;          // [n_embd rows][n_head*head_dim_v]
  ops::Weight bq, bk, bv;  // qwen2: biases of q, k, v (F32 vectors); optional elsewhere
  ops::Weight bo;          // optional attn_output.bias (some llama models)
  ops::Weight q_norm;      // qwen3: [head_dim] per-head RMSNorm of q before RoPE
  ops::Weight k_norm;      // qwen3: [head_dim] per-head RMSNorm of k before RoPE
  ops::Weight rope_freqs;  // optional [n_rot/2] frequency factors: the global tensor as seen by
                           // this layer's attention backend
  // qwen35 gated attention: wq has 2 * n_head * head_dim rows, per head [q | gate].
  // qwen35 linear attention (Gated DeltaNet), instead of wq..k_norm:
  ops::Weight ssm_qkv;    // attn_qkv: [ssm_conv_dim rows][n_embd]: q, k (key heads), v
  ops::Weight ssm_z;      // attn_gate: [ssm_inner rows][n_embd]: output gate z
  ops::Weight ssm_conv;   // ssm_conv1d: [ssm_conv_dim][conv_kernel] F32, as one vector
  ops::Weight ssm_dt;     // ssm_dt.bias: [v_heads] F32
  ops::Weight ssm_a;      // ssm_a: [v_heads] F32, -exp(A_log)
  ops::Weight ssm_beta;   // [v_heads rows][n_embd]
  ops::Weight ssm_alpha;  // [v_heads rows][n_embd]
  ops::Weight ssm_norm;   // [ssm_head_dim] F32, the gated RMSNorm's weight
  ops::Weight ssm_out;    // [n_embd rows][ssm_inner]
  ops::Weight ffn_norm;   // [n_embd] F32 (qwen35: post_attention_norm)
  ops::Weight w_gate;     // [n_ff rows][n_embd]   (dense FFN)
  ops::Weight w_up;       // [n_ff rows][n_embd]
  ops::Weight w_down;     // [n_embd rows][n_ff]
  // Mixture-of-experts FFN (qwen3moe): the router and n_expert stacked expert matrices.
  ops::Weight router;     // ffn_gate_inp: [n_expert rows][n_embd] (F32 in llama.cpp's files)
  ops::Weight gate_exps;  // ffn_gate_exps: [n_expert][n_ff_exp rows][n_embd]
  ops::Weight up_exps;    // ffn_up_exps:   [n_expert][n_ff_exp rows][n_embd]
  ops::Weight down_exps;  // ffn_down_exps: [n_expert][n_embd rows][n_ff_exp]
  // The shared expert (qwen35moe), every token's, scaled by sigmoid(gate_inp_shexp · n).
  ops::Weight gate_inp_shexp;  // ffn_gate_inp_shexp: [1 row][n_embd] F32
  ops::Weight gate_shexp;      // ffn_gate_shexp: [n_ff_shexp rows][n_embd]
  ops::Weight up_shexp;        // ffn_up_shexp:   [n_ff_shexp rows][n_embd]
  ops::Weight down_shexp;      // ffn_down_shexp: [n_embd rows][n_ff_shexp]
};

// An MTP / NextN block (qwen35, qwen35moe: blk.N with N >= n_layer): the tensors that turn the
// main model's hidden state and the next token's embedding into the block's input, the block
// itself (gated attention and the FFN, with the usual names) and its output norm and head.
struct MtpWeights {
  ops::Weight eh_proj;           // nextn.eh_proj: [n_embd rows][2 n_embd], input [e | h]
  ops::Weight enorm;             // nextn.enorm: [n_embd] F32, RMSNorm of the embedding e
  ops::Weight hnorm;             // nextn.hnorm: [n_embd] F32, RMSNorm of the hidden state h
  ops::Weight shared_head_norm;  // nextn.shared_head_norm: [n_embd] F32, before the head
  ops::Weight embed;             // nextn.embed_tokens, else token_embd: [n_vocab rows][n_embd]
  ops::Weight head;              // nextn.shared_head_head, else the model's output (or tied
                                 // embeddings): [n_vocab rows][n_embd]
  bool own_head = false;         // head is nextn.shared_head_head (placed with the block)
  LayerWeights block;            // the full-attention decoder block
};

struct Weights {
  ops::Weight tok_embd;     // [n_vocab rows][n_embd]: row t is token t's embedding
  ops::Weight output_norm;  // [n_embd] F32
  ops::Weight output;       // [n_vocab rows][n_embd]; token_embd when embeddings are tied
  ops::Weight rope_freqs;   // optional [n_rot/2] F32 frequency factors (Llama 3.1)
  std::vector<LayerWeights> layers;
  bool tied_output = false;
  // The MTP blocks (hp.n_mtp of them), bound and placed on first use by bind_mtp_weights (a
  // model that does not speculate with them never reads them); empty until then.
  std::vector<MtpWeights> mtp;
};

// Binds every tensor the architecture needs, checking presence, shape and type (norms and biases
// must be F32); errors name the file and tensor and say what was expected.
Weights bind_weights(const gguf::Reader& r, const HParams& hp);

// Binds the hp.n_mtp MTP blocks of the file (checking names, shapes and types as bind_weights
// does) and hands their weights to `be` (the backend of the output head, which runs them).
std::vector<MtpWeights> bind_mtp_weights(const gguf::Reader& r, const HParams& hp, const Weights& w,
                                         ops::Backend& be);

// Hands every matmul weight to the backend that runs it (Backend::prepare_weight: repack or
// upload) and keeps the views it returns; norms and biases go to the same backend. The embedding
// table stays in place: one row is read per token.
void prepare_weights(Weights& w, const DeviceMap& devices);

// Calls fn(weight, backend) for every weight prepare_weights hands to a backend, in the same order.
void for_each_placed_weight(Weights& w, const DeviceMap& devices,
                            const std::function<void(ops::Weight&, ops::Backend&)>& fn);

// View of one tensor as an ops::Weight: ne0 = n_in, ne1 = n_out; a 3-D tensor (experts) has
// n_expert = ne2 matrices of [ne1][ne0].
ops::Weight weight_view(const gguf::Reader& r, const std::string& name);

}  // namespace straw::model

// The model synthesizer: writes a GGUF model of any shape (model/presets.h) with random weights,
// laid out and typed as llama.cpp's llama-quantize lays out and types a real model, with a
// byte-level BPE tokenizer, so that both straw and llama.cpp load and run it. For benchmarks and
// planning at real model sizes without downloading anything.
//
// Weights are random blocks written directly in their format (random level bits, sub-block scales
// in a sane range, an fp16 super-scale chosen so the dequantized weights have a standard deviation
// of about 0.02, like trained models; never NaN or Inf). Norm weights are near 1, biases small.
// Everything is a pure function of the seed: every chunk of every tensor draws from its own
// generator seeded from (seed, tensor name, chunk index), so the bytes do not depend on the
// number of threads.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/presets.h"
#include "quant/types.h"

namespace straw::model {

// The file types the synthesizer writes, with llama.cpp's llama_ftype ids (general.file_type).
enum class FileType : uint32_t {
  F16 = 1,
  Q8_0 = 7,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_M = 17,
  Q6_K = 18,
  IQ4_XS = 30,
};

const char* file_type_name(FileType t);                           // "Q4_K_M"
std::optional<FileType> file_type_from_name(std::string_view s);  // case-insensitive
std::string file_type_names();                                    // "IQ4_XS, Q4_K_M, ..."

// What a tensor is in the forward pass (drives its type and its random content).
enum class TensorRole {
  TokenEmbd,
  Output,
  OutputNorm,
  RopeFreqs,
  AttnNorm,
  AttnQ,
  AttnK,
  AttnV,
  AttnOutput,
  AttnQBias,
  AttnKBias,
  AttnVBias,
  AttnQNorm,
  AttnKNorm,
  FfnNorm,
  FfnGate,
  FfnUp,
  FfnDown,
  // qwen35 linear attention (Gated DeltaNet)
  AttnQkv,   // attn_qkv: quantized like attn_v (llama-quantize's attn_v-like category)
  AttnGate,  // attn_gate (z)
  SsmConv,   // ssm_conv1d: 2-D but never quantized (F32)
  SsmDt,
  SsmA,
  SsmBeta,
  SsmAlpha,
  SsmNorm,
  SsmOut,
  // MTP / NextN block extras (qwen35)
  NextnEhProj,
  NextnNorm,
  // Mixture of experts (qwen3moe)
  FfnGateInp,   // the router: llama-quantize never quantizes it (F32)
  FfnGateExps,  // 3-D [n_embd, n_ff_exp, n_expert]: typed like ffn_gate
  FfnUpExps,
  FfnDownExps,  // typed like ffn_down (llama-quantize matches "ffn_down" in the name)
  // qwen35moe's shared expert
  FfnGateInpShexp,  // 1-D [n_embd]: F32
  FfnGateShexp,
  FfnUpShexp,
  FfnDownShexp,  // typed like ffn_down
};

struct TensorPlan {
  std::string name;
  TensorRole role;
  int layer;  // block index; -1 for the global tensors
  quant::Type type;
  std::vector<int64_t> ne;  // ne[0] innermost

  int64_t n_elements() const;
  uint64_t bytes() const;
};

// The type llama-quantize (llama.cpp src/llama-quant.cpp, no importance matrix, no overrides)
// gives a 2-D weight of `role` in block `layer` with rows of ne0 elements, starting from an F16
// model: the file type's default type, raised for output / tied token_embd (Q6_K), attn_v (and
// qwen35's attn_qkv, which llama-quantize counts with them) and ffn_down per the file type's
// rules (use_more_bits layers, n_gqa >= 4, the first n_layer/8 layers, the 70B bump; MTP blocks
// count as layers), then the fallback for rows that are not a multiple of the block size
// (IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, else F16). 1-D tensors,
// ssm_conv1d and MoE routers are F32. Models of exactly 8 experts get llama-quantize's Mixtral
// bumps: attn_k and attn_v Q8_0, attn_output Q5_K (for Q4_K_S, Q4_K_M, IQ4_XS). The layer count
// of the rules is s.quant_n_layer when set (synth --layers).
quant::Type quant_type_for(const ModelShape& s, FileType ft, TensorRole role, int layer,
                           int64_t ne0);

// Every tensor of the model, typed, in llama-quantize's output order (the global tensors sorted
// by name, then each block's tensors sorted by name).
std::vector<TensorPlan> plan_tensors(const ModelShape& s, FileType ft);

// The synthetic byte-level BPE vocabulary of a shape: the 256 GPT-2 byte symbols, n-gram tokens of
// lowercase letters (with and without a leading space, U+0120) each with the merge that builds it,
// the style's special tokens (CONTROL), and for the real vocabulary sizes llama.cpp's padding
// ("[PADn]", UNUSED) or Llama 3's reserved special tokens, so that the ids of the special tokens
// match the real models' (Qwen: <|endoftext|> 151643; Llama 3: <|begin_of_text|> 128000).
struct SynthVocab {
  std::string pre;  // tokenizer.ggml.pre
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // llama.cpp token types: 1 normal, 3 control, 5 unused
  std::vector<std::string> merges;
  int32_t bos = -1, eos = -1, pad = -1;
  bool add_bos = false;
  std::string chat_template;  // Jinja
};
SynthVocab make_vocab(const ModelShape& s);

// Fills n_blocks random blocks of type t (F16/F32: n_blocks elements) whose dequantized values
// have a standard deviation of about `sigma` and mean about 0. Supported: F32 F16 Q8_0 Q5_0 Q5_1
// IQ4_NL IQ4_XS Q4_K Q5_K Q6_K (every type quant_type_for returns); others throw straw::Error.
void random_blocks(quant::Type t, void* dst, int64_t n_blocks, uint64_t seed, float sigma);

struct SynthOptions {
  ModelShape shape;
  FileType type = FileType::Q4_K_M;
  uint64_t seed = 0;
  bool no_data = false;  // header only; the data section is a sparse hole of zeros
  int threads = 0;       // generator threads; 0: the hardware's
};

struct SynthStats {
  size_t n_tensors = 0;
  uint64_t tensor_bytes = 0;  // sum of the tensors' bytes (alignment padding not counted)
  uint64_t file_bytes = 0;    // size of the file (holes included for no_data)
};

// Progress: tensor bytes written so far and in total (called after each batch of chunks).
using SynthProgress = std::function<void(uint64_t done, uint64_t total)>;

// Writes the model to `path` (replacing it). Throws straw::Error for a bad shape or an I/O error;
// a partial file is removed.
SynthStats synthesize(const std::string& path, const SynthOptions& o,
                      const SynthProgress& progress = {});

}  // namespace straw::model

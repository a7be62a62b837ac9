// straw: run GGUF language models on the CPU (and, as the backends grow, the GPU).
//
// The whole public API. Contracts:
//  - Every failure caused by input (file, options, tokens) throws straw::Error with a message that
//    says what, where and what to do; nothing here calls exit() or abort().
//  - A Model is immutable after load and may be shared by several Sessions, but the Sessions of
//    one Model must not evaluate concurrently (they share the model's worker threads).
//  - Token ids are int32 in [0, Model::n_vocab()).
//
//   auto model = straw::Model::load({.path = "qwen2.5-0.5b-instruct-q4_k_m.gguf"});
//   straw::Session session(*model);
//   auto print = [](std::string_view text, int32_t) {
//     fwrite(text.data(), 1, text.size(), stdout);
//     return true;
//   };
//   straw::generate(session, model->tokenize("Once upon a time"), {.n_predict = 64}, print);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "straw/constraint.h"
#include "straw/error.h"

namespace straw {

// KV cache element type, for keys and values separately (llama.cpp's -ctk / -ctv). Q8_0 halves
// the cache's memory and the bytes attention reads per token at a small accuracy cost, Q4_0
// quarters them at a larger one (golden_test.cpp states both); the quantized types need head sizes
// that are multiples of 32 and, for now, the CPU (a GPU placement with them is refused).
enum class KvCacheType { F16, F32, Q8_0, Q4_0 };

// Where a model runs. Auto: on the GPU as far as the VRAM budget allows when straw was built with
// CUDA and a GPU is present, else on the CPU. Gpu: as Auto, but an error when no GPU can be used.
enum class DeviceChoice { Auto, Cpu, Gpu };

// CPU kernels. Auto: the best level the CPU supports (AMX, then AVX-512 VNNI, then AVX-VNNI, then
// AVX2, then scalar); the others force a level, for comparison and for testing (an error when the
// CPU lacks it). Amx is the AVX-512 level with prompt matmuls of quantized weights as AMX int8
// tile products (Intel Xeon from Sapphire Rapids on, Linux).
enum class CpuKernels { Auto, Avx512, AvxVnni, Avx2, Scalar, Amx };

struct TensorOverride {
  std::string pattern;  // ECMAScript regex searched in tensor names ("ffn_(up|gate)")
  bool gpu = false;     // place matching tensors on the GPU (true) or the CPU (false)
};

// Where Model::load is (ModelOptions::on_progress). Loading runs in stages, one after the other;
// each stage that has work is reported from 0 to done_bytes == total_bytes (its last call), and a
// stage without work (nothing to repack on a GPU-only placement, --no-repack) is not reported.
struct LoadProgress {
  enum class Stage {
    Map,     // the file(s) mapped and the tensor table checked: one call, bytes = tensor data
    Repack,  // CPU weights copied / repacked into anonymous memory; this reads the file, so on a
             // cold page cache it runs at disk speed (tens of seconds for a 17 GiB file)
    Upload,  // GPU weights copied into device memory
  };
  Stage stage = Stage::Map;
  uint64_t done_bytes = 0;   // bytes of the file this stage has processed so far
  uint64_t total_bytes = 0;  // bytes of the file this stage processes
  double seconds = 0;        // since Model::load began
};

struct ModelOptions {
  std::string path;  // GGUF file; for split models the first shard (NAME-00001-of-0000N.gguf)
  int threads = 0;   // worker threads; 0: the number of physical cores
  int ctx = 0;       // context length of new sessions; 0: min(model's context, 4096)
  int ubatch = 512;  // micro-batch: prompt tokens evaluated per forward pass
  KvCacheType kv_type_k = KvCacheType::F16;  // K cache (--cache-type-k)
  KvCacheType kv_type_v = KvCacheType::F16;  // V cache (--cache-type-v)
  CpuKernels cpu_kernels = CpuKernels::Auto;

  // Placement (used when straw is built with CUDA and a GPU is present).
  DeviceChoice device = DeviceChoice::Auto;
  std::optional<uint64_t> vram_budget;  // bytes straw may use on the GPU; unset: the GPU's free
                                        // memory minus a safety margin; 0: CPU only
  std::optional<int> gpu_layers;        // llama.cpp's -ngl (the last N layers; N > n_layer adds the
                                        // output layer); unset: automatic placement
  std::vector<TensorOverride> tensor_overrides;  // first match wins
  int n_cpu_moe = 0;  // llama.cpp's --n-cpu-moe: the experts (ffn_*_exps) of the first N layers
                      // stay on the CPU (INT_MAX or any N >= n_layer: --cpu-moe, all of them)
  bool cuda_graphs = true;                       // capture the decode step as a CUDA Graph

  // Copy the CPU's weights into anonymous memory, repacked for the SIMD kernels (the fast path).
  // false: matmuls read the weights from the file mapping (repacking tiles on the fly, slower), so
  // they take page cache instead of RAM of their own: a model larger than RAM still runs, streaming
  // from disk at every token.
  bool repack_weights = true;

  // Sessions the caller will hold at once, each with a KV cache of `ctx` positions (a server's
  // slots): the memory check of load() counts that many caches.
  int sessions = 1;

  // Called on the loading thread as loading advances (see LoadProgress); the library itself never
  // prints. Unset: no reports.
  std::function<void(const LoadProgress&)> on_progress;

  // Time every op the CPU runs (Model::op_profile): for finding where a step's time goes. Costs
  // two clock reads per op (a few hundred per token); GPU ops are not timed.
  bool profile_ops = false;
};

// One row of Model::op_profile(): an op the CPU ran, split by weight type where it reads weights.
struct OpProfile {
  std::string op;      // "matmul", "attention", "rmsnorm", "gated_delta_net", ...
  std::string type;    // the weights' type for matmul / moe_matmul / get_rows ("IQ4_XS"); the KV
                       // cache type for attention ("f16"); else empty
  int64_t calls = 0;   // calls since the load or the last reset_op_profile()
  double seconds = 0;  // their wall time (thread hand-off and barriers included)
  uint64_t bytes = 0;  // weight bytes they read (matmul: every row; moe_matmul: the selected
                       // experts' matrices); 0 for ops without weights
};

// What a loaded model is.
struct ModelInfo {
  std::string architecture;  // "llama", "qwen2", "qwen3"
  std::string name;          // general.name, or the file name
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;  // context length the model was trained with
  int64_t n_embd = 0;
  int n_layer = 0;
  int n_mtp = 0;  // MTP / NextN blocks after the layers (Qwen3.5): SpecMethod::Mtp can use them
  int n_head = 0;
  int n_head_kv = 0;
  uint64_t weight_bytes = 0;   // bytes of tensor data in the file(s)
  std::string placement;       // one line: "cpu" or e.g. "gpu: 40/64 layers + output, 7.6 GiB VRAM"
  std::string weights;         // one line: where the weights are held, e.g. "10.91 GiB repacked in
                               // RAM (huge pages), 7.21 GiB in VRAM", with a warning when some
                               // stayed in the file mapping because RAM was short
  uint64_t ram_bytes = 0;      // RAM the model needs at its context (weight copies, the KV
                               // caches of ModelOptions::sessions sessions, compute buffers):
                               // what the memory check compared
  uint64_t ram_available = 0;  // RAM available when it loaded (MemAvailable or STRAW_RAM_LIMIT)
  uint64_t vram_bytes = 0;     // GPU memory the placement uses (0: on the CPU)
  uint64_t vram_shared_bytes = 0;  // of vram_bytes, what every model of the process shares (the
                                   // CUDA context): a second model's budget needs it only once
  bool context_shift = false;      // Session::shift works: no linear-attention layers (qwen35) and
                                   // every KV cache on the CPU
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// Sampling; unset fields take the model's general.sampling.* metadata, then llama.cpp's defaults
// (temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off). temperature <= 0 is greedy.
struct SamplingOptions {
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<int32_t> penalty_last_n;
  std::optional<float> repeat_penalty;
  std::optional<float> frequency_penalty;
  std::optional<float> presence_penalty;
  std::optional<uint64_t> seed;  // unset: a random seed
  // Added to the logits of these tokens before sampling (OpenAI's logit_bias; -inf bans a token).
  std::vector<std::pair<int32_t, float>> logit_bias;
};

class Model {
 public:
  // Maps the file, places the weights (CPU / GPU under the VRAM budget), then prepares them.
  // Before preparing anything it checks that the model fits: the RAM it will allocate (repacked
  // CPU weights, ModelOptions::sessions KV caches of ModelOptions::ctx positions, compute buffers)
  // against the RAM available (/proc/meminfo's MemAvailable, or the environment variable
  // STRAW_RAM_LIMIT: a size such as 8GiB or a byte count, for tests and for capping straw's share
  // of a machine). When it does not fit it throws straw::Error with the numbers and what to do (a
  // smaller quant, a VRAM budget, a smaller context, repack_weights = false).
  static std::unique_ptr<Model> load(const ModelOptions& options);
  ~Model();

  const ModelInfo& info() const;
  const ModelOptions& options() const;
  int64_t n_vocab() const { return info().n_vocab; }

  // Text -> token ids. add_special: BOS/EOS as the model's metadata asks; parse_special: control
  // tokens written in the text (e.g. "<|im_start|>") become their ids.
  std::vector<int32_t> tokenize(std::string_view text, bool add_special = true,
                                bool parse_special = true) const;
  // Token ids -> text (control tokens rendered only when `special`).
  std::string detokenize(std::span<const int32_t> tokens, bool special = false) const;
  // The bytes of one token (may be part of a UTF-8 sequence).
  std::string token_to_piece(int32_t token, bool special = false) const;
  bool is_end_of_generation(int32_t token) const;

  // Per-op times since the load or the last reset, the most expensive first; empty unless the
  // model was loaded with ModelOptions::profile_ops.
  std::vector<OpProfile> op_profile() const;
  void reset_op_profile();

  // The model's chat template applied to a conversation; false from has_chat_template() means
  // the model has none that straw recognises and the text is used as a plain completion prompt.
  bool has_chat_template() const;
  std::string apply_chat_template(std::span<const ChatMessage> messages,
                                  bool add_generation_prompt = true) const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct BatchItem;

// A conversation's state: the KV cache and the logits of the last evaluated tokens.
class Session {
 public:
  // ctx: the capacity of this session's KV cache; 0 takes the model's (ModelOptions::ctx).
  explicit Session(Model& model, int64_t ctx = 0);
  ~Session();

  // Evaluates tokens at positions n_past().. (in micro-batches), appending to the KV cache.
  // With all_logits, logits(i) is available for every i < tokens.size(); otherwise only the
  // last token's. Throws when the context would overflow (never wraps).
  void eval(std::span<const int32_t> tokens, bool all_logits = false);
  // Logits of token i of the last eval (-1: its last token): n_vocab floats.
  std::span<const float> logits(int i = -1) const;

  int64_t n_past() const;  // tokens in the KV cache
  int64_t n_ctx() const;   // capacity
  // The tokens the KV cache holds, in order (n_past() of them).
  std::span<const int32_t> tokens() const;
  // How many leading tokens of `prompt` the cache already holds (the longest common prefix of
  // tokens() and prompt): a caller reusing the cache truncates to it and evaluates the rest.
  int64_t common_prefix(std::span<const int32_t> prompt) const;
  void reset();  // empty the KV cache
  // Keep the first n_keep tokens of the KV cache and forget the rest (0 <= n_keep <= n_past()):
  // the next eval continues at position n_keep. For regenerating or editing the end of a
  // conversation without evaluating its beginning again, and for dropping rejected speculative
  // proposals. The last eval's logits of the kept tokens stay: when it evaluated the new last
  // token with all_logits, logits() is that token's row afterwards (otherwise none are left).
  void truncate(int64_t n_keep);
  // Context shift (llama.cpp's): forgets tokens [n_keep, n_keep + n_discard) and moves the later
  // ones down by n_discard positions, turning their cached keys to the new positions by RoPE's
  // rotation (no re-evaluation). The next eval continues at n_past() - n_discard. The last eval's
  // logits rows of the forgotten tokens go; logits() stays the last token's. Models with
  // linear-attention layers (qwen35) refuse: their recurrent state cannot forget tokens.
  void shift(int64_t n_keep, int64_t n_discard);
  Model& model() const;

 private:
  friend void eval_batch(std::span<const BatchItem> items);
  friend struct SessionInternals;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One session's share of a batched evaluation.
struct BatchItem {
  Session* session = nullptr;
  std::span<const int32_t> tokens;  // evaluated at session->n_past().. (at least one)
  bool all_logits = false;          // keep the logits of every token, not only the last one's
};

// Evaluates several sessions of one model together: each forward step carries tokens of all of
// them, so every weight is read once per step for all sequences (decoding is bound by memory
// bandwidth, so N sequences cost little more than one). Steps hold at most ModelOptions::ubatch
// tokens; a long item is split over several steps. Afterwards each session's logits() are as
// after session.eval(item.tokens, item.all_logits); results equal separate evaluations up to float
// rounding. The sessions must be distinct and belong to the same model. Throws (before evaluating
// anything) for an empty item, a token outside the vocabulary or a context overflow; when a step
// fails later, the sessions' contents are unspecified (reset() or truncate() them).
void eval_batch(std::span<const BatchItem> items);

// A token sampler: llama.cpp's chain (penalties -> top_k -> top_p -> min_p -> temperature -> draw)
// with the options resolved as generate() resolves them (unset fields take the model's
// general.sampling.* metadata, then llama.cpp's defaults). One per sequence.
class Sampler {
 public:
  Sampler(const Model& model, const SamplingOptions& options);
  ~Sampler();
  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;

  // Picks the next token from one row of logits (n_vocab floats). With a constraint, only tokens it
  // allows can come out: the unconstrained pick is checked first and, when refused, the
  // constraint's mask is applied to the logits and the pick is drawn again from what it allows.
  // The constraint is not advanced (call its accept() with the result).
  int32_t sample(std::span<const float> logits, TokenConstraint* constraint = nullptr);
  // Records a token in the penalty window (the prompt's tokens and every generated one).
  void accept(int32_t token);
  uint64_t seed() const;  // the seed in effect (a drawn one when none was given)

 private:
  friend class Speculator;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The model's log-probability of tokens: log softmax of the raw logits (no sampling settings).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};
// The n most probable tokens of a row of logits, most probable first (ties: lower id first).
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n);
// log p(token) under the row of logits.
float token_logprob(std::span<const float> logits, int32_t token);

// Speculative decoding: a proposer guesses the next tokens, and the target model evaluates the last
// accepted token plus all the guesses in one forward pass (reading its weights once for all of
// them, which costs little more than one token where decoding is bound by memory bandwidth), then
// keeps the longest prefix it agrees with and adds its own next token. Greedy output is the same
// as without speculation; with temperature > 0 speculative sampling keeps the output distribution
// exactly the target's (the tokens drawn for a given seed differ, the distribution does not).
enum class SpecMethod {
  None,
  Draft,  // a small model with the same vocabulary proposes (SpeculativeOptions::draft_model)
  Ngram,  // prompt lookup: the continuation of the last tokens' most recent earlier occurrence in
          // the prompt and the generated text (no second model; pays off when the answer repeats
          // text, as code edits do)
  Mtp,    // the target's own MTP / NextN block (Qwen3.5 files converted with it): from the main
          // model's last hidden state and the next token it predicts the token after that; k > 1
          // proposals chain it on its own output. The target session must be attached
          // (Speculator::attach; generate() does it) before its prompt is evaluated.
};

struct SpeculativeOptions {
  SpecMethod method = SpecMethod::None;
  // Draft: the proposing model (not owned). Its vocabulary must be the target's (checked: the
  // same tokens, and the same size up to 128 padding entries). Load it before the target: the
  // planner then places it on the GPU first (it runs every step, its tokens one after another).
  Model* draft_model = nullptr;
  int draft_max = 16;        // most tokens proposed per step (llama.cpp's --draft-max)
  int draft_min = 0;         // a proposal shorter than this is not verified (--draft-min)
  float draft_p_min = 0.8f;  // Draft, Mtp: stop proposing at a token the proposer gives a lower
                             // probability than this (--draft-p-min)
  int ngram_size = 3;        // Ngram: the longest suffix looked up, in tokens (--spec-ngram-size)
  // Adapt each step's number of proposals (between draft_min and draft_max) to the acceptance rate
  // seen recently and to the predicted cost of verifying and proposing, and stop speculating while
  // it would not pay; false: always propose up to draft_max.
  bool adaptive = true;
};

// What speculation did (cumulative over a Speculator's life).
struct SpeculationStats {
  int64_t steps = 0;           // verification steps: target evaluations that carried proposals
  int64_t proposed = 0;        // tokens proposed in them
  int64_t checked = 0;         // proposals compared with the target's choice (up to a rejection)
  int64_t accepted = 0;        // proposals accepted
  int64_t step_tokens = 0;     // tokens those steps produced (accepted + the target's own)
  double propose_seconds = 0;  // time spent proposing (the draft model's evaluations)
  double acceptance_rate() const { return checked ? double(accepted) / double(checked) : 0; }
  double tokens_per_step() const { return steps ? double(step_tokens) / double(steps) : 0; }
};

// One sequence's speculation: proposes tokens, then picks the verified tokens from the target's
// logits. The loop (what generate() does; a server slot does the same inside batched steps):
//   sequence: the tokens so far, ending with `last`, sampled but not yet evaluated by the target
//   proposals = spec.propose(sequence, sampler, room)
//   session.eval([last] + proposals, all_logits = true)        // one forward pass
//   for i = 0..proposals.size():
//     t = spec.pick(sampler, session.logits(i), i)  // proposals[i] if accepted
//     sampler.accept(t); emit t
//     if i == proposals.size() or t != proposals[i]: break     // t is the target's own token
//   spec.finish_step()
//   session.truncate(n_past - rejected proposals)             // drop the rejected rows' KV
//   last = t
class Speculator {
 public:
  // Checks the options (for Draft: the draft model's vocabulary against the target's; for Mtp: that
  // the target has an MTP block) and, for Draft, opens a session of the draft model with `ctx`
  // positions (0: the target's context); for Mtp, a cache for the MTP block of `ctx` positions.
  Speculator(Model& target, const SpeculativeOptions& options, int64_t ctx = 0);
  ~Speculator();
  Speculator(Speculator&&) noexcept;
  Speculator& operator=(Speculator&&) noexcept;

  // Mtp: the session of the target this speculator proposes for (it must outlive that use). From
  // now on its evaluations keep the hidden states the MTP block reads; attach before its prompt is
  // evaluated (positions evaluated before are missing from the MTP block's cache, which costs
  // acceptance, never correctness). A session longer than `ctx` gets an MTP cache of its length.
  // generate() attaches its session; other methods ignore the call.
  void attach(Session& target);

  // Tokens proposed to follow `sequence` (the whole sequence so far: prompt and generated tokens,
  // the last one sampled but not yet evaluated by the target), at most max_tokens (pass the
  // positions left in the target's context after `sequence`, or the tokens still wanted, minus
  // one). May be empty: no n-gram match, a draft below draft_p_min or draft_min, or speculation
  // predicted not to pay now. `sampler` is the target's: with temperature > 0 the draft model
  // samples its proposals with the same settings. The span lives until the next propose().
  std::span<const int32_t> propose(std::span<const int32_t> sequence, const Sampler& sampler,
                                   int max_tokens);
  // The token at position i of the verification (logits: the target's row i, after `sequence`
  // and proposals[0, i)): for i < proposals.size() the proposal when accepted, else the token the
  // target draws in its place (then stop: later proposals are rejected); for i == proposals.size()
  // the target's next token. Draws with `sampler` (and `constraint`, which forces comparison of
  // samples instead of distributions); the caller accepts the result into both.
  int32_t pick(Sampler& sampler, std::span<const float> logits, size_t i,
               TokenConstraint* constraint = nullptr);
  // Ends a verification step (updates the statistics and the draft-length controller).
  void finish_step();
  // Optional: the measured seconds of a target evaluation of n_tokens tokens (a plain decode step
  // or a verification), which replaces the planner's prediction in the cost model.
  void record_target_step(int n_tokens, double seconds);

  const SpeculationStats& stats() const;
  const SpeculativeOptions& options() const;
  double acceptance_estimate() const;  // the controller's current per-token acceptance rate

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

struct GenerateOptions {
  int n_predict = 128;  // tokens to generate at most (-1: until end of generation or context)
  SamplingOptions sampling;
  bool stop_at_eog = true;                // stop at the model's end-of-generation tokens
  TokenConstraint* constraint = nullptr;  // restricts the tokens sampled (a grammar); not owned
  // Speculative decoding with this sequence's speculator (not owned; keep one per conversation so
  // that a draft model's cache is reused across turns); null: plain decoding.
  Speculator* speculator = nullptr;
  // Context shift (llama.cpp's --context-shift): when the prompt or the next token does not fit,
  // keep the first n_keep tokens and drop the oldest half of the rest (shift_context), and go on.
  // false: a prompt that does not fit throws, and generation stops with Stop::Context.
  bool context_shift = false;
  int64_t n_keep = 0;  // llama.cpp's --keep: tokens at the start that a shift never drops
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (the end-of-generation token is not included)
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0;    // time evaluating the prompt
  double generate_seconds = 0;  // time generating (sampling + decode)
  enum class Stop { Length, EndOfGeneration, Callback, Context } stop = Stop::Length;
  int64_t decode_steps = 0;      // target evaluations while generating (verifications included)
  int64_t context_shifts = 0;    // context shifts made (GenerateOptions::context_shift)
  SpeculationStats speculation;  // this call's share of the speculator's statistics
};

// Called with each new piece of text (always whole UTF-8 characters) and the token that completed
// it; return false to stop generating.
using TokenCallback = std::function<bool(std::string_view text, int32_t token)>;

// Shifts the session's context (Session::shift) until n_tokens more fit: each shift keeps the first
// n_keep tokens and drops the oldest half of the rest. Returns the number of shifts (0 when they
// fit already); throws when they cannot fit (more than n_ctx() - n_keep tokens).
int shift_context(Session& session, int64_t n_tokens, int64_t n_keep);

// Evaluates `prompt` after what the session already holds, then samples up to n_predict tokens.
// Each generated token is evaluated too, so afterwards the session holds the prompt and every
// token of result.tokens (except the last one when stop == Context) and generation can continue.
GenerateResult generate(Session& session, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const TokenCallback& on_token);

}  // namespace straw

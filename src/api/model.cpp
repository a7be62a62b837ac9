// straw::Model: load a GGUF file, bind its weights, build the tokenizer and the backend.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "api/model_impl.h"
#include "util/str.h"

namespace straw {

namespace {

// ModelOptions::on_progress with the time since Model::load began.
class Progress {
 public:
  explicit Progress(const std::function<void(const LoadProgress&)>& fn)
      : fn_(fn), t0_(std::chrono::steady_clock::now()) {}
  void operator()(LoadProgress::Stage stage, uint64_t done, uint64_t total) const {
    if (!fn_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    fn_(LoadProgress{.stage = stage, .done_bytes = done, .total_bytes = total, .seconds = s});
  }

 private:
  const std::function<void(const LoadProgress&)>& fn_;
  std::chrono::steady_clock::time_point t0_;
};

uint64_t file_bytes(const ops::Weight& w) {
  return uint64_t(w.n_out) * w.row_bytes * uint64_t(std::max<int64_t>(1, w.n_expert));
}

// Prepares every weight that backend `be` runs, reporting `stage` in bytes of the file: work(w)
// is what preparing w processes (0: nothing worth reporting, e.g. a norm the CPU keeps in place).
// Returns the bytes processed.
uint64_t prepare_on(Model::Impl& m, ops::Backend& be, LoadProgress::Stage stage,
                    const Progress& progress,
                    const std::function<uint64_t(const ops::Weight&)>& work) {
  uint64_t total = 0;
  model::for_each_placed_weight(m.weights, m.devices, [&](ops::Weight& w, ops::Backend& b) {
    if (&b == &be) total += work(w);
  });
  if (total > 0) progress(stage, 0, total);
  uint64_t done = 0;
  model::for_each_placed_weight(m.weights, m.devices, [&](ops::Weight& w, ops::Backend& b) {
    if (&b != &be) return;
    const uint64_t n = work(w);
    w = be.prepare_weight(w);
    if (n == 0) return;
    done += n;
    progress(stage, done, total);
  });
  return total;
}

// Each backend's weights in one pass (the CPU's repacking, then the GPU's upload), so that
// progress runs through one stage at a time. The order of prepare_weight calls across backends
// does not matter: each backend prepares into its own memory.
void prepare_weights(Model::Impl& m, const Progress& progress) {
  cpu::CpuBackend& cpu = *m.cpu;
  prepare_on(m, cpu, LoadProgress::Stage::Repack, progress, [&](const ops::Weight& w) {
    return cpu.copy_bytes(w) > 0 && w.data ? file_bytes(w) : 0;
  });
  uint64_t uploaded = 0;
  if (m.gpu) uploaded = prepare_on(m, *m.gpu, LoadProgress::Stage::Upload, progress, file_bytes);

  // ModelInfo::weights: where the weights now live.
  const cpu::PrepareStatus& st = cpu.prepare_status();
  std::string s;
  auto part = [&](const std::string& p) { s += (s.empty() ? "" : ", ") + p; };
  if (st.copied_bytes > 0)
    part(str(human_bytes(st.copied_bytes), " repacked in RAM",
             st.huge_pages ? " (huge pages)" : ""));
  if (st.in_place_bytes > 0) {
    std::string why = st.low_memory ? " because RAM was short: matmuls on them are slower"
                      : !m.options.repack_weights     ? " (--no-repack)"
                      : cpu.isa() == cpu::Isa::Scalar ? " (scalar kernels)"
                                                      : "";
    part(str(human_bytes(st.in_place_bytes), " (", st.n_in_place,
             " tensors) read from the file mapping", why));
  }
  if (uploaded > 0) part(str(human_bytes(uploaded), " in VRAM"));
  m.info.weights = s.empty() ? "none prepared" : s;
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const ModelOptions& options) {
  if (options.path.empty()) fail("no model file given");
  if (options.threads < 0)
    fail("threads must be >= 0 (0: one per physical core), got ", options.threads);
  if (options.ctx < 0) fail("the context length must be >= 0 (0: the default), got ", options.ctx);
  if (options.ubatch < 1) fail("the micro-batch must be at least 1, got ", options.ubatch);
  if (options.sessions < 1) fail("sessions must be at least 1, got ", options.sessions);

  const Progress progress(options.on_progress);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->options.on_progress = nullptr;  // used during load only: do not keep the caller's state
  impl->reader = gguf::Reader::open(options.path);
  const gguf::Reader& r = *impl->reader;
  uint64_t tensor_bytes = 0;
  for (const auto& t : r.tensors()) tensor_bytes += t.bytes;
  progress(LoadProgress::Stage::Map, tensor_bytes, tensor_bytes);
  impl->hp = model::read_hparams(r);
  impl->weights = model::bind_weights(r, impl->hp);
  impl->hp.n_vocab = impl->weights.tok_embd.n_out;
  impl->tokenizer = model::Tokenizer::from_gguf(r);
  if (impl->tokenizer->n_vocab() > impl->hp.n_vocab)
    fail(r.path(), ": the tokenizer has ", impl->tokenizer->n_vocab(),
         " tokens but token_embd.weight only ", impl->hp.n_vocab, " rows");

  if (auto tmpl = r.find_string("tokenizer.chat_template")) {
    impl->chat_template = model::detect_chat_template(*tmpl);
    impl->chat_options = model::chat_options_from_template(*tmpl);
  }

  const int64_t ctx_default = std::min<int64_t>(impl->hp.n_ctx_train, 4096);
  impl->n_ctx = options.ctx > 0 ? options.ctx : ctx_default;
  if (impl->n_ctx > impl->hp.n_ctx_max())
    fail("the context length ", impl->n_ctx, " exceeds the model's trained context of ",
         impl->hp.n_ctx_max(), " tokens", impl->hp.n_ctx_yarn ? " (with YaRN scaling)" : "");
  impl->options.ctx = static_cast<int>(impl->n_ctx);
  impl->options.threads = options.threads > 0 ? options.threads : cpu::physical_cores();
  choose_backends(*impl);  // refuses here when the model does not fit (api/memory.h)
  prepare_weights(*impl, progress);
  if (options.profile_ops) {
    // After the weights are prepared: from here on, every op the CPU runs goes through the timer.
    impl->profiler = std::make_unique<ops::ProfiledBackend>(*impl->cpu);
    model::DeviceMap& d = impl->devices;
    auto wrap = [&](ops::Backend*& be) {
      if (be == impl->cpu.get()) be = impl->profiler.get();
    };
    for (auto& be : d.attn) wrap(be);
    for (auto& be : d.ffn) wrap(be);
    for (auto& be : d.experts) wrap(be);
    wrap(d.output);
    wrap(d.embed);
  }

  ModelInfo& info = impl->info;
  info.architecture = impl->hp.arch_name;
  info.name = r.find_string("general.name")
                  .value_or(std::filesystem::path(options.path).filename().string());
  info.n_vocab = impl->hp.n_vocab;
  info.n_ctx_train = impl->hp.n_ctx_train;
  info.n_embd = impl->hp.n_embd;
  info.n_layer = impl->hp.n_layer;
  info.n_mtp = impl->hp.n_mtp;
  info.n_head = impl->hp.n_head;
  info.n_head_kv = impl->hp.n_head_kv;
  info.weight_bytes = tensor_bytes;
  info.vram_bytes = impl->gpu ? impl->plan.vram_bytes : 0;
  info.vram_shared_bytes = impl->gpu ? std::min(info.vram_bytes, sched::kCudaContextBytes) : 0;
  info.context_shift = !impl->hp.has_recurrent() &&
                       std::all_of(impl->devices.attn.begin(), impl->devices.attn.end(),
                                   [&](const ops::Backend* b) { return b == impl->cpu.get(); });
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

const ModelInfo& Model::info() const {
  return impl_->info;
}
const ModelOptions& Model::options() const {
  return impl_->options;
}

std::vector<int32_t> Model::tokenize(std::string_view text, bool add_special,
                                     bool parse_special) const {
  return impl_->tokenizer->tokenize(text, add_special, parse_special);
}

std::string Model::detokenize(std::span<const int32_t> tokens, bool special) const {
  return impl_->tokenizer->detokenize(tokens, special);
}

std::string Model::token_to_piece(int32_t token, bool special) const {
  if (token < 0 || token >= impl_->tokenizer->n_vocab())
    fail("token id ", token, " is outside the vocabulary (0..", impl_->tokenizer->n_vocab() - 1,
         ")");
  return impl_->tokenizer->token_to_piece(token, special);
}

bool Model::is_end_of_generation(int32_t token) const {
  return impl_->tokenizer->is_eog(token);
}

std::vector<OpProfile> Model::op_profile() const {
  std::vector<OpProfile> rows;
  if (!impl_->profiler) return rows;
  for (const ops::OpStat& s : impl_->profiler->stats())
    rows.push_back(
        {.op = s.op, .type = s.type, .calls = s.calls, .seconds = s.seconds, .bytes = s.bytes});
  return rows;
}

void Model::reset_op_profile() {
  if (impl_->profiler) impl_->profiler->reset();
}

bool Model::has_chat_template() const {
  return impl_->chat_template != model::ChatTemplate::None;
}

std::string Model::apply_chat_template(std::span<const ChatMessage> messages,
                                       bool add_generation_prompt) const {
  std::vector<model::ChatMessage> msgs;
  msgs.reserve(messages.size());
  for (const ChatMessage& m : messages) msgs.push_back({m.role, m.content});
  return model::apply_chat_template(impl_->chat_template, msgs, add_generation_prompt,
                                    impl_->chat_options);
}

void Model::Impl::bind_mtp() {
  std::lock_guard lock(mtp_mutex);
  if (!weights.mtp.empty()) return;
  if (hp.arch != model::Arch::Qwen35 && hp.arch != model::Arch::Qwen35Moe)
    fail(options.path,
         ": speculation with an MTP layer (--spec mtp) is for Qwen3.5 files (qwen35, ",
         "qwen35moe); this is a ", hp.arch_name, " model: use --spec ngram|draft");
  if (hp.n_mtp == 0)
    fail(options.path, ": this file has no MTP/NextN layer (", hp.arch_name,
         ".nextn_predict_layers is absent): convert the checkpoint with a current llama.cpp "
         "convert_hf_to_gguf.py, which keeps Qwen3.5's MTP layer (or `straw synth --mtp 1` for a "
         "test file), or use --spec ngram|draft");
  // The blocks run where the output head runs (they end in it); qwen35moe's has an MoE FFN.
  if (hp.n_expert > 0 && devices.output != cpu.get() && !moe_on_gpu())
    fail(options.path, ": the MTP layer of this ", hp.arch_name,
         " model has a mixture-of-experts FFN and would run on the GPU with the output layer, "
         "whose MoE ops are not verified on a GPU yet (STRAW_CUDA_MOE=1 tries them): use "
         "--spec ngram|draft, or --device cpu");
  weights.mtp = model::bind_mtp_weights(*reader, hp, weights, *devices.output);
}

}  // namespace straw

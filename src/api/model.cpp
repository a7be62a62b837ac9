// straw::Model: load a GGUF file, bind its weights, build the tokenizer and the backend.
#include <filesystem>

#include "api/model_impl.h"
#include "util/str.h"

namespace straw {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const ModelOptions& options) {
  if (options.path.empty()) fail("no model file given");
  if (options.threads < 0) fail("threads must be >= 0 (0: one per physical core), got ", options.threads);
  if (options.ctx < 0) fail("the context length must be >= 0 (0: the default), got ", options.ctx);
  if (options.ubatch < 1) fail("the micro-batch must be at least 1, got ", options.ubatch);

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->reader = gguf::Reader::open(options.path);
  const gguf::Reader& r = *impl->reader;
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
  if (impl->n_ctx > impl->hp.n_ctx_train)
    fail("the context length ", impl->n_ctx, " exceeds the model's trained context of ",
         impl->hp.n_ctx_train, " tokens");
  impl->options.ctx = static_cast<int>(impl->n_ctx);
  impl->options.threads = options.threads > 0 ? options.threads : cpu::physical_cores();
  choose_backends(*impl);
  model::prepare_weights(impl->weights, impl->devices);

  ModelInfo& info = impl->info;
  info.architecture = impl->hp.arch_name;
  info.name = r.find_string("general.name")
                  .value_or(std::filesystem::path(options.path).filename().string());
  info.n_vocab = impl->hp.n_vocab;
  info.n_ctx_train = impl->hp.n_ctx_train;
  info.n_embd = impl->hp.n_embd;
  info.n_layer = impl->hp.n_layer;
  info.n_head = impl->hp.n_head;
  info.n_head_kv = impl->hp.n_head_kv;
  for (const auto& t : r.tensors()) info.weight_bytes += t.bytes;
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

const ModelInfo& Model::info() const { return impl_->info; }
const ModelOptions& Model::options() const { return impl_->options; }

std::vector<int32_t> Model::tokenize(std::string_view text, bool add_special,
                                     bool parse_special) const {
  return impl_->tokenizer->tokenize(text, add_special, parse_special);
}

std::string Model::detokenize(std::span<const int32_t> tokens, bool special) const {
  return impl_->tokenizer->detokenize(tokens, special);
}

std::string Model::token_to_piece(int32_t token, bool special) const {
  if (token < 0 || token >= impl_->tokenizer->n_vocab())
    fail("token id ", token, " is outside the vocabulary (0..", impl_->tokenizer->n_vocab() - 1, ")");
  return impl_->tokenizer->token_to_piece(token, special);
}

bool Model::is_end_of_generation(int32_t token) const { return impl_->tokenizer->is_eog(token); }

bool Model::has_chat_template() const { return impl_->chat_template != model::ChatTemplate::None; }

std::string Model::apply_chat_template(std::span<const ChatMessage> messages,
                                       bool add_generation_prompt) const {
  std::vector<model::ChatMessage> msgs;
  msgs.reserve(messages.size());
  for (const ChatMessage& m : messages) msgs.push_back({m.role, m.content});
  return model::apply_chat_template(impl_->chat_template, msgs, add_generation_prompt,
                                    impl_->chat_options);
}

}  // namespace straw

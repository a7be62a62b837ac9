// What straw::Model and straw::Session hold (shared by the files of src/api).
#pragma once

#include <memory>
#include <string>

#include "cpu/cpu_backend.h"
#include "gguf/gguf.h"
#include "model/chat.h"
#include "model/hparams.h"
#include "model/tokenizer/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "straw/straw.h"

namespace straw {

struct Model::Impl {
  ModelOptions options;
  ModelInfo info;
  std::unique_ptr<gguf::Reader> reader;       // owns the mmap the weights point into
  model::HParams hp;
  model::Weights weights;
  std::unique_ptr<model::Tokenizer> tokenizer;
  model::ChatTemplate chat_template = model::ChatTemplate::None;
  model::ChatOptions chat_options;
  std::unique_ptr<cpu::CpuBackend> backend;
  int64_t n_ctx = 0;                          // context of new sessions (resolved from options)
};

}  // namespace straw

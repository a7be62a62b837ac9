// llama.cpp logits for given token ids with chosen KV cache types (flash attention on), for
// measuring llama.cpp's own change with quantized KV. usage: kvoracle MODEL TOKENS_FILE OUT TYPE_K TYPE_V
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
static ggml_type type_of(const char* s) {
  if (!strcmp(s, "f16")) return GGML_TYPE_F16;
  if (!strcmp(s, "q8_0")) return GGML_TYPE_Q8_0;
  if (!strcmp(s, "q4_0")) return GGML_TYPE_Q4_0;
  return GGML_TYPE_F32;
}
int main(int argc, char** argv) {
  if (argc < 6) return 2;
  std::vector<llama_token> toks;
  FILE* tf = fopen(argv[2], "r");
  int t;
  while (fscanf(tf, "%d", &t) == 1) toks.push_back(t);
  fclose(tf);
  llama_backend_init();
  auto mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 1;
  int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  auto cp = llama_context_default_params();
  cp.n_ctx = 1024; cp.n_batch = 1024; cp.n_ubatch = 512; cp.n_threads = 2; cp.n_threads_batch = 2;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
  cp.type_k = type_of(argv[4]);
  cp.type_v = type_of(argv[5]);
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 1;
  int n = toks.size();
  llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; i++) { b.token[i] = toks[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1; }
  b.n_tokens = n;
  if (llama_decode(ctx, b)) return 1;
  FILE* f = fopen(argv[3], "wb");
  for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, f);
  fclose(f);
  return 0;
}

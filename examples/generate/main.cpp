// The smallest program that generates text with straw, through the public API only.
//
//   generate -m MODEL -p PROMPT [-n N] [-t THREADS] [--temp T] [--seed S]
#include <straw/straw.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: generate -m MODEL -p PROMPT [-n N] [-t THREADS] [--temp T] [--seed S]\n");
}

}  // namespace

int main(int argc, char** argv) {
  straw::ModelOptions model_options;
  straw::GenerateOptions gen;
  std::string prompt;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto take = [&]() -> const char* {
      if (!value) {
        std::fprintf(stderr, "generate: %s needs a value\n", a);
        std::exit(2);
      }
      ++i;
      return value;
    };
    if (!std::strcmp(a, "-m")) model_options.path = take();
    else if (!std::strcmp(a, "-p")) prompt = take();
    else if (!std::strcmp(a, "-n")) gen.n_predict = std::atoi(take());
    else if (!std::strcmp(a, "-t")) model_options.threads = std::atoi(take());
    else if (!std::strcmp(a, "--temp")) gen.sampling.temperature = float(std::atof(take()));
    else if (!std::strcmp(a, "--seed")) gen.sampling.seed = std::strtoull(take(), nullptr, 10);
    else {
      usage();
      return 2;
    }
  }
  if (model_options.path.empty() || prompt.empty()) {
    usage();
    return 2;
  }

  try {
    auto model = straw::Model::load(model_options);
    straw::Session session(*model);
    std::vector<int32_t> tokens = model->tokenize(prompt);
    std::fputs(prompt.c_str(), stdout);
    straw::GenerateResult r =
        straw::generate(session, tokens, gen, [](std::string_view text, int32_t) {
          std::fwrite(text.data(), 1, text.size(), stdout);
          std::fflush(stdout);
          return true;  // keep going
        });
    std::printf("\n");
    std::fprintf(stderr, "%zu tokens at %.1f tokens/s\n", r.tokens.size(),
                 r.generate_seconds > 0 ? double(r.tokens.size()) / r.generate_seconds : 0.0);
  } catch (const straw::Error& e) {
    std::fprintf(stderr, "generate: %s\n", e.what());
    return 1;
  }
  return 0;
}

// Built against the installed straw package: loads the model given on the command line and
// generates a few greedy tokens through the public API.
#include <straw/straw.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer MODEL\n");
    return 2;
  }
  try {
    auto model = straw::Model::load({.path = argv[1], .threads = 1});
    straw::Session session(*model);
    straw::GenerateOptions opts;
    opts.n_predict = 8;
    opts.sampling.temperature = 0.0f;
    auto r = straw::generate(session, model->tokenize("Once upon a time"), opts, nullptr);
    std::printf("consumer: %s generated %zu tokens: %s\n", model->info().name.c_str(),
                r.tokens.size(), model->detokenize(r.tokens).c_str());
    return r.tokens.empty() ? 1 : 0;
  } catch (const straw::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}

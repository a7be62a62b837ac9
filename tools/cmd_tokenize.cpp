// straw tokenize: text -> token ids with the model's tokenizer (vocabulary-only files work too).
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli.h"
#include "gguf/gguf.h"
#include "model/tokenizer/tokenizer.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> tokenize_options() {
  return {
      {"model", 'm', true, "FILE  GGUF model or vocabulary-only file"},
      {"text", 0, true, "TEXT  text to tokenize"},
      {"file", 'f', true, "FILE  read the text from a file"},
      {"no-bos", 0, false, "do not add BOS/EOS even where the model asks for them"},
      {"no-parse-special", 0, false, "treat control-token text (e.g. <|im_start|>) as plain text"},
      {"ids", 0, false, "print only the ids, space-separated on one line"},
  };
}

int run_tokenize(const Args& a) {
  std::string text;
  if (a.has("text") == a.has("file")) throw UsageError("give exactly one of --text and --file");
  if (auto f = a.get("file")) {
    std::ifstream in(*f, std::ios::binary);
    if (!in) fail(*f, ": cannot open the text file");
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else {
    text = a.require("text");
  }
  auto reader = gguf::Reader::open(a.require("model"));
  auto tok = model::Tokenizer::from_gguf(*reader);
  std::vector<int32_t> ids = tok->tokenize(text, !a.has("no-bos"), !a.has("no-parse-special"));
  std::string out;
  if (a.has("ids")) {
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
    out += "\n";
  } else {
    for (int32_t id : ids) out += std::to_string(id) + "\t" + tok->token_to_piece(id, true) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

const Command kTokenize = {"tokenize", "split text into token ids with a model's tokenizer",
                           "tokenize -m MODEL (--text T | --file F) [--no-bos] [--no-parse-special] [--ids]",
                           tokenize_options, run_tokenize};

}  // namespace straw::cli

// JsonConstraint: the schema matcher driven token by token over a vocabulary trie.
//
// mask() walks the trie depth first with copies of the matcher state (a byte refused prunes the
// whole subtree), so its cost is the number of trie nodes that stay valid. Inside a string that
// would be nearly the whole vocabulary; there the plain-text tokens (most of a vocabulary) are
// decided in bulk from their code point counts and the walk only enters subtrees holding a token
// with a quote, backslash, control byte or partial UTF-8 character (plus, when the string may also
// be an enum value, a walk of the enum values alone).
#include "json_constraint.h"

#include <algorithm>

#include "straw/error.h"

namespace straw::serve {
namespace {

// Code points of a piece that is plain string content; 0 when it is not (or has over 255).
uint8_t plain_code_points(const std::string& piece) {
  size_t n = 0;
  for (size_t i = 0; i < piece.size(); n++) {
    const auto b = static_cast<uint8_t>(piece[i]);
    if (b < 0x20 || b == '"' || b == '\\') return 0;
    size_t len = 1;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0x80) {
      if (b >= 0xC2 && b <= 0xDF)
        len = 2;
      else if (b >= 0xE0 && b <= 0xEF)
        len = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
      else if (b >= 0xF0 && b <= 0xF4)
        len = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
      else
        return 0;
      if (i + len > piece.size()) return 0;
      for (size_t k = 1; k < len; k++) {
        const auto c = static_cast<uint8_t>(piece[i + k]);
        if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return 0;
      }
    }
    i += len;
  }
  return n > 255 ? 0 : static_cast<uint8_t>(n);
}

}  // namespace

TokenTrie::TokenTrie(const std::vector<std::string>& pieces, std::vector<int32_t> eog)
    : n_vocab_(static_cast<int32_t>(pieces.size())), pieces_(pieces), eog_(std::move(eog)) {
  is_eog_.assign(pieces_.size(), 0);
  for (int32_t t : eog_) {
    if (t < 0 || t >= n_vocab_)
      throw straw::Error("TokenTrie: end-of-generation token " + std::to_string(t) +
                         " is outside the vocabulary (" + std::to_string(n_vocab_) + " tokens)");
    is_eog_[t] = 1;
  }
  plain_.resize(pieces_.size());
  std::vector<int32_t> order;
  for (int32_t t = 0; t < n_vocab_; t++) {
    plain_[t] = plain_code_points(pieces_[t]);
    if (!pieces_[t].empty() && !is_eog_[t]) order.push_back(t);
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return pieces_[a] < pieces_[b] || (pieces_[a] == pieces_[b] && a < b);
  });
  // Sorted pieces give the preorder directly: each piece shares a prefix with the previous one
  // (the path kept in `path`, one node per byte) and adds nodes for the rest.
  nodes_.push_back({});
  std::vector<uint32_t> path = {0};
  const std::string* prev = nullptr;
  for (int32_t t : order) {
    const std::string& p = pieces_[t];
    size_t lcp = 0;
    if (prev)
      while (lcp < p.size() && lcp < prev->size() && p[lcp] == (*prev)[lcp]) lcp++;
    while (path.size() > lcp + 1) {
      nodes_[path.back()].end = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    for (size_t d = lcp; d < p.size(); d++) {
      Node n;
      n.byte = static_cast<uint8_t>(p[d]);
      nodes_.push_back(n);
      path.push_back(static_cast<uint32_t>(nodes_.size() - 1));
    }
    Node& leaf = nodes_[path.back()];
    if (leaf.n_tokens == 0) leaf.first_token = static_cast<uint32_t>(tokens_.size());
    if (leaf.n_tokens == UINT16_MAX) throw straw::Error("TokenTrie: too many identical pieces");
    tokens_.push_back(t);
    leaf.n_tokens++;
    prev = &p;
  }
  for (; !path.empty(); path.pop_back())
    nodes_[path.back()].end = static_cast<uint32_t>(nodes_.size());
  // not_plain bottom-up: children have larger indices than their parent.
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node& n = nodes_[i];
    for (uint32_t k = 0; k < n.n_tokens; k++)
      n.not_plain |= plain_[tokens_[n.first_token + k]] == 0;
    for (uint32_t c = static_cast<uint32_t>(i) + 1; c < n.end; c = nodes_[c].end)
      n.not_plain |= nodes_[c].not_plain;
  }
}

std::shared_ptr<const TokenTrie> TokenTrie::from_model(const Model& model) {
  const auto n = static_cast<int32_t>(model.n_vocab());
  std::vector<std::string> pieces(n);
  std::vector<int32_t> eog;
  for (int32_t t = 0; t < n; t++) {
    // Rows of the output matrix past the tokenizer's list (padding) are never allowed.
    try {
      pieces[t] = model.token_to_piece(t, false);
      if (model.is_end_of_generation(t)) eog.push_back(t);
    } catch (const straw::Error&) {
      pieces[t].clear();
    }
  }
  return std::make_shared<const TokenTrie>(pieces, std::move(eog));
}

JsonConstraint::JsonConstraint(std::shared_ptr<const JsonSchema> schema,
                               std::shared_ptr<const TokenTrie> vocab)
    : vocab_(std::move(vocab)), matcher_(std::move(schema)) {
  if (vocab_->eog().empty())
    throw straw::Error(
        "JSON constrained decoding needs an end-of-generation token; the model's "
        "vocabulary has none");
}

bool JsonConstraint::allows(int32_t token) {
  if (token < 0 || token >= vocab_->n_vocab()) return false;
  if (vocab_->is_eog(token)) return done();
  const std::string& piece = vocab_->piece(token);
  if (finished_ || piece.empty()) return false;
  JsonMatcher::State s = matcher_.state();
  const size_t m = matcher_.mark();
  bool ok = true;
  for (char c : piece)
    if (!matcher_.advance(s, static_cast<uint8_t>(c))) {
      ok = false;
      break;
    }
  matcher_.release(m);
  return ok;
}

void JsonConstraint::walk(uint32_t begin, uint32_t end, const JsonMatcher::State& s,
                          uint8_t* allowed, bool skip_plain) {
  const auto& nodes = vocab_->nodes();
  const auto& tokens = vocab_->tokens();
  for (uint32_t c = begin; c < end; c = nodes[c].end) {
    const TokenTrie::Node& n = nodes[c];
    if (skip_plain && !n.not_plain) continue;  // decided in bulk
    JsonMatcher::State t = s;
    const size_t m = matcher_.mark();
    if (matcher_.advance(t, n.byte)) {
      for (uint32_t k = 0; k < n.n_tokens; k++) allowed[tokens[n.first_token + k]] = 1;
      any_ |= n.n_tokens > 0;
      if (n.end > c + 1) walk(c + 1, n.end, t, allowed, skip_plain);
    }
    matcher_.release(m);
  }
}

void JsonConstraint::mask(std::span<uint8_t> allowed) {
  if (allowed.size() != static_cast<size_t>(vocab_->n_vocab()))
    throw straw::Error("JsonConstraint::mask: " + std::to_string(allowed.size()) +
                       " entries for a vocabulary of " + std::to_string(vocab_->n_vocab()));
  std::fill(allowed.begin(), allowed.end(), 0);
  any_ = false;
  if (!finished_) {
    const JsonMatcher::State& s = matcher_.state();
    const int64_t room = matcher_.plain_room(s);
    if (room >= 0) {
      const uint8_t r = static_cast<uint8_t>(std::min<int64_t>(room, 255));
      const uint8_t* plain = vocab_->plain().data();
      uint8_t any = 0;
      for (size_t t = 0; t < allowed.size(); t++) {
        allowed[t] = plain[t] != 0 && plain[t] <= r;
        any |= allowed[t];
      }
      any_ = any != 0;
    }
    const auto n_nodes = static_cast<uint32_t>(vocab_->nodes().size());
    walk(1, n_nodes, s, allowed.data(), room >= 0);
    // Plain tokens longer than the room may still spell an enum value: walk the literal path
    // alone (it prunes at once where no enum value continues).
    JsonMatcher::State literal;
    if (room >= 0 && room != kUnbounded && matcher_.literal_only(s, &literal))
      walk(1, n_nodes, literal, allowed.data(), false);
  }
  const bool complete = done();
  for (int32_t e : vocab_->eog()) allowed[e] = complete;
  if (!any_ && !complete)
    throw straw::Error(
        "JSON constrained decoding: no token of the vocabulary can continue the "
        "document here (text so far: " +
        text_ + ")");
}

void JsonConstraint::accept(int32_t token) {
  if (!allows(token))
    throw straw::Error("JsonConstraint::accept: token " + std::to_string(token) +
                       " is not allowed after: " + text_);
  if (vocab_->is_eog(token)) {
    finished_ = true;
    return;
  }
  matcher_.feed(vocab_->piece(token));
  text_ += vocab_->piece(token);
}

bool JsonConstraint::done() const {
  return finished_ || matcher_.done();
}

std::shared_ptr<const JsonSchema> schema_for_response_format(const nlohmann::json& rf,
                                                             const JsonSchemaOptions& options) {
  if (rf.is_null()) return nullptr;
  const std::string type = rf.is_object() && rf.contains("type") && rf["type"].is_string()
                               ? rf["type"].get<std::string>()
                               : "";
  if (type == "text") return nullptr;
  if (type == "json_object") return JsonSchema::any_object(options);
  if (type != "json_schema")
    throw straw::Error(
        "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} "
        "or {\"type\": \"json_schema\", \"json_schema\": {...}}, not " +
        rf.dump());
  const auto js = rf.find("json_schema");
  if (js == rf.end() || !js->is_object())
    throw straw::Error("response_format.json_schema must be an object with a \"schema\"");
  try {
    return JsonSchema::compile(js->contains("schema") ? (*js)["schema"] : nlohmann::json(true),
                               options);
  } catch (const straw::Error& e) {
    throw straw::Error(std::string("response_format.json_schema.schema: ") + e.what());
  }
}

}  // namespace straw::serve

// Constrained decoding for response_format json_object / json_schema: a straw::TokenConstraint
// that allows exactly the tokens whose bytes keep the output a prefix of a schema-valid document.
//
//   auto vocab = straw::serve::TokenTrie::from_model(*model);            // once per model
//   auto schema = straw::serve::schema_for_response_format(body["response_format"]);
//   if (schema) {                                                          // per request
//     straw::serve::JsonConstraint constraint(schema, vocab);
//     ... the sampler calls constraint.allows() / mask() / accept() ...
//   }
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "json_schema.h"
#include "straw/constraint.h"
#include "straw/straw.h"

namespace straw::serve {

// A model's vocabulary as a byte trie, built once per model and shared by every request.
class TokenTrie {
 public:
  // pieces[t]: the bytes of token t; an empty piece (a control token) is never allowed.
  // eog: the end-of-generation tokens (allowed exactly when the document is complete).
  TokenTrie(const std::vector<std::string>& pieces, std::vector<int32_t> eog);
  // Pieces from Model::token_to_piece(t) (special tokens render empty), EOG tokens from
  // Model::is_end_of_generation.
  static std::shared_ptr<const TokenTrie> from_model(const Model& model);

  int32_t n_vocab() const { return n_vocab_; }
  const std::vector<int32_t>& eog() const { return eog_; }
  bool is_eog(int32_t t) const { return is_eog_[t] != 0; }
  const std::string& piece(int32_t t) const { return pieces_[t]; }

  // Nodes in preorder: node 0 is the root (the empty prefix); the children of node i are i + 1,
  // then nodes[i + 1].end, ... while below nodes[i].end.
  struct Node {
    uint32_t end = 0;          // one past the last node of this subtree
    uint32_t first_token = 0;  // tokens[first_token, first_token + n_tokens) end here
    uint16_t n_tokens = 0;
    uint8_t byte = 0;       // the byte leading here from the parent
    uint8_t not_plain = 0;  // the subtree holds a token that is not plain text (see below)
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // plain[t]: code points of token t when its piece is plain string content (no '"', '\',
  // control byte, only whole UTF-8 characters), at most 255; 0 otherwise.
  const std::vector<uint8_t>& plain() const { return plain_; }

 private:
  int32_t n_vocab_ = 0;
  std::vector<std::string> pieces_;
  std::vector<int32_t> eog_;
  std::vector<uint8_t> is_eog_;
  std::vector<Node> nodes_;
  std::vector<int32_t> tokens_;
  std::vector<uint8_t> plain_;
};

class JsonConstraint : public TokenConstraint {
 public:
  JsonConstraint(std::shared_ptr<const JsonSchema> schema, std::shared_ptr<const TokenTrie> vocab);

  bool allows(int32_t token) override;
  void mask(std::span<uint8_t> allowed) override;
  void accept(int32_t token) override;
  bool done() const override;

  // The bytes accepted so far.
  const std::string& text() const { return text_; }

 private:
  void walk(uint32_t begin, uint32_t end, const JsonMatcher::State& s, uint8_t* allowed,
            bool skip_plain);

  std::shared_ptr<const TokenTrie> vocab_;
  JsonMatcher matcher_;
  std::string text_;
  bool finished_ = false;  // an end-of-generation token was accepted
  bool any_ = false;       // mask(): some token allowed
};

// The schema a response_format asks for: {"type":"json_object"} -> any object;
// {"type":"json_schema","json_schema":{"name":..,"schema":{..},"strict":..}} -> that schema (no
// "schema": any JSON value; strict is always on); {"type":"text"} or null -> nullptr (no
// constraint). Throws straw::Error with a message for the client on anything else.
std::shared_ptr<const JsonSchema> schema_for_response_format(const nlohmann::json& response_format,
                                                             const JsonSchemaOptions& options = {});

}  // namespace straw::serve

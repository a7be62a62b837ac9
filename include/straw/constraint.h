// Constrained decoding: which tokens may come next.
//
// A TokenConstraint restricts sampling to the tokens it allows (a grammar, a JSON schema, a fixed
// set of choices). straw::Sampler asks it first whether the token it would pick is allowed and only
// masks the whole vocabulary when it is not: sampling from the masked distribution this way is exact,
// and cheap whenever the model already follows the constraint.
#pragma once

#include <cstdint>
#include <span>

namespace straw {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;

  // Whether `token` may come next. End-of-generation tokens are allowed exactly when the text so far
  // is complete (done()).
  virtual bool allows(int32_t token) = 0;

  // Clears allowed[t] for every token t that may not come next; allowed has n_vocab entries and is
  // all 1 on entry. At least one token must stay allowed (an end-of-generation token when done()).
  virtual void mask(std::span<uint8_t> allowed) = 0;

  // The sampler chose `token` (one that allows() accepted): advance past it.
  virtual void accept(int32_t token) = 0;

  // Whether the text accepted so far is complete (generation may stop here).
  virtual bool done() const = 0;
};

}  // namespace straw

// The text of one generation as it may be sent: whole UTF-8 characters only, stop strings cut off.
//
// Tokens arrive as byte pieces (a piece may end inside a UTF-8 character). push() appends a piece
// and returns the text that is now safe to send: complete characters, minus any tail that could
// still turn out to be the start of a stop string. When a stop string appears, the text before it
// is released, the stop string and everything after it are dropped, and stopped() turns true.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace straw::serve {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop = {});

  // Appends a token's bytes; returns the newly releasable text (possibly empty).
  std::string push(std::string_view piece);
  // The end of generation: releases what was held back (an incomplete UTF-8 tail is replaced by
  // U+FFFD, as a decoder would).
  std::string finish();

  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // all text so far (not cut at holds)
  size_t sent() const { return sent_; }              // bytes of text() released

 private:
  size_t held_back(size_t end) const;

  std::vector<std::string> stop_;
  size_t max_stop_ = 0;
  std::string text_;  // generated text (bytes); cut at the stop string when one matched
  size_t sent_ = 0;   // bytes of text_ released so far
  bool stopped_ = false;
};

// Length of the longest prefix of s made of complete, valid UTF-8 sequences, ignoring an
// incomplete (but so far valid) sequence at the end; invalid bytes count as complete (they are
// passed on, and JSON output replaces them).
size_t complete_utf8_prefix(std::string_view s);

// Whether s is entirely valid UTF-8.
bool valid_utf8(std::string_view s);

}  // namespace straw::serve

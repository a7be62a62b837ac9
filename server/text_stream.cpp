#include "text_stream.h"

#include <algorithm>

namespace straw::serve {

namespace {

// Length of the UTF-8 sequence a lead byte starts (0: not a lead byte).
int sequence_length(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Whether the n bytes at s (n = sequence_length(s[0]) or fewer) can be a valid sequence so far:
// continuation bytes, no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_prefix(const unsigned char* s, size_t n) {
  for (size_t i = 1; i < n; ++i)
    if ((s[i] & 0xC0) != 0x80) return false;
  if (n >= 2) {
    if (s[0] == 0xE0 && s[1] < 0xA0) return false;  // overlong
    if (s[0] == 0xED && s[1] > 0x9F) return false;  // surrogates
    if (s[0] == 0xF0 && s[1] < 0x90) return false;  // overlong
    if (s[0] == 0xF4 && s[1] > 0x8F) return false;  // > U+10FFFF
  }
  return true;
}

}  // namespace

size_t complete_utf8_prefix(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const int len = sequence_length(b[i]);
    if (len == 0) {  // a stray byte: passed on as it is
      ++i;
      continue;
    }
    const size_t avail = std::min<size_t>(size_t(len), s.size() - i);
    if (!valid_prefix(b + i, avail)) {
      ++i;
      continue;
    }
    if (avail < size_t(len)) return i;  // an incomplete character at the end: hold it
    i += size_t(len);
  }
  return i;
}

bool valid_utf8(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const int len = sequence_length(b[i]);
    if (len == 0 || i + size_t(len) > s.size() || !valid_prefix(b + i, size_t(len))) return false;
    i += size_t(len);
  }
  return true;
}

TextStream::TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
  for (const std::string& s : stop_) max_stop_ = std::max(max_stop_, s.size());
}

size_t TextStream::held_back(size_t end) const {
  // The longest tail of text_[0, end) that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const std::string& s : stop_) {
    const size_t max_len = std::min(s.size() - 1, end - std::min(end, sent_));
    for (size_t len = max_len; len > hold; --len)
      if (text_.compare(end - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
  }
  return hold;
}

std::string TextStream::push(std::string_view piece) {
  if (stopped_) return {};
  const size_t before = text_.size();
  text_.append(piece);
  // A stop string can only start where it would overlap the new bytes.
  const size_t from = before > max_stop_ ? before - max_stop_ : 0;
  size_t cut = std::string::npos;
  for (const std::string& s : stop_) {
    const size_t at = text_.find(s, std::max(from, sent_));
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    text_.resize(cut);
    stopped_ = true;
    return finish();
  }
  size_t end = sent_ + complete_utf8_prefix(std::string_view(text_).substr(sent_));
  end -= held_back(end);
  if (end <= sent_) return {};
  std::string out = text_.substr(sent_, end - sent_);
  sent_ = end;
  return out;
}

std::string TextStream::finish() {
  std::string out = text_.substr(sent_);
  sent_ = text_.size();
  // An incomplete character at the very end becomes U+FFFD.
  const size_t ok = complete_utf8_prefix(out);
  if (ok < out.size()) out = out.substr(0, ok) + "\xEF\xBF\xBD";
  return out;
}

}  // namespace straw::serve

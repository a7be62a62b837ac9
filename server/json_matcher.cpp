// The byte-level JSON recognizer over a compiled schema (see json_schema.h).
//
// It is a pushdown automaton: a stack of Frames (the open containers, with the root position at
// the bottom) plus a lexer for the scalar or key being read. Each frame carries the candidate
// group of its value and the mask of members still alive; a completed value reports the members
// it matched, and the parent keeps only the alternatives that contributed one of them. Every
// transition also checks that some alive alternative can still be completed (within the depth
// cap), so no reachable state is a dead end.
#include <algorithm>
#include <cstring>

#include "json_schema.h"
#include "straw/error.h"

namespace straw::serve {
namespace {

// Where the parse is inside the top frame.
enum Phase : uint8_t {
  kRootValue,  // root: before the document's value
  kRootDone,   // root: after it (whitespace only)
  kObjOpen,    // object: after '{' (a key or '}')
  kObjColon,   // object: after a key (':')
  kObjValue,   // object: after ':' (the value of key frame.index)
  kObjAfter,   // object: after a value (',' or '}')
  kObjComma,   // object: after ',' (a key)
  kArrOpen,    // array: after '[' (an item or ']')
  kArrAfter,   // array: after an item (',' or ']')
  kArrComma,   // array: after ',' (an item)
};

// String syntax: where the lexer is inside one character (Lex::sub for strings and keys).
enum StrState : uint8_t {
  kChar,    // at a character boundary
  kEscape,  // after '\'
  kU0,      // after "\u": 0 hex digits
  kU1,      // 1 digit (not d/D)
  kUD,      // 1 digit d/D: the second decides between plain (0-7) and high surrogate (8-b)
  kU2,      // 2 digits of a plain escape or of a low surrogate
  kU3,      // 3 digits
  kH2,      // high surrogate: 2 digits
  kH3,      // high surrogate: 3 digits
  kPair,    // after a high surrogate: '\' of the low half must follow
  kPairU,   // 'u' of the low half
  kL0,      // low half: d/D
  kL1,      // low half: c-f
  kCont1,   // UTF-8: 1 continuation byte (80-BF) left
  kCont2,   // 2 left
  kCont3,   // 3 left
  kE0,      // after E0: A0-BF (no overlong), then 1 left
  kED,      // after ED: 80-9F (no surrogates), then 1 left
  kF0,      // after F0: 90-BF (no overlong), then 2 left
  kF4,      // after F4: 80-8F (at most U+10FFFF), then 2 left
};

// Number syntax (Lex::sub for bare scalars): -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
enum NumState : uint8_t {
  kMinus,     // after '-'
  kZero,      // a leading 0 (complete)
  kInt,       // integer digits (complete)
  kDot,       // after '.'
  kFrac,      // fraction digits (complete)
  kExp,       // after 'e'/'E'
  kExpSign,   // after the exponent's sign
  kExpDigit,  // exponent digits (complete)
};

constexpr uint16_t kMaxIntDigits = 18, kMaxFracDigits = 18, kMaxExpDigits = 2;

bool is_hex(uint8_t b) {
  return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
}

bool in(uint8_t b, uint8_t lo, uint8_t hi) {
  return b >= lo && b <= hi;
}

// The string syntax transition; -1: invalid. new_char: b starts a character (counts towards the
// length); odd_escape: b makes an escape a key may not use (\/ or \u: see json_schema.h).
int string_step(uint8_t sub, uint8_t b, bool& new_char, bool& odd_escape) {
  new_char = odd_escape = false;
  switch (sub) {
    case kChar:
      if (b == '\\') return new_char = true, kEscape;
      if (b < 0x20) return -1;
      new_char = true;
      if (b < 0x80) return kChar;
      if (in(b, 0xC2, 0xDF)) return kCont1;
      if (b == 0xE0) return kE0;
      if (b == 0xED) return kED;
      if (in(b, 0xE1, 0xEF)) return kCont2;
      if (b == 0xF0) return kF0;
      if (in(b, 0xF1, 0xF3)) return kCont3;
      if (b == 0xF4) return kF4;
      return -1;
    case kEscape:
      if (b == 'u' || b == '/') return odd_escape = true, b == 'u' ? kU0 : kChar;
      return std::strchr("\"\\bfnrt", b) && b ? kChar : -1;
    case kU0:
      return !is_hex(b) ? -1 : (b == 'd' || b == 'D') ? kUD : kU1;
    case kU1:
      return is_hex(b) ? kU2 : -1;
    case kUD:
      if (in(b, '0', '7')) return kU2;
      if (in(b, '8', '9') || in(b, 'a', 'b') || in(b, 'A', 'B')) return kH2;
      return -1;  // a low surrogate without a high one
    case kU2:
      return is_hex(b) ? kU3 : -1;
    case kU3:
      return is_hex(b) ? kChar : -1;
    case kH2:
      return is_hex(b) ? kH3 : -1;
    case kH3:
      return is_hex(b) ? kPair : -1;
    case kPair:
      return b == '\\' ? kPairU : -1;
    case kPairU:
      return b == 'u' ? kL0 : -1;
    case kL0:
      return b == 'd' || b == 'D' ? kL1 : -1;
    case kL1:
      return in(b, 'c', 'f') || in(b, 'C', 'F') ? kU2 : -1;
    case kCont1:
      return in(b, 0x80, 0xBF) ? kChar : -1;
    case kCont2:
      return in(b, 0x80, 0xBF) ? kCont1 : -1;
    case kCont3:
      return in(b, 0x80, 0xBF) ? kCont2 : -1;
    case kE0:
      return in(b, 0xA0, 0xBF) ? kCont1 : -1;
    case kED:
      return in(b, 0x80, 0x9F) ? kCont1 : -1;
    case kF0:
      return in(b, 0x90, 0xBF) ? kCont2 : -1;
    case kF4:
      return in(b, 0x80, 0x8F) ? kCont2 : -1;
  }
  return -1;
}

// The number syntax transition with digit caps; -1: b does not continue the number.
int number_step(uint8_t sub, uint16_t& digits, uint8_t b) {
  const bool digit = b >= '0' && b <= '9';
  const bool exp = b == 'e' || b == 'E';
  switch (sub) {
    case kMinus:
      if (digit) return digits = 1, b == '0' ? kZero : kInt;
      return -1;
    case kZero:
      return b == '.' ? kDot : exp ? kExp : -1;
    case kInt:
      if (digit) return digits < kMaxIntDigits ? (digits++, kInt) : -1;
      return b == '.' ? kDot : exp ? kExp : -1;
    case kDot:
      return digit ? (digits = 1, kFrac) : -1;
    case kFrac:
      if (digit) return digits < kMaxFracDigits ? (digits++, kFrac) : -1;
      return exp ? kExp : -1;
    case kExp:
      if (b == '+' || b == '-') return kExpSign;
      return digit ? (digits = 1, kExpDigit) : -1;
    case kExpSign:
      return digit ? (digits = 1, kExpDigit) : -1;
    case kExpDigit:
      return digit && digits < kMaxExpDigits ? (digits++, kExpDigit) : -1;
  }
  return -1;
}

// The members in `mask`, one bit at a time.
template <class F>
void for_bits(uint32_t mask, F f) {
  while (mask) {
    f(static_cast<uint32_t>(__builtin_ctz(mask)));
    mask &= mask - 1;
  }
}

uint32_t origins(const JsonChild& c, uint32_t matched) {
  uint32_t out = 0;
  for_bits(matched, [&](uint32_t j) { out |= c.origin[j]; });
  return out;
}

const JsonChild& item_child(const JsonGroup& g, uint32_t index) {
  return g.item_child[std::min<size_t>(index, g.item_child.size() - 1)];
}

}  // namespace

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonSchema> schema) : schema_(std::move(schema)) {
  state_ = initial();
}

JsonMatcher::State JsonMatcher::initial() const {
  State s;
  s.top.kind = kRoot;
  s.top.phase = kRootValue;
  s.top.group = schema_->root();
  const size_t n = schema_->group(s.top.group).members.size();
  s.top.alive = n >= 32 ? ~0u : (1u << n) - 1;
  return s;
}

bool JsonMatcher::fits(const JsonMember&, uint16_t h, const State& s) const {
  return s.depth + h <= schema_->options().max_depth;
}

// Members of child c that some parent in `parents` contributes and whose smallest value fits.
uint32_t JsonMatcher::child_alive(const State& s, const JsonChild& c, uint32_t parents) const {
  if (c.group == kNoGroup) return 0;
  const JsonGroup& g = schema_->group(c.group);
  uint32_t out = 0;
  for (size_t j = 0; j < c.origin.size(); j++)
    if ((c.origin[j] & parents) && fits(g.members[j], g.members[j].h_min, s)) out |= 1u << j;
  return out;
}

// Keys of the top object that may come next; *free: whether undeclared keys may.
uint64_t JsonMatcher::available_keys(const State& s, bool* free) const {
  const JsonGroup& g = schema_->group(s.top.group);
  uint64_t avail = 0;
  for (size_t k = 0; k < g.keys.size(); k++)
    if (!(s.top.seen >> k & 1) && child_alive(s, g.key_child[k], s.top.alive))
      avail |= uint64_t{1} << k;
  *free = child_alive(s, g.free_key, s.top.alive) != 0;
  return avail;
}

// Members of the top array that may take another item.
uint32_t JsonMatcher::eligible_items(const State& s) const {
  const JsonGroup& g = schema_->group(s.top.group);
  uint32_t out = 0;
  for_bits(s.top.alive, [&](uint32_t j) {
    if (s.top.index < g.members[j].max_items) out |= 1u << j;
  });
  return out;
}

// Literal path: keeps the texts of [lo, hi) whose byte pos is b. Returns whether any remain.
bool JsonMatcher::narrow(const State& s, Lex& l, uint8_t b) const {
  if (l.lo >= l.hi) return false;
  const JsonGroup& g = schema_->group(l.kind == kKey ? s.top.group : l.group);
  const std::vector<std::string>& texts = l.kind == kKey ? g.keys : g.literals;
  const size_t pos = l.pos;
  auto begin = texts.begin() + l.lo, end = texts.begin() + l.hi;
  auto first = std::lower_bound(begin, end, b, [pos](const std::string& t, uint8_t c) {
    return t.size() <= pos || static_cast<uint8_t>(t[pos]) < c;
  });
  auto last = std::upper_bound(first, end, b, [pos](uint8_t c, const std::string& t) {
    return c < static_cast<uint8_t>(t[pos]);
  });
  l.lo = static_cast<uint32_t>(first - texts.begin());
  l.hi = static_cast<uint32_t>(last - texts.begin());
  l.pos++;
  return l.lo < l.hi;
}

// Whether some text in the literal range is still allowed.
bool JsonMatcher::literal_alive(const State&, const Lex& l) const {
  if (l.lo >= l.hi) return false;
  if (l.kind == kKey) {
    const uint64_t below_hi = l.hi >= 64 ? ~uint64_t{0} : (uint64_t{1} << l.hi) - 1;
    const uint64_t below_lo = (uint64_t{1} << l.lo) - 1;
    return (l.keys & below_hi & ~below_lo) != 0;
  }
  const JsonGroup& g = schema_->group(l.group);
  for (uint32_t i = l.lo; i < l.hi; i++)
    if (g.literal_members[i] & l.alive) return true;
  return false;
}

void JsonMatcher::push(State& s, const Frame& f) {
  arena_.push_back({s.top, s.parent});
  s.parent = static_cast<int32_t>(arena_.size() - 1);
  s.top = f;
  s.depth++;
}

// A value of the top frame's current position is complete and matched `matched` (child members).
void JsonMatcher::value_done(State& s, uint32_t matched) {
  Frame& f = s.top;
  const JsonGroup& g = schema_->group(f.group);
  if (f.kind == kRoot) {
    f.phase = kRootDone;
  } else if (f.kind == kObject) {
    const JsonChild& c = f.index == kFreeKey ? g.free_key : g.key_child[f.index];
    f.alive &= origins(c, matched);
    f.phase = kObjAfter;
  } else {
    f.alive &= eligible_items(s) & origins(item_child(g, f.index), matched);
    f.index++;
    f.phase = kArrAfter;
  }
}

// Starts a value of group `gid` whose members `alive` are possible, with its first byte b.
bool JsonMatcher::start_value(State& s, uint32_t gid, uint32_t alive, uint8_t b) {
  if (gid == kNoGroup || !alive) return false;
  const JsonGroup& g = schema_->group(gid);
  if (b == '{' || b == '[') {
    const bool object = b == '{';
    uint32_t ok = 0;
    for_bits(alive & (object ? g.objects : g.arrays), [&](uint32_t j) {
      const JsonMember& m = g.members[j];
      if (fits(m, object ? m.h_object : m.h_array, s)) ok |= 1u << j;
    });
    if (!ok) return false;
    Frame f;
    f.group = gid;
    f.alive = ok;
    f.kind = object ? kObject : kArray;
    f.phase = object ? kObjOpen : kArrOpen;
    push(s, f);
    return true;
  }
  Lex l;
  l.group = gid;
  l.alive = alive;
  l.hi = static_cast<uint32_t>(g.literals.size());
  if (b == '"') {
    l.kind = kString;
    l.sub = kChar;
    l.free = alive & g.strings;
  } else {
    l.kind = kBare;
    if (b == '-' || (b >= '0' && b <= '9')) {
      l.free = alive & g.numbers;
      l.sub = b == '-' ? kMinus : b == '0' ? kZero : kInt;
      l.digits = b == '-' ? 0 : 1;
    }
  }
  narrow(s, l, b);
  if (!l.free && !literal_alive(s, l)) return false;
  s.lex = l;
  return true;
}

bool JsonMatcher::start_key(State& s) {
  bool free = false;
  const uint64_t avail = available_keys(s, &free);
  if (!avail && !free) return false;
  Lex l;
  l.kind = kKey;
  l.sub = kChar;
  l.keys = avail;
  l.free = free;
  l.hi = static_cast<uint32_t>(schema_->group(s.top.group).keys.size());
  narrow(s, l, '"');  // every key starts with it
  s.lex = l;
  return true;
}

// The closing quote of a key (already consumed by the literal path): choose the key's child.
bool JsonMatcher::close_key(State& s) {
  const JsonGroup& g = schema_->group(s.top.group);
  const Lex& l = s.lex;
  uint32_t k = kFreeKey;
  if (l.lo < l.hi && g.keys[l.lo].size() == l.pos) {  // the text is a declared key
    if (!(l.keys >> l.lo & 1)) return false;          // written already, or cannot fit
    k = l.lo;
  } else if (!l.free) {
    return false;
  }
  const JsonChild& c = k == kFreeKey ? g.free_key : g.key_child[k];
  const uint32_t live = child_alive(s, c, s.top.alive);
  s.top.alive &= origins(c, live);
  if (k != kFreeKey) s.top.seen |= uint64_t{1} << k;
  s.top.index = k;
  s.top.phase = kObjColon;
  s.lex.kind = kNone;
  return true;
}

bool JsonMatcher::string_byte(State& s, uint8_t b) {
  Lex& l = s.lex;
  const bool key = l.kind == kKey;
  if (l.sub == kChar && b == '"') {  // closing quote
    narrow(s, l, b);
    if (key) return close_key(s);
    const JsonGroup& g = schema_->group(l.group);
    uint32_t matched = 0;
    for_bits(l.free, [&](uint32_t j) {
      if (l.length >= g.members[j].min_length) matched |= 1u << j;
    });
    if (l.lo < l.hi && g.literals[l.lo].size() == l.pos)
      matched |= g.literal_members[l.lo] & l.alive;
    if (!matched) return false;
    l.kind = kNone;
    value_done(s, matched);
    return true;
  }
  bool new_char, odd_escape;
  const int next = string_step(l.sub, b, new_char, odd_escape);
  if (next < 0) return false;
  Lex t = l;
  t.sub = static_cast<uint8_t>(next);
  if (key) {
    if (odd_escape) t.free = 0;
  } else if (new_char && t.free) {
    t.length++;
    const JsonGroup& g = schema_->group(l.group);
    for_bits(t.free, [&](uint32_t j) {
      if (t.length > g.members[j].max_length) t.free &= ~(1u << j);
    });
  } else if (new_char) {
    t.length++;
  }
  narrow(s, t, b);
  if (!t.free && !literal_alive(s, t)) return false;
  l = t;
  return true;
}

// A byte of a number or keyword: true when it continues the scalar.
int JsonMatcher::bare_byte(State& s, uint8_t b) {
  Lex t = s.lex;
  if (t.free) {
    const int next = number_step(t.sub, t.digits, b);
    if (next < 0) {
      t.free = 0;
    } else {
      if (next == kDot || next == kExp) t.free &= ~schema_->group(t.group).integer_only;
      t.sub = static_cast<uint8_t>(next);
    }
  }
  narrow(s, t, b);
  if (!t.free && !literal_alive(s, t)) return 0;
  s.lex = t;
  return 1;
}

// The members a number or keyword read so far matches if it ends here.
uint32_t JsonMatcher::bare_matches(const State& s) const {
  const Lex& l = s.lex;
  const JsonGroup& g = schema_->group(l.group);
  uint32_t m = 0;
  if (l.free && (l.sub == kZero || l.sub == kInt || l.sub == kFrac || l.sub == kExpDigit))
    m |= l.free;
  if (l.lo < l.hi && g.literals[l.lo].size() == l.pos) m |= g.literal_members[l.lo] & l.alive;
  return m;
}

bool JsonMatcher::close_container(State& s) {
  const JsonGroup& g = schema_->group(s.top.group);
  uint32_t matched = 0;
  for_bits(s.top.alive, [&](uint32_t j) {
    const JsonMember& m = g.members[j];
    const bool ok =
        s.top.kind == kObject ? (m.required & ~s.top.seen) == 0 : s.top.index >= m.min_items;
    if (ok) matched |= 1u << j;
  });
  if (!matched) return false;
  const Saved& below = arena_[s.parent];
  s.top = below.frame;
  s.parent = below.parent;
  s.depth--;
  value_done(s, matched);
  return true;
}

// A byte between tokens: whitespace, punctuation, or the first byte of a key or value.
bool JsonMatcher::structural(State& s, uint8_t b) {
  if (b == ' ' || b == '\t' || b == '\n') {
    if (s.ws >= schema_->options().max_whitespace || (b == '\n' && s.newline)) return false;
    s.ws++;
    s.newline |= b == '\n';
    return true;
  }
  s.ws = s.newline = 0;
  Frame& f = s.top;
  const JsonGroup& g = schema_->group(f.group);
  switch (f.phase) {
    case kRootValue:
      return start_value(s, f.group, f.alive, b);
    case kRootDone:
      return false;
    case kObjOpen:
      if (b == '}') return close_container(s);
      [[fallthrough]];
    case kObjComma:
      return b == '"' && start_key(s);
    case kObjColon:
      if (b != ':') return false;
      f.phase = kObjValue;
      return true;
    case kObjValue: {
      const JsonChild& c = f.index == kFreeKey ? g.free_key : g.key_child[f.index];
      return start_value(s, c.group, child_alive(s, c, f.alive), b);
    }
    case kObjAfter:
      if (b == '}') return close_container(s);
      if (b == ',') {
        bool free = false;
        if (!available_keys(s, &free) && !free) return false;
        f.phase = kObjComma;
        return true;
      }
      return false;
    case kArrOpen:
      if (b == ']') return close_container(s);
      [[fallthrough]];
    case kArrComma: {
      const JsonChild& c = item_child(g, f.index);
      return start_value(s, c.group, child_alive(s, c, eligible_items(s)), b);
    }
    case kArrAfter:
      if (b == ']') return close_container(s);
      if (b == ',' && child_alive(s, item_child(g, f.index), eligible_items(s))) {
        f.phase = kArrComma;
        return true;
      }
      return false;
  }
  return false;
}

bool JsonMatcher::advance(State& s, uint8_t b) {
  if (s.lex.kind == kString || s.lex.kind == kKey) return string_byte(s, b);
  if (s.lex.kind == kBare) {
    if (bare_byte(s, b)) return true;
    const uint32_t matched = bare_matches(s);  // b ends the number or keyword, if it is complete
    if (!matched) return false;
    s.lex.kind = kNone;
    value_done(s, matched);
  }
  return structural(s, b);
}

bool JsonMatcher::complete(const State& s) const {
  if (s.top.kind != kRoot) return false;
  if (s.lex.kind == kNone) return s.top.phase == kRootDone;
  return s.lex.kind == kBare && bare_matches(s) != 0;
}

int64_t JsonMatcher::plain_room(const State& s) const {
  const Lex& l = s.lex;
  if ((l.kind != kString && l.kind != kKey) || l.sub != kChar || !l.free) return -1;
  if (l.kind == kKey) return kUnbounded;
  const JsonGroup& g = schema_->group(l.group);
  uint32_t room = 0;
  for_bits(l.free, [&](uint32_t j) {
    const uint32_t max = g.members[j].max_length;
    room = std::max(room, max == kUnbounded ? kUnbounded : max - l.length);
  });
  return room;
}

bool JsonMatcher::literal_only(const State& s, State* out) const {
  if ((s.lex.kind != kString && s.lex.kind != kKey) || !literal_alive(s, s.lex)) return false;
  *out = s;
  out->lex.free = 0;
  return true;
}

bool JsonMatcher::feed(std::string_view text) {
  State t = state_;
  const size_t m = mark();
  for (size_t i = 0; i < text.size(); i++) {
    if (!advance(t, static_cast<uint8_t>(text[i]))) {
      release(m);
      rejected_at_ = i;
      return false;
    }
  }
  state_ = t;
  return true;
}

}  // namespace straw::serve

// JSON Schema -> byte-level recognizer of the JSON texts that validate against it.
//
// Used for constrained decoding (response_format json_object / json_schema): JsonSchema compiles a
// schema once per request; JsonMatcher decides, byte by byte, whether the text so far can still
// become a valid document, and whether it already is one. Every text the matcher completes parses
// as JSON and validates against the schema (the matcher may refuse some valid spellings, see
// below), and every state it reaches can still be completed, so a sampler that only picks allowed
// bytes never gets stuck.
//
// Supported keywords: type (and type arrays), enum, const, properties, required,
// additionalProperties (false / true / schema), items (schema, bool, or the old array form with
// additionalItems), prefixItems, minItems, maxItems, minLength, maxLength, anyOf, allOf, oneOf
// (only when its branches are provably disjoint), $ref to any "#..." pointer of the same document
// ($defs, definitions, "#"), boolean schemas. Ignored annotations: title, description, default,
// examples, format, $schema, $id, $comment, deprecated, readOnly, writeOnly, contentEncoding,
// contentMediaType. Any other keyword is refused with an error naming it and its JSON pointer.
//
// What the matcher writes, on top of JSON and the schema:
//  - Object properties in any order, each at most once. Keys not declared by the schema (when
//    additionalProperties allows them) are not checked against each other for duplicates.
//  - Keys use only the escapes \" \\ \b \f \n \r \t (so a key's bytes identify it); values may use
//    any JSON escape (surrogate pairs must pair up). Raw bytes must be valid UTF-8.
//  - enum/const scalars are matched in their canonical spelling (nlohmann's dump: "1.5", "\"a\"");
//    enum/const objects and arrays become exact object/array schemas (any key order, whitespace).
//  - Numbers: at most 18 integer digits, 18 fraction digits and 2 exponent digits (doubles parse
//    exactly enough, integers fit int64); integer means no fraction and no exponent.
//  - Whitespace between tokens: at most options.max_whitespace bytes in a row of ' ', '\t', '\n',
//    with at most one '\n' per run (so pretty-printing works and whitespace cannot loop forever).
//  - Containers nest at most options.max_depth deep; recursive schemas are cut there (only choices
//    whose smallest value still fits are offered).
//  - string length (minLength/maxLength) counts code points; a surrogate-pair escape counts once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace straw::serve {

struct JsonSchemaOptions {
  int max_depth = 32;       // objects + arrays open at once
  int max_whitespace = 20;  // insignificant whitespace bytes in a row (at most one '\n')
};

constexpr uint32_t kNoGroup = UINT32_MAX;
constexpr uint32_t kUnbounded = UINT32_MAX;
constexpr uint16_t kNever = UINT16_MAX;  // height of a value kind a shape cannot have

// The compiled schema is a set of "groups". A group is the set of candidate shapes (alternatives
// of anyOf, $ref targets, ...) a value at one position may still match; JSON syntax is
// deterministic, so one parse serves all candidates and a bit mask per frame says which are
// still alive. Masks are over the group's members (at most 32).
struct JsonChild {
  uint32_t group = kNoGroup;     // the group of the child value (kNoGroup: no child allowed)
  std::vector<uint32_t> origin;  // origin[j]: the parent members that contribute child member j
};

struct JsonMember {
  // Smallest nesting height of a value of each kind this shape accepts (a scalar 0, "{}" 1);
  // kNever when the shape has no value of that kind (or none that is finite).
  uint16_t h_scalar = kNever, h_object = kNever, h_array = kNever;
  uint16_t h_min = kNever;                           // the smallest of the three
  uint32_t min_length = 0, max_length = kUnbounded;  // free strings, in code points
  uint64_t required = 0;                             // objects: over the group's keys
  uint32_t min_items = 0, max_items = kUnbounded;    // arrays
};

struct JsonGroup {
  std::vector<JsonMember> members;
  uint32_t strings = 0;       // members accepting any string (within their length bounds)
  uint32_t numbers = 0;       // members accepting any number (or any integer)
  uint32_t integer_only = 0;  // ... of which only integers
  uint32_t objects = 0, arrays = 0;
  // Scalar values allowed by spelling (enum/const, true, false, null), sorted bytewise, with the
  // members each belongs to.
  std::vector<std::string> literals;
  std::vector<uint32_t> literal_members;
  // Objects: every key some member declares or requires, encoded with quotes ("\"name\""), sorted
  // bytewise (at most 64); the child group of each; the child for any other key.
  std::vector<std::string> keys;
  std::vector<JsonChild> key_child;
  JsonChild free_key;
  // Arrays: item_child[i] for item i < item_child.size() - 1; the last entry for all later items.
  std::vector<JsonChild> item_child;
};

class JsonSchema {
 public:
  // Compiles `schema` (a JSON Schema document). Throws straw::Error naming the JSON pointer of an
  // unsupported keyword, a malformed value, or a schema no finite document satisfies.
  static std::shared_ptr<const JsonSchema> compile(const nlohmann::json& schema,
                                                   const JsonSchemaOptions& options = {});
  // response_format {"type":"json_object"}: any JSON object.
  static std::shared_ptr<const JsonSchema> any_object(const JsonSchemaOptions& options = {});

  const JsonSchemaOptions& options() const { return options_; }
  const JsonGroup& group(uint32_t id) const { return groups_[id]; }
  size_t n_groups() const { return groups_.size(); }
  uint32_t root() const { return root_; }

  // For the compiler (json_schema.cpp).
  JsonSchemaOptions options_;
  std::vector<JsonGroup> groups_;
  uint32_t root_ = 0;
};

// The recognizer. A State is a small value (the innermost open container, the token being lexed,
// the whitespace run); the containers below it live in the matcher's arena, which only grows
// while bytes are advanced, so copying a State and rolling the arena back to a mark afterwards is
// how a caller explores alternatives (a vocabulary trie walk) without disturbing the real state.
class JsonMatcher {
 public:
  // An open container (or the root position) and where the parse is inside it.
  struct Frame {
    uint64_t seen = 0;   // Object: group.keys already written
    uint32_t group = 0;  // candidate group of this container's value
    uint32_t alive = 0;  // members still possible
    uint32_t index = 0;  // Object: current key (group.keys index or kFreeKey); Array: items done
    uint8_t kind = 0;    // Kind
    uint8_t phase = 0;   // Phase
  };
  // The scalar or key being lexed (kind None between tokens).
  struct Lex {
    uint64_t keys = 0;        // Key: group.keys still available
    uint32_t group = 0;       // String/Bare: the value's group
    uint32_t alive = 0;       // String/Bare: members the value may still match
    uint32_t free = 0;        // members whose free path (any string/number/key) is alive
    uint32_t length = 0;      // String: code points so far
    uint32_t lo = 0, hi = 0;  // literal path: group.literals (or keys) [lo, hi) share the text so
    uint32_t pos = 0;         // far (its first pos bytes); lo == hi: no literal has this prefix
    uint16_t digits = 0;      // Bare: digits in the current part of the number
    uint8_t kind = 0;         // LexKind
    uint8_t sub = 0;          // String/Key: StrState; Bare: NumState
  };
  struct State {
    Frame top;
    int32_t parent = -1;  // arena index of the container below top (-1: top is the root)
    uint16_t depth = 0;   // containers open
    uint8_t ws = 0;       // whitespace bytes in the current run
    uint8_t newline = 0;  // whether the run has a '\n'
    Lex lex;
  };

  enum Kind : uint8_t { kRoot, kObject, kArray };
  enum LexKind : uint8_t { kNone, kString, kKey, kBare };
  static constexpr uint32_t kFreeKey = UINT32_MAX;

  explicit JsonMatcher(std::shared_ptr<const JsonSchema> schema);

  // The state before any byte.
  State initial() const;
  // Advances s by one byte; false when the byte may not come next (s is then unspecified).
  bool advance(State& s, uint8_t byte);
  // Whether the text that led to s is a complete document (generation may stop).
  bool complete(const State& s) const;
  // When s is inside a string at a character boundary with a free path alive: the most code
  // points of plain text (no quote, backslash, control byte; whole UTF-8 characters) the free
  // path accepts (kUnbounded: any amount); -1 otherwise. A plain piece may follow s exactly when
  // it fits in the room or the literal path alone accepts it (literal_only). Lets a vocabulary
  // walk decide plain tokens in bulk.
  int64_t plain_room(const State& s) const;
  // s with the free path of its string turned off (only enum/const texts left); false when no
  // literal is alive there.
  bool literal_only(const State& s, State* out) const;

  // Arena marks: advance() may append containers; release(mark) drops those appended since mark
  // (only valid when no State still in use refers to them).
  size_t mark() const { return arena_.size(); }
  void release(size_t mark) { arena_.resize(mark); }

  // The matcher's own current state, for simple feeding: advances it by `text`; on false (a byte
  // refused) the state is unchanged and rejected_at() is the offset of the refused byte.
  bool feed(std::string_view text);
  bool done() const { return complete(state_); }
  size_t rejected_at() const { return rejected_at_; }
  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }

 private:
  struct Saved {
    Frame frame;
    int32_t parent;
  };
  bool string_byte(State& s, uint8_t b);
  int bare_byte(State& s, uint8_t b);
  uint32_t bare_matches(const State& s) const;
  bool structural(State& s, uint8_t b);
  bool start_value(State& s, uint32_t group, uint32_t alive, uint8_t b);
  bool start_key(State& s);
  bool close_key(State& s);
  bool close_container(State& s);
  void value_done(State& s, uint32_t matched);
  void push(State& s, const Frame& f);
  bool fits(const JsonMember& m, uint16_t h, const State& s) const;
  uint32_t child_alive(const State& s, const JsonChild& c, uint32_t parents) const;
  uint64_t available_keys(const State& s, bool* free) const;
  uint32_t eligible_items(const State& s) const;
  bool narrow(const State& s, Lex& l, uint8_t b) const;
  bool literal_alive(const State& s, const Lex& l) const;

  std::shared_ptr<const JsonSchema> schema_;
  std::vector<Saved> arena_;
  State state_;
  size_t rejected_at_ = 0;
};

}  // namespace straw::serve

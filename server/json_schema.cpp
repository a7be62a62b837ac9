// JSON Schema compiler: schema document -> shapes -> candidate groups (see json_schema.h).
//
// Three steps:
//  1. compile(): each schema node becomes a Schema: one base Shape (the node's own type and
//     per-type keywords) AND a list of unions (enum, anyOf, oneOf, each allOf member, $ref).
//  2. resolve(): a Schema's value set as a flat union of Shapes, intersecting the base with each
//     union (shape intersection recurses lazily: the properties of an intersected shape are new
//     intersection Schemas, resolved only when reached, so recursive schemas terminate).
//  3. Every Shape reachable from the root gets its minimal nesting heights (a fixpoint, so
//     recursion is fine), and the candidate groups are built: which shapes a value at a position
//     may match, and which child group each key / array index leads to.
#include "json_schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>

#include "straw/error.h"

namespace straw::serve {
namespace {

using json = nlohmann::json;

constexpr uint32_t kAny = 0;   // schema id of `true`
constexpr uint32_t kNone = 1;  // schema id of `false`
// Caps that keep a hostile schema from exhausting memory or time.
constexpr size_t kMaxShapes = 20000, kMaxSchemas = 20000, kMaxGroups = 4096, kMaxUnion = 64;
constexpr size_t kMaxMembers = 32, kMaxKeys = 64;

// Free value types of a shape. Number includes integers: "number" sets both bits, "integer" only
// kInteger, so intersecting types is a bitwise and. Booleans and null are literals.
enum : uint8_t { kString = 1, kNumber = 2, kInteger = 4, kObject = 8, kArray = 16, kAllTypes = 31 };

// One alternative: values of the free types within their constraints, or one of the literals.
struct Shape {
  uint8_t types = 0;
  std::vector<json> literals;  // scalar values allowed regardless of `types`
  uint32_t min_length = 0, max_length = kUnbounded;
  std::vector<uint32_t> prefix;  // schema ids of the first items
  uint32_t items = kAny;         // schema id of the later items
  uint32_t min_items = 0, max_items = kUnbounded;
  std::vector<std::pair<std::string, uint32_t>> properties;  // sorted by name
  std::vector<std::string> required;                         // sorted, unique
  uint32_t additional = kAny;
};

struct Schema {
  std::string pointer;                     // where it comes from, for messages
  uint32_t base = 0;                       // compiled: the base shape
  std::vector<std::vector<uint32_t>> all;  // compiled: unions of schema ids, all must hold
  std::vector<uint32_t> atoms;             // intersections: the compiled schemas intersected
  enum { kPending, kResolving, kResolved } state = kPending;
  std::vector<uint32_t> shapes;  // resolved: sorted shape ids
};

std::string join(const std::string& ptr, std::string_view token) {
  std::string out = ptr + "/";
  for (char c : token) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

[[noreturn]] void fail_at(const std::string& ptr, const std::string& what) {
  throw straw::Error("JSON schema at #" + ptr + ": " + what);
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::floor(d) == d;
}

bool contains(const std::vector<json>& values, const json& v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

// Whether a shape accepts the scalar v.
bool accepts(const Shape& s, const json& v) {
  if (v.is_string() && (s.types & kString)) {
    const size_t n = code_points(v.get_ref<const std::string&>());
    if (n >= s.min_length && n <= s.max_length) return true;
  }
  if (v.is_number() && ((s.types & kNumber) || ((s.types & kInteger) && integral(v)))) return true;
  return contains(s.literals, v);
}

uint32_t get_count(const json& v, const std::string& at) {
  if (!integral(v) || v.get<double>() < 0)
    fail_at(at, "must be a non-negative integer, not " + v.dump());
  const double d = v.get<double>();
  return d >= 4e9 ? kUnbounded - 1 : static_cast<uint32_t>(d);
}

const json& get_array(const json& v, const std::string& at, bool nonempty) {
  if (!v.is_array() || (nonempty && v.empty()))
    fail_at(at, nonempty ? "must be a non-empty array" : "must be an array");
  return v;
}

std::string percent_decode(const std::string& s, const std::string& at) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
      fail_at(at, "malformed percent escape in $ref \"" + s + "\"");
    out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
    i += 2;
  }
  return out;
}

class Compiler {
 public:
  Compiler(const json& doc, const JsonSchemaOptions& options) : doc_(doc), options_(options) {
    Shape any;
    any.types = kAllTypes;
    any.literals = {json(false), json(nullptr), json(true)};
    shapes_.push_back(any);
    schemas_.push_back({.pointer = "", .base = 0, .state = Schema::kResolved, .shapes = {0}});
    schemas_.push_back({.pointer = "", .state = Schema::kResolved});
  }

  std::shared_ptr<JsonSchema> run();

 private:
  uint32_t compile(const json& node, const std::string& ptr);
  uint32_t compile_const(const json& v, const std::string& ptr);
  uint32_t add_schema(Schema s);
  uint32_t add_shape(Shape s);
  const std::vector<uint32_t>& resolve(uint32_t id);
  std::vector<uint32_t> cross(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b,
                              const std::string& ptr);
  uint32_t meet(uint32_t a, uint32_t b);
  int64_t meet_shapes(uint32_t a, uint32_t b);
  uint32_t prop(const Shape& s, const std::string& name) const;
  static uint32_t item(const Shape& s, size_t i) {
    return i < s.prefix.size() ? s.prefix[i] : s.items;
  }
  void reach(uint32_t root);
  bool disjoint(uint32_t a, uint32_t b, int depth);
  bool disjoint_schemas(uint32_t a, uint32_t b, int depth);
  void check_one_ofs();
  void heights();
  uint16_t height(uint32_t schema) const;
  uint32_t group_of(const std::vector<uint32_t>& shapes);
  JsonChild child(std::vector<std::pair<uint32_t, uint32_t>> pairs);
  void fill(uint32_t gid);

  const json& doc_;
  JsonSchemaOptions options_;
  std::vector<Shape> shapes_;
  std::vector<Schema> schemas_;
  std::map<std::string, uint32_t> by_pointer_;
  std::map<std::vector<uint32_t>, uint32_t> intersections_;
  std::map<std::pair<uint32_t, uint32_t>, int64_t> shape_meets_;
  struct OneOf {
    std::string pointer;
    uint32_t base;  // schema of the node's base shape alone
    std::vector<uint32_t> branches;
  };
  std::vector<OneOf> one_ofs_;
  std::vector<uint32_t> reachable_;  // shapes reachable from the root
  std::vector<uint16_t> h_scalar_, h_object_, h_array_, h_min_;
  std::map<std::vector<uint32_t>, uint32_t> group_ids_;
  std::vector<std::vector<uint32_t>> group_shapes_;
  std::vector<JsonGroup> groups_;
};

uint32_t Compiler::add_schema(Schema s) {
  if (schemas_.size() >= kMaxSchemas)
    fail_at(s.pointer, "schema too complex (more than " + std::to_string(kMaxSchemas) +
                           " sub-schemas after expanding $ref and allOf)");
  schemas_.push_back(std::move(s));
  return static_cast<uint32_t>(schemas_.size() - 1);
}

uint32_t Compiler::add_shape(Shape s) {
  if (shapes_.size() >= kMaxShapes)
    throw straw::Error("JSON schema too complex (more than " + std::to_string(kMaxShapes) +
                       " alternatives after expanding anyOf and allOf)");
  shapes_.push_back(std::move(s));
  return static_cast<uint32_t>(shapes_.size() - 1);
}

// Keywords that carry no constraint.
bool annotation(const std::string& key) {
  static const std::set<std::string> names = {"title",
                                              "description",
                                              "default",
                                              "examples",
                                              "format",
                                              "$schema",
                                              "$id",
                                              "$comment",
                                              "deprecated",
                                              "readOnly",
                                              "writeOnly",
                                              "contentEncoding",
                                              "contentMediaType",
                                              "$defs",
                                              "definitions"};
  return names.count(key) > 0;
}

uint32_t Compiler::compile(const json& node, const std::string& ptr) {
  if (node.is_boolean()) return node.get<bool>() ? kAny : kNone;
  if (!node.is_object()) fail_at(ptr, "a schema must be an object or a boolean");
  if (auto it = by_pointer_.find(ptr); it != by_pointer_.end()) return it->second;
  const uint32_t id = add_schema({.pointer = ptr});
  by_pointer_[ptr] = id;

  Shape base = shapes_[0];
  std::vector<std::vector<uint32_t>> all;
  const json* items_array = nullptr;
  const json* additional_items = nullptr;
  size_t one_of = SIZE_MAX;  // index in one_ofs_ of this node's oneOf
  for (const auto& [key, value] : node.items()) {
    const std::string at = join(ptr, key);
    if (key == "type") {
      base.types = 0;
      base.literals.clear();
      const json list = value.is_array() ? value : json::array({value});
      for (const json& t : list) {
        const std::string name = t.is_string() ? t.get<std::string>() : "";
        if (name == "string")
          base.types |= kString;
        else if (name == "number")
          base.types |= kNumber | kInteger;
        else if (name == "integer")
          base.types |= kInteger;
        else if (name == "object")
          base.types |= kObject;
        else if (name == "array")
          base.types |= kArray;
        else if (name == "boolean")
          base.literals.insert(base.literals.end(), {false, true});
        else if (name == "null")
          base.literals.push_back(nullptr);
        else
          fail_at(at, "unknown type " + t.dump());
      }
    } else if (key == "minLength") {
      base.min_length = get_count(value, at);
    } else if (key == "maxLength") {
      base.max_length = get_count(value, at);
    } else if (key == "properties") {
      if (!value.is_object()) fail_at(at, "must be an object");
      for (const auto& [name, sub] : value.items())
        base.properties.emplace_back(name, compile(sub, join(at, name)));
      std::sort(base.properties.begin(), base.properties.end());
    } else if (key == "required") {
      for (const json& name : get_array(value, at, false)) {
        if (!name.is_string()) fail_at(at, "must list property names (strings)");
        base.required.push_back(name.get<std::string>());
      }
      std::sort(base.required.begin(), base.required.end());
      base.required.erase(std::unique(base.required.begin(), base.required.end()),
                          base.required.end());
    } else if (key == "additionalProperties") {
      base.additional = compile(value, at);
    } else if (key == "items") {
      if (value.is_array())
        items_array = &value;
      else
        base.items = compile(value, at);
    } else if (key == "additionalItems") {
      additional_items = &value;
    } else if (key == "prefixItems") {
      size_t i = 0;
      for (const json& sub : get_array(value, at, false))
        base.prefix.push_back(compile(sub, join(at, std::to_string(i++))));
    } else if (key == "minItems") {
      base.min_items = get_count(value, at);
    } else if (key == "maxItems") {
      base.max_items = get_count(value, at);
    } else if (key == "uniqueItems" && value == false) {
      // no constraint
    } else if (key == "enum") {
      // The scalars become one shape with all of them as literals (an enum may be long); each
      // object or array value its own exact shape.
      std::vector<uint32_t> alternatives;
      Shape scalars;
      for (size_t i = 0; i < get_array(value, at, false).size(); i++) {
        const json& v = value[i];
        if (v.is_object() || v.is_array()) {
          alternatives.push_back(compile_const(v, join(at, std::to_string(i))));
        } else {
          if (v.is_number_float() && !std::isfinite(v.get<double>()))
            fail_at(join(at, std::to_string(i)), "not a finite number");
          if (!contains(scalars.literals, v)) scalars.literals.push_back(v);
        }
      }
      if (!scalars.literals.empty())
        alternatives.push_back(add_schema({.pointer = at, .base = add_shape(std::move(scalars))}));
      all.push_back(alternatives);
    } else if (key == "const") {
      all.push_back({compile_const(value, at)});
    } else if (key == "anyOf" || key == "oneOf") {
      std::vector<uint32_t> alternatives;
      size_t i = 0;
      for (const json& sub : get_array(value, at, true))
        alternatives.push_back(compile(sub, join(at, std::to_string(i++))));
      all.push_back(alternatives);
      if (key == "oneOf") one_of = one_ofs_.size(), one_ofs_.push_back({at, 0, alternatives});
    } else if (key == "allOf") {
      size_t i = 0;
      for (const json& sub : get_array(value, at, true))
        all.push_back({compile(sub, join(at, std::to_string(i++)))});
    } else if (key == "$ref") {
      const std::string ref = value.is_string() ? value.get<std::string>() : "";
      if (ref.empty() || ref[0] != '#')
        fail_at(at, "only references inside the schema (\"#/$defs/Name\") are supported, not " +
                        value.dump());
      const std::string target = percent_decode(ref.substr(1), at);
      json::json_pointer pointer;
      try {
        pointer = json::json_pointer(target);
      } catch (const json::exception&) {
        fail_at(at, "malformed JSON pointer in $ref " + value.dump());
      }
      if (!doc_.contains(pointer)) fail_at(at, "$ref " + value.dump() + " points to nothing");
      all.push_back({compile(doc_.at(pointer), target)});
    } else if (!annotation(key)) {
      fail_at(at, "keyword \"" + key +
                      "\" is not supported by constrained decoding (supported: type, enum, const, "
                      "properties, required, additionalProperties, items, prefixItems, minItems, "
                      "maxItems, minLength, maxLength, anyOf, oneOf, allOf, $ref)");
    }
  }
  if (items_array) {  // draft 4-7 tuple form: items [...] + additionalItems
    size_t i = 0;
    for (const json& sub : *items_array)
      base.prefix.push_back(compile(sub, join(ptr + "/items", std::to_string(i++))));
    base.items = additional_items ? compile(*additional_items, ptr + "/additionalItems") : kAny;
  }
  if (base.min_length > base.max_length) base.types &= ~kString;
  if (base.min_items > base.max_items) base.types &= ~kArray;
  const uint32_t base_id = add_shape(std::move(base));
  schemas_[id].base = base_id;
  schemas_[id].all = std::move(all);
  if (one_of != SIZE_MAX) one_ofs_[one_of].base = add_schema({.pointer = ptr, .base = base_id});
  return id;
}

// const v: a scalar is a literal; an object or array becomes the exact structural schema (so the
// document may use any key order and whitespace).
uint32_t Compiler::compile_const(const json& v, const std::string& ptr) {
  Shape s;
  if (v.is_object()) {
    s.types = kObject;
    for (const auto& [name, sub] : v.items()) {
      s.properties.emplace_back(name, compile_const(sub, join(ptr, name)));
      s.required.push_back(name);
    }
    std::sort(s.properties.begin(), s.properties.end());
    std::sort(s.required.begin(), s.required.end());
    s.additional = kNone;
  } else if (v.is_array()) {
    s.types = kArray;
    for (size_t i = 0; i < v.size(); i++)
      s.prefix.push_back(compile_const(v[i], join(ptr, std::to_string(i))));
    s.items = kNone;
    s.min_items = s.max_items = static_cast<uint32_t>(v.size());
  } else {
    if (v.is_number_float() && !std::isfinite(v.get<double>())) fail_at(ptr, "not a finite number");
    s.literals.push_back(v);
  }
  return add_schema({.pointer = ptr, .base = add_shape(std::move(s))});
}

uint32_t Compiler::prop(const Shape& s, const std::string& name) const {
  auto it = std::lower_bound(s.properties.begin(), s.properties.end(), name,
                             [](const auto& p, const std::string& n) { return p.first < n; });
  return it != s.properties.end() && it->first == name ? it->second : s.additional;
}

const std::vector<uint32_t>& Compiler::resolve(uint32_t id) {
  if (schemas_[id].state == Schema::kResolved) return schemas_[id].shapes;
  const std::string ptr = schemas_[id].pointer;
  if (schemas_[id].state == Schema::kResolving)
    fail_at(ptr, "$ref cycle: the schema contains itself without an object or array in between");
  schemas_[id].state = Schema::kResolving;
  std::vector<uint32_t> cur;
  if (!schemas_[id].atoms.empty()) {
    const std::vector<uint32_t> atoms = schemas_[id].atoms;
    cur = resolve(atoms[0]);
    for (size_t i = 1; i < atoms.size(); i++) cur = cross(cur, resolve(atoms[i]), ptr);
  } else {
    cur = {schemas_[id].base};
    const auto all = schemas_[id].all;
    for (const auto& alternatives : all) {
      std::vector<uint32_t> u;
      for (uint32_t a : alternatives) {
        const auto& r = resolve(a);
        u.insert(u.end(), r.begin(), r.end());
      }
      std::sort(u.begin(), u.end());
      u.erase(std::unique(u.begin(), u.end()), u.end());
      cur = cross(cur, u, ptr);
    }
  }
  schemas_[id].shapes = std::move(cur);
  schemas_[id].state = Schema::kResolved;
  return schemas_[id].shapes;
}

std::vector<uint32_t> Compiler::cross(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b, const std::string& ptr) {
  std::vector<uint32_t> out;
  for (uint32_t x : a)
    for (uint32_t y : b)
      if (int64_t m = meet_shapes(x, y); m >= 0) out.push_back(static_cast<uint32_t>(m));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > kMaxUnion)
    fail_at(ptr, "more than " + std::to_string(kMaxUnion) +
                     " alternatives after combining anyOf/oneOf/enum with allOf");
  return out;
}

// Intersection of two schemas, resolved lazily. Named by the set of compiled schemas it
// intersects, so recursion through properties reuses the same ids and terminates.
uint32_t Compiler::meet(uint32_t a, uint32_t b) {
  if (a == kAny || a == b) return b;
  if (b == kAny) return a;
  if (a == kNone || b == kNone) return kNone;
  auto atoms_of = [&](uint32_t x) {
    return schemas_[x].atoms.empty() ? std::vector<uint32_t>{x} : schemas_[x].atoms;
  };
  std::vector<uint32_t> atoms = atoms_of(a), more = atoms_of(b);
  atoms.insert(atoms.end(), more.begin(), more.end());
  std::sort(atoms.begin(), atoms.end());
  atoms.erase(std::unique(atoms.begin(), atoms.end()), atoms.end());
  if (atoms == atoms_of(a)) return a;
  if (atoms == atoms_of(b)) return b;
  if (auto it = intersections_.find(atoms); it != intersections_.end()) return it->second;
  const uint32_t id = add_schema({.pointer = schemas_[a].pointer, .atoms = atoms});
  intersections_[atoms] = id;
  return id;
}

// Intersection of two shapes; -1 when empty.
int64_t Compiler::meet_shapes(uint32_t a, uint32_t b) {
  if (a == 0 || a == b) return b;
  if (b == 0) return a;
  const auto key = std::minmax(a, b);
  if (auto it = shape_meets_.find(key); it != shape_meets_.end()) return it->second;
  const Shape x = shapes_[a], y = shapes_[b];
  Shape r;
  r.types = x.types & y.types;
  for (const json& v : x.literals)
    if (accepts(y, v)) r.literals.push_back(v);
  for (const json& v : y.literals)
    if (accepts(x, v) && !contains(r.literals, v)) r.literals.push_back(v);
  r.min_length = std::max(x.min_length, y.min_length);
  r.max_length = std::min(x.max_length, y.max_length);
  if (r.types & kArray) {
    for (size_t i = 0; i < std::max(x.prefix.size(), y.prefix.size()); i++)
      r.prefix.push_back(meet(item(x, i), item(y, i)));
    r.items = meet(x.items, y.items);
    r.min_items = std::max(x.min_items, y.min_items);
    r.max_items = std::min(x.max_items, y.max_items);
  }
  if (r.types & kObject) {
    std::set<std::string> names;
    for (const auto& p : x.properties) names.insert(p.first);
    for (const auto& p : y.properties) names.insert(p.first);
    for (const std::string& n : names) r.properties.emplace_back(n, meet(prop(x, n), prop(y, n)));
    std::set_union(x.required.begin(), x.required.end(), y.required.begin(), y.required.end(),
                   std::back_inserter(r.required));
    r.additional = meet(x.additional, y.additional);
  }
  if (r.min_length > r.max_length) r.types &= ~kString;
  if (r.min_items > r.max_items) r.types &= ~kArray;
  const int64_t id =
      r.types == 0 && r.literals.empty() ? -1 : static_cast<int64_t>(add_shape(std::move(r)));
  shape_meets_[key] = id;
  return id;
}

// Resolves every schema reachable from the root through properties and items.
void Compiler::reach(uint32_t root) {
  std::vector<uint32_t> queue = {root};
  std::vector<bool> queued(schemas_.size(), false), seen_shape;
  queued[root] = true;
  while (!queue.empty()) {
    const uint32_t id = queue.back();
    queue.pop_back();
    const std::vector<uint32_t> shapes = resolve(id);
    for (uint32_t s : shapes) {
      if (seen_shape.size() <= s) seen_shape.resize(shapes_.size(), false);
      if (seen_shape[s]) continue;
      seen_shape[s] = true;
      reachable_.push_back(s);
      std::vector<uint32_t> next = shapes_[s].prefix;
      next.push_back(shapes_[s].items);
      next.push_back(shapes_[s].additional);
      for (const auto& p : shapes_[s].properties) next.push_back(p.second);
      for (uint32_t n : next) {
        if (queued.size() <= n) queued.resize(schemas_.size(), false);
        if (!queued[n]) queued[n] = true, queue.push_back(n);
      }
    }
  }
}

// Kinds of JSON values, for oneOf disjointness.
enum : uint8_t { kKString = 1, kKNumber = 2, kKBool = 4, kKNull = 8, kKObject = 16, kKArray = 32 };

uint8_t kinds(const Shape& s) {
  uint8_t k = 0;
  if (s.types & kString) k |= kKString;
  if (s.types & (kNumber | kInteger)) k |= kKNumber;
  if (s.types & kObject) k |= kKObject;
  if (s.types & kArray) k |= kKArray;
  for (const json& v : s.literals)
    k |= v.is_string() ? kKString : v.is_number() ? kKNumber : v.is_boolean() ? kKBool : kKNull;
  return k;
}

// Whether no value matches both shapes (false when unsure: a conservative proof).
bool Compiler::disjoint(uint32_t a, uint32_t b, int depth) {
  const Shape x = shapes_[a], y = shapes_[b];
  const uint8_t common = kinds(x) & kinds(y);
  for (const json& v : x.literals)
    if (accepts(y, v)) return false;
  for (const json& v : y.literals)
    if (accepts(x, v)) return false;
  if ((common & kKString) && (x.types & kString) && (y.types & kString) &&
      std::max(x.min_length, y.min_length) <= std::min(x.max_length, y.max_length))
    return false;
  if ((common & kKNumber) && (x.types & (kNumber | kInteger)) && (y.types & (kNumber | kInteger)))
    return false;
  if ((common & kKArray) &&
      std::max(x.min_items, y.min_items) <= std::min(x.max_items, y.max_items))
    return false;
  if (common & kKObject) {
    if (depth == 0) return false;
    std::set<std::string> names(x.required.begin(), x.required.end());
    names.insert(y.required.begin(), y.required.end());
    for (const std::string& n : names) {
      const bool in_x = std::binary_search(x.required.begin(), x.required.end(), n);
      const bool in_y = std::binary_search(y.required.begin(), y.required.end(), n);
      const uint32_t px = prop(x, n), py = prop(y, n);
      if ((in_x && in_y && disjoint_schemas(px, py, depth - 1)) || (in_x && py == kNone) ||
          (in_y && px == kNone))
        return true;
    }
    return false;
  }
  return true;
}

bool Compiler::disjoint_schemas(uint32_t a, uint32_t b, int depth) {
  const std::vector<uint32_t> x = resolve(a), y = resolve(b);
  for (uint32_t s : x)
    for (uint32_t t : y)
      if (!disjoint(s, t, depth)) return false;
  return true;
}

// oneOf means exactly one branch matches. The matcher enforces it as anyOf, which is exact only
// when no value can match two branches: prove that (by type, literal values, length ranges, or a
// required property whose values differ), or refuse.
void Compiler::check_one_ofs() {
  for (const OneOf& o : one_ofs_) {
    for (size_t i = 0; i < o.branches.size(); i++)
      for (size_t j = i + 1; j < o.branches.size(); j++)
        if (!disjoint_schemas(meet(o.base, o.branches[i]), meet(o.base, o.branches[j]), 4))
          fail_at(o.pointer, "oneOf branches " + std::to_string(i) + " and " + std::to_string(j) +
                                 " may both match one value; constrained decoding supports oneOf "
                                 "only with provably disjoint branches (different types, const or "
                                 "enum values, or a required property that tells them apart): use "
                                 "anyOf if a value may match several");
  }
}

uint16_t Compiler::height(uint32_t schema) const {
  uint16_t h = kNever;
  for (uint32_t s : schemas_[schema].shapes) h = std::min(h, h_min_[s]);
  return h;
}

// Smallest nesting height of a value of each shape: a least fixpoint, starting from "never".
void Compiler::heights() {
  h_scalar_.assign(shapes_.size(), kNever);
  h_object_ = h_array_ = h_min_ = h_scalar_;
  auto plus1 = [](uint32_t h) { return h >= kNever - 1u ? kNever : static_cast<uint16_t>(h + 1); };
  for (bool changed = true; changed;) {
    changed = false;
    for (uint32_t s : reachable_) {
      const Shape& x = shapes_[s];
      uint16_t hs = !x.literals.empty() || (x.types & (kString | kNumber | kInteger)) ? 0 : kNever;
      uint32_t ho = 0, ha = 0;
      if (!(x.types & kObject)) ho = kNever;
      for (const std::string& r : x.required) ho = std::max<uint32_t>(ho, height(prop(x, r)));
      if (!(x.types & kArray)) ha = kNever;
      const size_t n = std::min<size_t>(x.min_items, x.prefix.size() + 1);
      for (size_t i = 0; i < n; i++) ha = std::max<uint32_t>(ha, height(item(x, i)));
      const uint16_t o = plus1(ho), a = plus1(ha), m = std::min({hs, o, a});
      if (o != h_object_[s] || a != h_array_[s] || m != h_min_[s] || hs != h_scalar_[s]) {
        h_scalar_[s] = hs, h_object_[s] = o, h_array_[s] = a, h_min_[s] = m;
        changed = true;
      }
    }
  }
}

// The group of a sorted list of shapes that have values (kNoGroup for none).
uint32_t Compiler::group_of(const std::vector<uint32_t>& shapes) {
  if (shapes.empty()) return kNoGroup;
  if (auto it = group_ids_.find(shapes); it != group_ids_.end()) return it->second;
  if (shapes.size() > kMaxMembers)
    throw straw::Error("JSON schema: more than " + std::to_string(kMaxMembers) +
                       " alternatives may match a value at one position (anyOf/oneOf/enum "
                       "objects); constrained decoding supports at most that many");
  if (group_shapes_.size() >= kMaxGroups)
    throw straw::Error("JSON schema too complex (more than " + std::to_string(kMaxGroups) +
                       " distinct positions)");
  const uint32_t id = static_cast<uint32_t>(group_shapes_.size());
  group_ids_[shapes] = id;
  group_shapes_.push_back(shapes);
  return id;
}

// pairs: (child shape, parent member bit) -> the child group and each child member's origins.
JsonChild Compiler::child(std::vector<std::pair<uint32_t, uint32_t>> pairs) {
  std::sort(pairs.begin(), pairs.end());
  JsonChild c;
  std::vector<uint32_t> shapes;
  for (const auto& [shape, bit] : pairs) {
    if (h_min_[shape] == kNever) continue;
    if (shapes.empty() || shapes.back() != shape) shapes.push_back(shape), c.origin.push_back(0);
    c.origin.back() |= bit;
  }
  c.group = group_of(shapes);
  return c;
}

void Compiler::fill(uint32_t gid) {
  const std::vector<uint32_t> shapes = group_shapes_[gid];
  JsonGroup g;
  std::map<std::string, uint32_t> literals;
  std::map<std::string, std::string> keys;  // encoded -> name
  size_t max_prefix = 0;
  for (size_t j = 0; j < shapes.size(); j++) {
    const Shape& x = shapes_[shapes[j]];
    const uint32_t bit = 1u << j;
    JsonMember m;
    m.h_scalar = h_scalar_[shapes[j]];
    m.h_object = h_object_[shapes[j]];
    m.h_array = h_array_[shapes[j]];
    m.h_min = h_min_[shapes[j]];
    m.min_length = x.min_length;
    m.max_length = x.max_length;
    m.min_items = x.min_items;
    m.max_items = x.max_items;
    g.members.push_back(m);
    if (x.types & kString) g.strings |= bit;
    if (x.types & (kNumber | kInteger)) g.numbers |= bit;
    if ((x.types & kInteger) && !(x.types & kNumber)) g.integer_only |= bit;
    if (m.h_object != kNever) {
      g.objects |= bit;
      for (const auto& p : x.properties) keys[json(p.first).dump()] = p.first;
      for (const std::string& r : x.required) keys[json(r).dump()] = r;
    }
    if (m.h_array != kNever) g.arrays |= bit, max_prefix = std::max(max_prefix, x.prefix.size());
    for (const json& v : x.literals) {
      try {
        literals[v.dump()] |= bit;
      } catch (const json::exception& e) {
        throw straw::Error(std::string("JSON schema: enum/const value is not valid: ") + e.what());
      }
    }
  }
  for (const auto& [text, members] : literals) {
    g.literals.push_back(text);
    g.literal_members.push_back(members);
  }
  if (keys.size() > kMaxKeys)
    throw straw::Error("JSON schema: an object with more than " + std::to_string(kMaxKeys) +
                       " properties (constrained decoding supports at most that many)");
  for (const auto& [encoded, name] : keys) {
    std::vector<std::pair<uint32_t, uint32_t>> pairs;
    for (size_t j = 0; j < shapes.size(); j++) {
      const Shape& x = shapes_[shapes[j]];
      if (!(g.objects >> j & 1)) continue;
      if (std::binary_search(x.required.begin(), x.required.end(), name))
        g.members[j].required |= uint64_t{1} << g.keys.size();
      for (uint32_t s : schemas_[prop(x, name)].shapes) pairs.emplace_back(s, 1u << j);
    }
    g.keys.push_back(encoded);
    g.key_child.push_back(child(pairs));
  }
  std::vector<std::pair<uint32_t, uint32_t>> free_pairs;
  for (size_t j = 0; j < shapes.size(); j++)
    if (g.objects >> j & 1)
      for (uint32_t s : schemas_[shapes_[shapes[j]].additional].shapes)
        free_pairs.emplace_back(s, 1u << j);
  g.free_key = child(free_pairs);
  if (g.arrays) {
    for (size_t i = 0; i <= max_prefix; i++) {
      std::vector<std::pair<uint32_t, uint32_t>> pairs;
      for (size_t j = 0; j < shapes.size(); j++)
        if (g.arrays >> j & 1)
          for (uint32_t s : schemas_[item(shapes_[shapes[j]], i)].shapes)
            pairs.emplace_back(s, 1u << j);
      g.item_child.push_back(child(pairs));
    }
  }
  groups_[gid] = std::move(g);
}

std::shared_ptr<JsonSchema> Compiler::run() {
  if (options_.max_depth < 1 || options_.max_depth > 1000)
    throw straw::Error("JSON schema options: max_depth must be in [1, 1000]");
  if (options_.max_whitespace < 0 || options_.max_whitespace > 255)
    throw straw::Error("JSON schema options: max_whitespace must be in [0, 255]");
  const uint32_t root = compile(doc_, "");
  reach(root);
  check_one_ofs();
  heights();
  std::vector<uint32_t> roots;
  for (uint32_t s : schemas_[root].shapes)
    if (h_min_[s] <= options_.max_depth) roots.push_back(s);
  const uint32_t root_group = group_of(roots);
  if (root_group == kNoGroup)
    throw straw::Error("JSON schema admits no JSON value (nesting at most " +
                       std::to_string(options_.max_depth) + " deep)");
  for (uint32_t gid = 0; gid < group_shapes_.size(); gid++) {
    groups_.resize(group_shapes_.size());
    fill(gid);
  }
  groups_.resize(group_shapes_.size());
  auto out = std::make_shared<JsonSchema>();
  out->options_ = options_;
  out->groups_ = std::move(groups_);
  out->root_ = root_group;
  return out;
}

}  // namespace

std::shared_ptr<const JsonSchema> JsonSchema::compile(const nlohmann::json& schema,
                                                      const JsonSchemaOptions& options) {
  return Compiler(schema, options).run();
}

std::shared_ptr<const JsonSchema> JsonSchema::any_object(const JsonSchemaOptions& options) {
  return compile(nlohmann::json{{"type", "object"}}, options);
}

}  // namespace straw::serve

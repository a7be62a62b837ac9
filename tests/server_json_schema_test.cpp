// The JSON schema compiler and byte-level matcher (server/json_schema.h): accept/reject tables per
// keyword (a valid document is accepted byte by byte and complete; an invalid one is refused at
// the first byte that cannot lead to a valid document), and the errors for schemas that cannot
// be enforced.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "json_schema.h"
#include "straw/error.h"

namespace straw::serve {
namespace {

using nlohmann::json;

constexpr long kComplete = -1;  // every byte accepted and the document complete
constexpr long kPartial = -2;   // every byte accepted, the document not complete yet

// Feeds text byte by byte: the offset of the first refused byte, or kComplete / kPartial.
long run(const std::shared_ptr<const JsonSchema>& schema, const std::string& text) {
  JsonMatcher m(schema);
  for (size_t i = 0; i < text.size(); i++)
    if (!m.feed(text.substr(i, 1))) return static_cast<long>(i);
  // Whole-text feeding agrees with byte-by-byte feeding.
  JsonMatcher whole(schema);
  const bool ok = whole.feed(text);
  EXPECT_TRUE(ok);
  EXPECT_EQ(whole.done(), m.done());
  return m.done() ? kComplete : kPartial;
}

struct Case {
  const char* text;
  long expect;
};

void check(const std::string& schema_text, const std::vector<Case>& cases,
           JsonSchemaOptions options = {}) {
  const auto schema = JsonSchema::compile(json::parse(schema_text), options);
  for (const Case& c : cases) {
    EXPECT_EQ(run(schema, c.text), c.expect) << "schema " << schema_text << "\ntext " << c.text;
    if (c.expect == kComplete) {
      EXPECT_TRUE(json::accept(c.text)) << c.text;
    }
  }
}

// The message of the error compiling `schema`, or "" when it compiles.
std::string compile_error(const std::string& schema) {
  try {
    JsonSchema::compile(json::parse(schema));
  } catch (const straw::Error& e) {
    return e.what();
  }
  return "";
}

TEST(ServerJsonSchema, AnyObject) {
  const auto schema = JsonSchema::any_object();
  const std::vector<Case> cases = {
      {"{}", kComplete},
      {R"({"a":1})", kComplete},
      {R"({"a":[1,{"b":null}],"c":"x","d":-1.5e3,"e":true})", kComplete},
      {"{\n  \"a\": 1,\n  \"b\": [ ]\n}", kComplete},
      {"  {}  ", kComplete},
      {R"({"a":1,"a":2})", kComplete},  // duplicate undeclared keys are not tracked
      {R"({"a\nb\"c":"\u00e9\/"})", kComplete},
      {"[]", 0},
      {R"("x")", 0},
      {R"({"a":1,})", 7},
      {R"({"a":01})", 6},
      {R"({"a":1}x)", 7},
      {R"({"a" 1})", 5},
      {R"({a:1})", 1},
      {R"({"\u0061":1})", 3},  // keys: no \u escapes (a key's bytes identify it)
      {R"({"a\/":1})", 4},
      {R"({"a":1)", kPartial},
      {"{\r}", 1},
  };
  for (const Case& c : cases) EXPECT_EQ(run(schema, c.text), c.expect) << c.text;
}

TEST(ServerJsonSchema, Whitespace) {
  const std::string spaces20(20, ' ');
  check(R"({"type":"object"})", {{("{" + spaces20 + "}").c_str(), kComplete},
                                 {("{" + spaces20 + " }").c_str(), 21},
                                 {"{\n\n}", 2},
                                 {"{\n \n}", 3},
                                 {"{\t\n  }", kComplete},
                                 {("{}" + spaces20).c_str(), kComplete},
                                 {("{}" + spaces20 + " ").c_str(), 22}});
  JsonSchemaOptions tight;
  tight.max_whitespace = 1;
  check(R"({"type":"array"})", {{"[ 1, 2 ]", kComplete}, {"[  1]", 2}}, tight);
}

TEST(ServerJsonSchema, Strings) {
  check(R"({"type":"string"})", {
                                    {R"("abc")", kComplete},
                                    {R"("a\"b\\c\/d\b\f\n\r\t")", kComplete},
                                    {R"("\u00e9\u20AC")", kComplete},
                                    {R"("\ud83d\ude00")", kComplete},
                                    {"\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"", kComplete},
                                    {R"("\ud83d")", 7},  // high surrogate without its low half
                                    {R"("\ud83dx")", 7},
                                    {R"("\ud83d\u0041")", 9},
                                    {R"("\ude00")", 4},  // lone low surrogate
                                    {R"("\q")", 2},
                                    {R"("\u12g4")", 5},
                                    {"\"a\nb\"", 2},      // raw control byte
                                    {"\"\xC0\x80\"", 1},  // overlong
                                    {"\"\xE0\x80\x80\"", 2},
                                    {"\"\xED\xA0\x80\"", 2},  // UTF-8 surrogate
                                    {"\"\xF4\x90\x80\x80\"", 2},
                                    {"\"\xF5\"", 1},
                                    {"\"\xC3\"", 2},  // truncated character
                                    {"\"\x7F\"", kComplete},
                                    {"12", 0},
                                    {R"("abc)", kPartial},
                                });
  check(R"({"type":"string","minLength":2,"maxLength":3})",
        {
            {R"("ab")", kComplete},
            {R"("abc")", kComplete},
            {R"("a")", 2},
            {R"("abcd")", 4},
            {"\"\xC3\xA9\xC3\xA9\"", kComplete},  // code points, not bytes
            {R"("\ud83d\ude00\ud83d\ude00")", kComplete},
            {R"("\n\t\"")", kComplete},
            {R"("ab\n")", kComplete},
            {R"("abc\n")", 4},
            {"\"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\"", 7},
        });
  check(R"({"type":"string","maxLength":0})", {{R"("")", kComplete}, {R"("a")", 1}});
}

TEST(ServerJsonSchema, Numbers) {
  check(R"({"type":"number"})", {
                                    {"0", kComplete},
                                    {"-0", kComplete},
                                    {"12.5e-3", kComplete},
                                    {"1E+2", kComplete},
                                    {"-7.25", kComplete},
                                    {"123456789012345678", kComplete},
                                    {"1234567890123456789", 18},  // at most 18 integer digits
                                    {"1e99", kComplete},
                                    {"1e999", 4},
                                    {"01", 1},
                                    {"-", kPartial},
                                    {"1.", kPartial},
                                    {"1e", kPartial},
                                    {"1e+", kPartial},
                                    {".5", 0},
                                    {"+1", 0},
                                    {"1.e3", 2},
                                    {"--1", 1},
                                    {"1 ", kComplete},
                                    {"1 2", 2},
                                    {"\"1\"", 0},
                                });
  check(R"({"type":"integer"})",
        {{"12", kComplete}, {"-3", kComplete}, {"0", kComplete}, {"1.5", 1}, {"1e3", 1}});
  check(R"({"type":"array","items":{"type":"integer"}})",
        {{"[1,-2,30]", kComplete}, {"[1.0]", 2}, {"[1 ,2 ]", kComplete}});
}

TEST(ServerJsonSchema, LiteralsAndTypeLists) {
  check(R"({"type":"boolean"})", {{"true", kComplete},
                                  {"false", kComplete},
                                  {"tru", kPartial},
                                  {"trUe", 2},
                                  {"null", 0},
                                  {"truex", 4}});
  check(R"({"type":"null"})", {{"null", kComplete}, {"nul", kPartial}, {"0", 0}});
  check(R"({"type":["string","null"]})",
        {{R"("a")", kComplete}, {"null", kComplete}, {"1", 0}, {"true", 0}});
  check(R"({"type":["integer","boolean"]})", {{"7", kComplete}, {"false", kComplete}, {"7.5", 1}});
}

TEST(ServerJsonSchema, EnumAndConst) {
  check(R"({"enum":["red","green",3,null,1.5]})", {
                                                      {R"("red")", kComplete},
                                                      {R"("green")", kComplete},
                                                      {R"("gre)", kPartial},
                                                      {R"("blue")", 1},
                                                      {R"("redd")", 4},
                                                      {"3", kComplete},
                                                      {"30", 1},
                                                      {"4", 0},
                                                      {"null", kComplete},
                                                      {"1.5", kComplete},
                                                      {"1", kPartial},
                                                      {"1.50", 3},
                                                      {"true", 0},
                                                  });
  check(R"({"const":{"a":[1,2],"b":"x"}})", {
                                                {R"({"a":[1,2],"b":"x"})", kComplete},
                                                {R"({ "b" : "x" , "a" : [ 1 , 2 ] })", kComplete},
                                                {R"({"a":[1]})", 7},
                                                {R"({"a":[1,2,3]})", 9},
                                                {R"({"a":[1,2]})", 10},
                                                {R"({"a":[1,2],"c":1})", 12},
                                            });
  // enum filtered by its sibling type: only the strings remain.
  check(R"({"type":"string","enum":["a",1,"bb"],"maxLength":1})",
        {{R"("a")", kComplete}, {"1", 0}, {R"("bb")", 1}});
  // A long enum (one shape with every value as a literal).
  std::string many = R"({"enum":[)";
  for (int i = 0; i < 500; i++)
    many += (i ? "," : "") + std::string("\"v") + std::to_string(i) + "\"";
  check(many + "]}", {{R"("v499")", kComplete}, {R"("v4")", kComplete}, {R"("v500")", 4}});
  check(R"({"const":"a\"b"})", {{R"("a\"b")", kComplete}, {R"("a\u0022b")", 3}});
}

TEST(ServerJsonSchema, Objects) {
  const char* person = R"({"type":"object",
      "properties":{"name":{"type":"string"},"age":{"type":"integer"}},
      "required":["name"],"additionalProperties":false})";
  check(person, {
                    {R"({"name":"x"})", kComplete},
                    {R"({"age":3,"name":"x"})", kComplete},  // any order
                    {R"({"name":"x","age":3})", kComplete},
                    {R"({"age":3})", 8},
                    {R"({"name":"x","name":"y"})", 13},  // no duplicates
                    {R"({"nam":1})", 5},
                    {R"({"x":1})", 2},
                    {R"({"name":1})", 8},
                    {R"({"name":"x",})", 12},
                    {R"({"name":"x","age":3,)", 19},  // no key left
                    {"[]", 0},
                });
  check(R"({"type":"object","properties":{"a":{"type":"integer"}},
            "additionalProperties":{"type":"string"}})",
        {{R"({"a":1,"b":"x"})", kComplete},
         {R"({"b":1})", 5},
         {R"({"a":"x"})", 5},
         {R"({"ab":"x","a":2})", kComplete},
         {R"({"a":1,"a":2})", 9}});
  check(R"({"type":"object","properties":{"a":{"type":"integer"}}})",
        {{R"({"z":[true,{}]})", kComplete}, {R"({"a":[]})", 5}});
  check(R"({"type":"object","required":["id"]})",
        {{R"({"id":{"x":[]}})", kComplete}, {"{}", 1}, {R"({"x":1})", 6}});
  check(R"({"properties":{"a\"b":{"type":"integer"}},"required":["a\"b"],
            "additionalProperties":false})",
        {{R"({"a\"b":1})", kComplete}});
  // properties without "type" constrain objects only: other types stay allowed.
  check(R"({"properties":{"a":{"type":"integer"}}})", {{R"("s")", kComplete}, {R"({"a":"s"})", 5}});
}

TEST(ServerJsonSchema, Arrays) {
  check(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})",
        {{"[1]", kComplete},
         {"[1,2,3]", kComplete},
         {"[]", 1},
         {"[1,2,3,4]", 6},
         {R"(["a"])", 1},
         {"[ ]", 2}});
  check(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})",
        {{R"(["a",1])", kComplete},
         {R"(["a"])", kComplete},
         {"[]", kComplete},
         {R"(["a",1,2])", 6},
         {"[1]", 1}});
  check(R"({"type":"array","prefixItems":[{"type":"string"}],"items":{"type":"boolean"},
            "minItems":2})",
        {{R"(["a",true,false])", kComplete}, {R"(["a"])", 4}, {R"(["a",1])", 5}});
  check(R"({"items":[{"type":"string"}],"additionalItems":{"type":"boolean"}})",
        {{R"(["a",true,false])", kComplete}, {R"([1])", 1}, {R"(["a","b"])", 5}});
  check(R"({"type":"array","maxItems":0})", {{"[]", kComplete}, {"[1]", 1}});
  check(R"({"type":"array","uniqueItems":false})", {{"[1,1]", kComplete}});
}

TEST(ServerJsonSchema, AnyOf) {
  check(R"({"anyOf":[{"type":"string","maxLength":2},{"type":"integer"},
            {"type":"object","properties":{"k":{"const":1}},"required":["k"],
             "additionalProperties":false}]})",
        {{R"("ab")", kComplete},
         {R"("abc")", 3},
         {"5", kComplete},
         {"5.5", 1},
         {R"({"k":1})", kComplete},
         {R"({"k":2})", 5},
         {"null", 0}});
  // Two object alternatives followed in parallel until a key or value tells them apart.
  const char* tagged = R"({"anyOf":[
      {"type":"object","properties":{"t":{"const":"a"},"x":{"type":"integer"}},
       "required":["t","x"],"additionalProperties":false},
      {"type":"object","properties":{"t":{"const":"b"},"y":{"type":"string"}},
       "required":["t","y"],"additionalProperties":false}]})";
  check(tagged, {{R"({"t":"a","x":1})", kComplete},
                 {R"({"t":"b","y":"s"})", kComplete},
                 {R"({"x":1,"t":"a"})", kComplete},
                 {R"({"t":"a","y":"s"})", 10},
                 {R"({"x":1,"t":"b"})", 12},
                 {R"({"t":"a"})", 8}});
  // Overlapping string alternatives: a length range and literals together.
  check(R"({"anyOf":[{"type":"string","maxLength":1},{"enum":["long","longer"]}]})",
        {{R"("a")", kComplete},
         {R"("long")", kComplete},
         {R"("longer")", kComplete},
         {R"("lo")", 3},
         {R"("longe")", 6}});
  // Nullable, the pydantic way.
  check(R"({"anyOf":[{"type":"string"},{"type":"null"}]})",
        {{"null", kComplete}, {R"("x")", kComplete}});
}

TEST(ServerJsonSchema, AllOfAndOneOf) {
  check(R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
                     {"properties":{"b":{"type":"string"}},"required":["b"]}]})",
        {{R"({"a":1,"b":"x"})", kComplete}, {R"({"a":1})", 6}, {R"({"b":2})", 5}});
  check(R"({"allOf":[{"properties":{"a":{}},"additionalProperties":false},
                     {"properties":{"b":{}}}]})",
        {{R"({"a":1})", kComplete}, {R"({"b":1})", 2}});
  check(R"({"allOf":[{"type":"string","minLength":2},{"maxLength":2}]})",
        {{R"("ab")", kComplete}, {R"("a")", 2}, {R"("abc")", 3}});
  check(R"({"type":"object","properties":{"a":{"type":"integer"}},
            "anyOf":[{"required":["a"]},{"required":["b"]}]})",
        {{R"({"a":1})", kComplete}, {R"({"b":true})", kComplete}, {"{}", 1}});
  check(R"({"oneOf":[{"type":"string"},{"type":"integer"}]})",
        {{R"("x")", kComplete}, {"3", kComplete}, {"3.5", 1}});
  check(R"({"oneOf":[
      {"type":"object","properties":{"kind":{"const":"a"},"n":{"type":"integer"}},
       "required":["kind"]},
      {"type":"object","properties":{"kind":{"const":"b"}},"required":["kind"]}]})",
        {{R"({"kind":"a","n":1})", kComplete},
         {R"({"kind":"b","n":"x"})", kComplete},
         {R"({"n":"x","kind":"a"})", 17}});
  check(R"({"type":"object","properties":{"kind":{"type":"string"}},"required":["kind"],
            "oneOf":[{"properties":{"kind":{"const":"a"}}},{"properties":{"kind":{"const":"b"}}}]})",
        {{R"({"kind":"b"})", kComplete}, {R"({"kind":"c"})", 9}});
}

TEST(ServerJsonSchema, RefsAndRecursion) {
  check(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
              "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},
              "required":["v","next"],"additionalProperties":false}},
            "$ref":"#/$defs/node"})",
        {{R"({"v":1,"next":{"v":2,"next":null}})", kComplete}, {R"({"v":1,"next":{"v":2}})", 20}});
  check(R"({"definitions":{"s":{"type":"string"}},"type":"array",
            "items":{"$ref":"#/definitions/s"}})",
        {{R"(["a","b"])", kComplete}, {"[1]", 1}});
  check(R"({"type":"object","properties":{"c":{"$ref":"#"}},"additionalProperties":false})",
        {{R"({"c":{"c":{}}})", kComplete}, {R"({"c":{"d":1}})", 7}});
  check(R"({"$defs":{"a b":{"type":"integer"}},"$ref":"#/$defs/a%20b"})", {{"5", kComplete}});
  // The depth cap: only choices whose smallest value still fits are offered.
  JsonSchemaOptions shallow;
  shallow.max_depth = 3;
  check(R"({"type":"array","items":{"$ref":"#"}})",
        {{"[[[]]]", kComplete}, {"[[[[", 3}, {"[[],[[]]]", kComplete}}, shallow);
  // A list whose tail must be a list until the cap, then null.
  check(R"({"$defs":{"l":{"type":"object","properties":{"t":{"anyOf":[{"$ref":"#/$defs/l"},
              {"type":"null"}]}},"required":["t"],"additionalProperties":false}},
            "$ref":"#/$defs/l"})",
        {{R"({"t":{"t":{"t":null}}})", kComplete}, {R"({"t":{"t":{"t":{)", 15}}, shallow);
}

TEST(ServerJsonSchema, BooleanSchemas) {
  check("true", {{"1", kComplete}, {R"({"a":[null]})", kComplete}, {R"("x")", kComplete}});
  check(R"({"type":"object","properties":{"a":true,"b":false}})",
        {{R"({"a":[1]})", kComplete}, {R"({"b":1})", 3}});
}

TEST(ServerJsonSchema, UnsupportedKeywordsAreRefused) {
  struct Bad {
    const char* schema;
    const char* needle;  // must appear in the message
  };
  const std::vector<Bad> bad = {
      {R"({"type":"string","pattern":"^a"})", "\"pattern\""},
      {R"({"type":"string","pattern":"^a"})", "#/pattern"},
      {R"({"properties":{"x":{"minimum":0}}})", "#/properties/x/minimum"},
      {R"({"properties":{"a/b":{"maximum":0}}})", "#/properties/a~1b/maximum"},
      {R"({"items":{"multipleOf":2}})", "#/items/multipleOf"},
      {R"({"type":"array","uniqueItems":true})", "\"uniqueItems\""},
      {R"({"type":"object","patternProperties":{}})", "\"patternProperties\""},
      {R"({"not":{}})", "\"not\""},
      {R"({"if":{},"then":{}})", "\"if\""},
      {R"({"anyOf":[{"type":"string","format":"email","minProperties":1}]})",
       "#/anyOf/0/minProperties"},
      {R"({"$ref":"http://example.com/s.json"})", "#/$ref"},
      {R"({"$ref":"#/$defs/missing"})", "points to nothing"},
      {R"({"type":"foo"})", "unknown type"},
      {R"({"minLength":-1})", "#/minLength"},
      {R"({"anyOf":[]})", "#/anyOf"},
      {R"({"oneOf":[{"type":"string"},{"type":"string","maxLength":3}]})", "oneOf"},
      {R"({"oneOf":[{"type":"number"},{"type":"integer"}]})", "oneOf branches 0 and 1"},
      {R"({"oneOf":[{"type":"object","required":["a"]},{"type":"object","required":["b"]}]})",
       "oneOf"},
      {R"({"$ref":"#"})", "$ref cycle"},
      {R"({"type":"string","minLength":3,"maxLength":2})", "admits no JSON value"},
      {R"({"type":"object","required":["a"],"additionalProperties":false})", "admits no"},
      {R"({"enum":[]})", "admits no JSON value"},
      {R"({"type":"object","properties":{"c":{"$ref":"#"}},"required":["c"]})", "admits no"},
      {"false", "admits no JSON value"},
      {"3", "must be an object or a boolean"},
  };
  for (const Bad& b : bad) {
    const std::string message = compile_error(b.schema);
    EXPECT_NE(message.find(b.needle), std::string::npos)
        << "schema " << b.schema << "\nmessage: " << message;
  }
  // Annotations are ignored.
  EXPECT_EQ(compile_error(R"({"title":"t","description":"d","type":"string","format":"date",
                              "default":"x","examples":["y"],"$schema":"s","$comment":"c"})"),
            "");
}

}  // namespace
}  // namespace straw::serve

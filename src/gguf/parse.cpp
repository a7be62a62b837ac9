#include "gguf/parse.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "util/str.h"

namespace straw::gguf::detail {
namespace {

constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
// Lower bounds on the encoded size of one entry, used to refuse counts the file cannot hold
// before anything is reserved: a metadata entry is at least a key length (8), a type (4) and a
// 1-byte value; a tensor info at least a name length (8), n_dims (4), one dim (8), a type (4)
// and an offset (8).
constexpr uint64_t kMinKvBytes = 13;
constexpr uint64_t kMinTensorInfoBytes = 32;
// Containers sized from counts in the file start at most this big and grow as entries parse.
constexpr size_t kMaxReserve = size_t{1} << 16;

constexpr std::string_view kTruncatedOrCorrupt =
    "the file is truncated or corrupt: re-download or re-convert it";

// A name or key for messages: in single quotes, bytes outside printable ASCII as \xNN, cut
// after 80 bytes so a corrupt multi-megabyte "name" cannot flood the message.
std::string quoted(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "'";
  const size_t n = std::min<size_t>(s.size(), 80);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (n < s.size()) out += "...";
  out += "'";
  return out;
}

std::string supported_types() {
  std::string out;
  for (uint32_t id = 0; id < 64; ++id) {
    const quant::TypeInfo* ti = quant::find_type(id);
    if (!ti || !ti->supported) continue;
    out += out.empty() ? "" : ", ";
    out += ti->name;
  }
  return out;
}

// A bounded reader over data[0, size): every read checks the remaining length first. Context
// for messages comes from a callable, so nothing is formatted unless a read fails.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <class Ctx>
  const uint8_t* take(size_t n, const Ctx& ctx) {
    if (n > remaining())
      fail_at(name_, pos_,
              str("the file ends inside ", ctx(), ": ", n, " bytes needed, ", remaining(),
                  " left in the file of ", size_, " bytes"),
              kTruncated);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  template <class Ctx>
  uint32_t u32(const Ctx& ctx) {
    uint32_t v;
    std::memcpy(&v, take(4, ctx), 4);
    return v;
  }

  template <class Ctx>
  uint64_t u64(const Ctx& ctx) {
    uint64_t v;
    std::memcpy(&v, take(8, ctx), 8);
    return v;
  }

  template <class Ctx>
  std::string_view string(const Ctx& ctx) {
    const size_t at = pos_;
    const uint64_t len = u64(ctx);
    if (len > remaining())
      fail_at(name_, at,
              str("the length of ", ctx(), " is ", len, " bytes, but only ", remaining(),
                  " bytes of the file follow"),
              kTruncatedOrCorrupt);
    return {reinterpret_cast<const char*>(take(len, ctx)), static_cast<size_t>(len)};
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
};

Value scalar_value(ValueType t, const uint8_t* p) {
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  switch (t) {
    case ValueType::UINT8:
      return Value::u8(load(uint8_t{}));
    case ValueType::INT8:
      return Value::i8(load(int8_t{}));
    case ValueType::UINT16:
      return Value::u16(load(uint16_t{}));
    case ValueType::INT16:
      return Value::i16(load(int16_t{}));
    case ValueType::UINT32:
      return Value::u32(load(uint32_t{}));
    case ValueType::INT32:
      return Value::i32(load(int32_t{}));
    case ValueType::UINT64:
      return Value::u64(load(uint64_t{}));
    case ValueType::INT64:
      return Value::i64(load(int64_t{}));
    case ValueType::FLOAT32:
      return Value::f32(load(float{}));
    case ValueType::FLOAT64:
      return Value::f64(load(double{}));
    default:
      return Value::boolean(p[0] != 0);  // BOOL: the only 1-byte type left
  }
}

class Parser {
 public:
  Parser(const uint8_t* data, size_t size, const std::string& name, int shard)
      : data_(data), size_(size), name_(name), shard_(shard), cur_(data, size, name) {}

  ParsedFile run() {
    header();
    for (uint64_t i = 0; i < n_kv_; ++i) metadata_entry(i);
    alignment();
    for (uint64_t i = 0; i < n_tensors_; ++i) tensor_info(i);
    data_section();
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(uint64_t offset, const std::string& what,
                         std::string_view remedy = kCorrupt) const {
    fail_at(name_, offset, what, remedy);
  }

  void header() {
    if (size_ == 0)
      fail(0, "the file is empty (0 bytes), not a GGUF file",
           "re-download or re-convert the model");
    if (size_ < 4 || std::memcmp(data_, kMagic, 4) != 0) {
      std::string got;
      for (size_t i = 0; i < std::min<size_t>(size_, 4); ++i)
        got += str(i ? " " : "", "0x", "0123456789abcdef"[data_[i] >> 4],
                   "0123456789abcdef"[data_[i] & 15]);
      fail(0,
           str("not a GGUF file: it starts with ", got, " (", size_,
               " bytes in all); GGUF files start with \"GGUF\" (0x47 0x47 0x55 0x46)"),
           "check the path; pass a .gguf model file");
    }
    cur_.take(4, [] { return "the magic"; });
    const uint32_t version = cur_.u32([] { return "the header (version)"; });
    if (version == 0) fail(4, "GGUF version 0 is invalid");
    if ((version & 0xFFFF) == 0)
      fail(4,
           str("the version field reads ", version, " (0x", std::hex, version, std::dec,
               "): the file is big-endian (byte-swapped), and straw reads little-endian GGUF only"),
           "convert the model on a little-endian machine");
    if (version == 1)
      fail(4, "GGUFv1 is no longer supported", "re-convert the model with a current converter");
    if (version > 3)
      fail(4, str("GGUF version ", version, " is newer than straw supports (versions 2 and 3)"),
           "use a newer straw, or re-convert the model as GGUF v3");
    out_.version = version;

    n_tensors_ = count(8, "n_tensors (tensor count)");
    n_kv_ = count(16, "n_kv (metadata entry count)");
    const uint64_t rest = size_ - cur_.pos();
    if (n_kv_ > rest / kMinKvBytes)
      fail(16,
           str("the header claims ", n_kv_, " metadata entries, but the remaining ", rest,
               " bytes can hold at most ", rest / kMinKvBytes),
           kTruncatedOrCorrupt);
    if (n_tensors_ > rest / kMinTensorInfoBytes ||
        n_kv_ * kMinKvBytes + n_tensors_ * kMinTensorInfoBytes > rest)
      fail(8,
           str("the header claims ", n_tensors_, " tensors and ", n_kv_,
               " metadata entries, more than the remaining ", rest, " bytes can hold"),
           kTruncatedOrCorrupt);
    out_.metadata.reserve(std::min<uint64_t>(n_kv_, kMaxReserve));
    out_.value_offsets.reserve(std::min<uint64_t>(n_kv_, kMaxReserve));
    out_.tensors.reserve(std::min<uint64_t>(n_tensors_, kMaxReserve));
    out_.info_offsets.reserve(std::min<uint64_t>(n_tensors_, kMaxReserve));
  }

  // n_tensors / n_kv: int64 in the file.
  uint64_t count(uint64_t at, const char* what) {
    const uint64_t v = cur_.u64([&] { return str("the header (", what, ")"); });
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(at, str("the header's ", what, " is negative (", static_cast<int64_t>(v), ")"));
    return v;
  }

  void metadata_entry(uint64_t i) {
    const size_t key_at = cur_.pos();
    const std::string_view key = cur_.string([&] { return str("the key of metadata entry #", i); });
    if (key.empty()) fail(key_at, str("metadata entry #", i, " has an empty key"));
    if (auto [it, fresh] = keys_.try_emplace(key, key_at); !fresh)
      fail(key_at, str("metadata key ", quoted(key), " appears twice (first at byte offset ",
                       it->second, ")"));
    const size_t value_at = cur_.pos();
    const uint32_t type =
        cur_.u32([&] { return str("the value type of metadata key ", quoted(key)); });
    if (!is_valid_value_type(type))
      fail(value_at, str("metadata key ", quoted(key), " has unknown value type id ", type,
                         " (known: 0..12)"));
    out_.metadata.emplace_back(std::string(key), value(key, static_cast<ValueType>(type)));
    out_.value_offsets.push_back(value_at);
  }

  Value value(std::string_view key, ValueType type) {
    auto ctx = [&] { return str("the value of metadata key ", quoted(key)); };
    if (type == ValueType::STRING) return Value::str(std::string(cur_.string(ctx)));
    if (type != ValueType::ARRAY) return scalar_value(type, cur_.take(value_type_size(type), ctx));

    const size_t elem_at = cur_.pos();
    const uint32_t elem = cur_.u32(ctx);
    if (!is_valid_value_type(elem))
      fail(elem_at, str("metadata key ", quoted(key), " is an array of unknown value type id ",
                        elem, " (known: 0..12)"));
    if (elem == static_cast<uint32_t>(ValueType::ARRAY))
      fail(elem_at,
           str("metadata key ", quoted(key), " is an array of arrays, which GGUF does not allow"));
    const auto elem_type = static_cast<ValueType>(elem);
    const size_t count_at = cur_.pos();
    const uint64_t n = cur_.u64(ctx);
    const size_t elem_size = value_type_size(elem_type);
    const size_t min_size = elem_size ? elem_size : 8;  // a string is at least its length
    if (n > cur_.remaining() / min_size)
      fail(count_at,
           str("metadata key ", quoted(key), " claims ", n, " elements of type ",
               value_type_name(elem_type), ", more than the remaining ", cur_.remaining(),
               " bytes of the file can hold"),
           kTruncatedOrCorrupt);
    if (elem_size) return Value::array_of(elem_type, cur_.take(n * elem_size, ctx), n);

    Value v = Value::empty_array(ValueType::STRING);
    v.reserve_strings(std::min<uint64_t>(n, kMaxReserve), 0);
    for (uint64_t j = 0; j < n; ++j)
      v.push_string(
          cur_.string([&] { return str("element ", j, " of metadata key ", quoted(key)); }));
    return v;
  }

  void alignment() {
    for (size_t i = 0; i < out_.metadata.size(); ++i) {
      const auto& [key, v] = out_.metadata[i];
      if (key != "general.alignment") continue;
      const uint64_t at = out_.value_offsets[i];
      if (v.type() != ValueType::UINT32)
        fail(at, str("general.alignment has type ", v.type_string(), "; it must be uint32"));
      const uint32_t a = *v.as_int<uint32_t>();
      if (a == 0 || (a & (a - 1)) != 0)
        fail(at, str("general.alignment is ", a, "; it must be a nonzero power of 2"));
      out_.alignment = a;
    }
  }

  void tensor_info(uint64_t i) {
    const size_t info_at = cur_.pos();
    const std::string_view name = cur_.string([&] { return str("the name of tensor #", i); });
    if (name.empty()) fail(info_at, str("tensor #", i, " has an empty name"));
    if (name.size() > kMaxTensorNameLength)
      fail(info_at, str("tensor #", i, " has a name of ", name.size(), " bytes (", quoted(name),
                        "); GGUF allows at most ", kMaxTensorNameLength));
    if (auto [it, fresh] = tensor_names_.try_emplace(name, info_at); !fresh)
      fail(info_at,
           str("tensor ", quoted(name), " appears twice (first at byte offset ", it->second, ")"));
    auto ctx = [&] { return str("the info of tensor ", quoted(name)); };

    TensorInfo t;
    t.name = std::string(name);
    const size_t dims_at = cur_.pos();
    const uint32_t n_dims = cur_.u32(ctx);
    if (n_dims < 1 || n_dims > kMaxDims)
      fail(dims_at, str("tensor ", quoted(name), " has ", n_dims,
                        " dimensions; GGUF tensors have 1 to ", kMaxDims));
    t.n_dims = static_cast<int>(n_dims);
    int64_t elements = 1;
    for (int d = 0; d < kMaxDims; ++d) {
      t.ne[d] = 1;
      if (d >= t.n_dims) continue;
      const size_t at = cur_.pos();
      const auto ne = static_cast<int64_t>(cur_.u64(ctx));
      if (ne < 1)
        fail(at, str("tensor ", quoted(name), " has ne[", d, "] = ", ne,
                     "; every dimension must be at least 1"));
      if (__builtin_mul_overflow(elements, ne, &elements))
        fail(at, str("tensor ", quoted(name), " has ne[", d, "] = ", ne,
                     ", which makes its element count overflow 64 bits"));
      t.ne[d] = ne;
    }

    const size_t type_at = cur_.pos();
    const uint32_t type_id = cur_.u32(ctx);
    const quant::TypeInfo* ti = quant::find_type(type_id);
    if (!ti)
      fail(type_at, str("tensor ", quoted(name), " has unknown type id ", type_id),
           "the file was written by a newer tool than straw knows, or it is corrupt");
    if (!ti->supported)
      fail(type_at,
           str("tensor ", quoted(name), " has type ", ti->name,
               ", which straw does not support (supported: ", supported_types(), ")"),
           "re-quantize the model to a supported type (e.g. Q4_K_M, Q8_0 or IQ4_XS)");
    t.type = ti->type;
    if (t.ne[0] % ti->block_size != 0)
      fail(type_at,
           str("tensor ", quoted(name), " has ne[0] = ", t.ne[0],
               ", which is not a multiple of the ", ti->name, " block size ", ti->block_size));
    uint64_t bytes = static_cast<uint64_t>(t.ne[0] / ti->block_size);
    for (int d = 0; d < kMaxDims; ++d)
      if (__builtin_mul_overflow(bytes, d == 0 ? uint64_t{ti->type_size} : uint64_t(t.ne[d]),
                                 &bytes))
        fail(type_at, str("tensor ", quoted(name), " is too large: its byte size overflows"));
    t.bytes = bytes;

    offset_fields_.push_back(cur_.pos());
    t.offset = cur_.u64(ctx);
    t.shard = shard_;
    out_.tensors.push_back(std::move(t));
    out_.info_offsets.push_back(info_at);
  }

  void data_section() {
    const uint64_t end = cur_.pos();
    const uint64_t align = out_.alignment;
    out_.data_offset = n_tensors_ == 0 ? end : (end + align - 1) / align * align;
    if (out_.data_offset > size_)
      fail(end,
           str("the data section should start at byte offset ", out_.data_offset,
               " (after the tensor infos, padded to ", align, "), past the end of the file (",
               size_, " bytes)"),
           kTruncated);
    const uint64_t avail = size_ - out_.data_offset;
    for (size_t i = 0; i < out_.tensors.size(); ++i) {
      TensorInfo& t = out_.tensors[i];
      if (t.offset % align != 0)
        fail(offset_fields_[i], str("tensor ", quoted(t.name), " has data offset ", t.offset,
                                    ", which is not a multiple of the alignment ", align));
      if (t.offset > avail || t.bytes > avail - t.offset)
        fail(offset_fields_[i],
             str("tensor ", quoted(t.name), " (", t.bytes, " bytes at data offset ", t.offset,
                 ", i.e. byte offset ", out_.data_offset, " + ", t.offset,
                 ") extends past the end of the file (", size_, " bytes)"),
             kTruncatedOrCorrupt);
      t.file_offset = out_.data_offset + t.offset;
      t.data = data_ + t.file_offset;
    }

    // Tensors may come in any order in the data section but must not share bytes.
    std::vector<size_t> order(out_.tensors.size());
    std::iota(order.begin(), order.end(), size_t{0});
    const auto& ts = out_.tensors;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return ts[a].offset < ts[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const TensorInfo& a = ts[order[k - 1]];
      const TensorInfo& b = ts[order[k]];
      if (a.offset + a.bytes > b.offset)
        fail(offset_fields_[order[k]],
             str("tensors ", quoted(a.name), " (data bytes ", a.offset, "..", a.offset + a.bytes,
                 ") and ", quoted(b.name), " (data bytes ", b.offset, "..", b.offset + b.bytes,
                 ") overlap"));
    }
  }

  const uint8_t* data_;
  size_t size_;
  const std::string& name_;
  int shard_;
  Cursor cur_;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  std::unordered_map<std::string_view, size_t> keys_;          // key -> its byte offset
  std::unordered_map<std::string_view, size_t> tensor_names_;  // name -> its info's byte offset
  std::vector<uint64_t> offset_fields_;  // byte offset of each tensor's offset field
  ParsedFile out_;
};

}  // namespace

void fail_at(const std::string& name, uint64_t offset, const std::string& what,
             std::string_view remedy) {
  if (remedy.empty()) straw::fail(name, ": ", what, " (at byte offset ", offset, ")");
  straw::fail(name, ": ", what, " (at byte offset ", offset, "); ", remedy);
}

ParsedFile parse(const uint8_t* data, size_t size, const std::string& name, int shard) {
  return Parser(data, size, name, shard).run();
}

}  // namespace straw::gguf::detail

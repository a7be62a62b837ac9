#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>

#include "gguf/gguf.h"
#include "gguf/parse.h"
#include "util/str.h"

namespace straw::gguf {
namespace {

// The metadata region of a model (vocabulary included) sits in its first megabytes; asking
// the kernel for it up front makes the header parse one readahead instead of many faults.
constexpr size_t kWillNeedBytes = size_t{16} << 20;

// Maps `path` read-only. Returns the mapping and its size; a 0-byte file maps nothing.
std::pair<void*, uint64_t> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    fail(path, ": cannot open the file: ", std::strerror(err),
         err == ENOENT ? "; check the path" : "");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot stat the file: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file; pass a .gguf model file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    fail(path,
         ": the file is empty (0 bytes), not a GGUF file (at byte offset 0); "
         "re-download or re-convert the model");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) fail(path, ": cannot map the file into memory: ", std::strerror(err));
  ::madvise(p, std::min<uint64_t>(size, kWillNeedBytes), MADV_WILLNEED);
  return {p, size};
}

// gguf-split names: PREFIX-00001-of-00003.gguf.
struct SplitName {
  std::string prefix;
  int no;  // 1-based
  int count;
};

std::optional<SplitName> parse_split_name(const std::string& path) {
  // "-NNNNN-of-NNNNN.gguf" is 20 bytes at the end of the name.
  constexpr std::string_view kShape = "-#####-of-#####.gguf";
  if (path.size() < kShape.size()) return std::nullopt;
  const std::string_view tail = std::string_view(path).substr(path.size() - kShape.size());
  for (size_t i = 0; i < kShape.size(); ++i) {
    const bool digit = tail[i] >= '0' && tail[i] <= '9';
    if (kShape[i] == '#' ? !digit : tail[i] != kShape[i]) return std::nullopt;
  }
  auto number = [&](size_t at) {
    int n = 0;
    for (size_t i = at; i < at + 5; ++i) n = n * 10 + (tail[i] - '0');
    return n;
  };
  return SplitName{path.substr(0, path.size() - kShape.size()), number(1), number(10)};
}

std::string split_path(const std::string& prefix, int no, int count) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", no, count);
  return prefix + buf;
}

// split.no / split.count of a parsed shard; nullopt when the key is absent.
std::optional<int64_t> split_key(const detail::ParsedFile& f, const std::string& file,
                                 std::string_view key) {
  for (size_t i = 0; i < f.metadata.size(); ++i) {
    const auto& [k, v] = f.metadata[i];
    if (k != key) continue;
    std::optional<int64_t> n;
    if (is_integer_type(v.type())) n = v.as_int<int64_t>();
    if (!n || *n < 0 || *n > 99999)
      detail::fail_at(file, f.value_offsets[i],
                      str("metadata key '", key, "' is ", to_display(v, 4), " (", v.type_string(),
                          "); it must be an integer from 0 to 99999"),
                      detail::kCorrupt);
    return n;
  }
  return std::nullopt;
}

}  // namespace

// ---- opening ---------------------------------------------------------------------------------

Reader::~Reader() {
  for (Shard& s : shards_)
    if (s.mapping) ::munmap(s.mapping, s.size);
}

void Reader::add_shard(const std::string& path, const uint8_t* data, uint64_t size, void* mapping) {
  Shard s;
  s.path = path;
  s.data = data;
  s.size = size;
  s.mapping = mapping;
  shards_.push_back(std::move(s));
}

// Parses shard `index` (already in shards_) and appends its tensors; the first shard also
// supplies the version, alignment and metadata.
Reader::SplitKeys Reader::load_shard(int index) {
  Shard& s = shards_[index];
  detail::ParsedFile f = detail::parse(s.data, s.size, s.path, index);
  s.data_offset = f.data_offset;
  const SplitKeys keys{split_key(f, s.path, "split.no"), split_key(f, s.path, "split.count")};
  if (index == 0) {
    version_ = f.version;
    alignment_ = f.alignment;
    metadata_ = std::move(f.metadata);
    value_offsets_ = std::move(f.value_offsets);
  }
  for (TensorInfo& t : f.tensors) tensors_.push_back(std::move(t));
  info_offsets_.insert(info_offsets_.end(), f.info_offsets.begin(), f.info_offsets.end());
  return keys;
}

void Reader::open_other_shards(int n_shards) {
  const std::optional<SplitName> name = parse_split_name(path_);
  if (!name || name->count != n_shards || name->no != 1)
    fail(path_, ": the file is shard 1 of a model split into ", n_shards,
         " files (split.count), but its name does not follow the gguf-split pattern ",
         split_path("NAME", 1, n_shards),
         ", so the other shards cannot be found (at byte offset 0); give the shards their "
         "original names");
  for (int i = 1; i < n_shards; ++i) {
    const std::string p = split_path(name->prefix, i + 1, n_shards);
    if (::access(p.c_str(), F_OK) != 0)
      fail(path_, ": shard ", i + 1, " of ", n_shards, " of this split model is missing: ", p,
           " does not exist; download every shard into the same folder");
    auto [mapping, size] = map_file(p);
    add_shard(p, static_cast<const uint8_t*>(mapping), size, mapping);
    const SplitKeys keys = load_shard(i);
    if (keys.no != i || keys.count != n_shards)
      fail(p, ": expected shard ", i + 1, " of ", n_shards, " of the split model ", path_,
           ", but its metadata says split.no = ", keys.no ? std::to_string(*keys.no) : "(absent)",
           ", split.count = ", keys.count ? std::to_string(*keys.count) : "(absent)",
           " (at byte offset 0); the shards belong to different models: re-download them");
  }
}

void Reader::build_indexes() {
  key_index_.clear();
  key_index_.reserve(metadata_.size());
  for (size_t i = 0; i < metadata_.size(); ++i) key_index_.emplace_back(metadata_[i].first, i);
  std::sort(key_index_.begin(), key_index_.end());

  tensor_index_.clear();
  tensor_index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace_back(tensors_[i].name, i);
  std::sort(tensor_index_.begin(), tensor_index_.end());
  // The parser checks names within one shard; a split model also needs them unique across.
  for (size_t k = 1; k < tensor_index_.size(); ++k) {
    if (tensor_index_[k - 1].first != tensor_index_[k].first) continue;
    const size_t first = std::min(tensor_index_[k - 1].second, tensor_index_[k].second);
    const size_t again = std::max(tensor_index_[k - 1].second, tensor_index_[k].second);
    const TensorInfo& a = tensors_[first];
    const TensorInfo& b = tensors_[again];
    fail(shards_[b.shard].path, ": tensor '", b.name, "' is also in shard ", a.shard + 1, " (",
         shards_[a.shard].path, ") (at byte offset ", info_offsets_[again],
         "); the shards belong to different models: re-download them");
  }
}

std::unique_ptr<Reader> Reader::open(const std::string& path) {
  std::unique_ptr<Reader> r(new Reader());
  r->path_ = path;
  auto [mapping, size] = map_file(path);
  r->add_shard(path, static_cast<const uint8_t*>(mapping), size, mapping);
  const SplitKeys keys = r->load_shard(0);

  // gguf-split: only the first shard may be opened; it says how many there are.
  if (keys.no && *keys.no != 0) {
    const std::optional<SplitName> name = parse_split_name(path);
    fail(path, ": this is shard ", *keys.no + 1, keys.count ? str(" of ", *keys.count) : "",
         " of a split model; open the first shard instead",
         name ? str(": ", split_path(name->prefix, 1, name->count)) : "");
  }
  const int n_shards = keys.count && *keys.count > 1 ? static_cast<int>(*keys.count) : 1;
  if (n_shards > 1) r->open_other_shards(n_shards);
  r->build_indexes();
  if (n_shards > 1) {
    if (const Value* total = r->find("split.tensors.count")) {
      const std::optional<int64_t> n =
          is_integer_type(total->type()) ? total->as_int<int64_t>() : std::nullopt;
      if (n != static_cast<int64_t>(r->tensors_.size()))
        fail(path, ": split.tensors.count is ", to_display(*total, 4), ", but the ", n_shards,
             " shards hold ", r->tensors_.size(), " tensors (at byte offset ",
             r->value_offsets_[r->index_of("split.tensors.count")],
             "); the shards belong to different models: re-download them");
    }
  }
  return r;
}

std::unique_ptr<Reader> Reader::from_memory(const uint8_t* data, size_t size, std::string name) {
  std::unique_ptr<Reader> r(new Reader());
  r->path_ = std::move(name);
  r->add_shard(r->path_, data, size, nullptr);
  const SplitKeys keys = r->load_shard(0);
  if ((keys.no && *keys.no != 0) || (keys.count && *keys.count > 1))
    fail(r->path_, ": this is one shard of a split model (split.count = ", keys.count.value_or(0),
         "); open split models from their files with Reader::open");
  r->build_indexes();
  return r;
}

// ---- metadata --------------------------------------------------------------------------------

size_t Reader::index_of(std::string_view key) const {
  auto it = std::lower_bound(key_index_.begin(), key_index_.end(), key,
                             [](const auto& e, std::string_view k) { return e.first < k; });
  return it != key_index_.end() && it->first == key ? it->second : SIZE_MAX;
}

const Value* Reader::find(std::string_view key) const {
  const size_t i = index_of(key);
  return i == SIZE_MAX ? nullptr : &metadata_[i].second;
}

size_t Reader::require(std::string_view key) const {
  const size_t i = index_of(key);
  if (i == SIZE_MAX) fail(path_, ": metadata key '", key, "' is missing");
  return i;
}

void Reader::fail_value(size_t index, const std::string& what) const {
  fail(path_, ": metadata key '", metadata_[index].first, "' ", what, " (at byte offset ",
       value_offsets_[index], ")");
}

void Reader::fail_type(size_t index, const char* expected) const {
  fail_value(index,
             str("has type ", metadata_[index].second.type_string(), ", expected ", expected));
}

template <class T>
T Reader::int_value(size_t index, const char* expected) const {
  const Value& v = metadata_[index].second;
  if (!is_integer_type(v.type())) fail_type(index, expected);
  const std::optional<T> n = v.as_int<T>();
  if (!n)
    fail_value(index, str("has value ", to_json(v), " (", v.type_string(), "), which does not fit ",
                          expected));
  return *n;
}

float Reader::float_value(size_t index) const {
  const Value& v = metadata_[index].second;
  if (!is_float_type(v.type())) fail_type(index, "float32");
  return static_cast<float>(v.as_double());
}

std::string Reader::get_string(std::string_view key) const {
  const size_t i = require(key);
  const Value& v = metadata_[i].second;
  if (v.type() != ValueType::STRING) fail_type(i, "string");
  return std::string(v.as_string());
}

uint32_t Reader::get_u32(std::string_view key) const {
  return int_value<uint32_t>(require(key), "uint32");
}

int64_t Reader::get_i64(std::string_view key) const {
  return int_value<int64_t>(require(key), "int64");
}

float Reader::get_f32(std::string_view key) const {
  return float_value(require(key));
}

bool Reader::get_bool(std::string_view key) const {
  const size_t i = require(key);
  const Value& v = metadata_[i].second;
  if (v.type() != ValueType::BOOL) fail_type(i, "bool");
  return v.as_bool();
}

std::vector<std::string> Reader::get_string_array(std::string_view key) const {
  const size_t i = require(key);
  const Value& v = metadata_[i].second;
  if (!v.is_array() || v.elem_type() != ValueType::STRING) fail_type(i, "array[string]");
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t j = 0; j < v.size(); ++j) out.emplace_back(v.str_at(j));
  return out;
}

std::vector<int32_t> Reader::get_i32_array(std::string_view key) const {
  const size_t i = require(key);
  const Value& v = metadata_[i].second;
  if (!v.is_array() || !is_integer_type(v.elem_type())) fail_type(i, "array[int32]");
  std::vector<int32_t> out(v.size());
  for (size_t j = 0; j < v.size(); ++j) {
    const std::optional<int32_t> n = v.int_at<int32_t>(j);
    if (!n) {
      const std::string shown = is_signed_type(v.elem_type())
                                    ? std::to_string(*v.int_at<int64_t>(j))
                                    : std::to_string(*v.int_at<uint64_t>(j));
      fail_value(i, str("has element ", j, " = ", shown, " (", value_type_name(v.elem_type()),
                        "), which does not fit int32"));
    }
    out[j] = *n;
  }
  return out;
}

std::vector<float> Reader::get_f32_array(std::string_view key) const {
  const size_t i = require(key);
  const Value& v = metadata_[i].second;
  if (!v.is_array() || !is_float_type(v.elem_type())) fail_type(i, "array[float32]");
  std::vector<float> out(v.size());
  if (v.elem_type() == ValueType::FLOAT32) {
    if (!out.empty()) std::memcpy(out.data(), v.array_data(), out.size() * sizeof(float));
  } else {
    for (size_t j = 0; j < v.size(); ++j) out[j] = static_cast<float>(v.float_at(j));
  }
  return out;
}

std::optional<std::string> Reader::find_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

std::optional<uint32_t> Reader::find_u32(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_u32(key);
}

std::optional<int64_t> Reader::find_i64(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_i64(key);
}

std::optional<float> Reader::find_f32(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_f32(key);
}

std::optional<bool> Reader::find_bool(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_bool(key);
}

// ---- tensors ---------------------------------------------------------------------------------

const TensorInfo* Reader::find_tensor(std::string_view name) const {
  auto it = std::lower_bound(tensor_index_.begin(), tensor_index_.end(), name,
                             [](const auto& e, std::string_view n) { return e.first < n; });
  return it != tensor_index_.end() && it->first == name ? &tensors_[it->second] : nullptr;
}

const TensorInfo& Reader::tensor(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (!t)
    fail(path_, ": tensor '", name, "' is not in the file (it has ", tensors_.size(),
         " tensors); the file may be for another architecture or incomplete");
  return *t;
}

}  // namespace straw::gguf

// The GGUF container: a validating, memory-mapped Reader (single files and gguf-split shards) and
// a streaming Writer (GGUF v3).
//
// File layout (all little-endian): "GGUF", uint32 version, int64 n_tensors, int64 n_kv, n_kv
// metadata entries (string key, uint32 value type, value), n_tensors tensor infos (string name,
// uint32 n_dims, int64 ne[n_dims], uint32 ggml type, uint64 offset), zero padding to
// `general.alignment` (default 32), then the data section; each tensor's offset is relative to
// the data section's start. A string is a uint64 length followed by that many bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "gguf/value.h"
#include "quant/types.h"
#include "straw/error.h"

namespace straw::gguf {

constexpr uint32_t kDefaultAlignment = 32;
constexpr size_t kMaxTensorNameLength = 63;  // ggml's GGML_MAX_NAME (64) counts the NUL
constexpr int kMaxDims = 4;

struct TensorInfo {
  std::string name;
  quant::Type type;
  int n_dims;            // 1..4 as stored
  int64_t ne[4];         // ne[0] innermost (row length); dims past n_dims are 1
  uint64_t offset;       // as stored: relative to its shard's data section
  uint64_t file_offset;  // absolute byte offset in its shard file
  uint64_t bytes;        // ne0/block * type_size * ne1*ne2*ne3
  int shard;             // index of the shard file (0 for single files)
  const uint8_t* data;   // pointer into the read-only mapping of that shard

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
};

// A GGUF file (or a split model's shards) mapped read-only and fully validated: after open()
// returns, every count, length, type, shape and offset has been checked against the file, so
// callers may use TensorInfo::data[0, bytes) without further checks. Errors are straw::Error
// "FILE: what is wrong (at byte offset N)" plus what to do where there is something to do.
class Reader {
 public:
  // Maps `path` and validates it. A gguf-split shard set (NAME-00001-of-0000N.gguf, metadata
  // split.count / split.no / split.tensors.count) opens as one model: every shard is mapped and
  // the tensor table spans all of them (metadata comes from the first shard).
  static std::unique_ptr<Reader> open(const std::string& path);
  // Parses a buffer the caller keeps alive for the Reader's lifetime (no copy). `name` stands for
  // the file name in messages. Split shards are refused: the other shards cannot be found.
  static std::unique_ptr<Reader> from_memory(const uint8_t* data, size_t size, std::string name);

  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return shards_[0].data_offset; }  // of shard 0

  // Shards: 1 for a single file.
  int shard_count() const { return static_cast<int>(shards_.size()); }
  const std::string& shard_path(int shard) const { return shards_.at(shard).path; }
  uint64_t shard_size(int shard) const { return shards_.at(shard).size; }

  // In file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;  // nullptr if absent
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters: throw "FILE: metadata key 'K' is missing" or "FILE: metadata key 'K' has type
  // array[string], expected uint32 (at byte offset N)". Integer getters accept any integer type
  // whose value fits the result; float getters accept FLOAT32 and FLOAT64.
  std::string get_string(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  // Any integer element type whose values fit int32.
  std::vector<int32_t> get_i32_array(std::string_view key) const;
  // FLOAT32 or FLOAT64 elements.
  std::vector<float> get_f32_array(std::string_view key) const;

  // nullopt when the key is absent; still throw on a type mismatch.
  std::optional<std::string> find_string(std::string_view key) const;
  std::optional<uint32_t> find_u32(std::string_view key) const;
  std::optional<int64_t> find_i64(std::string_view key) const;
  std::optional<float> find_f32(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // file order (shard order)
  const TensorInfo* find_tensor(std::string_view name) const;  // O(log n); nullptr if absent
  const TensorInfo& tensor(std::string_view name) const;       // throws naming file and tensor

 private:
  struct Shard {
    std::string path;
    const uint8_t* data = nullptr;
    uint64_t size = 0;
    uint64_t data_offset = 0;
    void* mapping = nullptr;  // non-null when the Reader owns an mmap of `size` bytes
  };

  // split.no / split.count of one parsed shard (absent keys: nullopt).
  struct SplitKeys {
    std::optional<int64_t> no;
    std::optional<int64_t> count;
  };

  Reader() = default;
  void add_shard(const std::string& path, const uint8_t* data, uint64_t size, void* mapping);
  SplitKeys load_shard(int index);
  void open_other_shards(int n_shards);
  void build_indexes();
  size_t index_of(std::string_view key) const;  // into metadata_; SIZE_MAX when absent
  size_t require(std::string_view key) const;   // index_of, or throws "is missing"
  [[noreturn]] void fail_value(size_t index, const std::string& what) const;
  [[noreturn]] void fail_type(size_t index, const char* expected) const;
  template <class T>
  T int_value(size_t index, const char* expected) const;
  float float_value(size_t index) const;

  std::string path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  std::vector<Shard> shards_;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<uint64_t> value_offsets_;  // byte offset of each metadata value's type field
  std::vector<TensorInfo> tensors_;
  std::vector<uint64_t> info_offsets_;  // byte offset of each tensor info in its shard
  // Sorted (name, index) pairs; the views point into metadata_ / tensors_, which no longer change.
  std::vector<std::pair<std::string_view, size_t>> key_index_;
  std::vector<std::pair<std::string_view, size_t>> tensor_index_;
};

// Streams a GGUF v3 file: set metadata and declare tensors, begin_data() writes the header, then
// the tensors' bytes are streamed in declaration order with write()/write_zeros()/skip(); the
// writer inserts the alignment padding between tensors itself. Nothing but the header is held
// in memory. Tensor offsets are contiguous in declaration order, each tensor padded to the
// alignment (what llama.cpp writes and requires).
//
// The file is created by the constructor; a Writer destroyed before finish() succeeded removes
// the partial file. Errors (cannot create, disk full, protocol misuse) throw straw::Error naming
// the path.
class Writer {
 public:
  explicit Writer(std::string path, uint32_t alignment = kDefaultAlignment);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Sets a metadata entry. Entries are written in the order keys were first set; setting a key
  // again replaces its value in place. When the alignment is not 32, general.alignment is
  // added at begin_data() unless it was set (it must then be the same uint32).
  void set(std::string key, Value v);
  // Declares the next tensor (ne[0] innermost, 1..4 dims, each >= 1, ne[0] a multiple of the
  // type's block size).
  void add_tensor(std::string name, quant::Type type, std::vector<int64_t> ne);

  // Writes the header, the tensor infos and the padding up to the data section.
  void begin_data();
  // Streams tensor bytes in declaration order; calls may split or span tensors freely.
  void write(const void* data, size_t n);
  // Like write() with n zero bytes.
  void write_zeros(size_t n);
  // Advances n tensor bytes without writing them, leaving a sparse hole that reads as zeros
  // (a header-only "no data" model costs no disk space).
  void skip(size_t n);
  // Checks that every tensor byte was supplied and closes the file. Calls begin_data() first
  // when it was not called (a file with no tensors needs nothing else).
  void finish();

  const std::string& path() const { return path_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }    // valid after begin_data()
  uint64_t bytes_remaining() const { return remaining_; }  // tensor bytes still to supply

 private:
  struct Tensor {
    std::string name;
    quant::Type type;
    std::vector<int64_t> ne;
    uint64_t bytes;
    uint64_t offset;
  };
  enum class State { kMetadata, kData, kFinished, kFailed };
  enum class Mode { kBytes, kZeros, kSkip };

  void check_state(State expected, const char* call);
  void advance(const uint8_t* data, uint64_t n, Mode mode);
  void emit(const void* data, size_t n);
  void emit_zeros(size_t n);
  void flush();
  void raw_write(const void* data, size_t n);
  [[noreturn]] void io_fail(const char* what, int err);

  std::string path_;
  uint32_t alignment_;
  int fd_ = -1;
  State state_ = State::kMetadata;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<Tensor> tensors_;
  std::unordered_set<std::string> tensor_names_;
  uint64_t data_offset_ = 0;
  uint64_t remaining_ = 0;  // tensor bytes still to supply
  size_t current_ = 0;      // tensor being streamed
  uint64_t done_ = 0;       // bytes of it supplied so far
  uint64_t position_ = 0;   // logical file position, holes included
  std::string buffer_;      // pending output, flushed at kBufferSize
};

}  // namespace straw::gguf

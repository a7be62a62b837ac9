#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "gguf/gguf.h"
#include "util/str.h"

namespace straw::gguf {
namespace {

constexpr size_t kBufferSize = size_t{1} << 20;

uint64_t pad_to(uint64_t n, uint64_t align) {
  return (n + align - 1) / align * align;
}

void append_u32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void append_u64(std::string& out, uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}

}  // namespace

Writer::Writer(std::string path, uint32_t alignment)
    : path_(std::move(path)), alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail(path_, ": the GGUF alignment must be a nonzero power of 2, not ", alignment);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    fail(path_, ": cannot create the file: ", std::strerror(errno),
         "; check that the folder exists and is writable");
  buffer_.reserve(kBufferSize);
}

Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (state_ != State::kFinished) ::unlink(path_.c_str());
}

void Writer::check_state(State expected, const char* call) {
  if (state_ == expected) return;
  if (state_ == State::kFailed) fail(path_, ": ", call, "() after an earlier write error");
  static const char* const kNames[] = {"before begin_data()", "after begin_data()",
                                       "after finish()", ""};
  fail(path_, ": ", call, "() cannot be called ", kNames[static_cast<int>(state_)]);
}

void Writer::set(std::string key, Value v) {
  check_state(State::kMetadata, "set");
  if (key.empty()) fail(path_, ": metadata keys must not be empty");
  for (auto& [k, value] : metadata_) {
    if (k == key) {
      value = std::move(v);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(v));
}

void Writer::add_tensor(std::string name, quant::Type type, std::vector<int64_t> ne) {
  check_state(State::kMetadata, "add_tensor");
  if (name.empty() || name.size() > kMaxTensorNameLength)
    fail(path_, ": tensor name '", name, "' must have 1 to ", kMaxTensorNameLength, " bytes");
  if (tensor_names_.count(name)) fail(path_, ": tensor '", name, "' is declared twice");
  if (ne.empty() || ne.size() > static_cast<size_t>(kMaxDims))
    fail(path_, ": tensor '", name, "' has ", ne.size(), " dimensions; GGUF allows 1 to ",
         kMaxDims);
  const quant::TypeInfo& ti = quant::type_info(type);
  if (ti.block_size <= 0 || ti.type_size == 0)
    fail(path_, ": tensor '", name, "' has type ", ti.name,
         ", whose block layout straw does not know");
  int64_t elements = 1;
  for (int64_t n : ne)
    if (n < 1 || __builtin_mul_overflow(elements, n, &elements))
      fail(path_, ": tensor '", name, "' has dimension ", n,
           n < 1 ? "; dimensions must be at least 1" : ", which overflows its element count");
  if (ne[0] % ti.block_size != 0)
    fail(path_, ": tensor '", name, "' has ne[0] = ", ne[0], ", not a multiple of the ", ti.name,
         " block size ", ti.block_size);
  uint64_t bytes = static_cast<uint64_t>(ne[0] / ti.block_size);
  for (size_t d = 0; d < ne.size(); ++d)
    if (__builtin_mul_overflow(bytes, d == 0 ? uint64_t{ti.type_size} : uint64_t(ne[d]), &bytes))
      fail(path_, ": tensor '", name, "' is too large: its byte size overflows");
  tensor_names_.insert(name);
  tensors_.push_back({std::move(name), type, std::move(ne), bytes, 0});
}

void Writer::begin_data() {
  check_state(State::kMetadata, "begin_data");
  auto it = std::find_if(metadata_.begin(), metadata_.end(),
                         [](const auto& kv) { return kv.first == "general.alignment"; });
  if (it == metadata_.end()) {
    if (alignment_ != kDefaultAlignment)
      metadata_.emplace_back("general.alignment", Value::u32(alignment_));
  } else if (it->second.type() != ValueType::UINT32 ||
             it->second.as_int<uint32_t>() != alignment_) {
    fail(path_, ": metadata general.alignment is ", to_display(it->second, 4), " (",
         it->second.type_string(), ") but the writer aligns to ", alignment_,
         "; leave the key out or set it to the same uint32");
  }

  std::string header;
  header.append("GGUF", 4);
  append_u32(header, 3);
  append_u64(header, tensors_.size());
  append_u64(header, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    append_u64(header, key.size());
    header += key;
    value.serialize(header);
  }
  uint64_t offset = 0;
  for (Tensor& t : tensors_) {
    t.offset = offset;
    offset += pad_to(t.bytes, alignment_);
    append_u64(header, t.name.size());
    header += t.name;
    append_u32(header, static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) append_u64(header, static_cast<uint64_t>(n));
    append_u32(header, static_cast<uint32_t>(t.type));
    append_u64(header, t.offset);
    remaining_ += t.bytes;
  }
  // The data section is aligned only when there is one (a vocabulary-only file ends here).
  data_offset_ = tensors_.empty() ? header.size() : pad_to(header.size(), alignment_);
  header.resize(data_offset_, '\0');
  state_ = State::kData;
  emit(header.data(), header.size());
}

void Writer::write(const void* data, size_t n) {
  check_state(State::kData, "write");
  advance(static_cast<const uint8_t*>(data), n, Mode::kBytes);
}

void Writer::write_zeros(size_t n) {
  check_state(State::kData, "write_zeros");
  advance(nullptr, n, Mode::kZeros);
}

void Writer::skip(size_t n) {
  check_state(State::kData, "skip");
  advance(nullptr, n, Mode::kSkip);
}

// Supplies n tensor bytes in `mode`; each tensor's alignment padding follows in the same mode
// (so a skipped tensor leaves its padding as part of the hole).
void Writer::advance(const uint8_t* data, uint64_t n, Mode mode) {
  if (n > remaining_)
    fail(path_, ": ", n, " tensor bytes supplied, but only ", remaining_,
         " remain of the declared tensors");
  while (n > 0) {
    const Tensor& t = tensors_[current_];
    uint64_t step = std::min(n, t.bytes - done_);
    const bool tensor_done = done_ + step == t.bytes;
    if (tensor_done) step += pad_to(t.bytes, alignment_) - t.bytes;  // padding rides along
    const uint64_t payload = std::min(n, t.bytes - done_);
    switch (mode) {
      case Mode::kBytes:
        emit(data, payload);
        data += payload;
        emit_zeros(step - payload);
        break;
      case Mode::kZeros:
        emit_zeros(step);
        break;
      case Mode::kSkip:
        flush();
        if (::lseek(fd_, static_cast<off_t>(step), SEEK_CUR) < 0) io_fail("seek", errno);
        position_ += step;
        break;
    }
    n -= payload;
    remaining_ -= payload;
    done_ += payload;
    if (tensor_done) {
      ++current_;
      done_ = 0;
    }
  }
}

void Writer::emit(const void* data, size_t n) {
  position_ += n;
  if (buffer_.size() + n > kBufferSize) flush();
  if (n >= kBufferSize) {
    raw_write(data, n);
  } else {
    buffer_.append(static_cast<const char*>(data), n);
  }
}

void Writer::emit_zeros(size_t n) {
  static const char kZeros[4096] = {};
  while (n > 0) {
    const size_t k = std::min(n, sizeof kZeros);
    emit(kZeros, k);
    n -= k;
  }
}

void Writer::flush() {
  if (buffer_.empty()) return;
  raw_write(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void Writer::raw_write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      io_fail("write", errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void Writer::io_fail(const char* what, int err) {
  state_ = State::kFailed;
  fail(path_, ": ", what, " failed at byte offset ", position_, ": ", std::strerror(err),
       err == ENOSPC ? " (the disk is full: free some space or write elsewhere)" : "");
}

void Writer::finish() {
  if (state_ == State::kMetadata) begin_data();
  check_state(State::kData, "finish");
  if (remaining_ > 0) {
    const Tensor& t = tensors_[current_];
    fail(path_, ": finish() with ", remaining_, " tensor bytes not written: tensor '", t.name,
         "' has ", done_, " of its ", t.bytes, " bytes",
         current_ + 1 < tensors_.size()
             ? str(" and ", tensors_.size() - current_ - 1, " tensors follow it")
             : std::string());
  }
  flush();
  // A trailing hole left by skip() has no bytes yet: set the length explicitly.
  if (::ftruncate(fd_, static_cast<off_t>(position_)) != 0) io_fail("truncate", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) io_fail("close", errno);
  state_ = State::kFinished;
}

}  // namespace straw::gguf

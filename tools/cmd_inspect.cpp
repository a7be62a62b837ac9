// straw inspect FILE [--json]: what a GGUF file holds.
#include <cstdio>
#include <map>
#include <string>

#include "cli.h"
#include "gguf/gguf.h"
#include "quant/types.h"
#include "util/json.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> inspect_options() {
  return {{"json", 0, false, "print everything as JSON (metadata in full, every tensor)"}};
}

void print_json(const gguf::Reader& r) {
  std::string out;
  out += "{\"version\": " + std::to_string(r.version());
  out += ", \"alignment\": " + std::to_string(r.alignment());
  out += ", \"metadata\": {";
  bool first = true;
  for (const auto& [key, value] : r.metadata()) {
    out += first ? "" : ", ";
    first = false;
    out += json_string(key) + ": " + gguf::to_json(value);
  }
  out += "}, \"tensors\": [";
  first = true;
  for (const gguf::TensorInfo& t : r.tensors()) {
    out += first ? "" : ", ";
    first = false;
    out += "{\"name\": " + json_string(t.name);
    out += ", \"type\": " + json_string(quant::type_name(t.type));
    out += ", \"shape\": [";
    for (int d = 0; d < t.n_dims; ++d) out += (d ? ", " : "") + std::to_string(t.ne[d]);
    out += "], \"offset\": " + std::to_string(t.offset);
    out += ", \"file_offset\": " + std::to_string(t.file_offset);
    out += ", \"shard\": " + std::to_string(t.shard);
    out += ", \"bytes\": " + std::to_string(t.bytes) + "}";
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

// "blk.12.ffn_up.weight" -> 12; -1 for tensors outside the repeating layers.
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  size_t end = name.find('.', 4);
  if (end == std::string::npos) return -1;
  try {
    return std::stoi(name.substr(4, end - 4));
  } catch (...) {
    return -1;
  }
}

void print_human(const gguf::Reader& r) {
  std::string arch = r.find_string("general.architecture").value_or("(none)");
  std::printf("file:          %s\n", r.path().c_str());
  std::printf("gguf version:  %u, alignment %u, %zu metadata keys, %zu tensors\n", r.version(),
              r.alignment(), r.metadata().size(), r.tensors().size());
  std::printf("architecture:  %s\n", arch.c_str());
  if (auto name = r.find_string("general.name")) std::printf("name:          %s\n", name->c_str());

  std::printf("\nmetadata:\n");
  for (const auto& [key, value] : r.metadata())
    std::printf("  %-44s %s\n", key.c_str(), gguf::to_display(value, 8).c_str());

  struct Hist {
    size_t count = 0;
    uint64_t bytes = 0;
    int64_t elements = 0;
  };
  std::map<std::string, Hist> by_type;
  std::map<int, uint64_t> by_layer;
  uint64_t total = 0;
  for (const gguf::TensorInfo& t : r.tensors()) {
    Hist& h = by_type[quant::type_name(t.type)];
    ++h.count;
    h.bytes += t.bytes;
    h.elements += t.n_elements();
    by_layer[layer_of(t.name)] += t.bytes;
    total += t.bytes;
  }
  std::printf("\ntensor types:\n  %-8s %8s %14s %12s %8s\n", "type", "tensors", "bytes", "", "bits/w");
  for (const auto& [name, h] : by_type) {
    double bpw = h.elements ? 8.0 * double(h.bytes) / double(h.elements) : 0;
    std::printf("  %-8s %8zu %14llu %12s %8.3f\n", name.c_str(), h.count,
                static_cast<unsigned long long>(h.bytes), human_bytes(h.bytes).c_str(), bpw);
  }
  std::printf("\nbytes per layer:\n");
  for (const auto& [layer, bytes] : by_layer) {
    if (layer < 0) continue;
    std::printf("  blk.%-4d %14llu %12s\n", layer, static_cast<unsigned long long>(bytes),
                human_bytes(bytes).c_str());
  }
  if (by_layer.count(-1))
    std::printf("  %-8s %14llu %12s\n", "other", static_cast<unsigned long long>(by_layer[-1]),
                human_bytes(by_layer[-1]).c_str());
  std::printf("\ntotal tensor data: %llu bytes (%s)\n", static_cast<unsigned long long>(total),
              human_bytes(total).c_str());

  std::printf("\ntensors:\n");
  for (const gguf::TensorInfo& t : r.tensors()) {
    std::string shape;
    for (int d = 0; d < t.n_dims; ++d) shape += (d ? " x " : "") + std::to_string(t.ne[d]);
    std::printf("  %-36s %-7s %-22s %12s\n", t.name.c_str(), quant::type_name(t.type), shape.c_str(),
                human_bytes(t.bytes).c_str());
  }
}

int run_inspect(const Args& args) {
  if (args.positional().size() != 1) throw UsageError("expected exactly one FILE");
  auto reader = gguf::Reader::open(args.positional()[0]);
  if (args.has("json")) print_json(*reader);
  else print_human(*reader);
  return 0;
}

}  // namespace

const Command kInspect = {"inspect", "show what a GGUF file holds: metadata, tensor types, sizes",
                          "inspect FILE [--json]", inspect_options, run_inspect};

}  // namespace straw::cli

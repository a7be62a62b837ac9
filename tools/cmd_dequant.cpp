// straw dequant FILE TENSOR -o OUT: one tensor as little-endian float32, ne0 fastest.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "cli.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> dequant_options() {
  return {{"output", 'o', true, "OUT  file to write (float32, little-endian, ne0 fastest)"}};
}

int run_dequant(const Args& args) {
  if (args.positional().size() != 2) throw UsageError("expected FILE and TENSOR");
  std::string out_path = args.require("output");
  auto reader = gguf::Reader::open(args.positional()[0]);
  const gguf::TensorInfo& t = reader->tensor(args.positional()[1]);

  std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(out_path.c_str(), "wb"), std::fclose);
  if (!out) fail(out_path, ": cannot create the output file: ", std::strerror(errno));
  const int64_t n0 = t.ne[0];
  const size_t src_row = quant::row_bytes(t.type, n0);
  std::vector<float> row(static_cast<size_t>(n0));
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    quant::dequantize_row(t.type, t.data + r * src_row, row.data(), n0);
    if (std::fwrite(row.data(), sizeof(float), row.size(), out.get()) != row.size())
      fail(out_path, ": write failed: ", std::strerror(errno));
  }
  if (std::fflush(out.get()) != 0) fail(out_path, ": write failed: ", std::strerror(errno));
  std::fprintf(stderr, "%s: %s %s, %lld elements -> %s\n", t.name.c_str(), quant::type_name(t.type),
               human_bytes(t.bytes).c_str(), static_cast<long long>(t.n_elements()),
               out_path.c_str());
  return 0;
}

}  // namespace

const Command kDequant = {"dequant", "write one tensor as little-endian float32 (ne0 fastest)",
                          "dequant FILE TENSOR -o OUT", dequant_options, run_dequant};

}  // namespace straw::cli

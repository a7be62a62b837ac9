// straw bench's output: a markdown table like llama-bench's (default), JSON (a list of objects
// with llama-bench's field names where they exist) or CSV (the same fields, one row per test).
#pragma once

#include <string>
#include <vector>

#include "bench_bandwidth.h"
#include "bench_run.h"

namespace straw::cli::bench {

// One test of the report with what is needed to print it.
struct Row {
  const ModelFacts* model = nullptr;
  std::string path;       // as given with -m
  std::string placement;  // ModelInfo::placement: "cpu", or what went to the GPU
  int gpu_layers = -1;    // --gpu-layers of this run; -1: automatic placement
  TestResult r;
  // tg tests only:
  double bytes_per_token = 0;  // weights and KV read per generated token
  double achieved = 0;         // bytes_per_token * avg_ts
  double bandwidth = 0;        // read bandwidth measured with the same thread count (CPU only)
  double roofline = 0;         // achieved / bandwidth (CPU only)

  bool on_cpu() const { return placement == "cpu"; }
};

struct ReportOptions {
  std::string cpu_info;      // /proc/cpuinfo model name
  std::string cpu_kernels;   // the CPU kernel level used: avx512, avx-vnni, avx2 or scalar
  std::string type_k = "f16";  // KV cache types (llama-bench's type_k / type_v)
  std::string type_v = "f16";
  bool show_ubatch = false;  // md: an n_ubatch column
  bool show_ngl = false;     // md: an ngl column
};

void print_md(const std::vector<Row>& rows, const ReportOptions& o);
void print_json(const std::vector<Row>& rows, const ReportOptions& o);
void print_csv(const std::vector<Row>& rows, const ReportOptions& o);

// The --bandwidth report in md, json or csv.
void print_bandwidth(const std::vector<Bandwidth>& bws, const std::string& format,
                     const std::string& cpu_info);

// The first "model name" of /proc/cpuinfo; "unknown" when there is none.
std::string cpu_info();

}  // namespace straw::cli::bench

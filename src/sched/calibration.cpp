#include "sched/calibration.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include "cpu/cpu_backend.h"
#include "quant/quant.h"
#include "util/str.h"

namespace straw::sched {

std::string calibration_path() {
  if (const char* p = std::getenv("STRAW_CALIBRATION")) return p;
  if (const char* x = std::getenv("XDG_CACHE_HOME"))
    return std::string(x) + "/straw/calibration.txt";
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/straw/calibration.txt";
  return "straw-calibration.txt";
}

namespace {
struct Field {
  const char* key;
  double Speeds::*value;
};
const Field kFields[] = {
    {"cpu_read_bw", &Speeds::cpu_read_bw}, {"gpu_read_bw", &Speeds::gpu_read_bw},
    {"h2d_bw", &Speeds::h2d_bw},           {"transition_s", &Speeds::transition_s},
    {"cpu_flops", &Speeds::cpu_flops},     {"gpu_flops", &Speeds::gpu_flops},
};
}  // namespace

Speeds load_speeds(const std::string& path) {
  Speeds s;
  std::ifstream in(path);
  if (!in) return s;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    bool ok = false;
    if (eq != std::string::npos) {
      const std::string key = line.substr(0, eq);
      char* end = nullptr;
      const double v = std::strtod(line.c_str() + eq + 1, &end);
      for (const Field& f : kFields)
        if (key == f.key && end && *end == '\0' && v > 0) {
          s.*(f.value) = v;
          ok = true;
        }
    }
    if (!ok)
      fail(path, ":", n, ": malformed calibration line '", line,
           "' (delete the file or rerun `straw calibrate`)");
  }
  s.calibrated = true;
  return s;
}

void save_speeds(const Speeds& s, const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    std::string dir = path.substr(0, slash);
    for (size_t i = 1; i <= dir.size(); ++i)
      if (i == dir.size() || dir[i] == '/') {
        std::string part = dir.substr(0, i);
        if (!part.empty()) (void)::mkdir(part.c_str(), 0755);
      }
  }
  std::ofstream out(path);
  if (!out) fail(path, ": cannot write the calibration cache");
  out << "# straw calibration: bytes/s, seconds, FLOP/s (written by `straw calibrate`)\n";
  char buf[64];
  for (const Field& f : kFields) {
    std::snprintf(buf, sizeof buf, "%.6g", s.*(f.value));
    out << f.key << "=" << buf << "\n";
  }
  if (!out) fail(path, ": write failed");
}

double measure_cpu_read_bandwidth(int threads, size_t buffer_bytes, int passes) {
  if (threads < 1) threads = 1;
  const size_t n = buffer_bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  for (size_t i = 0; i < n; ++i) buf[i] = i;  // touch every page so reads hit real memory
  std::vector<uint64_t> sums(size_t(threads) * 8);
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = n * t / threads, e = n * (t + 1) / threads;
        uint64_t acc[8] = {};
        size_t i = b;
        for (; i + 8 <= e; i += 8)
          for (int k = 0; k < 8; ++k) acc[k] += buf[i + k];
        for (; i < e; ++i) acc[0] += buf[i];
        for (int k = 0; k < 8; ++k) sums[size_t(t) * 8 + k] = acc[k];
      });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(n * sizeof(uint64_t)) / s);
  }
  return best;
}

double measure_cpu_gemm_flops(int threads) {
  constexpr int64_t kIn = 2048, kOut = 2048;
  constexpr int kTokens = 256;
  const quant::Type type = quant::Type::Q4_K;
  const size_t rb = quant::row_bytes(type, kIn);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row(kIn), x(size_t(kTokens) * kIn), y(size_t(kTokens) * kOut);
  std::vector<uint8_t> raw(rb * kOut);
  for (int64_t r = 0; r < kOut; ++r) {
    for (float& v : row) v = normal(rng);
    quant::quantize_row(type, row.data(), raw.data() + r * rb, kIn);
  }
  for (float& v : x) v = normal(rng);
  cpu::CpuBackend backend(cpu::CpuOptions{.n_threads = std::max(threads, 1)});
  ops::Weight w;
  w.type = type;
  w.n_in = kIn;
  w.n_out = kOut;
  w.row_bytes = rb;
  w.data = raw.data();
  w.expert_bytes = rb * kOut;
  const ops::Weight prepared = backend.prepare_weight(w);
  double best = 1e30;
  for (int pass = 0; pass < 4; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    backend.matmul(prepared, x.data(), y.data(), kTokens);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (pass > 0) best = std::min(best, s);  // pass 0 warms caches and the thread pool
  }
  return 2.0 * double(kIn) * double(kOut) * kTokens / best;
}

}  // namespace straw::sched

// straw calibrate: measure this machine's speeds for the placement cost model and cache them.
#include <cstdio>

#include "cli.h"
#include "cpu/thread_pool.h"
#include "sched/calibration.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> calibrate_options() {
  return {
      {"threads", 't', true, "N  threads for the CPU measurement (default: physical cores)"},
      {"dry-run", 0, false, "measure and print, but do not write the cache"},
  };
}

int run_calibrate(const Args& a) {
  const int threads = static_cast<int>(a.get_int("threads", cpu::physical_cores()));
  const std::string path = sched::calibration_path();
  sched::Speeds s = sched::load_speeds(path);
  std::fprintf(stderr, "straw: measuring host read bandwidth with %d threads...\n", threads);
  s.cpu_read_bw = sched::measure_cpu_read_bandwidth(threads);
  std::fprintf(stderr, "straw: measuring the CPU's prompt GEMM with %d threads...\n", threads);
  s.cpu_flops = sched::measure_cpu_gemm_flops(threads);
  s.calibrated = true;
  std::printf("cpu_read_bw   %.1f GB/s (measured)\n", s.cpu_read_bw / 1e9);
  // GPU speeds are measured by the CUDA backend when one is built and a GPU is present; until
  // then the cached (or default) values stand, and are printed as such.
  std::printf("gpu_read_bw   %.1f GB/s (not measured: no GPU backend)\n", s.gpu_read_bw / 1e9);
  std::printf("h2d_bw        %.1f GB/s (not measured: no GPU backend)\n", s.h2d_bw / 1e9);
  std::printf("transition    %.1f us\n", s.transition_s * 1e6);
  std::printf("cpu_flops     %.2f TFLOP/s (measured: Q4_K GEMM, 256 tokens)\n", s.cpu_flops / 1e12);
  std::printf("gpu_flops     %.1f TFLOP/s (default)\n", s.gpu_flops / 1e12);
  if (!a.has("dry-run")) {
    sched::save_speeds(s, path);
    std::printf("written to %s\n", path.c_str());
  }
  return 0;
}

}  // namespace

const Command kCalibrate = {"calibrate", "measure this machine's speeds for the placement planner",
                            "calibrate [--threads N] [--dry-run]", calibrate_options,
                            run_calibrate};

}  // namespace straw::cli

// Machine speeds for the cost model: measured by `straw calibrate` and cached, or defaults.
#pragma once

#include <string>

#include "sched/plan.h"

namespace straw::sched {

// $STRAW_CALIBRATION, else $XDG_CACHE_HOME/straw/calibration.txt, else ~/.cache/straw/...
std::string calibration_path();

// The cached speeds, or the defaults (Speeds{}) when there is no cache. A malformed cache is an
// error naming the file and line (delete it or rerun `straw calibrate`).
Speeds load_speeds(const std::string& path);
void save_speeds(const Speeds& s, const std::string& path);

// Multi-threaded streaming read bandwidth of host memory in bytes/s, measured the way a matvec
// reads weights: every thread sums its own contiguous slice of a buffer much larger than the
// last-level cache; the best of `passes` passes.
double measure_cpu_read_bandwidth(int threads, size_t buffer_bytes = size_t(1) << 30,
                                  int passes = 5);

// FLOP/s of the CPU backend's prompt GEMM (2 x multiply-adds per second) with `threads` threads and
// its best kernel level: a repacked Q4_K weight of 2048 x 2048 times 256 tokens, the best of 3 runs
// after a warm-up. Q4_K is Q4_K_M's main type; IQ4_XS runs at about the same speed, Q6_K slower.
double measure_cpu_gemm_flops(int threads);

}  // namespace straw::sched

#include "cpu/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define STRAW_CPU_RELAX() _mm_pause()
#else
#define STRAW_CPU_RELAX() ((void)0)
#endif

namespace straw::cpu {

namespace {

constexpr int kChunkBits = 20;
constexpr uint64_t kChunkMask = (uint64_t(1) << kChunkBits) - 1;
constexpr uint64_t kAllFlag = uint64_t(1) << (2 * kChunkBits);
constexpr int kEpochShift = 2 * kChunkBits + 1;
constexpr uint64_t kEpochMask = (uint64_t(1) << (64 - kEpochShift)) - 1;

uint64_t epoch_of(uint64_t s) {
  return s >> kEpochShift;
}

// A run's word: epoch (24 bits) | front | back.
constexpr int kRunEpochShift = 2 * kChunkBits;
constexpr uint64_t kRunEpochMask = (uint64_t(1) << (64 - kRunEpochShift)) - 1;
uint64_t run_word(uint64_t epoch, uint64_t front, uint64_t back) {
  return (epoch & kRunEpochMask) << kRunEpochShift | front << kChunkBits | back;
}

using Clock = std::chrono::steady_clock;

// Worker waiting: pause-spin this long after a region (the next op of a token follows within
// microseconds), then spin with sched_yield (gives the core away if another process wants it)
// until kSleepAfter, then sleep until woken.
constexpr auto kSpinFor = std::chrono::microseconds(200);
constexpr auto kSleepAfter = std::chrono::milliseconds(3);
// The caller waiting for chunks in progress: pause-spin, yielding after this long.
constexpr auto kYieldAfter = std::chrono::microseconds(50);

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads), runs_(size_t(n_threads_)) {
  threads_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  publish(state_.load() + (uint64_t(1) << kEpochShift));
  for (auto& t : threads_) t.join();
}

void ThreadPool::publish(uint64_t state) {
  state_.store(state, std::memory_order_seq_cst);
  // A worker increments sleepers_ and then re-checks state_ under the mutex before waiting, so
  // either it sees the new state or this load sees it and the notify (under the mutex) reaches it.
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }
}

void ThreadPool::wait_done(int64_t target) {
  int spins = 0;
  Clock::time_point start{};
  while (done_.load(std::memory_order_acquire) < target) {
    STRAW_CPU_RELAX();
    if (++spins % 64 != 0) continue;
    const Clock::time_point now = Clock::now();
    if (spins == 64)
      start = now;
    else if (now - start > kYieldAfter)
      sched_yield();
  }
}

// Claims one chunk of region `epoch` from thread run `run`: from its front (the owner) or its back
// (a thread done with its own). False when the run has none left or the region is over.
bool ThreadPool::claim(uint64_t epoch, int run, bool front, int64_t& chunk) {
  std::atomic<uint64_t>& word = runs_[size_t(run)].word;
  uint64_t w = word.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t f = (w >> kChunkBits) & kChunkMask, b = w & kChunkMask;
    if ((w >> kRunEpochShift) != (epoch & kRunEpochMask) || f >= b) return false;
    const uint64_t next = front ? w + (uint64_t(1) << kChunkBits) : w - 1;
    if (word.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      chunk = int64_t(front ? f : b - 1);
      return true;
    }
  }
}

// Runs chunks of region `epoch` until none are left: its own run's from the front, then the
// others' from the back (the next thread's first).
void ThreadPool::work_chunks(uint64_t epoch, int thread) {
  for (int k = 0; k < n_threads_; ++k) {
    const int run = (thread + k) % n_threads_;
    int64_t chunk = 0;
    while (claim(epoch, run, k == 0, chunk)) {
      // The claim succeeded, so the region's fields are this region's until the chunk is counted.
      const int64_t begin = chunk * grain_;
      (*range_fn_)(begin, std::min(n_, begin + grain_), thread);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

void ThreadPool::worker(int index) {
  // Regions are numbered from 1, so a worker that starts late still runs the first one.
  uint64_t seen = 0;
  for (;;) {
    uint64_t s = state_.load(std::memory_order_acquire);
    if (epoch_of(s) == seen) {
      const Clock::time_point start = Clock::now();
      for (int spins = 1; epoch_of(s) == seen; ++spins) {
        STRAW_CPU_RELAX();
        s = state_.load(std::memory_order_acquire);
        if (spins % 64 != 0 || epoch_of(s) != seen) continue;
        const auto idle = Clock::now() - start;
        if (idle > kSleepAfter) {
          std::unique_lock<std::mutex> lock(mutex_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          wake_.wait(lock,
                     [&] { return epoch_of(state_.load(std::memory_order_seq_cst)) != seen; });
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          s = state_.load(std::memory_order_acquire);
        } else if (idle > kSpinFor) {
          sched_yield();
        }
      }
    }
    seen = epoch_of(s);
    if (stop_.load(std::memory_order_acquire)) return;
    if (s & kAllFlag) {
      // run(): the caller waits for every worker, so the region's fields are stable here.
      (*all_fn_)(index, n_threads_);
      done_.fetch_add(1, std::memory_order_acq_rel);
    } else {
      work_chunks(seen, index);
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  const uint64_t epoch = (epoch_of(state_.load(std::memory_order_relaxed)) + 1) & kEpochMask;
  all_fn_ = &fn;
  done_.store(0, std::memory_order_relaxed);
  publish(epoch << kEpochShift | kAllFlag);
  fn(0, n_threads_);
  wait_done(n_threads_ - 1);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  int64_t chunks = (n + grain - 1) / grain;
  if (chunks > int64_t(kChunkMask)) {
    grain = (n + int64_t(kChunkMask) - 1) / int64_t(kChunkMask);
    chunks = (n + grain - 1) / grain;
  }
  const uint64_t epoch = (epoch_of(state_.load(std::memory_order_relaxed)) + 1) & kEpochMask;
  range_fn_ = &fn;
  n_ = n;
  grain_ = grain;
  done_.store(0, std::memory_order_relaxed);
  // Written before state_ is published (a seq_cst store), so a worker that sees the new epoch
  // sees these runs; a late worker of the previous region finds its epoch gone from every run.
  for (int t = 0; t < n_threads_; ++t)
    runs_[size_t(t)].word.store(
        run_word(epoch, uint64_t(chunks * t / n_threads_), uint64_t(chunks * (t + 1) / n_threads_)),
        std::memory_order_relaxed);
  publish(epoch << kEpochShift);
  work_chunks(epoch, 0);
  wait_done(chunks);
}

int physical_cores() {
  // Count distinct (physical id, core id) pairs; fall back to the logical count.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, phys = "0";
  while (std::getline(in, line)) {
    auto value = [&] { return line.substr(line.find(':') + 1); };
    if (line.rfind("physical id", 0) == 0) phys = value();
    if (line.rfind("core id", 0) == 0) cores.insert({phys, value()});
  }
  int n = static_cast<int>(cores.size());
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return n > 0 ? n : 1;
}

}  // namespace straw::cpu

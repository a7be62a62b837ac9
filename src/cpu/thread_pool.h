// A thread pool built for per-token work: persistent workers, one parallel region at a time.
//
// Decode runs a few hundred short parallel regions per token, so the cost of starting a region and
// of waiting for its end decides the speed as much as the kernels do.
//  - Workers spin on the region counter (with pause) right after a region, since the next one
//    follows within microseconds; after a while they also yield the core to other processes, and
//    only when idle for milliseconds do they sleep on a condition variable.
//  - parallel_for splits the chunks into one contiguous run per thread. Each thread takes its own
//    run's chunks from the front, in order, so that a decode matvec is one sequential read per
//    core (the kernels' prefetch runs on into the next chunk, and no prefetched line belongs to the
//    other core); a thread that is done takes chunks from the back of the others' runs. So nobody
//    waits for a worker that the OS has descheduled (a shared, oversubscribed machine): the threads
//    that are running take all chunks, and the caller only waits for chunks already being worked
//    on. (Handing out chunks in turn from one counter interleaved the threads' reads: decode read
//    8-10 % slower at 2 threads, docs/cpu-kernels.md.)
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace straw::cpu {

class ThreadPool {
 public:
  // n_threads counts the calling thread: 1 means no worker threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, n_threads) once on every thread (the caller is thread 0) and returns
  // when all are done. Not reentrant: call it from one thread at a time, never from inside fn.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into chunks of `grain` (more if there would be over a million), one contiguous
  // run of chunks per thread, taken in order by its owner and from the back by threads that are
  // done: fn(begin, end, thread), `thread` being the index (0..size()-1) of the thread running
  // the chunk, unique among concurrent calls (for per-thread scratch). With one thread, or
  // n <= grain, it is one call fn(0, n, 0). Same rules as run.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker(int index);
  void publish(uint64_t state);
  void wait_done(int64_t target);
  void work_chunks(uint64_t epoch, int thread);
  bool claim(uint64_t epoch, int run, bool front, int64_t& chunk);

  int n_threads_;
  std::vector<std::thread> threads_;
  // The current region: epoch (bits 41-63) | every-thread flag (bit 40).
  std::atomic<uint64_t> state_{0};
  // parallel_for's per-thread runs of chunks, each packed so that one compare-exchange both checks
  // the region and claims a chunk: epoch (bits 40-63, as in state_) | next chunk from the front
  // (20-39) | end of the chunks not yet taken (0-19). One cache line each.
  struct alignas(64) Run {
    std::atomic<uint64_t> word{0};
  };
  std::vector<Run> runs_;
  std::atomic<int64_t> done_{0};  // chunks (or, for run, workers) finished in the current region
  // The region's function and sizes: written before state_ is published, read by a worker only
  // after it claimed a chunk of that region (or, for run, while the caller waits for it).
  const std::function<void(int, int)>* all_fn_ = nullptr;
  const std::function<void(int64_t, int64_t, int)>* range_fn_ = nullptr;
  int64_t n_ = 0, grain_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
};

// Number of physical cores (hyperthread siblings counted once); at least 1.
int physical_cores();

}  // namespace straw::cpu

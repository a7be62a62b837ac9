// A thread pool built for per-token work: persistent workers, one parallel region at a time.
//
// Decode runs a few hundred short parallel regions per token, so the cost of waking workers matters.
// Workers spin on an atomic generation counter for a short while after each region (the next op
// follows within microseconds) and only then sleep on a condition variable.
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

  // Runs fn(thread_index, n_threads) on every thread (the caller is thread 0) and returns when all
  // are done. Not reentrant: call it from one thread at a time, never from inside fn.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into chunks of `grain` and hands them out dynamically: fn(begin, end, thread).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};  // bumped once per run(); workers wait for a change
  std::atomic<int> pending_{0};          // workers still busy with the current job
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

// Number of physical cores (hyperthread siblings counted once); at least 1.
int physical_cores();

}  // namespace straw::cpu

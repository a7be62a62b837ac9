// The CPU thread pool: every index exactly once, every thread once per run(), thread indices
// unique among concurrent chunks, each thread's own run in order and a stalled one taken over, and
// no lost wake-ups after the workers went to sleep.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "cpu/thread_pool.h"

namespace {

using straw::cpu::ThreadPool;

TEST(CpuThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 100003})
      for (int64_t grain : {1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e, int thread) {
          ASSERT_GE(thread, 0);
          ASSERT_LT(thread, pool.size());
          if (pool.size() > 1) {
            ASSERT_LE(e - b, grain);  // (one thread: one call)
          }
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " i " << i;
      }
  }
}

TEST(CpuThreadPool, ThreadIndicesAreNotSharedByConcurrentChunks) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> busy(4);
  std::atomic<bool> clash{false};
  for (int rep = 0; rep < 200; ++rep)
    pool.parallel_for(64, 1, [&](int64_t, int64_t, int thread) {
      if (busy[thread].fetch_add(1) != 0) clash = true;
      std::this_thread::yield();
      busy[thread].fetch_sub(1);
    });
  EXPECT_FALSE(clash.load());
}

// Each thread owns a contiguous run of chunks and takes it in order, so that a matvec is one
// sequential read per core; a run whose owner is stalled is finished from its back by the others.
TEST(CpuThreadPool, OwnersTakeTheirRunInOrderAndOthersFinishAStalledOne) {
  constexpr int kThreads = 4;
  constexpr int64_t kChunks = 64;
  ThreadPool pool(kThreads);
  std::vector<int> owner(kChunks, -1);
  std::vector<std::vector<int64_t>> order(kThreads);
  std::vector<int64_t> seq(kChunks, -1);
  std::atomic<int64_t> clock{0};
  pool.parallel_for(kChunks, 1, [&](int64_t b, int64_t, int thread) {
    // The caller (thread 0) stalls on its first chunk, as a descheduled thread would.
    if (b == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    owner[size_t(b)] = thread;  // chunks are disjoint; the pool's wait orders these writes
    order[size_t(thread)].push_back(b);
    seq[size_t(b)] = clock.fetch_add(1);
  });
  const int64_t per_run = kChunks / kThreads;
  // The chunks a thread took from its own run are that run's first ones, in order, without gaps.
  for (int t = 0; t < kThreads; ++t) {
    int64_t next = t * per_run;
    for (int64_t c : order[size_t(t)]) {
      if (c / per_run == t) {
        EXPECT_EQ(c, next) << "thread " << t;
        ++next;
      }
    }
  }
  int taken_over = 0;
  for (int64_t c = 1; c < per_run; ++c) taken_over += owner[size_t(c)] != 0;
  EXPECT_GT(taken_over, 0) << "nobody took over the stalled caller's run";
  // ... from its back: its last chunk went before its second.
  EXPECT_LT(seq[size_t(per_run - 1)], seq[1]);
}

TEST(CpuThreadPool, RunCallsEveryThreadOnce) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 100; ++rep) {
    std::vector<std::atomic<int>> hits(3);
    pool.run([&](int t, int n) {
      ASSERT_EQ(n, 3);
      hits[t].fetch_add(1);
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST(CpuThreadPool, ManyTinyRegionsAndSleepingWorkers) {
  ThreadPool pool(4);  // more threads than this machine may have cores
  int64_t total = 0;
  for (int rep = 0; rep < 20000; ++rep) {
    std::atomic<int64_t> sum{0};
    pool.parallel_for(8, 1, [&](int64_t b, int64_t e, int) { sum += e - b; });
    total += sum.load();
  }
  EXPECT_EQ(total, 8 * 20000);
  // Idle long enough for the workers to sleep, then wake them with both kinds of region.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::atomic<int> ran{0};
  pool.run([&](int, int) { ran++; });
  EXPECT_EQ(ran.load(), 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 10, [&](int64_t b, int64_t e, int) { sum += e - b; });
  EXPECT_EQ(sum.load(), 1000);
}

}  // namespace

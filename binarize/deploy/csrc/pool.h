// A small persistent thread pool for the packed kernels: one parallel region at a time, static partition.
//
// run(threads, n, fn) calls fn(begin, end) on `threads` disjoint contiguous slices of [0, n): slice 0 on the calling
// thread, the others on workers that sleep between regions. The thread count comes from the caller (torch's
// get_num_threads()), so the kernels follow torch's setting. A second caller that finds the pool busy runs its
// region alone instead of waiting; a child process after fork() starts a fresh pool (the parent's workers do not
// exist there).
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace binarize {

class Pool {
 public:
  using Body = std::function<void(int64_t, int64_t)>;

  // Splits [0, n) into min(threads, n) slices and runs body on each, returning when all are done.
  void run(int threads, int64_t n, const Body& body) {
    if (n <= 0) return;
    const int64_t slices = threads < 1 ? 1 : (threads > n ? n : threads);
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (slices == 1 || !region.owns_lock()) {
      body(0, n);
      return;
    }
    grow(static_cast<int>(slices) - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      count_ = n;
      slices_ = slices;
      pending_ = slices - 1;
      ++generation_;
    }
    start_.notify_all();
    body(0, n / slices);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    body_ = nullptr;
  }

  // The process-wide pool (created on first use, never destroyed: workers are detached).
  static Pool& instance() {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(nullptr, nullptr, [] { current_.store(nullptr); }); });
    Pool* pool = current_.load();
    if (pool == nullptr) {
      Pool* fresh = new Pool();
      if (current_.compare_exchange_strong(pool, fresh)) {
        pool = fresh;
      } else {
        delete fresh;  // another thread installed its pool first (no workers were started in ours)
      }
    }
    return *pool;
  }

 private:
  void grow(int workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (workers_ < workers) {
      const int64_t slice = ++workers_;
      const uint64_t seen = generation_;
      std::thread([this, slice, seen] { work(slice, seen); }).detach();
    }
  }

  void work(int64_t slice, uint64_t seen) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      start_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (slice >= slices_) continue;
      const Body* body = body_;
      const int64_t begin = count_ * slice / slices_;
      const int64_t end = count_ * (slice + 1) / slices_;
      lock.unlock();
      (*body)(begin, end);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  static inline std::atomic<Pool*> current_{nullptr};

  std::mutex region_;  // held by the caller for a whole parallel region
  std::mutex mutex_;   // guards everything below
  std::condition_variable start_;
  std::condition_variable done_;
  const Body* body_ = nullptr;
  int64_t count_ = 0;
  int64_t slices_ = 0;
  int64_t pending_ = 0;
  int64_t workers_ = 0;
  uint64_t generation_ = 0;
};

// Parallel loop over [0, n) with `threads` threads (see Pool::run).
inline void parallel_for(int threads, int64_t n, const Pool::Body& body) { Pool::instance().run(threads, n, body); }

}  // namespace binarize

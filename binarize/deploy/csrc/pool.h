// A small persistent thread pool for the packed kernels: one parallel region at a time, dynamic chunks.
//
// run(threads, n, body) calls body(begin, end) on disjoint chunks covering [0, n), taken from a shared counter by
// the calling thread and by up to threads - 1 workers that sleep between regions. The thread count comes from the
// caller (torch's get_num_threads()), so the kernels follow torch's setting. A worker that wakes late (its core
// busy with another process) finds the chunks taken and the region closed, so no region waits for a sleeper. A
// second caller that finds the pool busy runs its region alone; a child process after fork() starts a fresh pool.
#pragma once

#include <pthread.h>

#include <algorithm>
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

  // Runs body over [0, n) in chunks on up to `threads` threads, returning when all chunks are done.
  void run(int threads, int64_t n, const Body& body) {
    if (n <= 0) return;
    const int64_t helpers = std::min<int64_t>(threads, n) - 1;
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (helpers < 1 || !region.owns_lock()) {
      body(0, n);
      return;
    }
    grow(helpers);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      count_ = n;
      grain_ = std::max<int64_t>(1, n / ((helpers + 1) * 4));
      next_.store(0);
      helpers_ = helpers;
      running_ = 0;
      open_ = true;
      ++generation_;
    }
    start_.notify_all();
    drain(body, n, grain_);
    std::unique_lock<std::mutex> lock(mutex_);
    open_ = false;
    done_.wait(lock, [this] { return running_ == 0; });
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
      ++workers_;
      const uint64_t seen = generation_;
      std::thread([this, seen] { work(seen); }).detach();
    }
  }

  void drain(const Body& body, int64_t count, int64_t grain) {
    for (;;) {
      const int64_t begin = next_.fetch_add(grain);
      if (begin >= count) return;
      body(begin, std::min(count, begin + grain));
    }
  }

  void work(uint64_t seen) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      start_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (!open_ || running_ >= helpers_) continue;
      ++running_;
      const Body* body = body_;
      const int64_t count = count_, grain = grain_;
      lock.unlock();
      drain(*body, count, grain);
      lock.lock();
      if (--running_ == 0) done_.notify_one();
    }
  }

  static inline std::atomic<Pool*> current_{nullptr};

  std::mutex region_;  // held by the caller for a whole parallel region
  std::mutex mutex_;   // guards everything below
  std::condition_variable start_;
  std::condition_variable done_;
  const Body* body_ = nullptr;
  int64_t count_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_{0};  // first index of the next chunk to take
  int64_t helpers_ = 0;           // workers allowed to join this region
  int64_t running_ = 0;           // workers inside this region
  bool open_ = false;             // whether workers may still join
  int64_t workers_ = 0;
  uint64_t generation_ = 0;
};

// Parallel loop over [0, n) with `threads` threads (see Pool::run).
inline void parallel_for(int threads, int64_t n, const Pool::Body& body) { Pool::instance().run(threads, n, body); }

}  // namespace binarize

// threadpool.h: a persistent pool of worker threads for the CPU ops. size() threads take part
// in each parallel_for: the caller plus size() - 1 workers. A call allocates nothing: the job is a
// function pointer and a context pointer, ranges are handed out through an atomic counter.
// Idle workers spin briefly (a decode step posts jobs back to back) and then sleep on a
// condition variable. fn must not throw. Calls from inside a job, or from a second thread while one runs, execute
// inline on the calling thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace lb {

class ThreadPool {
 public:
    // fn(ctx, begin, end, thread): process items [begin, end) on thread index `thread` (0 = caller)
    using RangeFn = void (*)(void* ctx, uint64_t begin, uint64_t end, int thread);

    explicit ThreadPool(int n_threads);  // n_threads >= 1, the caller included
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Splits [0, n) into contiguous ranges of at least `grain` items and runs them on all threads;
    // returns when every range is done. fn(begin, end, thread).
    template <class F>
    void parallel_for(uint64_t n, F&& fn, uint64_t grain = 1) {
        using Fn = std::remove_reference_t<F>;
        run(
            n, grain, [](void* ctx, uint64_t b, uint64_t e, int t) { (*static_cast<Fn*>(ctx))(b, e, t); },
            const_cast<void*>(static_cast<const void*>(&fn)));
    }

    void run(uint64_t n, uint64_t grain, RangeFn fn, void* ctx);

 private:
    void worker(int index);
    void work_on_job(int thread);

    int n_threads_;
    std::vector<std::thread> threads_;

    // the current job (written by the caller before gen_ is bumped)
    RangeFn fn_ = nullptr;
    void* ctx_ = nullptr;
    uint64_t n_ = 0, chunk_ = 1;
    std::atomic<uint64_t> next_{0};  // next item to hand out
    std::atomic<int> remaining_{0};  // workers that have not finished the current job
    std::atomic<uint64_t> gen_{0};   // job generation; workers wait for it to change
    std::atomic<bool> busy_{false};  // a job is running (nested / concurrent calls run inline)
    std::atomic<bool> stop_{false};

    std::mutex mu_;
    std::condition_variable wake_cv_;  // workers sleep here
    std::condition_variable done_cv_;  // the caller sleeps here
};

}  // namespace lb

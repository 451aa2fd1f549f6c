#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dynin_rt {

namespace {

int default_threads() {
    if (const char* env = std::getenv("DYNIN_RT_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n > 0) return n;
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

class Pool {
 public:
    explicit Pool(int n) { resize(n); }
    ~Pool() { stop(); }

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    void resize(int n) {
        std::lock_guard<std::mutex> busy(busy_);
        stop();
        stopping_ = false;
        for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
    }

    void run(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
        const int64_t max_parts = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
        const int parts = static_cast<int>(std::min<int64_t>(size(), max_parts));
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (parts <= 1 || !busy.owns_lock()) {
            fn(0, n);
            return;
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = &fn;
            job_n_ = n;
            job_parts_ = parts;
            pending_ = parts - 1;
            error_ = nullptr;
            ++generation_;
        }
        cv_.notify_all();
        std::exception_ptr local;
        try {
            fn(0, n / parts);
        } catch (...) {
            local = std::current_exception();
        }
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [this] { return pending_ == 0; });
        job_ = nullptr;
        if (local) std::rethrow_exception(local);
        if (error_) std::rethrow_exception(error_);
    }

 private:
    void loop(int index) {
        uint64_t seen = 0;
        while (true) {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            if (index >= job_parts_) continue;
            const auto* fn = job_;
            const int64_t begin = job_n_ * index / job_parts_, end = job_n_ * (index + 1) / job_parts_;
            lk.unlock();
            std::exception_ptr err;
            try {
                (*fn)(begin, end);
            } catch (...) {
                err = std::current_exception();
            }
            lk.lock();
            if (err && !error_) error_ = err;
            if (--pending_ == 0) done_cv_.notify_one();
        }
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    std::vector<std::thread> workers_;
    std::mutex busy_, mu_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(int64_t, int64_t)>* job_ = nullptr;
    int64_t job_n_ = 0;
    int job_parts_ = 0;
    int pending_ = 0;
    uint64_t generation_ = 0;
    bool stopping_ = false;
    std::exception_ptr error_;
};

Pool& pool() {
    static Pool p(default_threads());
    return p;
}

}  // namespace

int cpu_num_threads() { return pool().size(); }

void cpu_set_num_threads(int n) { pool().resize(n > 0 ? n : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    if (n <= 0) return;
    pool().run(n, fn, min_chunk);
}

}  // namespace dynin_rt

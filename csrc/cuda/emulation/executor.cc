// The emulated device's execution engine. A grid's blocks are dealt to worker threads (the waiting
// host thread plus a few helpers) one at a time; a block's threads run as fibers on its worker,
// each until it reaches a sync point (__syncthreads, a warp collective) or ends. A sync point
// completes when its last participant arrives; the arrivals are checked as the hardware requires
// (same barrier, same collective and mask, no exited or absent lane in a mask). When every live
// thread of a block waits and none can be released, the launch fails with the sync points named,
// instead of hanging.
//
// ThreadSanitizer sees each kernel thread of a block as a thread of its own: the only orderings
// between them are the barriers and collectives they pass (each arrival releases, each release
// acquires), so an unsynchronised shared-memory access pair is a race, as on the GPU. The executor's
// own bookkeeping is hidden from it. Blocks on one worker are ordered (static shared memory is that
// worker's storage); blocks on different workers are not. A finished thread's fiber (its stack)
// starts the block's next new thread directly, without a switch, except under ThreadSanitizer.
#include "executor.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "fiber.h"
#include "sanitizers.h"

namespace dynin_rt {
namespace emu {

thread_local const ThreadCoords* tl_coords __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// Under ThreadSanitizer no two threads of a block share a stack: TSan would take the second's use of
// the first's stack frames for a race (it cannot be told that the memory is fresh).
#if DYNIN_RT_EMU_TSAN
constexpr bool kFreshStacks = true;
#else
constexpr bool kFreshStacks = false;
#endif

enum class Status : uint8_t { kNotStarted, kRunning, kRunnable, kWaiting, kExited, kAbandoned };

struct ThreadState {
    ThreadCoords coords{};
    int index = 0;
    Status status = Status::kNotStarted;
    Fiber* fiber = nullptr;
    Site site{};           // the sync point it waits at
    uint64_t result = 0;   // of that sync point
    char arrive_sync = 0;  // ThreadSanitizer sync objects: released on arrival, on release
    char resume_sync = 0;
};

// What one lane brought to a warp collective.
struct Lane {
    uint32_t arg;
    uint64_t value;
    void* payload;
};

// A warp collective in progress: the lanes of `mask` must all arrive with the same operation.
struct Group {
    unsigned mask, arrived;
    Collective kind;
    int width;
    Site site;  // of the first arrival
    void (*combine)(void* const*);
};

struct WarpState {
    unsigned present = 0, exited = 0;
    Lane lane[32];
    Group groups[32];  // disjoint masks
    int n_groups = 0;
};

struct BlockState {
    const GridLaunch* grid = nullptr;
    uint3 index{};
    int n_threads = 0, live = 0, next_start = 0;
    std::vector<ThreadState> threads;
    std::vector<WarpState> warps;
    std::deque<int> runnable;
    int bar_arrived = 0, bar_acc = 0;
    Barrier bar_kind = Barrier::kPlain;
    Site bar_site{};
    std::vector<int> bar_waiting;
    void* smem = nullptr;
    std::string error;
};

// One per OS thread that runs blocks: its own context and its pool of fibers.
struct Worker {
    Context host;
    std::vector<std::unique_ptr<Fiber>> fibers;
    std::vector<Fiber*> idle;
    std::vector<Fiber*> retired;  // ThreadSanitizer builds: stacks of the block's finished threads
    // ThreadSanitizer's identity of kernel thread i (reused by block after block on this worker):
    // distinct from the fibers, which carry one kernel thread after another
    std::vector<void*> tsan_threads;
    BlockState block;
    ThreadState* current = nullptr;
    char block_start_sync = 0, block_end_sync = 0;
    ~Worker() {
        TsanIgnore ignore;  // the fibers' bookkeeping was touched under every kernel thread's identity
        fibers.clear();
        for (void* f : tsan_threads) tsan_destroy_fiber(f);
    }
};
// A plain pointer (cheap to reach from kernel code); the owner frees the worker at thread exit,
// ignored by ThreadSanitizer like all the executor's bookkeeping.
thread_local Worker* tl_worker __attribute__((tls_model("initial-exec"))) = nullptr;
struct WorkerDeleter {
    void operator()(Worker* w) const {
        TsanIgnore ignore;
        delete w;
    }
};
thread_local std::unique_ptr<Worker, WorkerDeleter> tl_worker_owner;

std::string where(const Site& s) {
    const char* slash = std::strrchr(s.file, '/');
    return std::string(s.what) + " (" + (slash ? slash + 1 : s.file) + ":" + std::to_string(s.line) + ")";
}

std::string coords(uint3 v) { return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")"; }

std::string hex(unsigned v) {
    std::ostringstream os;
    os << "0x" << std::hex << v;
    return os.str();
}

std::string launch_name(const BlockState& b) {
    const GridLaunch& g = *b.grid;
    return std::string("kernel ") + g.name + " <<<" + coords({g.grid.x, g.grid.y, g.grid.z}) + ", " +
           coords({g.block.x, g.block.y, g.block.z}) + ">>> block " + coords(b.index);
}

bool same_site(const Site& a, const Site& b) {
    return a.line == b.line && std::strcmp(a.file, b.file) == 0 && std::strcmp(a.what, b.what) == 0;
}

Worker& worker() {
    Worker* w = tl_worker;
    if (!w || !w->current) {
        std::fprintf(stderr, "dynin_rt emulation: a device built-in was called outside a kernel\n");
        std::abort();
    }
    return *w;
}

Fiber* take_fiber(Worker& w);

// The next thread to run (a released one first, else one not started yet, which gets a fiber), or
// -1 when the block is done or stuck (then b.error says why).
int next_thread(Worker& w) {
    BlockState& b = w.block;
    if (!b.error.empty()) return -1;
    if (!b.runnable.empty()) {
        const int i = b.runnable.front();
        b.runnable.pop_front();
        return i;
    }
    if (b.next_start < b.n_threads) return b.next_start++;
    if (b.live > 0) {
        std::ostringstream os;
        os << launch_name(b) << ": no thread can proceed (" << b.n_threads - b.live << " of " << b.n_threads << " threads exited):";
        if (b.bar_arrived) os << " " << b.bar_arrived << " threads wait at " << where(b.bar_site) << ";";
        for (size_t wi = 0; wi < b.warps.size(); ++wi)
            for (int gi = 0; gi < b.warps[wi].n_groups; ++gi) {
                const Group& g = b.warps[wi].groups[gi];
                os << " warp " << wi << " lanes " << hex(g.arrived) << " wait at " << where(g.site) << " with mask " << hex(g.mask)
                   << ";";
            }
        b.error = os.str();
    }
    return -1;
}

// Made on the worker's own context, never by a kernel thread: a new TSan fiber inherits its
// creator's history, which would order the creator's accesses before the new thread's.
void make_tsan_identities(Worker& w, int n_threads) {
    while (w.tsan_threads.size() < static_cast<size_t>(n_threads)) w.tsan_threads.push_back(tsan_create_fiber());
}

// Leaves the running context `from` for the next thread of the block (or the worker's own context
// when there is none); returns when something switches back to `from`. Called outside TsanIgnore
// scopes: no context is ever suspended while ThreadSanitizer ignores its accesses.
void run_next(Worker& w, Context& from) {
    BlockState& b = w.block;
    Context* to = &w.host;
    {
        TsanIgnore ignore;
        const int i = next_thread(w);
        w.current = nullptr;
        if (i >= 0) {
            ThreadState& t = b.threads[i];
            if (!t.fiber) t.fiber = take_fiber(w);
            t.status = Status::kRunning;
            w.current = &t;
            tl_coords = &t.coords;
            to = &t.fiber->context();
            to->tsan_fiber = w.tsan_threads[i];
        }
    }
    if (to != &from) switch_context(from, *to, false);
    else tsan_switch_to(to->tsan_fiber, false);  // the next new thread on this very fiber: a thread of its own for TSan
}

// The calling kernel thread fails the launch and never runs again.
[[noreturn]] void fail(Worker& w, const std::string& message) {
    ThreadState& t = *w.current;
    {
        TsanIgnore ignore;
        if (w.block.error.empty())
            w.block.error = launch_name(w.block) + " thread " + coords(t.coords.thread_idx) + ": " + message;
        t.status = Status::kAbandoned;
        w.current = nullptr;
    }
    tsan_release(&w.block_end_sync);  // what it did before failing happens before the host's next call
    switch_context(t.fiber->context(), w.host, false);
    std::abort();  // an abandoned thread is never resumed
}


void make_runnable(BlockState& b, ThreadState& t) {
    t.status = Status::kRunnable;
    tsan_release(&t.resume_sync);
    b.runnable.push_back(t.index);
}

void complete_barrier(BlockState& b) {
    for (int i : b.bar_waiting) tsan_acquire(&b.threads[i].arrive_sync);
    for (int i : b.bar_waiting) {
        b.threads[i].result = static_cast<uint64_t>(b.bar_acc);
        if (b.threads[i].status == Status::kWaiting) make_runnable(b, b.threads[i]);
    }
    b.bar_waiting.clear();
    b.bar_arrived = 0;
}

// Every lane of group g has arrived: compute each one's result, release the others.
std::string complete_collective(BlockState& b, WarpState& warp, int base, int gi) {
    const Group g = warp.groups[gi];
    warp.groups[gi] = warp.groups[--warp.n_groups];
    void* payloads[32] = {};
    unsigned votes = 0;
    for (int k = 0; k < 32; ++k)
        if (g.mask >> k & 1u) {
            tsan_acquire(&b.threads[base + k].arrive_sync);
            payloads[k] = warp.lane[k].payload;
            if (warp.lane[k].value) votes |= 1u << k;
        }
    const unsigned width = static_cast<unsigned>(g.width);
    for (unsigned k = 0; k < 32; ++k) {
        if (!(g.mask >> k & 1u)) continue;
        const unsigned arg = warp.lane[k].arg, seg = k & ~(width - 1);
        unsigned src = k;
        switch (g.kind) {
            case Collective::kShfl: src = seg + (arg & (width - 1)); break;
            case Collective::kShflUp: src = arg > k - seg ? k : k - arg; break;
            case Collective::kShflDown: src = k + arg < seg + width ? k + arg : k; break;
            case Collective::kShflXor: src = (k ^ arg) < seg + width ? (k ^ arg) : k; break;
            default: break;
        }
        uint64_t result = 0;
        switch (g.kind) {
            case Collective::kBallot: result = votes; break;
            case Collective::kAny: result = votes != 0; break;
            case Collective::kAll: result = votes == g.mask; break;
            case Collective::kSyncWarp:
            case Collective::kWmma: break;
            default:
                if (!(g.mask >> src & 1u))
                    return "lane " + std::to_string(k) + " reads lane " + std::to_string(src) + " in " + where(g.site) +
                           ", which is not in the mask " + hex(g.mask) + " (its value is undefined)";
                result = warp.lane[src].value;
        }
        b.threads[base + k].result = result;
    }
    if (g.combine) g.combine(payloads);
    for (int k = 0; k < 32; ++k)
        if ((g.mask >> k & 1u) && b.threads[base + k].status == Status::kWaiting) make_runnable(b, b.threads[base + k]);
    return {};
}

// The group lane l joins with this collective (created if new), or -1 with *error set.
int join_group(WarpState& warp, int l, Collective kind, unsigned mask, int width, const Site& site, std::string* error) {
    if (!(mask >> l & 1u)) {
        *error = where(site) + " with mask " + hex(mask) + " that does not name the calling lane " + std::to_string(l);
        return -1;
    }
    if (width < 1 || width > 32 || (width & (width - 1))) {
        *error = where(site) + " with width " + std::to_string(width) + " (a power of two up to 32)";
        return -1;
    }
    if (mask & ~warp.present) {
        *error = where(site) + " with mask " + hex(mask) + " names lanes " + hex(mask & ~warp.present) +
                 " that do not exist (a partial warp: the block's size is not a multiple of 32)";
        return -1;
    }
    if (mask & warp.exited) {
        *error = where(site) + " with mask " + hex(mask) + " names lanes " + hex(mask & warp.exited) + " that have exited";
        return -1;
    }
    for (int gi = 0; gi < warp.n_groups; ++gi) {
        const Group& g = warp.groups[gi];
        if (!(g.mask & mask)) continue;
        const bool same_op =
            g.kind == kind && g.width == width && (kind != Collective::kWmma || std::strcmp(g.site.what, site.what) == 0);
        if (g.mask == mask && same_op) return gi;
        *error = where(site) + " with mask " + hex(mask) + " while lanes " + hex(g.arrived) + " wait at " + where(g.site) +
                 " with mask " + hex(g.mask) + " (divergent warp collectives)";
        return -1;
    }
    warp.groups[warp.n_groups] = Group{mask, 0, kind, width, site, nullptr};
    return warp.n_groups++;
}

void thread_exited(Worker& w, ThreadState& t) {
    BlockState& b = w.block;
    std::string error;
    {
        TsanIgnore ignore;
        t.status = Status::kExited;
        --b.live;
        WarpState& warp = b.warps[t.index / 32];
        const unsigned bit = 1u << (t.index % 32);
        warp.exited |= bit;
        for (int gi = 0; gi < warp.n_groups && error.empty(); ++gi)
            if (warp.groups[gi].mask & bit)
                error = "exited while lanes " + hex(warp.groups[gi].arrived) + " wait for it at " + where(warp.groups[gi].site) +
                        " with mask " + hex(warp.groups[gi].mask);
        if (error.empty() && b.bar_arrived > 0 && b.bar_arrived == b.live) complete_barrier(b);
    }
    if (!error.empty()) fail(w, error);
}

// Every fiber runs this: one kernel thread after another. When a thread ends, the fiber starts the
// next new thread itself (no switch); otherwise it hands itself back and resumes another thread.
void fiber_main(void*) {
    fiber_entered();
    for (;;) {
        Worker& w = *tl_worker;
        ThreadState& t = *w.current;
        Fiber* self = t.fiber;
        tsan_acquire(&w.block_start_sync);
        w.block.grid->body->run_thread();
        thread_exited(w, t);
        tsan_release(&w.block_end_sync);
        {
            TsanIgnore ignore;
            BlockState& b = w.block;
            t.fiber = nullptr;
            if (kFreshStacks) {
                w.retired.push_back(self);
            } else if (b.runnable.empty() && b.next_start < b.n_threads && b.error.empty()) {
                b.threads[b.next_start].fiber = self;  // the next new thread runs on this fiber
            } else {
                w.idle.push_back(self);
            }
        }
        run_next(w, self->context());
    }
}

Fiber* take_fiber(Worker& w) {
    if (w.idle.empty()) {
        w.fibers.push_back(std::make_unique<Fiber>(&fiber_main, nullptr));
        return w.fibers.back().get();
    }
    Fiber* f = w.idle.back();
    w.idle.pop_back();
    return f;
}

void setup_block(Worker& w, const GridLaunch& g, uint3 index) {
    BlockState& b = w.block;
    b.grid = &g;
    b.index = index;
    b.n_threads = static_cast<int>(g.block.x * g.block.y * g.block.z);
    b.live = b.n_threads;
    b.next_start = 0;
    b.threads.assign(static_cast<size_t>(b.n_threads), ThreadState{});
    b.warps.assign(static_cast<size_t>((b.n_threads + 31) / 32), WarpState{});
    for (int i = 0; i < b.n_threads; ++i) {
        ThreadState& t = b.threads[i];
        t.index = i;
        t.coords.thread_idx = {i % g.block.x, (i / g.block.x) % g.block.y, i / (g.block.x * g.block.y)};
        t.coords.block_idx = index;
        t.coords.block_dim = g.block;
        t.coords.grid_dim = g.grid;
        b.warps[i / 32].present |= 1u << (i % 32);
    }
    b.runnable.clear();
    b.bar_arrived = 0;
    b.bar_waiting.clear();
    b.error.clear();
    // dynamic shared memory: exact size, so AddressSanitizer sees an overrun
    b.smem = nullptr;
    if (posix_memalign(&b.smem, 128, g.smem ? g.smem : 1) != 0) throw std::bad_alloc();
}

std::string run_block(Worker& w, const GridLaunch& g, uint3 index) {
    {
        TsanIgnore ignore;
        setup_block(w, g, index);
        make_tsan_identities(w, w.block.n_threads);
    }
    tsan_release(&w.block_start_sync);
    run_next(w, w.host);  // returns when the block is done, stuck or failed
    tsan_acquire(&w.block_end_sync);
    TsanIgnore ignore;
    BlockState& b = w.block;
    w.idle.insert(w.idle.end(), w.retired.begin(), w.retired.end());
    w.retired.clear();
    // After a failure, the threads left mid-kernel are dropped with their stacks (which hold frames
    // that never returned) and their ThreadSanitizer identities; fresh ones replace them on demand.
    for (ThreadState& t : b.threads)
        if (t.fiber) {
            tsan_acquire(&t.arrive_sync);  // what a waiting thread did before it waited
            for (auto it = w.fibers.begin(); it != w.fibers.end(); ++it)
                if (it->get() == t.fiber) {
                    w.fibers.erase(it);
                    break;
                }
            t.fiber = nullptr;
            tsan_destroy_fiber(w.tsan_threads[t.index]);
            w.tsan_threads[t.index] = tsan_create_fiber();
        }
    w.current = nullptr;
    tl_coords = nullptr;
    std::free(b.smem);
    b.smem = nullptr;
    return b.error;
}

// The host thread and the helper threads share each grid's blocks through an atomic counter.
class Pool {
 public:
    Pool() {
        int n = static_cast<int>(std::thread::hardware_concurrency());
        if (const char* env = std::getenv("DYNIN_RT_EMU_WORKERS")) n = std::atoi(env);
        n = std::max(1, std::min(n, 8));
        for (int i = 1; i < n; ++i) helpers_.emplace_back([this] { helper(); });
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        wake_.notify_all();
        for (std::thread& t : helpers_) t.join();
    }

    std::string run(const GridLaunch& g) {
        const uint64_t total = static_cast<uint64_t>(g.grid.x) * g.grid.y * g.grid.z;
        const int helpers = static_cast<int>(std::min<uint64_t>(helpers_.size(), total - 1));
        {
            std::lock_guard<std::mutex> lock(mu_);
            job_ = &g;
            total_ = total;
            next_.store(0);
            failed_.store(false);
            error_.clear();
            wanted_ = helpers;
            busy_ = helpers;
            ++generation_;
        }
        if (helpers > 0) wake_.notify_all();
        work();
        std::unique_lock<std::mutex> lock(mu_);
        done_.wait(lock, [&] { return busy_ == 0; });
        job_ = nullptr;
        return error_;
    }

 private:
    void helper() {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            wake_.wait(lock, [&] { return stop_ || (generation_ != seen && wanted_ > 0); });
            if (stop_) return;
            seen = generation_;
            --wanted_;
            lock.unlock();
            work();
            lock.lock();
            if (--busy_ == 0) done_.notify_all();
        }
    }

    void work() {
        if (!tl_worker) {
            tl_worker_owner.reset(new Worker);
            tl_worker = tl_worker_owner.get();
            init_thread_context(&tl_worker->host);
        }
        Worker& w = *tl_worker;
        const GridLaunch& g = *job_;
        for (uint64_t i = next_.fetch_add(1); i < total_ && !failed_.load(); i = next_.fetch_add(1)) {
            const uint3 index{static_cast<unsigned>(i % g.grid.x), static_cast<unsigned>((i / g.grid.x) % g.grid.y),
                              static_cast<unsigned>(i / (static_cast<uint64_t>(g.grid.x) * g.grid.y))};
            std::string error = run_block(w, g, index);
            if (!error.empty()) {
                std::lock_guard<std::mutex> lock(mu_);
                if (error_.empty()) error_ = std::move(error);
                failed_.store(true);
            }
        }
    }

    std::vector<std::thread> helpers_;
    std::mutex mu_;
    std::condition_variable wake_, done_;
    bool stop_ = false;
    uint64_t generation_ = 0;
    int wanted_ = 0, busy_ = 0;
    const GridLaunch* job_ = nullptr;
    uint64_t total_ = 0;
    std::atomic<uint64_t> next_{0};
    std::atomic<bool> failed_{false};
    std::string error_;
};

}  // namespace

int block_barrier(Site site, Barrier kind, int pred) {
    Worker& w = worker();
    BlockState& b = w.block;
    ThreadState& t = *w.current;
    std::string error;
    bool wait = false;
    {
        TsanIgnore ignore;
        if (b.bar_arrived > 0 && (!same_site(b.bar_site, site) || b.bar_kind != kind)) {
            error = "arrived at " + where(site) + " while " + std::to_string(b.bar_arrived) + " threads wait at " +
                    where(b.bar_site) + " (divergent barriers)";
        } else {
            if (b.bar_arrived == 0) {
                b.bar_site = site;
                b.bar_kind = kind;
                b.bar_acc = kind == Barrier::kAnd ? 1 : 0;
            }
            ++b.bar_arrived;
            b.bar_acc = kind == Barrier::kCount ? b.bar_acc + (pred != 0)
                        : kind == Barrier::kAnd ? (b.bar_acc && pred)
                                                : (b.bar_acc || pred);
            t.site = site;
            tsan_release(&t.arrive_sync);
            b.bar_waiting.push_back(t.index);
            if (b.bar_arrived == b.live) complete_barrier(b);
            else t.status = Status::kWaiting;
            wait = t.status == Status::kWaiting;
        }
    }
    if (!error.empty()) fail(w, error);
    if (wait) run_next(w, t.fiber->context());  // until released
    tsan_acquire(&t.resume_sync);
    return static_cast<int>(t.result);
}

uint64_t warp_collective(Site site, Collective kind, unsigned mask, uint64_t value, int arg, int width, void* payload,
                         void (*combine)(void* const*)) {
    Worker& w = worker();
    BlockState& b = w.block;
    ThreadState& t = *w.current;
    std::string error;
    bool wait = false;
    {
        TsanIgnore ignore;
        const int l = t.index % 32;
        WarpState& warp = b.warps[t.index / 32];
        const int gi = join_group(warp, l, kind, mask, width, site, &error);
        if (gi >= 0) {
            Group& g = warp.groups[gi];
            warp.lane[l] = Lane{static_cast<uint32_t>(arg), value, payload};
            if (combine) g.combine = combine;
            g.arrived |= 1u << l;
            t.site = site;
            tsan_release(&t.arrive_sync);
            if (g.arrived == g.mask) error = complete_collective(b, warp, t.index & ~31, gi);
            else t.status = Status::kWaiting;
            wait = t.status == Status::kWaiting;
        }
    }
    if (!error.empty()) fail(w, error);
    if (wait) run_next(w, t.fiber->context());  // until released
    tsan_acquire(&t.resume_sync);
    return t.result;
}

void* dynamic_shared_memory() { return worker().block.smem; }

void trap(Site site) {
    Worker& w = worker();
    fail(w, "called " + where(site));
}

std::string run_grid(const GridLaunch& g) {
    static Pool pool;
    return pool.run(g);
}

}  // namespace emu
}  // namespace dynin_rt

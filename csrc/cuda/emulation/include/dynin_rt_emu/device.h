// The kernel-side built-ins of the emulated build (included by the stand-in cuda_runtime.h):
// threadIdx and friends, __shared__, barriers, warp collectives, atomics and the device math the
// kernels call. A kernel thread runs as a fiber on a CPU worker (executor.cc); every barrier and
// warp collective is a sync point where the fiber yields until its participants have arrived, and
// where the participation rules of the hardware are checked (a failed check fails the launch).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __constant__
#define __align__(n) alignas(n)
// Static shared memory: a worker runs one block at a time, so its thread-local storage is the block's.
#define __shared__ static thread_local

namespace dynin_rt {
namespace emu {

// Coordinates of the kernel thread running on this worker (set by the executor at every switch).
struct ThreadCoords {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};
extern thread_local const ThreadCoords* tl_coords __attribute__((tls_model("initial-exec")));

// Where a sync point is in the source, for the messages of a failed launch.
struct Site {
    const char* what;
    const char* file;
    int line;
};

enum class Barrier : uint8_t { kPlain, kCount, kAnd, kOr };
// __syncthreads and its variants; returns the count / and / or of `pred` over the block.
int block_barrier(Site site, Barrier kind, int pred);

enum class Collective : uint8_t { kShfl, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kSyncWarp, kWmma };
// A warp collective over the lanes of `mask`: returns this lane's result. `payload` and `combine`
// serve kWmma: the last lane to arrive calls combine(payloads of lanes 0..31) once.
uint64_t warp_collective(Site site, Collective kind, unsigned mask, uint64_t value, int arg, int width, void* payload = nullptr,
                         void (*combine)(void* const* payloads) = nullptr);

// The block's dynamic shared memory: an exact-size heap block per block execution.
void* dynamic_shared_memory();

// Fails the launch (a device-side trap): the stream's work stops and the error is sticky.
[[noreturn]] void trap(Site site);

template <typename T>
uint64_t to_bits(T v) {
    static_assert(std::is_arithmetic<T>::value && (sizeof(T) == 4 || sizeof(T) == 8), "shuffles move 32- and 64-bit scalars");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
template <typename T>
T shuffle(Site site, Collective kind, unsigned mask, T var, int arg, int width = 32) {
    return from_bits<T>(warp_collective(site, kind, mask, to_bits(var), arg, width));
}

}  // namespace emu
}  // namespace dynin_rt

#define DYNIN_RT_EMU_SITE(what) (::dynin_rt::emu::Site{what, __FILE__, __LINE__})

#define threadIdx (::dynin_rt::emu::tl_coords->thread_idx)
#define blockIdx (::dynin_rt::emu::tl_coords->block_idx)
#define blockDim (::dynin_rt::emu::tl_coords->block_dim)
#define gridDim (::dynin_rt::emu::tl_coords->grid_dim)
constexpr int warpSize = 32;

#define __syncthreads() \
    ((void)::dynin_rt::emu::block_barrier(DYNIN_RT_EMU_SITE("__syncthreads"), ::dynin_rt::emu::Barrier::kPlain, 0))
#define __syncthreads_count(pred) \
    ::dynin_rt::emu::block_barrier(DYNIN_RT_EMU_SITE("__syncthreads_count"), ::dynin_rt::emu::Barrier::kCount, (pred) != 0)
#define __syncthreads_and(pred) \
    ::dynin_rt::emu::block_barrier(DYNIN_RT_EMU_SITE("__syncthreads_and"), ::dynin_rt::emu::Barrier::kAnd, (pred) != 0)
#define __syncthreads_or(pred) \
    ::dynin_rt::emu::block_barrier(DYNIN_RT_EMU_SITE("__syncthreads_or"), ::dynin_rt::emu::Barrier::kOr, (pred) != 0)

#define __shfl_sync(...) \
    ::dynin_rt::emu::shuffle(DYNIN_RT_EMU_SITE("__shfl_sync"), ::dynin_rt::emu::Collective::kShfl, __VA_ARGS__)
#define __shfl_up_sync(...) \
    ::dynin_rt::emu::shuffle(DYNIN_RT_EMU_SITE("__shfl_up_sync"), ::dynin_rt::emu::Collective::kShflUp, __VA_ARGS__)
#define __shfl_down_sync(...) \
    ::dynin_rt::emu::shuffle(DYNIN_RT_EMU_SITE("__shfl_down_sync"), ::dynin_rt::emu::Collective::kShflDown, __VA_ARGS__)
#define __shfl_xor_sync(...) \
    ::dynin_rt::emu::shuffle(DYNIN_RT_EMU_SITE("__shfl_xor_sync"), ::dynin_rt::emu::Collective::kShflXor, __VA_ARGS__)
#define __ballot_sync(mask, pred)                                                                                      \
    static_cast<unsigned>(::dynin_rt::emu::warp_collective(DYNIN_RT_EMU_SITE("__ballot_sync"),                         \
                                                           ::dynin_rt::emu::Collective::kBallot, (mask), (pred) != 0, 0, 32))
#define __any_sync(mask, pred)                                                                                          \
    static_cast<int>(::dynin_rt::emu::warp_collective(DYNIN_RT_EMU_SITE("__any_sync"), ::dynin_rt::emu::Collective::kAny, \
                                                      (mask), (pred) != 0, 0, 32))
#define __all_sync(mask, pred)                                                                                          \
    static_cast<int>(::dynin_rt::emu::warp_collective(DYNIN_RT_EMU_SITE("__all_sync"), ::dynin_rt::emu::Collective::kAll, \
                                                      (mask), (pred) != 0, 0, 32))
#define __syncwarp(...) ::dynin_rt::emu::sync_warp(DYNIN_RT_EMU_SITE("__syncwarp"), ##__VA_ARGS__)
#define __trap() ::dynin_rt::emu::trap(DYNIN_RT_EMU_SITE("__trap"))

namespace dynin_rt {
namespace emu {
inline void sync_warp(Site site, unsigned mask = 0xffffffffu) { warp_collective(site, Collective::kSyncWarp, mask, 0, 0, 32); }
}  // namespace emu
}  // namespace dynin_rt

// --- device math: the host's IEEE operations (fast-math variants map to the exact ones) ----------
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline int __float_as_int(float f) { return dynin_rt::emu::from_bits<int>(dynin_rt::emu::to_bits(f)); }
inline float __int_as_float(int i) { return dynin_rt::emu::from_bits<float>(dynin_rt::emu::to_bits(i)); }
inline long long __double_as_longlong(double d) { return dynin_rt::emu::from_bits<long long>(dynin_rt::emu::to_bits(d)); }
inline double __longlong_as_double(long long i) { return dynin_rt::emu::from_bits<double>(dynin_rt::emu::to_bits(i)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
template <typename T>
T __ldg(const T* p) {
    return *p;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// --- atomics: relaxed, device scope (gcc builtins; CAS loops for floating point) -----------------
#define DYNIN_RT_EMU_INT_ATOMICS(T)                                                                              \
    inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                         \
    inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                         \
    inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                         \
    inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                           \
    inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                         \
    inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                       \
    inline T atomicCAS(T* a, T expected, T v) {                                                                   \
        __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);                  \
        return expected;                                                                                          \
    }                                                                                                             \
    inline T atomicMax(T* a, T v) {                                                                               \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                             \
        while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {  \
        }                                                                                                         \
        return old;                                                                                               \
    }                                                                                                             \
    inline T atomicMin(T* a, T v) {                                                                               \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                             \
        while (old > v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {  \
        }                                                                                                         \
        return old;                                                                                               \
    }
DYNIN_RT_EMU_INT_ATOMICS(int)
DYNIN_RT_EMU_INT_ATOMICS(unsigned int)
DYNIN_RT_EMU_INT_ATOMICS(long long)
DYNIN_RT_EMU_INT_ATOMICS(unsigned long long)
#undef DYNIN_RT_EMU_INT_ATOMICS

#define DYNIN_RT_EMU_FLOAT_ATOMICS(T, BITS)                                                                        \
    inline T atomicAdd(T* a, T v) {                                                                                \
        BITS* word = reinterpret_cast<BITS*>(a);                                                                   \
        BITS old = __atomic_load_n(word, __ATOMIC_RELAXED);                                                        \
        for (;;) {                                                                                                 \
            const T sum = dynin_rt::emu::from_bits<T>(old) + v;                                                    \
            const BITS next = static_cast<BITS>(dynin_rt::emu::to_bits(sum));                                      \
            if (__atomic_compare_exchange_n(word, &old, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))          \
                return dynin_rt::emu::from_bits<T>(old);                                                           \
        }                                                                                                          \
    }                                                                                                              \
    inline T atomicExch(T* a, T v) {                                                                               \
        BITS* word = reinterpret_cast<BITS*>(a);                                                                   \
        return dynin_rt::emu::from_bits<T>(                                                                        \
            __atomic_exchange_n(word, static_cast<BITS>(dynin_rt::emu::to_bits(v)), __ATOMIC_RELAXED));          \
    }
DYNIN_RT_EMU_FLOAT_ATOMICS(float, unsigned int)
DYNIN_RT_EMU_FLOAT_ATOMICS(double, unsigned long long)
#undef DYNIN_RT_EMU_FLOAT_ATOMICS

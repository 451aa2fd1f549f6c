// Tests of the emulation layer itself (built with DYNIN_RT_CUDA=EMULATE as `emulation_test`, run by
// tests/test_cuda_emulated.py): kernels that use each device built-in, the hardware's checks a bad
// kernel or launch must fail, the stream / copy / capture semantics a program can observe, and the
// strict cuBLASLt. `emulation_test [name...]` runs the named tests (all by default); the exit status
// is the number of failures. `emulation_test race` runs a kernel with a missing barrier, for
// ThreadSanitizer to report (not part of the default set).
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../counters.h"

namespace {

int failures = 0;

#define EXPECT(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::printf("    %s:%d: expected %s\n", __FILE__, __LINE__, #cond);           \
            ++failures;                                                                   \
        }                                                                                 \
    } while (0)

template <typename... P, typename... A>
cudaError_t launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A... args) {
    dynin_rt::emu::launch("test_kernel", kernel, grid, block, smem, s, args...);
    return cudaGetLastError();
}

// A failed launch is reported at the next wait, is sticky, and names the kernel and the reason.
bool fails_with(const char* needle) {
    const cudaError_t err = cudaDeviceSynchronize();
    const std::string msg = cudaGetErrorString(err);
    void* p = nullptr;
    const bool ok = err == cudaErrorLaunchFailure && msg.find(needle) != std::string::npos && cudaMalloc(&p, 4) == err;
    if (!ok || std::getenv("DYNIN_RT_EMU_TEST_VERBOSE")) std::printf("    got %d: %s\n", static_cast<int>(err), msg.c_str());
    cudaDeviceReset();
    return ok;
}

template <typename T>
T* device(size_t n, T fill = T()) {
    T* p = nullptr;
    cudaMalloc(&p, n * sizeof(T));
    std::vector<T> h(n, fill);
    cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    return p;
}

template <typename T>
std::vector<T> host(const T* p, size_t n) {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
}

// --- kernels ---------------------------------------------------------------------------------------

__global__ void index_kernel(int* out) {
    const int i = (blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
    out[i] = static_cast<int>(blockIdx.x * 1000 + blockIdx.y * 100 + threadIdx.x);
}

__global__ void reverse_kernel(int* data, int n) {
    __shared__ int tile[256];
    tile[threadIdx.x] = data[threadIdx.x];
    __syncthreads();
    data[threadIdx.x] = tile[n - 1 - threadIdx.x];
}

__global__ void dynamic_reverse_kernel(float* data) {
    float* s = static_cast<float*>(dynin_rt::emu::dynamic_shared_memory());
    s[threadIdx.x] = data[threadIdx.x];
    __syncthreads();
    data[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}

__global__ void shuffle_kernel(int* out) {
    const int lane = threadIdx.x % 32, v = static_cast<int>(threadIdx.x) * 10;
    out[threadIdx.x * 8 + 0] = __shfl_sync(0xffffffffu, v, 3);
    out[threadIdx.x * 8 + 1] = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x * 8 + 2] = __shfl_down_sync(0xffffffffu, v, 2);
    out[threadIdx.x * 8 + 3] = __shfl_up_sync(0xffffffffu, v, 2);
    out[threadIdx.x * 8 + 4] = __shfl_xor_sync(0xffffffffu, v, 4, 8);  // within groups of 8
    out[threadIdx.x * 8 + 5] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
    out[threadIdx.x * 8 + 6] = __any_sync(0xffffffffu, lane == 31) + 2 * __all_sync(0xffffffffu, lane < 31);
    out[threadIdx.x * 8 + 7] = __syncthreads_count(lane < 5);
}

__global__ void half_warp_kernel(int* out) {  // lanes 0-15 and 16-31 shuffle in two groups
    const unsigned mask = threadIdx.x < 16 ? 0x0000ffffu : 0xffff0000u;
    out[threadIdx.x] = __shfl_sync(mask, static_cast<int>(threadIdx.x), threadIdx.x < 16 ? 0 : 16);
}

__global__ void full_mask_kernel(float* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1); }

__global__ void divergent_kernel(float* out) {  // lanes 0-15 wait at the barrier, 16-31 for them
    if (threadIdx.x < 16) __syncthreads();
    else out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void early_exit_kernel(float* out) {
    if (threadIdx.x == 7) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void two_barriers_kernel(float* out) {
    if (threadIdx.x % 2) __syncthreads();
    else __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void outside_mask_kernel(float* out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 20);
}

__global__ void exit_before_barrier_kernel(int* out) {  // legal: exited threads do not hold a barrier
    if (threadIdx.x >= 40) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void trap_kernel() {
    if (blockIdx.x == 3 && threadIdx.x == 5) __trap();
}

__global__ void add_kernel(float* x, float v, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += v;
}

__global__ void atomic_kernel(int* counter, float* sum, unsigned long long* mx) {
    atomicAdd(counter, 1);
    atomicAdd(sum, 0.5f);
    atomicMax(mx, static_cast<unsigned long long>(blockIdx.x * blockDim.x + threadIdx.x));
}

__global__ void wmma_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float* c) {
    using namespace nvcuda::wmma;
    fragment<matrix_a, 16, 16, 16, __nv_bfloat16, row_major> fa;
    fragment<matrix_b, 16, 16, 16, __nv_bfloat16, col_major> fb;
    fragment<accumulator, 16, 16, 16, float> acc;
    fill_fragment(acc, 0.0f);
    load_matrix_sync(fa, a, 16);
    load_matrix_sync(fb, b, 16);
    mma_sync(acc, fa, fb, acc);
    mma_sync(acc, fa, fb, acc);  // accumulates: 2 a b
    store_matrix_sync(c, acc, 16, mem_row_major);
}

__global__ void race_kernel(float* out) {  // the missing __syncthreads between write and read
    __shared__ float tile[128];
    tile[threadIdx.x] = static_cast<float>(threadIdx.x);
    out[threadIdx.x] = tile[127 - threadIdx.x];
}

// --- tests -------------------------------------------------------------------------------------

void test_indices() {
    int* d = device<int>(2 * 3 * 64, -1);
    EXPECT(launch(index_kernel, dim3(2, 3), 64, 0, nullptr, d) == cudaSuccess);
    const std::vector<int> h = host(d, 2 * 3 * 64);
    EXPECT(h[0] == 0 && h[64 + 5] == 1005 && h[(1 * 2 + 1) * 64 + 63] == 1163 && h[(2 * 2 + 0) * 64] == 200);
    cudaFree(d);
}

void test_shared_memory_and_barriers() {
    std::vector<int> v(256);
    for (int i = 0; i < 256; ++i) v[i] = i;
    int* d = device<int>(256);
    cudaMemcpy(d, v.data(), sizeof(int) * 256, cudaMemcpyHostToDevice);
    launch(reverse_kernel, 1, 256, 0, nullptr, d, 256);
    EXPECT(host(d, 256)[0] == 255 && host(d, 256)[255] == 0);
    float* f = device<float>(200, 0.0f);
    std::vector<float> ramp(200);
    for (int i = 0; i < 200; ++i) ramp[i] = static_cast<float>(i);
    cudaMemcpy(f, ramp.data(), sizeof(float) * 200, cudaMemcpyHostToDevice);
    EXPECT(launch(dynamic_reverse_kernel, 1, 200, sizeof(float) * 200, nullptr, f) == cudaSuccess);
    EXPECT(host(f, 200)[0] == 199.0f);
    int* e = device<int>(64, 0);
    launch(exit_before_barrier_kernel, 1, 64, 0, nullptr, e);
    EXPECT(host(e, 64)[39] == 1 && host(e, 64)[40] == 0 && cudaDeviceSynchronize() == cudaSuccess);
    cudaFree(d);
    cudaFree(f);
    cudaFree(e);
}

void test_warp_collectives() {
    int* d = device<int>(64 * 8, -1);
    launch(shuffle_kernel, 1, 64, 0, nullptr, d);
    const std::vector<int> h = host(d, 64 * 8);
    auto at = [&](int t, int k) { return h[t * 8 + k]; };
    EXPECT(at(5, 0) == 30 && at(40, 0) == 350);           // lane 3 of each warp
    EXPECT(at(6, 1) == 70 && at(7, 1) == 60);             // xor 1
    EXPECT(at(4, 2) == 60 && at(31, 2) == 310);           // down 2; the last lanes keep their own
    EXPECT(at(1, 3) == 10 && at(4, 3) == 20);             // up 2; the first lanes keep their own
    EXPECT(at(3, 4) == 70 && at(12, 4) == 80);            // xor 4 within groups of 8
    EXPECT(at(0, 5) == static_cast<int>(0x49249249u));    // lanes 0, 3, 6, ...
    EXPECT(at(9, 6) == 1 && at(40, 7) == 10);             // any true, all false; 5 + 5 threads below lane 5
    int* g = device<int>(32, -1);
    launch(half_warp_kernel, 1, 32, 0, nullptr, g);
    EXPECT(host(g, 32)[3] == 0 && host(g, 32)[20] == 16);
    cudaFree(d);
    cudaFree(g);
}

void test_atomics_across_blocks() {
    int* counter = device<int>(1, 0);
    float* sum = device<float>(1, 0.0f);
    unsigned long long* mx = device<unsigned long long>(1, 0);
    launch(atomic_kernel, 40, 128, 0, nullptr, counter, sum, mx);
    EXPECT(host(counter, 1)[0] == 40 * 128 && host(sum, 1)[0] == 40 * 128 * 0.5f && host(mx, 1)[0] == 40 * 128 - 1);
    cudaFree(counter);
    cudaFree(sum);
    cudaFree(mx);
}

void test_wmma_tile() {
    std::vector<__nv_bfloat16> a(256), b(256);
    for (int i = 0; i < 256; ++i) {
        a[i] = __float2bfloat16_rn(static_cast<float>(i % 7) - 3.0f);
        b[i] = __float2bfloat16_rn(static_cast<float>(i % 5) * 0.5f);
    }
    __nv_bfloat16 *da = device<__nv_bfloat16>(256), *db = device<__nv_bfloat16>(256);
    cudaMemcpy(da, a.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), 512, cudaMemcpyHostToDevice);
    float* dc = device<float>(256, 0.0f);
    launch(wmma_kernel, 1, 32, 0, nullptr, da, db, dc);
    const std::vector<float> c = host(dc, 256);
    bool ok = true;
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) {
            float want = 0.0f;  // a row-major [m][k], b col-major: element (k, n) at b[n * 16 + k]
            for (int k = 0; k < 16; ++k) want += static_cast<float>(a[m * 16 + k]) * static_cast<float>(b[n * 16 + k]);
            ok = ok && c[m * 16 + n] == 2.0f * want;
        }
    EXPECT(ok);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}

void test_failed_launches_name_the_cause() {
    float* d = device<float>(1024, 0.0f);
    launch(full_mask_kernel, 1, 48, 0, nullptr, d);  // the second warp has 16 lanes
    EXPECT(fails_with("that do not exist"));
    d = device<float>(1024, 0.0f);
    launch(divergent_kernel, 1, 64, 0, nullptr, d);
    EXPECT(fails_with("no thread can proceed"));
    d = device<float>(1024, 0.0f);
    launch(early_exit_kernel, 1, 32, 0, nullptr, d);
    EXPECT(fails_with("exited"));
    d = device<float>(1024, 0.0f);
    launch(two_barriers_kernel, 1, 64, 0, nullptr, d);
    EXPECT(fails_with("divergent barriers"));
    d = device<float>(1024, 0.0f);
    launch(outside_mask_kernel, 1, 32, 0, nullptr, d);
    EXPECT(fails_with("not in the mask"));
    launch(trap_kernel, 8, 32, 0, nullptr);
    EXPECT(fails_with("block (3,0,0) thread (5,0,0): called __trap"));
}

void test_launch_limits() {
    float* d = device<float>(16);
    EXPECT(launch(add_kernel, 1, 1025, 0, nullptr, d, 1.0f, 16) == cudaErrorInvalidConfiguration);
    EXPECT(launch(add_kernel, dim3(1, 65536), 32, 0, nullptr, d, 1.0f, 16) == cudaErrorInvalidConfiguration);
    EXPECT(launch(add_kernel, dim3(1, 1), dim3(8, 8, 65), 0, nullptr, d, 1.0f, 16) == cudaErrorInvalidConfiguration);
    EXPECT(launch(dynamic_reverse_kernel, 1, 32, 49 << 10, nullptr, d) == cudaErrorInvalidValue);
    EXPECT(std::string(cudaGetErrorString(cudaErrorInvalidValue)).find("cudaFuncSetAttribute") != std::string::npos);
    EXPECT(cudaFuncSetAttribute(dynamic_reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 << 10) == cudaErrorInvalidValue);
    EXPECT(cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess);  // recorded, then cleared
    EXPECT(cudaFuncSetAttribute(dynamic_reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10) == cudaSuccess);
    EXPECT(launch(dynamic_reverse_kernel, 1, 16, 49 << 10, nullptr, d) == cudaSuccess);
    EXPECT(cudaDeviceSynchronize() == cudaSuccess);  // configuration errors are not sticky
    cudaFree(d);
}

void test_work_runs_when_the_host_waits() {
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    float* d = device<float>(4, 0.0f);
    float* pinned = nullptr;
    cudaMallocHost(&pinned, 4 * sizeof(float));
    std::fill(pinned, pinned + 4, -1.0f);
    launch(add_kernel, 1, 4, 0, s, d, 2.0f, 4);
    cudaMemcpyAsync(pinned, d, 4 * sizeof(float), cudaMemcpyDeviceToHost, s);
    EXPECT(pinned[0] == -1.0f);  // not yet: nothing waited
    cudaStreamSynchronize(s);
    EXPECT(pinned[0] == 2.0f);
    // pageable source: staged at the call; pinned source: read when the copy runs
    float pageable[4] = {5, 5, 5, 5};
    cudaMemcpyAsync(d, pageable, sizeof(pageable), cudaMemcpyHostToDevice, s);
    pageable[0] = 9.0f;
    cudaMemcpyAsync(pinned, d, 4 * sizeof(float), cudaMemcpyDeviceToHost, s);
    cudaStreamSynchronize(s);
    EXPECT(pinned[0] == 5.0f);
    pinned[1] = 7.0f;
    cudaMemcpyAsync(d, pinned, 4 * sizeof(float), cudaMemcpyHostToDevice, s);
    pinned[1] = 8.0f;
    float back[4] = {};
    cudaMemcpyAsync(back, d, sizeof(back), cudaMemcpyDeviceToHost, s);  // to pageable memory: waits
    EXPECT(back[1] == 8.0f);
    cudaFreeHost(pinned);
    cudaFree(d);
    cudaStreamDestroy(s);
}

void test_events_order_streams() {
    cudaStream_t a, b;
    cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float* d = device<float>(1, 1.0f);
    cudaEventRecord(e0, a);
    launch(add_kernel, 1, 1, 0, a, d, 1.0f, 1);
    cudaEventRecord(e1, a);
    cudaStreamWaitEvent(b, e1);
    float* pinned = nullptr;
    cudaMallocHost(&pinned, sizeof(float));
    cudaMemcpyAsync(pinned, d, sizeof(float), cudaMemcpyDeviceToHost, b);
    cudaStreamSynchronize(b);  // runs a's queue up to e1 first
    EXPECT(*pinned == 2.0f);
    float ms = -1.0f;
    EXPECT(cudaEventSynchronize(e1) == cudaSuccess && cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms >= 0.0f);
    cudaFreeHost(pinned);
    cudaFree(d);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
}

void test_capture_and_replay() {
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    float* x = device<float>(8, 0.0f);
    float* y = device<float>(8, 0.0f);
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    launch(add_kernel, 1, 8, 0, s, x, 1.0f, 8);
    cudaMemcpyAsync(y, x, 8 * sizeof(float), cudaMemcpyDeviceToDevice, s);
    cudaGraph_t graph = nullptr;
    EXPECT(cudaStreamEndCapture(s, &graph) == cudaSuccess && graph);
    EXPECT(host(x, 8)[0] == 0.0f);  // captured, not run
    cudaGraphExec_t exec = nullptr;
    cudaGraphInstantiate(&exec, graph, 0);
    const int64_t launches = dynin_rt::emu::counters().graph_launches;
    cudaGraphLaunch(exec, s);
    cudaGraphLaunch(exec, s);
    cudaStreamSynchronize(s);
    EXPECT(host(y, 8)[3] == 2.0f && dynin_rt::emu::counters().graph_launches == launches + 2);
    // a synchronisation inside a capture is an error and invalidates it; so is a pageable copy
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    EXPECT(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
    EXPECT(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated && graph == nullptr);
    float pageable[8] = {};
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    EXPECT(cudaMemcpyAsync(x, pageable, sizeof(pageable), cudaMemcpyHostToDevice, s) == cudaErrorStreamCaptureUnsupported);
    void* p = nullptr;
    EXPECT(cudaMalloc(&p, 16) == cudaErrorStreamCaptureUnsupported);
    EXPECT(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated);
    cudaGraphExecDestroy(exec);
    cudaFree(x);
    cudaFree(y);
    cudaStreamDestroy(s);
}

void test_memory_is_checked() {
    float* d = device<float>(4, 0.0f);
    float host_buf[8] = {};
    EXPECT(cudaFree(host_buf) == cudaErrorInvalidValue);
    EXPECT(cudaMemcpy(host_buf, host_buf, 16, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);   // not device memory
    EXPECT(cudaMemcpy(d, host_buf, 32, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);         // past the allocation
    EXPECT(cudaMemcpy(host_buf, d, 16, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);         // direction
    float* fresh = nullptr;
    cudaMalloc(&fresh, 8);
    EXPECT(std::isnan(host(fresh, 2)[0]) && reinterpret_cast<uintptr_t>(fresh) % 256 == 0);  // unwritten memory reads NaN
    const dynin_rt::emu::Counters before = dynin_rt::emu::counters();
    cudaFree(fresh);
    cudaFree(d);
    const dynin_rt::emu::Counters after = dynin_rt::emu::counters();
    EXPECT(after.frees == before.frees + 2 && after.host_syncs == before.host_syncs + 2);
}

void test_cublaslt_enforces_its_requirements() {
    auto sym = [](const char* n) { return dynin_rt::emu::cublaslt_symbol(n); };
    auto create = reinterpret_cast<decltype(&cublasLtCreate)>(sym("cublasLtCreate"));
    auto desc_create = reinterpret_cast<decltype(&cublasLtMatmulDescCreate)>(sym("cublasLtMatmulDescCreate"));
    auto layout_create = reinterpret_cast<decltype(&cublasLtMatrixLayoutCreate)>(sym("cublasLtMatrixLayoutCreate"));
    auto pref_create = reinterpret_cast<decltype(&cublasLtMatmulPreferenceCreate)>(sym("cublasLtMatmulPreferenceCreate"));
    auto pref_set = reinterpret_cast<decltype(&cublasLtMatmulPreferenceSetAttribute)>(sym("cublasLtMatmulPreferenceSetAttribute"));
    auto heuristic = reinterpret_cast<decltype(&cublasLtMatmulAlgoGetHeuristic)>(sym("cublasLtMatmulAlgoGetHeuristic"));
    auto matmul = reinterpret_cast<decltype(&cublasLtMatmul)>(sym("cublasLtMatmul"));
    EXPECT(sym("cublasLtNoSuchFunction") == nullptr);
    cublasLtHandle_t h;
    create(&h);
    cublasLtMatmulDesc_t desc;
    desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    // C [4, 3] = A [4, 2] . B [2, 3], column-major
    cublasLtMatrixLayout_t a, b, c, bad_ld, bf16;
    layout_create(&a, CUDA_R_32F, 4, 2, 4);
    layout_create(&b, CUDA_R_32F, 2, 3, 2);
    layout_create(&c, CUDA_R_32F, 4, 3, 4);
    layout_create(&bad_ld, CUDA_R_32F, 4, 2, 3);
    layout_create(&bf16, CUDA_R_16BF, 4, 2, 4);
    cublasLtMatmulPreference_t pref;
    pref_create(&pref);
    cublasLtMatmulHeuristicResult_t r;
    int found = 0;
    EXPECT(heuristic(h, desc, bad_ld, b, c, c, pref, 1, &r, &found) == CUBLAS_STATUS_INVALID_VALUE);
    EXPECT(heuristic(h, desc, bf16, b, c, c, pref, 1, &r, &found) == CUBLAS_STATUS_NOT_SUPPORTED);
    EXPECT(heuristic(h, desc, a, b, c, c, pref, 1, &r, &found) == CUBLAS_STATUS_SUCCESS && found == 1);
    float* buf = device<float>(64, 1.0f);
    float* dc = buf + 17;  // 4-byte aligned: the default preference assumed 16 (the leading dim's alignment)
    const float one = 1.0f, zero = 0.0f;
    EXPECT(matmul(h, desc, &one, buf, a, buf + 32, b, &zero, dc, c, dc, c, &r.algo, nullptr, 0, nullptr) == CUBLAS_STATUS_NOT_SUPPORTED);
    const uint32_t four = 4;
    pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &four, sizeof(four));
    pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &four, sizeof(four));
    EXPECT(pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &four, 8) == CUBLAS_STATUS_INVALID_VALUE);  // size checked
    heuristic(h, desc, a, b, c, c, pref, 1, &r, &found);
    EXPECT(matmul(h, desc, &one, buf, a, buf + 32, b, &zero, dc, c, dc, c, &r.algo, nullptr, 0, nullptr) == CUBLAS_STATUS_SUCCESS);
    EXPECT(host(dc, 12)[11] == 2.0f);  // a sum of two ones
    float host_a[8] = {};
    matmul(h, desc, &one, host_a, a, buf + 32, b, &zero, dc, c, dc, c, &r.algo, nullptr, 0, nullptr);
    EXPECT(cudaDeviceSynchronize() == cudaErrorIllegalAddress);  // the operand is not device memory
    cudaDeviceReset();
}

void test_race() {  // for ThreadSanitizer: a race between the threads of a block
    float* d = device<float>(128, 0.0f);
    launch(race_kernel, 1, 128, 0, nullptr, d);
    cudaDeviceSynchronize();
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::pair<std::string, std::function<void()>>> tests = {
        {"indices", test_indices},
        {"shared_memory_and_barriers", test_shared_memory_and_barriers},
        {"warp_collectives", test_warp_collectives},
        {"atomics_across_blocks", test_atomics_across_blocks},
        {"wmma_tile", test_wmma_tile},
        {"failed_launches_name_the_cause", test_failed_launches_name_the_cause},
        {"launch_limits", test_launch_limits},
        {"work_runs_when_the_host_waits", test_work_runs_when_the_host_waits},
        {"events_order_streams", test_events_order_streams},
        {"capture_and_replay", test_capture_and_replay},
        {"memory_is_checked", test_memory_is_checked},
        {"cublaslt_enforces_its_requirements", test_cublaslt_enforces_its_requirements},
    };
    std::vector<std::string> names(argv + 1, argv + argc);
    if (names.size() == 1 && names[0] == "race") {
        test_race();
        return 0;
    }
    for (const auto& [name, fn] : tests) {
        if (!names.empty() && std::find(names.begin(), names.end(), name) == names.end()) continue;
        const int before = failures;
        fn();
        std::printf("%s %s\n", failures == before ? "ok  " : "FAIL", name.c_str());
    }
    return failures;
}

// GEMMs through cuBLASLt, y[m, n] = x[m, k] . w[n, k]^T (+ y), with fp32 accumulation: fp32
// weights in fp32 (no TF32, so results track the CPU twin), bf16 weights against activations rounded
// to bf16, fp16 weights against activations scaled per row by a power of two into fp16's range
// (SwiGLU outputs, the w_down GEMM's input, exceed its 65504) with the product scaled back in fp32.
// libcublasLt is opened at run time (from the toolkit, the system, or the nvidia-cublas wheel that
// python/dynin_rt/_native.py preloads), so _C imports without CUDA; the emulated build fills the
// same table from the emulation's CPU cuBLASLt (emulation/cublaslt.cc).
#include <cublasLt.h>
#include <dlfcn.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "cuda_ops.h"
#include "dynin_rt/common.h"

namespace dynin_rt {
namespace cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32ull << 20;

struct CublasLt {
    decltype(&cublasLtCreate) create = nullptr;
    decltype(&cublasLtDestroy) destroy = nullptr;
    decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
    decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
    decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
    decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
    decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
    decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
    decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
    decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
    decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
    decltype(&cublasLtMatmul) matmul = nullptr;
};

const CublasLt& api() {
    static CublasLt lt;
    static std::once_flag once;
    static std::string error;
    std::call_once(once, [] {
#if DYNIN_RT_CUDA_EMULATED
        auto lookup = [](const char* name) { return emu::cublaslt_symbol(name); };
#else
        void* lib = nullptr;
        for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"})
            if ((lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL))) break;
        if (!lib) {
            error = "cannot load libcublasLt (install the CUDA toolkit's cuBLAS or `pip install nvidia-cublas`)";
            return;
        }
        auto lookup = [lib](const char* name) { return dlsym(lib, name); };
#endif
        auto sym = [&](auto& fn, const char* name) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(lookup(name));
            if (!fn && error.empty()) error = str_cat("libcublasLt lacks ", name);
        };
        sym(lt.create, "cublasLtCreate");
        sym(lt.destroy, "cublasLtDestroy");
        sym(lt.desc_create, "cublasLtMatmulDescCreate");
        sym(lt.desc_destroy, "cublasLtMatmulDescDestroy");
        sym(lt.desc_set, "cublasLtMatmulDescSetAttribute");
        sym(lt.layout_create, "cublasLtMatrixLayoutCreate");
        sym(lt.layout_destroy, "cublasLtMatrixLayoutDestroy");
        sym(lt.pref_create, "cublasLtMatmulPreferenceCreate");
        sym(lt.pref_destroy, "cublasLtMatmulPreferenceDestroy");
        sym(lt.pref_set, "cublasLtMatmulPreferenceSetAttribute");
        sym(lt.heuristic, "cublasLtMatmulAlgoGetHeuristic");
        sym(lt.matmul, "cublasLtMatmul");
    });
    if (!error.empty()) throw InvalidArgument(error);
    return lt;
}

void check_lt(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(str_cat("cuBLASLt ", what, " failed with status ", static_cast<int>(status)));
}

cudaDataType_t data_type(DType t) {
    switch (t) {
        case DType::F32: return CUDA_R_32F;
        case DType::BF16: return CUDA_R_16BF;
        case DType::F16: return CUDA_R_16F;
    }
    return CUDA_R_32F;
}

}  // namespace

Gemm::Gemm(Context& c) : ctx_(c) {
    cublasLtHandle_t h = nullptr;
    check_lt(api().create(&h), "create");
    handle_ = h;
    workspace_bytes_ = kWorkspaceBytes;
    check(cudaMalloc(&workspace_, workspace_bytes_), "cuBLASLt workspace");
    ++ctx_.counters.allocations;
}

// A matmul descriptor, its layouts and the algorithm the heuristic chose, for one shape and
// alignment of the operands (built once, reused by every GEMM of that shape).
struct Gemm::Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};

    void destroy(const CublasLt& lt) {
        if (desc) lt.desc_destroy(desc);
        for (cublasLtMatrixLayout_t l : {a, b, c})
            if (l) lt.layout_destroy(l);
    }
};

namespace {

// Plans kept at most; a run sees a few dozen shapes (the row counts of its steps).
constexpr size_t kMaxPlans = 512;

// The largest power of two (up to 256) dividing the address: what cuBLASLt may assume of it.
uint32_t alignment(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    return a == 0 ? 256u : static_cast<uint32_t>(std::min<uintptr_t>(a & (~a + 1), 256));
}

}  // namespace

Gemm::~Gemm() {
    for (auto& kv : plans_) {
        kv.second->destroy(api());
        delete kv.second;
    }
    try {
        for (Scratch* s : {&cast_, &scales_, &product_}) s->release(ctx_);
    } catch (const std::exception&) {  // a faulted device: nothing more to release
    }
    if (workspace_) cudaFree(workspace_);
    if (handle_) api().destroy(static_cast<cublasLtHandle_t>(handle_));
}

// Row-major y = x w^T is column-major y^T [n, m] = w [n, k] (stored k-major: transpose) . x^T [k, m].
// The preferences state each operand's true alignment: cuBLASLt otherwise assumes 256 bytes and
// refuses (NOT_SUPPORTED) the LM head's column ranges, whose outputs start at any float.
const Gemm::Plan& Gemm::plan(const Key& key) {
    const auto found = plans_.find(key);
    if (found != plans_.end()) return *found->second;
    if (plans_.size() >= kMaxPlans) {
        for (auto& kv : plans_) {
            kv.second->destroy(api());
            delete kv.second;
        }
        plans_.clear();
    }
    const auto& [dtype, m, n, k, ldw, ldx, ldy, align_w, align_x, align_y] = key;
    const CublasLt& lt = api();
    const cudaDataType_t ab = data_type(static_cast<DType>(dtype));
    auto plan = std::make_unique<Plan>();
    cublasLtMatmulPreference_t pref = nullptr;
    try {
        check_lt(lt.desc_create(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
        const cublasOperation_t trans = CUBLAS_OP_T, none = CUBLAS_OP_N;
        check_lt(lt.desc_set(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)), "transa");
        check_lt(lt.desc_set(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)), "transb");
        check_lt(lt.layout_create(&plan->a, ab, static_cast<uint64_t>(k), static_cast<uint64_t>(n), ldw), "layout a");
        check_lt(lt.layout_create(&plan->b, ab, static_cast<uint64_t>(k), static_cast<uint64_t>(m), ldx), "layout b");
        check_lt(lt.layout_create(&plan->c, CUDA_R_32F, static_cast<uint64_t>(n), static_cast<uint64_t>(m), ldy), "layout c");
        check_lt(lt.pref_create(&pref), "preference");
        check_lt(lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof(workspace_bytes_)),
                 "workspace preference");
        const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligned[] = {
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_w},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_x},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_y},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_y},
        };
        for (const auto& [attr, bytes] : aligned) check_lt(lt.pref_set(pref, attr, &bytes, sizeof(bytes)), "alignment preference");
        cublasLtMatmulHeuristicResult_t result{};
        int n_found = 0;
        check_lt(lt.heuristic(static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1,
                              &result, &n_found),
                 "heuristic");
        if (n_found == 0) throw std::runtime_error("cuBLASLt found no algorithm for this GEMM");
        plan->algo = result.algo;
    } catch (...) {
        if (pref) lt.pref_destroy(pref);
        plan->destroy(lt);
        throw;
    }
    lt.pref_destroy(pref);
    return *(plans_[key] = plan.release());
}

void Gemm::run(const GemmParams& p) {
    DYNIN_CHECK_ARG(!p.w_packed, "cuda gemm: packed weights are a CPU layout");
    if (p.m == 0 || p.n == 0) return;
    const bool f16 = p.w_dtype == DType::F16;
    const void* b = p.x;
    int64_t ldb = p.ldx, ldy = p.ldy;
    float *y = p.y, *scales = nullptr;
    if (p.w_dtype != DType::F32) {
        void* cast = cast_.ensure(sizeof(uint16_t) * static_cast<size_t>(p.m * p.k), ctx_);
        if (f16) scales = static_cast<float*>(scales_.ensure(sizeof(float) * static_cast<size_t>(p.m), ctx_));
        cast_rows(p.x, p.ldx, p.m, p.k, p.w_dtype, cast, scales, ctx_);
        b = cast;
        ldb = p.k;
    }
    if (f16) {  // the scaled product, before it is scaled back into y
        y = static_cast<float*>(product_.ensure(sizeof(float) * static_cast<size_t>(p.m * p.n), ctx_));
        ldy = p.n;
    }
    const Plan& pl =
        plan(Key{static_cast<int>(p.w_dtype), p.m, p.n, p.k, p.ldw, ldb, ldy, alignment(p.w), alignment(b), alignment(y)});
    const float alpha = 1.0f, beta = p.accumulate && !f16 ? 1.0f : 0.0f;
    check_lt(api().matmul(static_cast<cublasLtHandle_t>(handle_), pl.desc, &alpha, p.w, pl.a, b, pl.b, &beta, y, pl.c, y, pl.c,
                          &pl.algo, workspace_, workspace_bytes_, ctx_.stream),
             "matmul");
    ctx_.count_launch();
    if (f16) scale_rows_add(y, scales, p.m, p.n, p.y, p.ldy, p.accumulate, ctx_);
}

}  // namespace cuda
}  // namespace dynin_rt

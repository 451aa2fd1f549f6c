// cuBLASLt for the emulated device: the entry points cuda/cublaslt.cu opens, computed on the CPU
// (fp32 OpenBLAS sgemm; bf16 / fp16 operands widened first) as stream work like a kernel. It
// enforces what the real library requires of its caller:
//   - descriptors: attribute sizes, compute / scale types valid for the A/B/C/D types, column-major
//     layouts with ld >= rows, op(A) [m, k] . op(B) [k, n] = C, D [m, n], in-place only with C's layout;
//   - alignment: AlgoGetHeuristic returns an algorithm that assumes each matrix's base pointer is
//     aligned to the CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES the caller set (256 when unset, as
//     the library assumes), or to its leading dimension's alignment if smaller; cublasLtMatmul then
//     answers CUBLAS_STATUS_NOT_SUPPORTED for a less aligned pointer (also with algo = null);
//   - memory: the operands must lie in device allocations when the work runs (else the device faults).
#include <cblas.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublasLt.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <new>
#include <string>
#include <vector>

#include "runtime.h"

namespace dynin_rt {
namespace emu {

namespace {

constexpr uint64_t kMagic = 0xC0B1A5117E57ull;
constexpr uint32_t kDefaultAlignment = 256;

struct Handle {
    uint64_t magic;
};
struct Desc {
    uint64_t magic;
    int32_t compute, scale, transa, transb, transc, pointer_mode;
    uint32_t epilogue;
};
struct Layout {
    uint64_t magic;
    uint32_t type;
    int32_t order, batch;
    uint64_t rows, cols;
    int64_t ld;
};
struct Pref {
    uint64_t magic;
    uint64_t workspace;
    uint32_t search_mode;
    uint32_t align[4];  // A, B, C, D
};
static_assert(sizeof(Desc) <= sizeof(cublasLtMatmulDescOpaque_t) && sizeof(Layout) <= sizeof(cublasLtMatrixLayoutOpaque_t) &&
                  sizeof(Pref) <= sizeof(cublasLtMatmulPreferenceOpaque_t),
              "emulated descriptors fit the opaque storage");

template <typename T, typename Opaque>
T* as(Opaque* o) {
    T* t = o ? reinterpret_cast<T*>(o->data) : nullptr;
    return t && t->magic == kMagic ? t : nullptr;
}

// Copies an attribute value of exactly sizeof(T) bytes.
template <typename T>
cublasStatus_t set(T* field, const void* buf, size_t bytes) {
    if (!buf || bytes != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(field, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

size_t type_bytes(uint32_t t) {
    switch (t) {
        case CUDA_R_32F: return 4;
        case CUDA_R_16F:
        case CUDA_R_16BF: return 2;
        case CUDA_R_64F: return 8;
        default: return 0;
    }
}

// The largest power of two dividing v, at most 256.
uint32_t alignment_of(uint64_t v) {
    return v == 0 ? kDefaultAlignment : static_cast<uint32_t>(std::min<uint64_t>(v & (~v + 1), kDefaultAlignment));
}

// The type combinations of the library's table for the types emulated here.
bool types_supported(const Desc& d, uint32_t ab, uint32_t cd) {
    switch (d.compute) {
        case CUBLAS_COMPUTE_32F:
        case CUBLAS_COMPUTE_32F_PEDANTIC:
            if (d.scale != CUDA_R_32F) return false;
            if (ab == CUDA_R_32F) return cd == CUDA_R_32F;
            return (ab == CUDA_R_16BF || ab == CUDA_R_16F) && (cd == ab || cd == CUDA_R_32F);
        case CUBLAS_COMPUTE_32F_FAST_16F:
        case CUBLAS_COMPUTE_32F_FAST_16BF:
        case CUBLAS_COMPUTE_32F_FAST_TF32: return d.scale == CUDA_R_32F && ab == CUDA_R_32F && cd == CUDA_R_32F;
        default: return false;  // 16F, 64F and integer compute are not emulated
    }
}

struct Problem {
    uint64_t m, n, k;
};

// Checks the operation against its layouts; *p is the problem size.
cublasStatus_t check_problem(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dl, Problem* p) {
    for (const Layout* l : {&a, &b, &c, &dl}) {
        if (l->order != CUBLASLT_ORDER_COL || l->batch != 1) return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated
        if (l->ld < 0 || static_cast<uint64_t>(l->ld) < l->rows || type_bytes(l->type) == 0) return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (d.transc != CUBLAS_OP_N || d.pointer_mode != 0 || d.epilogue != 1) return CUBLAS_STATUS_NOT_SUPPORTED;
    const bool ta = d.transa != CUBLAS_OP_N, tb = d.transb != CUBLAS_OP_N;
    p->m = ta ? a.cols : a.rows;
    p->k = ta ? a.rows : a.cols;
    p->n = tb ? b.rows : b.cols;
    const uint64_t kb = tb ? b.cols : b.rows;
    if (kb != p->k || c.rows != p->m || c.cols != p->n || dl.rows != p->m || dl.cols != p->n) return CUBLAS_STATUS_INVALID_VALUE;
    if (a.type != b.type || c.type != dl.type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!types_supported(d, a.type, c.type)) return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

void fill_algo(const Layout* layouts[4], const Pref* pref, cublasLtMatmulAlgo_t* algo) {
    std::memset(algo, 0, sizeof(*algo));
    algo->data[0] = kMagic;
    for (int i = 0; i < 4; ++i) {
        const uint32_t wanted = pref ? pref->align[i] : kDefaultAlignment;
        const uint32_t ld_align = alignment_of(static_cast<uint64_t>(layouts[i]->ld) * type_bytes(layouts[i]->type));
        algo->data[1 + i] = std::min(wanted, ld_align);
    }
}

// A column-major matrix [rows, cols] with leading dim ld, widened to fp32 (same leading dim).
std::vector<float> widen(const void* p, const Layout& l) {
    const size_t n = l.cols == 0 ? 0 : static_cast<size_t>((l.cols - 1) * l.ld + l.rows);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
        if (l.type == CUDA_R_32F) out[i] = static_cast<const float*>(p)[i];
        else if (l.type == CUDA_R_16BF) out[i] = static_cast<float>(static_cast<const __nv_bfloat16*>(p)[i]);
        else out[i] = static_cast<float>(static_cast<const __half*>(p)[i]);
    }
    return out;
}

size_t extent_bytes(const Layout& l) {
    return l.cols == 0 ? 0 : static_cast<size_t>((l.cols - 1) * l.ld + l.rows) * type_bytes(l.type);
}

struct MatmulWork {
    Desc desc;
    Layout a, b, c, d;
    Problem p;
    float alpha, beta;
    const void *pa, *pb, *pc;
    void* pd;

    std::string operator()() const {
        using Operand = std::tuple<const void*, const Layout*, const char*>;
        for (const auto& [ptr, l, name] : {Operand{pa, &a, "A"}, Operand{pb, &b, "B"}, Operand{pd, &d, "D"}})
            if (!is_device_range(ptr, extent_bytes(*l)))
                return std::string("cublasLtMatmul: matrix ") + name + " is not in device memory";
        if (beta != 0.0f && !is_device_range(pc, extent_bytes(c))) return "cublasLtMatmul: matrix C is not in device memory";
        std::vector<float> wa, wb;  // 16-bit operands widened; fp32 ones used in place
        const float* fa = a.type == CUDA_R_32F ? static_cast<const float*>(pa) : (wa = widen(pa, a)).data();
        const float* fb = b.type == CUDA_R_32F ? static_cast<const float*>(pb) : (wb = widen(pb, b)).data();
        // fp32 D is computed in place (C copied in first); 16-bit D through an fp32 product
        std::vector<float> acc;
        float* out = static_cast<float*>(pd);
        int64_t ldo = d.ld;
        if (d.type != CUDA_R_32F) {
            acc.assign(static_cast<size_t>(p.n * p.m), 0.0f);
            out = acc.data();
            ldo = static_cast<int64_t>(p.m);
        }
        if (beta != 0.0f && (pc != pd || d.type != CUDA_R_32F)) {
            const std::vector<float> wc = widen(pc, c);
            for (uint64_t j = 0; j < p.n; ++j) std::memcpy(out + j * ldo, wc.data() + j * c.ld, sizeof(float) * p.m);
        }
        if (p.m && p.n)
            scipy_cblas_sgemm(CblasColMajor, desc.transa != CUBLAS_OP_N ? CblasTrans : CblasNoTrans,
                              desc.transb != CUBLAS_OP_N ? CblasTrans : CblasNoTrans, static_cast<blasint>(p.m),
                              static_cast<blasint>(p.n), static_cast<blasint>(p.k), alpha, fa,
                              static_cast<blasint>(std::max<int64_t>(a.ld, 1)), fb, static_cast<blasint>(std::max<int64_t>(b.ld, 1)),
                              beta, out, static_cast<blasint>(std::max<int64_t>(ldo, 1)));
        for (uint64_t j = 0; j < p.n && d.type != CUDA_R_32F; ++j)
            for (uint64_t i = 0; i < p.m; ++i) {
                const size_t at = static_cast<size_t>(j * d.ld + i);
                if (d.type == CUDA_R_16BF) static_cast<__nv_bfloat16*>(pd)[at] = __nv_bfloat16(acc[j * p.m + i]);
                else static_cast<__half*>(pd)[at] = __half(acc[j * p.m + i]);
            }
        return {};
    }
};

uint32_t pointer_alignment(const void* p) { return alignment_of(reinterpret_cast<uintptr_t>(p)); }

// --- the entry points -----------------------------------------------------------------------------

cublasStatus_t create(cublasLtHandle_t* h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = reinterpret_cast<cublasLtHandle_t>(new Handle{kMagic});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t destroy(cublasLtHandle_t h) {
    auto* handle = reinterpret_cast<Handle*>(h);
    if (!handle || handle->magic != kMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->magic = 0;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

bool valid(cublasLtHandle_t h) {
    const auto* handle = reinterpret_cast<const Handle*>(h);
    return handle && handle->magic == kMagic;
}

cublasStatus_t desc_create(cublasLtMatmulDesc_t* out, cublasComputeType_t compute, cudaDataType_t scale) {
    if (!out) return CUBLAS_STATUS_INVALID_VALUE;
    *out = new cublasLtMatmulDescOpaque_t{};
    new ((*out)->data) Desc{kMagic, compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLAS_OP_N, 0, 1};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t desc_destroy(cublasLtMatmulDesc_t d) {
    Desc* desc = as<Desc>(d);
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    desc->magic = 0;
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t desc_set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void* buf, size_t bytes) {
    Desc* desc = as<Desc>(d);
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
        case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return set(&desc->compute, buf, bytes);
        case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return set(&desc->scale, buf, bytes);
        case CUBLASLT_MATMUL_DESC_POINTER_MODE: return set(&desc->pointer_mode, buf, bytes);
        case CUBLASLT_MATMUL_DESC_TRANSA: return set(&desc->transa, buf, bytes);
        case CUBLASLT_MATMUL_DESC_TRANSB: return set(&desc->transb, buf, bytes);
        case CUBLASLT_MATMUL_DESC_TRANSC: return set(&desc->transc, buf, bytes);
        case CUBLASLT_MATMUL_DESC_EPILOGUE: return set(&desc->epilogue, buf, bytes);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t layout_create(cublasLtMatrixLayout_t* out, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (!out) return CUBLAS_STATUS_INVALID_VALUE;
    *out = new cublasLtMatrixLayoutOpaque_t{};
    new ((*out)->data) Layout{kMagic, static_cast<uint32_t>(type), CUBLASLT_ORDER_COL, 1, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t layout_destroy(cublasLtMatrixLayout_t l) {
    Layout* layout = as<Layout>(l);
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    layout->magic = 0;
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t layout_set(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, const void* buf, size_t bytes) {
    Layout* layout = as<Layout>(l);
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
        case CUBLASLT_MATRIX_LAYOUT_TYPE: return set(&layout->type, buf, bytes);
        case CUBLASLT_MATRIX_LAYOUT_ORDER: return set(&layout->order, buf, bytes);
        case CUBLASLT_MATRIX_LAYOUT_ROWS: return set(&layout->rows, buf, bytes);
        case CUBLASLT_MATRIX_LAYOUT_COLS: return set(&layout->cols, buf, bytes);
        case CUBLASLT_MATRIX_LAYOUT_LD: return set(&layout->ld, buf, bytes);
        case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set(&layout->batch, buf, bytes);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t pref_create(cublasLtMatmulPreference_t* out) {
    if (!out) return CUBLAS_STATUS_INVALID_VALUE;
    *out = new cublasLtMatmulPreferenceOpaque_t{};
    new ((*out)->data) Pref{kMagic, 0, 0, {kDefaultAlignment, kDefaultAlignment, kDefaultAlignment, kDefaultAlignment}};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t pref_destroy(cublasLtMatmulPreference_t p) {
    Pref* pref = as<Pref>(p);
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    pref->magic = 0;
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t pref_set(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const void* buf, size_t bytes) {
    Pref* pref = as<Pref>(p);
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
        case CUBLASLT_MATMUL_PREF_SEARCH_MODE: return set(&pref->search_mode, buf, bytes);
        case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return set(&pref->workspace, buf, bytes);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return set(&pref->align[0], buf, bytes);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return set(&pref->align[1], buf, bytes);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return set(&pref->align[2], buf, bytes);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return set(&pref->align[3], buf, bytes);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t heuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                         cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
                         cublasLtMatmulHeuristicResult_t* results, int* found) {
    const Desc* dd = as<Desc>(desc);
    const Layout* layouts[4] = {as<Layout>(a), as<Layout>(b), as<Layout>(c), as<Layout>(d)};
    const Pref* pp = as<Pref>(pref);
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!dd || !pp || !layouts[0] || !layouts[1] || !layouts[2] || !layouts[3] || requested <= 0 || !results || !found)
        return CUBLAS_STATUS_INVALID_VALUE;
    Problem p;
    if (const cublasStatus_t s = check_problem(*dd, *layouts[0], *layouts[1], *layouts[2], *layouts[3], &p)) return s;
    std::memset(results, 0, sizeof(*results));
    fill_algo(layouts, pp, &results->algo);
    results->state = CUBLAS_STATUS_SUCCESS;
    results->wavesCount = 1.0f;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t matmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void* alpha, const void* a, cublasLtMatrixLayout_t al,
                      const void* b, cublasLtMatrixLayout_t bl, const void* beta, const void* c, cublasLtMatrixLayout_t cl, void* d,
                      cublasLtMatrixLayout_t dl, const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t stream) {
    const Desc* dd = as<Desc>(desc);
    const Layout* layouts[4] = {as<Layout>(al), as<Layout>(bl), as<Layout>(cl), as<Layout>(dl)};
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!dd || !alpha || !beta || !layouts[0] || !layouts[1] || !layouts[2] || !layouts[3]) return CUBLAS_STATUS_INVALID_VALUE;
    MatmulWork w{*dd, *layouts[0], *layouts[1], *layouts[2], *layouts[3], {}, *static_cast<const float*>(alpha),
                 *static_cast<const float*>(beta), a, b, c, d};
    if (const cublasStatus_t s = check_problem(w.desc, w.a, w.b, w.c, w.d, &w.p)) return s;
    if (c == d && std::memcmp(layouts[2], layouts[3], sizeof(Layout)) != 0) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtMatmulAlgo_t assumed;
    if (!algo) fill_algo(layouts, nullptr, &assumed);
    else if (algo->data[0] != kMagic) return CUBLAS_STATUS_INVALID_VALUE;
    const cublasLtMatmulAlgo_t& use = algo ? *algo : assumed;
    const void* pointers[4] = {a, b, c, d};
    for (int i = 0; i < 4; ++i)
        if (pointer_alignment(pointers[i]) < use.data[1 + i]) return CUBLAS_STATUS_NOT_SUPPORTED;
    Work work;
    work.run = [w] { return w(); };
    work.failure = cudaErrorIllegalAddress;
    work.is_launch = true;
    return enqueue(stream, std::move(work)) == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

void* cublaslt_symbol(const char* name) {
    static const std::pair<const char*, void*> table[] = {
        {"cublasLtCreate", reinterpret_cast<void*>(&create)},
        {"cublasLtDestroy", reinterpret_cast<void*>(&destroy)},
        {"cublasLtMatmulDescCreate", reinterpret_cast<void*>(&desc_create)},
        {"cublasLtMatmulDescDestroy", reinterpret_cast<void*>(&desc_destroy)},
        {"cublasLtMatmulDescSetAttribute", reinterpret_cast<void*>(&desc_set)},
        {"cublasLtMatrixLayoutCreate", reinterpret_cast<void*>(&layout_create)},
        {"cublasLtMatrixLayoutDestroy", reinterpret_cast<void*>(&layout_destroy)},
        {"cublasLtMatrixLayoutSetAttribute", reinterpret_cast<void*>(&layout_set)},
        {"cublasLtMatmulPreferenceCreate", reinterpret_cast<void*>(&pref_create)},
        {"cublasLtMatmulPreferenceDestroy", reinterpret_cast<void*>(&pref_destroy)},
        {"cublasLtMatmulPreferenceSetAttribute", reinterpret_cast<void*>(&pref_set)},
        {"cublasLtMatmulAlgoGetHeuristic", reinterpret_cast<void*>(&heuristic)},
        {"cublasLtMatmul", reinterpret_cast<void*>(&matmul)},
    };
    for (const auto& [n, fn] : table)
        if (std::strcmp(n, name) == 0) return fn;
    return nullptr;
}

// The fake's functions must have the real prototypes: the table's users cast them back to those.
static_assert(std::is_same<decltype(&create), decltype(&cublasLtCreate)>::value &&
                  std::is_same<decltype(&matmul), decltype(&cublasLtMatmul)>::value &&
                  std::is_same<decltype(&heuristic), decltype(&cublasLtMatmulAlgoGetHeuristic)>::value &&
                  std::is_same<decltype(&desc_set), decltype(&cublasLtMatmulDescSetAttribute)>::value &&
                  std::is_same<decltype(&layout_create), decltype(&cublasLtMatrixLayoutCreate)>::value &&
                  std::is_same<decltype(&pref_set), decltype(&cublasLtMatmulPreferenceSetAttribute)>::value,
              "fake cuBLASLt prototypes");

}  // namespace emu
}  // namespace dynin_rt

// y = x . w^T on the CPU for fp32 weights.
//
// Row-major fp32 weights go to OpenBLAS's sgemm (scipy-openblas32, threaded by OpenBLAS); products
// with few activation rows use the engine's packed copies instead (gemm_packed.cc). bf16 weights go
// to gemm_bf16.cc; fp16 never reaches here (the CPU engine widens it to fp32 at load, which is exact).
#include <cblas.h>

#include "cpu_ops.h"
#include "dynin_rt/common.h"

namespace dynin_rt {

namespace {

void gemm_f32_openblas(const GemmParams& p) {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(p.m), static_cast<blasint>(p.n),
                      static_cast<blasint>(p.k), 1.0f, p.x, static_cast<blasint>(p.ldx), static_cast<const float*>(p.w),
                      static_cast<blasint>(p.ldw), p.accumulate ? 1.0f : 0.0f, p.y, static_cast<blasint>(p.ldy));
}

}  // namespace

void cpu_gemm(const GemmParams& p) {
    if (p.m == 0 || p.n == 0) return;
    if (p.w_packed) {
        cpu_gemm_packed(p);
        return;
    }
    switch (p.w_dtype) {
        case DType::F32:
            gemm_f32_openblas(p);
            return;
        case DType::BF16:
            cpu_gemm_bf16(p);
            return;
        case DType::F16:
            break;
    }
    throw InvalidArgument(str_cat("cpu gemm: weights of dtype ", dtype_name(p.w_dtype), " are not supported"));
}

}  // namespace dynin_rt

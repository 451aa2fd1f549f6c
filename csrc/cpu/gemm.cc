// y = x . w^T on the CPU. fp32 weights go to OpenBLAS's sgemm (scipy-openblas32, threaded by
// OpenBLAS itself); bf16 weights to gemm_bf16.cc. fp16 weights never reach here: the CPU engine
// widens them to fp32 at load (exact).
#include <cblas.h>

#include "cpu_ops.h"
#include "dynin_rt/common.h"

namespace dynin_rt {

void cpu_gemm(const GemmParams& p) {
    if (p.m == 0 || p.n == 0) return;
    switch (p.w_dtype) {
        case DType::F32:
            scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(p.m), static_cast<blasint>(p.n),
                              static_cast<blasint>(p.k), 1.0f, p.x, static_cast<blasint>(p.ldx),
                              static_cast<const float*>(p.w), static_cast<blasint>(p.ldw), p.accumulate ? 1.0f : 0.0f, p.y,
                              static_cast<blasint>(p.ldy));
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

// Reading one stored weight element as fp32 in device code (fp32, bf16 or fp16 storage).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "dynin_rt/dtype.h"

namespace dynin_rt {
namespace cuda {

__device__ inline float weight_at(const void* w, DType t, int64_t i) {
    switch (t) {
        case DType::F32: return static_cast<const float*>(w)[i];
        case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(w)[i]);
        case DType::F16: return __half2float(static_cast<const __half*>(w)[i]);
    }
    return 0.0f;
}

}  // namespace cuda
}  // namespace dynin_rt

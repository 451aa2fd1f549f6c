// What this build of dynin_rt._C contains; surfaced as dynin_rt.build_info().
#include "dynin_rt/build_info.h"

namespace dynin_rt {

BuildInfo build_info() {
    BuildInfo info;
    info.version = DYNIN_RT_VERSION;
    info.cuda = DYNIN_RT_WITH_CUDA != 0;
    info.cuda_emulated = DYNIN_RT_CUDA_EMULATED != 0;
    info.blas = "OpenBLAS (scipy-openblas32)";
#if defined(__AVX512F__)
    info.cpu_simd = "avx512";
#elif defined(__AVX2__)
    info.cpu_simd = "avx2";
#else
    info.cpu_simd = "generic";
#endif
    return info;
}

}  // namespace dynin_rt

#pragma once
#include <string>

namespace dynin_rt {

struct BuildInfo {
    std::string version;
    bool cuda = false;           // the CUDA backend is built (on a GPU or emulated)
    bool cuda_emulated = false;  // its kernels run on the CPU emulation layer (DYNIN_RT_CUDA=EMULATE)
    std::string blas;
    std::string cpu_simd;
};

BuildInfo build_info();

}  // namespace dynin_rt

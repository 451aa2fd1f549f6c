#pragma once
#include <string>

namespace dynin_rt {

struct BuildInfo {
    std::string version;
    bool cuda = false;
    std::string blas;
    std::string cpu_simd;
};

BuildInfo build_info();

}  // namespace dynin_rt

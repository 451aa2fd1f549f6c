// The one list of backends this build has, and the factory the engine and the op tests use.
#include "dynin_rt/backend.h"
#include "dynin_rt/common.h"

namespace dynin_rt {

std::vector<std::string> backend_names() {
    std::vector<std::string> names{"cpu"};
#if DYNIN_RT_WITH_CUDA
    names.push_back("cuda");
#endif
    return names;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int device) {
    if (name == "cpu") return make_cpu_backend();
#if DYNIN_RT_WITH_CUDA
    if (name == "cuda") return make_cuda_backend(device);
#else
    if (name == "cuda")
        throw InvalidArgument("this build of dynin_rt has no CUDA backend (rebuild with -Ccmake.define.DYNIN_RT_CUDA=ON)");
#endif
    std::string known;
    for (const std::string& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
    throw InvalidArgument(str_cat("unknown backend '", name, "' (this build has: ", known, ")"));
}

}  // namespace dynin_rt

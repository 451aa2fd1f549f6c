// The sampler option structs and CancelToken as Python classes (params_binding.cc).
#pragma once
#include <pybind11/pybind11.h>

namespace dynin_rt {
void bind_params(pybind11::module_& m);
}  // namespace dynin_rt

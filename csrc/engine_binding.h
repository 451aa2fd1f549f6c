// _C.Engine: a loaded model and its three samplers (engine_binding.cc).
#pragma once
#include <pybind11/pybind11.h>

namespace dynin_rt {
void bind_engine(pybind11::module_& m);
}  // namespace dynin_rt

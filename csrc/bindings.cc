// pybind11 declarations of dynin_rt._C. Declarations only: the work lives in core/, cpu/ and cuda/.
#include <pybind11/pybind11.h>

#include "dynin_rt/build_info.h"  // defines: build_info

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
    m.doc() = "dynin_rt native runtime";
    m.def("build_info", [] {
        const dynin_rt::BuildInfo info = dynin_rt::build_info();
        py::dict d;
        d["version"] = info.version;
        d["cuda"] = info.cuda;
        d["blas"] = info.blas;
        d["cpu_simd"] = info.cpu_simd;
        return d;
    });
}

// The module dynin_rt._C: numpy arrays in and out, the GIL released while C++ works, C++ errors
// translated to Python exceptions. Each part is declared in its own file: the engine and samplers
// (engine_binding.cc), the sampler options (params_binding.cc), the single kernels (ops_binding.cc).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "binding_util.h"           // defines: set_error
#include "cpu/thread_pool.h"        // defines: cpu_num_threads, cpu_set_num_threads
#include "dynin_rt/build_info.h"    // defines: build_info
#include "dynin_rt/common.h"        // defines: InvalidArgument, FormatError, Cancelled
#include "dynin_rt/counter_rng.h"   // defines: counter_key, counter_at, bits_to_uniform
#include "dynin_rt/safetensors.h"   // defines: SafetensorsFile, parse_safetensors
#include "engine_binding.h"         // defines: bind_engine
#include "ops_binding.h"            // defines: bind_ops (kernel test hooks)
#include "params_binding.h"         // defines: bind_params

namespace py = pybind11;
using namespace dynin_rt;

namespace {

py::dict tensors_dict(const std::map<std::string, TensorView>& tensors) {
    py::dict out;
    for (const auto& [name, t] : tensors) out[py::str(name)] = py::make_tuple(dtype_name(t.dtype), t.shape);
    return out;
}

void translate_errors() {
    static py::object checkpoint_error = py::module_::import("dynin_rt.errors").attr("CheckpointError");
    static py::object cancelled = py::module_::import("dynin_rt.errors").attr("Cancelled");
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FormatError& e) {
            binding::set_error(checkpoint_error.ptr(), e.what());
        } catch (const InvalidArgument& e) {
            binding::set_error(PyExc_ValueError, e.what());
        } catch (const Cancelled& e) {
            binding::set_error(cancelled.ptr(), e.what());
        }
    });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "dynin_rt native runtime";
    translate_errors();
    m.def("build_info", [] {
        const BuildInfo info = build_info();
        py::dict d;
        d["version"] = info.version;
        d["cuda"] = info.cuda;
        d["cuda_emulated"] = info.cuda_emulated;
        d["blas"] = info.blas;
        d["cpu_simd"] = info.cpu_simd;
        d["cpu_threads"] = cpu_num_threads();
        return d;
    });
    m.def("backend_names", &backend_names, "The backends this build has (cpu first).");
    m.def("cuda_device_count", [] {
#if DYNIN_RT_WITH_CUDA
        return cuda_device_count();
#else
        return 0;
#endif
    });
    m.def("set_num_threads", &cpu_set_num_threads, py::arg("n"), "CPU kernel threads (n <= 0: one per hardware thread)");
    m.def("inspect_safetensors", [](const std::string& path) { return tensors_dict(SafetensorsFile(path).tensors()); },
          "Maps and validates a safetensors file; returns {name: (dtype, shape)} or raises CheckpointError.");
    m.def("inspect_safetensors_bytes", [](const py::bytes& data) {
        const std::string buf = data;
        return tensors_dict(parse_safetensors(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), "<bytes>"));
    }, "Validates safetensors bytes as the file loader does (the fuzzing entry point).");
    m.def("counter_uniform", [](uint64_t seed, uint64_t stream, uint64_t step, uint64_t row, uint64_t pos, int64_t index) {
        const uint64_t key = counter_key(seed, stream, step, row, pos);
        return bits_to_uniform(index < 0 ? key : counter_at(key, static_cast<uint64_t>(index)));
    }, py::arg("seed"), py::arg("stream"), py::arg("step"), py::arg("row"), py::arg("position"), py::arg("index") = -1);
    bind_params(m);
    bind_engine(m);
    bind_ops(m);
}

// What the binding files share: numpy arrays in (validated, copied, never written) and out, the
// stats dict, the Python hooks a running loop calls (streaming callback, Ctrl-C check).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "dynin_rt/samplers.h"

namespace dynin_rt {
namespace binding {

// A 2-D integer array [B, T] -> row-major int32 copy.
std::vector<int32_t> int_matrix(const pybind11::array& a, const char* name, int64_t* rows, int64_t* cols);

// Token rows from input ids [B, T], an optional 0/1 keep-mask [B, T] and optional row lengths [B].
TokenRows token_rows(const pybind11::array& ids, const pybind11::object& keep, const pybind11::object& lengths,
                     const char* name);

pybind11::dict stats_dict(const SamplerStats& s);

// The control of a call made from Python: cancel tokens, the streaming callback (GIL taken for the
// call only) and, when the call runs on the main thread, a Ctrl-C check before every step.
// plans: "auto", "step" or "block" (PlanMode); graphs: record and replay device-resident steps.
LoopControl loop_control(const pybind11::object& on_block, int64_t batch, int64_t length, const pybind11::object& cancel,
                         const pybind11::object& row_cancel, const std::string& plans, bool graphs);

// Messages may quote bytes from a hostile file: decode them leniently.
void set_error(PyObject* type, const char* what);

}  // namespace binding
}  // namespace dynin_rt

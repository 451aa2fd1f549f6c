#include "binding_util.h"

#include <pybind11/stl.h>

#include <climits>
#include <cstring>

#include "dynin_rt/common.h"

namespace py = pybind11;

namespace dynin_rt {
namespace binding {

std::vector<int32_t> int_matrix(const py::array& a, const char* name, int64_t* rows, int64_t* cols) {
    DYNIN_CHECK_ARG(a.ndim() == 2, name, " must be a 2-D array [B, T], got ", a.ndim(), " dimensions");
    const char kind = a.dtype().kind();
    DYNIN_CHECK_ARG(kind == 'i' || kind == 'u' || kind == 'b', name, " must hold integers, not dtype kind '", kind, "'");
    *rows = a.shape(0);
    *cols = a.shape(1);
    DYNIN_CHECK_ARG(*rows > 0 && *cols > 0, name, " is empty");
    auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    DYNIN_CHECK_ARG(wide, name, ": cannot read as integers");
    std::vector<int32_t> out(static_cast<size_t>(*rows * *cols));
    const int64_t* src = wide.data();
    for (size_t i = 0; i < out.size(); ++i) {
        DYNIN_CHECK_ARG(src[i] >= INT32_MIN && src[i] <= INT32_MAX, name, " holds ", src[i], ", outside the int32 range");
        out[i] = static_cast<int32_t>(src[i]);
    }
    return out;
}

TokenRows token_rows(const py::array& ids, const py::object& keep, const py::object& lengths, const char* name) {
    TokenRows r;
    r.ids = int_matrix(ids, name, &r.batch, &r.length);
    if (!keep.is_none()) {
        int64_t kb = 0, kt = 0;
        const std::vector<int32_t> k = int_matrix(keep.cast<py::array>(), "attention_mask", &kb, &kt);
        DYNIN_CHECK_ARG(kb == r.batch && kt == r.length, "attention_mask shape [", kb, ", ", kt, "] does not match ", name, " [",
                        r.batch, ", ", r.length, "]");
        r.keep.resize(k.size());
        for (size_t i = 0; i < k.size(); ++i) {
            DYNIN_CHECK_ARG(k[i] == 0 || k[i] == 1, "attention_mask must hold 0 and 1 only");
            r.keep[i] = static_cast<uint8_t>(k[i]);
        }
    }
    if (!lengths.is_none()) {
        r.lengths = lengths.cast<std::vector<int64_t>>();
        DYNIN_CHECK_ARG(static_cast<int64_t>(r.lengths.size()) == r.batch, name, ": one length per row");
    }
    return r;
}

py::dict stats_dict(const SamplerStats& s) {
    py::dict d;
    d["forwards"] = s.forwards;
    d["positions"] = s.positions;
    d["steps"] = s.steps;
    d["committed_per_step"] = s.committed_per_step;
    d["seconds_forward"] = s.seconds_forward;
    d["seconds_sample"] = s.seconds_sample;
    d["cancelled_rows"] = std::vector<int>(s.cancelled_rows.begin(), s.cancelled_rows.end());
    py::dict device;
    device["kernel_launches"] = s.device.kernel_launches;
    device["graph_replays"] = s.device.graph_replays;
    device["host_syncs"] = s.device.host_syncs;
    device["allocations"] = s.device.allocations;
    device["frees"] = s.device.frees;
    d["device"] = device;
    return d;
}

namespace {

bool on_main_thread() {
    static const unsigned long main_ident =
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    return PyThread_get_thread_ident() == main_ident;
}

}  // namespace

LoopControl loop_control(const py::object& on_block, int64_t batch, int64_t length, const py::object& cancel,
                         const py::object& row_cancel, const std::string& plans, bool graphs) {
    LoopControl c;
    c.graphs = graphs;
    if (plans == "step") c.plans = PlanMode::kPerStep;
    else if (plans == "block") c.plans = PlanMode::kPerBlock;
    else DYNIN_CHECK_ARG(plans == "auto", "plans must be auto, step or block, not ", plans);
    if (!cancel.is_none()) c.all = cancel.cast<CancelToken>();
    if (!row_cancel.is_none()) c.rows = row_cancel.cast<std::vector<CancelToken>>();
    if (!on_block.is_none()) {
        c.on_block = [on_block, batch, length](int64_t block, const std::vector<int32_t>& canvas) {
            py::gil_scoped_acquire gil;
            py::array_t<int32_t> arr({batch, length});
            std::copy(canvas.begin(), canvas.begin() + batch * length, arr.mutable_data());
            on_block(block, arr);
        };
    }
    // Signal handlers run on the main thread only: a call made there checks for Ctrl-C every step
    // and unwinds with the KeyboardInterrupt; calls on other threads are stopped by their tokens.
    if (on_main_thread()) {
        c.poll = [] {
            py::gil_scoped_acquire gil;
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        };
    }
    return c;
}

void set_error(PyObject* type, const char* what) {
    PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace");
    if (!msg) {
        PyErr_Clear();
        PyErr_SetString(type, "dynin_rt: error message could not be decoded");
        return;
    }
    PyErr_SetObject(type, msg);
    Py_DECREF(msg);
}

}  // namespace binding
}  // namespace dynin_rt

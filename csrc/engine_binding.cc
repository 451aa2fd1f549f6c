// _C.Engine: a loaded model and the three samplers over numpy arrays. The GIL is released while C++
// works; runtime.py is the public face.
#include "engine_binding.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <limits>

#include "binding_util.h"
#include "dynin_rt/common.h"
#include "dynin_rt/engine.h"
#include "dynin_rt/samplers.h"

namespace py = pybind11;

namespace dynin_rt {

namespace {

struct PyEngine {
    std::shared_ptr<Engine> engine;
    TokenLayout tokens;
};

PyEngine make_engine(const std::string& weights_path, const py::dict& config, const py::dict& layout, const std::string& dtype,
                     const std::string& backend, int device) {
    ModelConfig cfg;
    cfg.d_model = config["d_model"].cast<int64_t>();
    cfg.n_heads = config["n_heads"].cast<int64_t>();
    cfg.n_layers = config["n_layers"].cast<int64_t>();
    cfg.mlp_hidden = config["mlp_hidden_size"].cast<int64_t>();
    cfg.vocab_size = config["vocab_size"].cast<int64_t>();
    cfg.max_seq_len = config["max_sequence_length"].cast<int64_t>();
    cfg.rms_eps = config["rms_norm_eps"].cast<double>();
    cfg.rope_theta = config["rope_theta"].cast<double>();
    cfg.validate();
    TokenLayout tl;
    tl.mask_id = layout["mask_id"].cast<int64_t>();
    tl.eos_id = layout["eos_id"].cast<int64_t>();
    tl.eoa_id = layout["eoa_id"].cast<int64_t>();
    tl.image_offset = layout["image_offset"].cast<int64_t>();
    tl.speech_offset = layout["speech_offset"].cast<int64_t>();
    tl.validate(cfg.vocab_size);
    DType dt = DType::F32;
    if (dtype == "bf16") dt = DType::BF16;
    else if (dtype == "fp16") dt = DType::F16;
    else DYNIN_CHECK_ARG(dtype == "fp32", "dtype must be one of fp32, bf16, fp16, not ", dtype);
    auto weights = std::make_shared<ModelWeights>(weights_path, cfg, dt);
    return {std::make_shared<Engine>(cfg, std::move(weights), make_backend(backend, device)), tl};
}

// input_ids [B, T] -> logits [B, T, V] (NaN rows at pads dropped by the mask)
py::array_t<float> logits(PyEngine& e, const py::array& ids, const py::object& keep) {
    const TokenRows rows = binding::token_rows(ids, keep, py::none(), "input_ids");
    rows.validate(*e.engine, "input_ids");
    const int64_t B = rows.batch, T = rows.length, V = e.engine->config().vocab_size;
    py::array_t<float> out({B, T, V});
    float* dst = out.mutable_data();
    py::gil_scoped_release nogil;
    const CanvasLayout layout(B, T, rows.keep.empty() ? nullptr : rows.keep.data());
    std::vector<int64_t> head(static_cast<size_t>(layout.slots()));
    for (int64_t i = 0; i < layout.slots(); ++i) head[i] = i;
    Backend* be = e.engine->backend();
    DeviceBuffer canvas(be, sizeof(int32_t) * rows.ids.size());
    be->copy_to_device(canvas.as<void>(), rows.ids.data(), sizeof(int32_t) * rows.ids.size());
    Workspace ws;
    const float* d_logits = e.engine->forward({canvas.as<int32_t>(), B, nullptr, &layout, nullptr, nullptr, false, &head, {{0, 0, V}}}, ws);
    std::vector<float> host(static_cast<size_t>(layout.slots() * V));
    e.engine->backend()->copy_to_host(host.data(), d_logits, sizeof(float) * host.size());
    std::fill(dst, dst + B * T * V, std::numeric_limits<float>::quiet_NaN());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t) {
            const int64_t slot = layout.pos_slot[b * T + t];
            if (slot >= 0) std::copy(host.begin() + slot * V, host.begin() + (slot + 1) * V, dst + (b * T + t) * V);
        }
    return out;
}

// prompt_ids [B, P] (row lengths [B] for a ragged batch) -> (canvas [B, T], stats)
py::tuple generate_text(PyEngine& e, const py::array& prompt, const py::object& keep, const LladaParams& p,
                        const py::object& lengths, const py::object& on_block, const py::object& cancel,
                        const py::object& row_cancel, const std::string& plans, bool graphs) {
    const TokenRows rows = binding::token_rows(prompt, keep, lengths, "prompt_ids");
    DYNIN_CHECK_ARG(p.gen_lengths.empty() || static_cast<int64_t>(p.gen_lengths.size()) == rows.batch, "one gen length per row");
    int64_t T = 0;
    for (int64_t b = 0; b < rows.batch; ++b)
        T = std::max(T, rows.row_length(b) + (p.gen_lengths.empty() ? p.gen_length : p.gen_lengths[b]));
    LoopControl control = binding::loop_control(on_block, rows.batch, T, cancel, row_cancel, plans, graphs);
    SamplerStats stats;
    std::vector<int32_t> out;
    {
        py::gil_scoped_release nogil;
        out = llada_generate(*e.engine, e.tokens, rows, p, control, &stats);
    }
    py::array_t<int32_t> arr({rows.batch, static_cast<int64_t>(out.size()) / rows.batch});
    std::copy(out.begin(), out.end(), arr.mutable_data());
    return py::make_tuple(arr, binding::stats_dict(stats));
}

// canvas [B, T] + keep-mask, uncond twins or None -> (codes [B, N], stats)
py::tuple generate_image(PyEngine& e, const py::array& canvas, const py::object& keep, const py::object& uncond,
                         const py::object& uncond_keep, const MaskgitParams& p, const py::object& cancel,
                         const py::object& row_cancel, const std::string& plans, bool graphs) {
    const TokenRows rows = binding::token_rows(canvas, keep, py::none(), "input_ids");
    TokenRows un;
    if (!uncond.is_none()) un = binding::token_rows(uncond.cast<py::array>(), uncond_keep, py::none(), "uncond_input_ids");
    LoopControl control = binding::loop_control(py::none(), rows.batch, rows.length, cancel, row_cancel, plans, graphs);
    SamplerStats stats;
    std::vector<int32_t> out;
    {
        py::gil_scoped_release nogil;
        out = maskgit_generate(*e.engine, e.tokens, rows, uncond.is_none() ? nullptr : &un, p, control, &stats);
    }
    py::array_t<int32_t> arr({rows.batch, p.n_tokens});
    std::copy(out.begin(), out.end(), arr.mutable_data());
    return py::make_tuple(arr, binding::stats_dict(stats));
}

// canvas [B, T] + optional keep-mask -> ([units [n] per row], stats)
py::tuple generate_speech(PyEngine& e, const py::array& canvas, const py::object& keep, const T2sParams& p,
                          const py::object& on_block, const py::object& cancel, const py::object& row_cancel,
                          const std::string& plans, bool graphs) {
    const TokenRows rows = binding::token_rows(canvas, keep, py::none(), "input_ids");
    LoopControl control = binding::loop_control(on_block, rows.batch, rows.length, cancel, row_cancel, plans, graphs);
    SamplerStats stats;
    std::vector<std::vector<int32_t>> out;
    {
        py::gil_scoped_release nogil;
        out = t2s_generate(*e.engine, e.tokens, rows, p, control, &stats);
    }
    py::list units;
    for (const auto& row : out) {
        py::array_t<int32_t> arr(static_cast<py::ssize_t>(row.size()));
        std::copy(row.begin(), row.end(), arr.mutable_data());
        units.append(arr);
    }
    return py::make_tuple(units, binding::stats_dict(stats));
}

}  // namespace

void bind_engine(py::module_& m) {
    const auto none = py::none();
    py::class_<PyEngine>(m, "Engine")
        .def(py::init(&make_engine), py::arg("weights_path"), py::arg("config"), py::arg("layout"), py::arg("dtype"),
             py::arg("backend") = "cpu", py::arg("device") = 0)
        .def_property_readonly("backend", [](const PyEngine& e) { return e.engine->backend()->name(); })
        .def("logits", &logits, py::arg("input_ids"), py::arg("attention_mask") = none)
        .def("generate_text", &generate_text, py::arg("prompt_ids"), py::arg("attention_mask"), py::arg("params"),
             py::arg("lengths") = none, py::arg("on_block") = none, py::arg("cancel") = none, py::arg("row_cancel") = none,
             py::arg("plans") = "auto", py::arg("graphs") = true)
        .def("generate_image", &generate_image, py::arg("input_ids"), py::arg("attention_mask"), py::arg("uncond_input_ids"),
             py::arg("uncond_attention_mask"), py::arg("params"), py::arg("cancel") = none, py::arg("row_cancel") = none,
             py::arg("plans") = "auto", py::arg("graphs") = true)
        .def("generate_speech", &generate_speech, py::arg("input_ids"), py::arg("attention_mask"), py::arg("params"),
             py::arg("on_block") = none, py::arg("cancel") = none, py::arg("row_cancel") = none, py::arg("plans") = "auto", py::arg("graphs") = true);
}

}  // namespace dynin_rt

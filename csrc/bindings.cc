// pybind11 declarations of dynin_rt._C: arrays in and out through the buffer protocol (numpy), the
// GIL released while C++ works, C++ errors translated to Python exceptions. No work happens here
// beyond argument conversion; python/dynin_rt/runtime.py is the public face.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "dynin_rt/build_info.h"    // defines: build_info
#include "dynin_rt/common.h"        // defines: InvalidArgument, FormatError
#include "dynin_rt/counter_rng.h"   // defines: counter_key, counter_at, bits_to_uniform
#include "dynin_rt/engine.h"        // defines: Engine, CanvasLayout
#include "dynin_rt/safetensors.h"   // defines: SafetensorsFile
#include "dynin_rt/samplers.h"      // defines: llada_generate, maskgit_generate, t2s_generate
#include "ops_binding.h"            // defines: bind_ops (kernel test hooks)
#include "cpu/thread_pool.h"        // defines: cpu_num_threads, cpu_set_num_threads

namespace py = pybind11;
using namespace dynin_rt;

namespace {

DType parse_dtype(const std::string& s) {
    if (s == "fp32") return DType::F32;
    if (s == "bf16") return DType::BF16;
    if (s == "fp16") return DType::F16;
    throw InvalidArgument("dtype must be one of fp32, bf16, fp16, not " + s);
}

SelectRule parse_select(const std::string& s) {
    if (s == "topk") return SelectRule::kTopK;
    if (s == "threshold") return SelectRule::kThreshold;
    if (s == "factor") return SelectRule::kFactor;
    throw InvalidArgument("select must be one of topk, threshold, factor, not " + s);
}

CacheMode parse_cache(const std::string& s) {
    if (s == "none") return CacheMode::kNone;
    if (s == "prefix") return CacheMode::kPrefix;
    if (s == "dual") return CacheMode::kDual;
    throw InvalidArgument("cache must be one of none, prefix, dual, not " + s);
}

// A 2-D integer array -> row-major int32 copy (the caller's array is never written).
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

std::vector<uint8_t> keep_matrix(const py::array& a, int64_t rows, int64_t cols, const char* name) {
    int64_t r = 0, c = 0;
    const std::vector<int32_t> v = int_matrix(a, name, &r, &c);
    DYNIN_CHECK_ARG(r == rows && c == cols, name, " shape [", r, ", ", c, "] does not match [", rows, ", ", cols, "]");
    std::vector<uint8_t> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        DYNIN_CHECK_ARG(v[i] == 0 || v[i] == 1, name, " must hold 0 and 1 only");
        out[i] = static_cast<uint8_t>(v[i]);
    }
    return out;
}

py::dict stats_dict(const SamplerStats& s) {
    py::dict d;
    d["forwards"] = s.forwards;
    d["steps"] = s.steps;
    d["committed_per_step"] = s.committed_per_step;
    d["seconds_forward"] = s.seconds_forward;
    d["seconds_sample"] = s.seconds_sample;
    return d;
}

// Runs a Python callback from a C++ loop: the GIL is taken only for the call.
BlockCallback wrap_callback(const py::object& fn, int64_t batch, int64_t length) {
    if (fn.is_none()) return {};
    return [fn, batch, length](int64_t block, const std::vector<int32_t>& canvas) {
        py::gil_scoped_acquire gil;
        py::array_t<int32_t> arr({batch, length});
        std::copy(canvas.begin(), canvas.begin() + batch * length, arr.mutable_data());
        fn(block, arr);
    };
}

// Messages may quote bytes from a hostile file: decode them leniently.
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
    auto weights = std::make_shared<ModelWeights>(weights_path, cfg, parse_dtype(dtype));
    std::unique_ptr<Backend> be = make_backend(backend, device);
    return {std::make_shared<Engine>(cfg, std::move(weights), std::move(be)), tl};
}

py::array_t<float> engine_logits(PyEngine& e, const py::array& ids, const py::object& keep_obj) {
    int64_t B = 0, T = 0;
    const std::vector<int32_t> tokens = int_matrix(ids, "input_ids", &B, &T);
    std::vector<uint8_t> keep;
    if (!keep_obj.is_none()) keep = keep_matrix(keep_obj.cast<py::array>(), B, T, "attention_mask");
    const ModelConfig& cfg = e.engine->config();
    DYNIN_CHECK_ARG(T <= cfg.max_seq_len, "sequence of ", T, " tokens exceeds the context of ", cfg.max_seq_len);
    const int64_t V = cfg.vocab_size;
    py::array_t<float> out({B, T, V});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        const CanvasLayout layout(B, T, keep.empty() ? nullptr : keep.data());
        std::vector<int64_t> head(static_cast<size_t>(layout.slots()));
        for (int64_t i = 0; i < layout.slots(); ++i) head[i] = i;
        Workspace ws;
        ForwardArgs fa;
        fa.tokens = tokens.data();
        fa.layout = &layout;
        fa.head_slots = &head;
        fa.columns = {{0, 0, V}};
        const float* logits = e.engine->forward(fa, ws);
        std::vector<float> host(static_cast<size_t>(layout.slots() * V));
        e.engine->backend()->copy_to_host(host.data(), logits, sizeof(float) * host.size());
        std::fill(dst, dst + B * T * V, std::numeric_limits<float>::quiet_NaN());  // pads are not computed
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t < T; ++t) {
                const int64_t slot = layout.pos_slot[b * T + t];
                if (slot >= 0) std::copy(host.begin() + slot * V, host.begin() + (slot + 1) * V, dst + (b * T + t) * V);
            }
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "dynin_rt native runtime";
    static py::object checkpoint_error = py::module_::import("dynin_rt.errors").attr("CheckpointError");
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FormatError& e) {
            set_error(checkpoint_error.ptr(), e.what());
        } catch (const InvalidArgument& e) {
            set_error(PyExc_ValueError, e.what());
        }
    });

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
    m.def("cuda_device_count", [] {
#if DYNIN_RT_WITH_CUDA
        return cuda_device_count();
#else
        return 0;
#endif
    });
    m.def("set_num_threads", &cpu_set_num_threads, py::arg("n"), "CPU kernel threads (n <= 0: one per hardware thread)");

    m.def("inspect_safetensors", [](const std::string& path) {
        SafetensorsFile f(path);
        py::dict out;
        for (const std::string& name : f.names()) {
            const TensorView& t = f.get(name);
            out[py::str(name)] = py::make_tuple(dtype_name(t.dtype), t.shape);
        }
        return out;
    }, "Maps and validates a safetensors file; returns {name: (dtype, shape)} or raises CheckpointError.");

    m.def("inspect_safetensors_bytes", [](const py::bytes& data) {
        const std::string buf = data;
        const auto tensors = parse_safetensors(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), "<bytes>");
        py::dict out;
        for (const auto& [name, t] : tensors) out[py::str(name)] = py::make_tuple(dtype_name(t.dtype), t.shape);
        return out;
    }, "Validates safetensors bytes as the file loader does (the fuzzing entry point).");

    m.def("counter_uniform", [](uint64_t seed, uint64_t stream, uint64_t step, uint64_t row, uint64_t pos, int64_t index) {
        const uint64_t key = counter_key(seed, stream, step, row, pos);
        return bits_to_uniform(index < 0 ? key : counter_at(key, static_cast<uint64_t>(index)));
    }, py::arg("seed"), py::arg("stream"), py::arg("step"), py::arg("row"), py::arg("position"), py::arg("index") = -1);

    py::class_<PyEngine>(m, "Engine")
        .def(py::init(&make_engine), py::arg("weights_path"), py::arg("config"), py::arg("layout"), py::arg("dtype"),
             py::arg("backend") = "cpu", py::arg("device") = 0)
        .def_property_readonly("backend", [](const PyEngine& e) { return e.engine->backend()->name(); })
        .def("logits", &engine_logits, py::arg("input_ids"), py::arg("attention_mask") = py::none())
        .def("generate_text",
             [](PyEngine& e, const py::array& prompt, const py::object& keep_obj, int64_t gen_length, int64_t steps,
                int64_t block_length, double temperature, double cfg_scale, bool random_remasking, const std::string& select,
                double threshold, double factor, const std::string& cache, uint64_t seed, const py::object& on_block) {
                 int64_t B = 0, P = 0;
                 const std::vector<int32_t> ids = int_matrix(prompt, "prompt_ids", &B, &P);
                 std::vector<uint8_t> keep;
                 if (!keep_obj.is_none()) keep = keep_matrix(keep_obj.cast<py::array>(), B, P, "attention_mask");
                 LladaParams p;
                 p.gen_length = gen_length;
                 p.steps = steps;
                 p.block_length = block_length;
                 p.temperature = temperature;
                 p.cfg_scale = cfg_scale;
                 p.random_remasking = random_remasking;
                 p.select = parse_select(select);
                 p.threshold = threshold;
                 p.factor = factor;
                 p.cache = parse_cache(cache);
                 p.seed = seed;
                 const BlockCallback cb = wrap_callback(on_block, B, P + gen_length);
                 SamplerStats stats;
                 std::vector<int32_t> out;
                 {
                     py::gil_scoped_release nogil;
                     out = llada_generate(*e.engine, e.tokens, ids, B, keep.empty() ? nullptr : &keep, p, &stats, cb);
                 }
                 py::array_t<int32_t> arr({B, P + gen_length});
                 std::copy(out.begin(), out.end(), arr.mutable_data());
                 return py::make_tuple(arr, stats_dict(stats));
             },
             py::arg("prompt_ids"), py::arg("attention_mask"), py::arg("gen_length"), py::arg("steps"), py::arg("block_length"),
             py::arg("temperature"), py::arg("cfg_scale"), py::arg("random_remasking"), py::arg("select"), py::arg("threshold"),
             py::arg("factor"), py::arg("cache"), py::arg("seed"), py::arg("on_block") = py::none())
        .def("generate_image",
             [](PyEngine& e, const py::array& canvas, const py::array& keep_arr, const py::object& uncond_obj,
                const py::object& uncond_keep_obj, int64_t n_tokens, const std::vector<int64_t>& schedule, double temperature,
                double guidance_scale, int64_t resolution, uint64_t seed) {
                 int64_t B = 0, T = 0;
                 const std::vector<int32_t> ids = int_matrix(canvas, "input_ids", &B, &T);
                 const std::vector<uint8_t> keep = keep_matrix(keep_arr, B, T, "attention_mask");
                 std::vector<int32_t> un;
                 std::vector<uint8_t> un_keep;
                 if (!uncond_obj.is_none()) {
                     int64_t ub = 0, ut = 0;
                     un = int_matrix(uncond_obj.cast<py::array>(), "uncond_input_ids", &ub, &ut);
                     DYNIN_CHECK_ARG(ub == B && ut == T, "uncond_input_ids must have the shape of input_ids");
                     un_keep = keep_matrix(uncond_keep_obj.cast<py::array>(), B, T, "uncond_attention_mask");
                 }
                 MaskgitParams p;
                 p.n_tokens = n_tokens;
                 p.schedule = schedule;
                 p.temperature = temperature;
                 p.guidance_scale = guidance_scale;
                 p.resolution = resolution;
                 p.seed = seed;
                 SamplerStats stats;
                 std::vector<int32_t> out;
                 {
                     py::gil_scoped_release nogil;
                     out = maskgit_generate(*e.engine, e.tokens, ids, keep, un, un_keep, B, p, &stats);
                 }
                 py::array_t<int32_t> arr({B, n_tokens});
                 std::copy(out.begin(), out.end(), arr.mutable_data());
                 return py::make_tuple(arr, stats_dict(stats));
             },
             py::arg("input_ids"), py::arg("attention_mask"), py::arg("uncond_input_ids"), py::arg("uncond_attention_mask"),
             py::arg("n_tokens"), py::arg("schedule"), py::arg("temperature"), py::arg("guidance_scale"), py::arg("resolution"),
             py::arg("seed"))
        .def("generate_speech",
             [](PyEngine& e, const py::array& canvas, const py::object& keep_obj, int64_t max_new_tokens, int64_t steps,
                int64_t block_length, double temperature, double cfg_scale, const std::string& select, double threshold,
                double factor, const std::string& cache, uint64_t seed, const py::object& on_block) {
                 int64_t B = 0, T = 0;
                 const std::vector<int32_t> ids = int_matrix(canvas, "input_ids", &B, &T);
                 std::vector<uint8_t> keep;
                 if (!keep_obj.is_none()) keep = keep_matrix(keep_obj.cast<py::array>(), B, T, "attention_mask");
                 T2sParams p;
                 p.max_new_tokens = max_new_tokens;
                 p.steps = steps;
                 p.block_length = block_length;
                 p.temperature = temperature;
                 p.cfg_scale = cfg_scale;
                 p.select = parse_select(select);
                 p.threshold = threshold;
                 p.factor = factor;
                 p.cache = parse_cache(cache);
                 p.seed = seed;
                 const BlockCallback cb = wrap_callback(on_block, B, T);
                 SamplerStats stats;
                 std::vector<std::vector<int32_t>> out;
                 {
                     py::gil_scoped_release nogil;
                     out = t2s_generate(*e.engine, e.tokens, ids, keep.empty() ? nullptr : &keep, B, p, &stats, cb);
                 }
                 py::list units;
                 for (const auto& row : out) {
                     py::array_t<int32_t> arr(static_cast<py::ssize_t>(row.size()));
                     std::copy(row.begin(), row.end(), arr.mutable_data());
                     units.append(arr);
                 }
                 return py::make_tuple(units, stats_dict(stats));
             },
             py::arg("input_ids"), py::arg("attention_mask"), py::arg("max_new_tokens"), py::arg("steps"), py::arg("block_length"),
             py::arg("temperature"), py::arg("cfg_scale"), py::arg("select"), py::arg("threshold"), py::arg("factor"),
             py::arg("cache"), py::arg("seed"), py::arg("on_block") = py::none());

    bind_ops(m);
}

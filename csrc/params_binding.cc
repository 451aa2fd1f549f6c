// The sampler option structs (samplers.h) as Python classes: `_C.LladaParams(gen_length=64, ...)`,
// fields read and written by name, enums as their names ("topk", "threshold", "factor"; "none",
// "prefix", "dual"), per-row seeds and noise rows as lists. One definition serves the runtime, the
// task modules and the reference adapter.
#include "params_binding.h"

#include <pybind11/stl.h>

#include <string>

#include "dynin_rt/common.h"
#include "dynin_rt/samplers.h"

namespace py = pybind11;

namespace dynin_rt {

namespace {

SelectRule parse_select(const std::string& s) {
    if (s == "topk") return SelectRule::kTopK;
    if (s == "threshold") return SelectRule::kThreshold;
    if (s == "factor") return SelectRule::kFactor;
    throw InvalidArgument("select must be one of topk, threshold, factor, not " + s);
}
const char* select_name(SelectRule r) {
    return r == SelectRule::kTopK ? "topk" : r == SelectRule::kThreshold ? "threshold" : "factor";
}

CacheMode parse_cache(const std::string& s) {
    if (s == "none") return CacheMode::kNone;
    if (s == "prefix") return CacheMode::kPrefix;
    if (s == "dual") return CacheMode::kDual;
    throw InvalidArgument("cache must be one of none, prefix, dual, not " + s);
}
const char* cache_name(CacheMode c) { return c == CacheMode::kNone ? "none" : c == CacheMode::kPrefix ? "prefix" : "dual"; }

// Keyword construction and a repr listing every field, for any bound params class.
template <typename Params>
void add_common(py::class_<Params>& cls, const std::vector<const char*>& fields) {
    cls.def(py::init([](const py::kwargs& kwargs) {
        py::object obj = py::cast(Params());
        for (const auto& item : kwargs) {
            const std::string name = item.first.cast<std::string>();
            DYNIN_CHECK_ARG(py::hasattr(obj, name.c_str()), "unknown sampler option ", name);
            obj.attr(name.c_str()) = item.second;
        }
        return obj.cast<Params>();
    }));
    cls.def("__repr__", [fields](const py::object& self) {
        std::string out = py::str(py::type::of(self).attr("__name__")).cast<std::string>() + "(";
        for (size_t i = 0; i < fields.size(); ++i)
            out += (i ? ", " : "") + std::string(fields[i]) + "=" + py::repr(self.attr(fields[i])).cast<std::string>();
        return out + ")";
    });
}

template <typename Params>
void add_rows(py::class_<Params>& cls) {
    cls.def_property("row_seeds", [](const Params& p) { return p.rows.seed; },
                     [](Params& p, const std::vector<uint64_t>& v) { p.rows.seed = v; }, "[B] per-row seeds, or empty");
    cls.def_property("noise_rows", [](const Params& p) { return p.rows.noise_row; },
                     [](Params& p, const std::vector<int64_t>& v) { p.rows.noise_row = v; },
                     "[B] noise row of each batch row, or empty (row b draws row b's noise)");
}

template <typename Params>
void add_fast(py::class_<Params>& cls) {
    cls.def_property("select", [](const Params& p) { return select_name(p.select); },
                     [](Params& p, const std::string& s) { p.select = parse_select(s); });
    cls.def_property("cache", [](const Params& p) { return cache_name(p.cache); },
                     [](Params& p, const std::string& s) { p.cache = parse_cache(s); });
    cls.def_readwrite("threshold", &Params::threshold).def_readwrite("factor", &Params::factor);
    cls.def_readwrite("refresh_every", &Params::refresh_every);
}

}  // namespace

void bind_params(py::module_& m) {
    py::class_<LladaParams> llada(m, "LladaParams", "Options of the LLaDA block sampler (samplers.h).");
    llada.def_readwrite("gen_length", &LladaParams::gen_length)
        .def_readwrite("steps", &LladaParams::steps)
        .def_readwrite("block_length", &LladaParams::block_length)
        .def_readwrite("gen_lengths", &LladaParams::gen_lengths)
        .def_readwrite("temperature", &LladaParams::temperature)
        .def_readwrite("cfg_scale", &LladaParams::cfg_scale)
        .def_readwrite("random_remasking", &LladaParams::random_remasking)
        .def_readwrite("seed", &LladaParams::seed);
    add_fast(llada);
    add_rows(llada);
    add_common(llada, {"gen_length", "steps", "block_length", "gen_lengths", "temperature", "cfg_scale", "random_remasking",
                       "select", "threshold", "factor", "cache", "refresh_every", "seed", "row_seeds", "noise_rows"});

    py::class_<MaskgitParams> maskgit(m, "MaskgitParams", "Options of the MaskGIT image sampler (samplers.h).");
    maskgit.def_readwrite("n_tokens", &MaskgitParams::n_tokens)
        .def_readwrite("schedule", &MaskgitParams::schedule)
        .def_readwrite("temperature", &MaskgitParams::temperature)
        .def_readwrite("guidance_scale", &MaskgitParams::guidance_scale)
        .def_readwrite("resolution", &MaskgitParams::resolution)
        .def_readwrite("refresh_every", &MaskgitParams::refresh_every)
        .def_property("cache", [](const MaskgitParams& p) { return cache_name(p.cache); },
                      [](MaskgitParams& p, const std::string& s) { p.cache = parse_cache(s); })
        .def_readwrite("seed", &MaskgitParams::seed);
    add_rows(maskgit);
    add_common(maskgit, {"n_tokens", "schedule", "temperature", "guidance_scale", "resolution", "cache", "refresh_every",
                         "seed", "row_seeds", "noise_rows"});

    py::class_<T2sParams> t2s(m, "T2sParams", "Options of the text-to-speech sampler (samplers.h).");
    t2s.def_readwrite("max_new_tokens", &T2sParams::max_new_tokens)
        .def_readwrite("steps", &T2sParams::steps)
        .def_readwrite("block_length", &T2sParams::block_length)
        .def_readwrite("temperature", &T2sParams::temperature)
        .def_readwrite("cfg_scale", &T2sParams::cfg_scale)
        .def_readwrite("seed", &T2sParams::seed);
    add_fast(t2s);
    add_rows(t2s);
    add_common(t2s, {"max_new_tokens", "steps", "block_length", "temperature", "cfg_scale", "select", "threshold", "factor",
                     "cache", "refresh_every", "seed", "row_seeds", "noise_rows"});

    py::class_<CancelToken>(m, "CancelToken", "A flag another thread sets to stop a running generation at its next step.")
        .def(py::init<>())
        .def("cancel", &CancelToken::cancel)
        .def_property_readonly("cancelled", &CancelToken::cancelled);
}

}  // namespace dynin_rt

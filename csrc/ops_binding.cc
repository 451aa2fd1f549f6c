#include "ops_binding.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "cpu/row_reductions.h"  // defines: vec::exp, vec::log (the CPU twins' lanes)
#include "dynin_rt/backend.h"      // defines: Backend, *Params, backend_names
#include "dynin_rt/det_math.h"     // defines: det::exp, det::log
#include "dynin_rt/common.h"
#include "dynin_rt/engine.h"   // defines: rope_tables
#if DYNIN_RT_CUDA_EMULATED
#include "cuda/emulation/counters.h"  // defines: emu::counters
#endif

namespace py = pybind11;
using namespace dynin_rt;

namespace {

template <typename T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Host array -> backend memory, and back.
template <typename T>
DeviceBuffer upload(Backend* be, const Arr<T>& a) {
    DeviceBuffer buf(be, sizeof(T) * std::max<py::ssize_t>(a.size(), 1));
    be->copy_to_device(buf.as<void>(), a.data(), sizeof(T) * a.size());
    return buf;
}

template <typename T>
py::array_t<T> download(Backend* be, const DeviceBuffer& buf, std::vector<py::ssize_t> shape) {
    py::array_t<T> out(shape);
    be->copy_to_host(out.mutable_data(), buf.as<void>(), sizeof(T) * out.size());
    return out;
}

DType parse_weight_dtype(const std::string& dtype) {
    if (dtype == "fp32") return DType::F32;
    if (dtype == "bf16") return DType::BF16;
    DYNIN_CHECK_ARG(dtype == "fp16", "dtype fp32, bf16 (uint16 bits) or fp16 (uint16 bits), not ", dtype);
    return DType::F16;
}

class Ops {
 public:
    explicit Ops(const std::string& backend) : be_(make_backend(backend)) {}

    py::dict caps() const {
        const BackendCaps c = be_->caps();
        py::dict d;
        d["host_memory"] = c.host_memory;
        d["computes_f16"] = c.computes_f16;
        return d;
    }

    py::dict counters() const {
        const BackendCounters c = be_->counters();
        py::dict d;
        d["kernel_launches"] = c.kernel_launches;
        d["graph_replays"] = c.graph_replays;
        d["host_syncs"] = c.host_syncs;
        d["allocations"] = c.allocations;
        d["frees"] = c.frees;
        return d;
    }

    // Uploads every array (one Backend::copy_to_device each, nothing waited for in between), then reads
    // them back: more uploads than the CUDA backend's staging ring holds must reuse it only as its
    // earlier copies complete.
    std::vector<py::array_t<float>> roundtrip(const std::vector<Arr<float>>& arrays) {
        std::vector<DeviceBuffer> on_device;
        for (const Arr<float>& a : arrays) on_device.push_back(upload(be_.get(), a));
        std::vector<py::array_t<float>> back;
        for (size_t i = 0; i < arrays.size(); ++i) back.push_back(download<float>(be_.get(), on_device[i], {static_cast<py::ssize_t>(arrays[i].size())}));
        return back;
    }

    // Whether the backend keeps a packed copy of a weight matrix of this dtype (Backend::pack_weights).
    bool packs(const std::string& dtype) {
        const DType t = parse_weight_dtype(dtype);
        DeviceBuffer w(be_.get(), 16 * 16 * dtype_size(t));
        std::vector<DeviceBuffer> storage;
        return be_->pack_weights(w.as<void>(), t, 16, 16, &storage) != nullptr;
    }

    // x [m, k] fp32; w [n, k] fp32 (dtype "fp32") or uint16 bf16 bits (dtype "bf16") -> y [m, n]
    py::array_t<float> gemm(const Arr<float>& x, const py::array& w, const std::string& dtype, const py::object& y0) {
        GemmOperands g = gemm_operands(x, w, dtype);
        if (!y0.is_none()) {
            be_->copy_to_device(g.y.as<void>(), Arr<float>::ensure(y0).data(), sizeof(float) * g.p.m * g.p.n);
            g.p.accumulate = true;
        }
        be_->gemm(g.p);
        return download<float>(be_.get(), g.y, {g.p.m, g.p.n});
    }

    // Median seconds of the gemm kernel alone (operands uploaded once), for benchmarks.
    double time_gemm(const Arr<float>& x, const py::array& w, const std::string& dtype, int repeats, bool packed) {
        DYNIN_CHECK_ARG(repeats > 0, "time_gemm: repeats must be positive");
        GemmOperands g = gemm_operands(x, w, dtype);
        std::vector<DeviceBuffer> storage;
        if (packed) pack(g.p, g.p.n, g.p.k, &storage);
        py::gil_scoped_release nogil;
        be_->gemm(g.p);  // warm-up
        be_->synchronize();
        std::vector<double> times;
        for (int r = 0; r < repeats; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            be_->gemm(g.p);
            be_->synchronize();
            times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
    }

    // y [m, n] = x . w[row0 : row0 + n]^T through the backend's packed weight layout.
    py::array_t<float> gemm_packed(const Arr<float>& x, const py::array& w, int64_t row0, int64_t n, const std::string& dtype) {
        DYNIN_CHECK_ARG(w.ndim() == 2 && row0 >= 0 && n > 0 && row0 + n <= w.shape(0), "gemm_packed: rows [row0, row0 + n) inside w");
        GemmOperands g = gemm_operands(x, w, dtype);
        std::vector<DeviceBuffer> storage;
        pack(g.p, g.p.n, g.p.k, &storage);
        g.y = DeviceBuffer(be_.get(), sizeof(float) * g.p.m * n);
        g.p.y = g.y.as<float>();
        g.p.ldy = n;
        g.p.n = n;
        g.p.w_row0 = row0;
        be_->gemm(g.p);
        return download<float>(be_.get(), g.y, {g.p.m, n});
    }

    // The sliced LM head: y [m, C] with y[:, col : col + count] = x . w[row0 : row0 + count]^T for
    // each (col, row0, count), the ranges tiling [0, C) in order; each product writes at y + col.
    py::array_t<float> gemm_columns(const Arr<float>& x, const py::array& w, const std::vector<std::tuple<int64_t, int64_t, int64_t>>& columns,
                                    const std::string& dtype) {
        GemmOperands g = gemm_operands(x, w, dtype);
        int64_t C = 0;
        for (const auto& [col, row0, count] : columns) {
            DYNIN_CHECK_ARG(col == C && count > 0 && row0 >= 0 && row0 + count <= g.p.n, "gemm_columns: ranges must tile the output");
            C += count;
        }
        g.y = DeviceBuffer(be_.get(), sizeof(float) * std::max<int64_t>(g.p.m * C, 1));
        for (const auto& [col, row0, count] : columns) {
            GemmParams p = g.p;
            p.w = static_cast<const char*>(g.p.w) + dtype_size(g.p.w_dtype) * row0 * g.p.k;
            p.y = g.y.as<float>() + col;
            p.ldy = C;
            p.n = count;
            be_->gemm(p);
        }
        return download<float>(be_.get(), g.y, {g.p.m, C});
    }

    // table [vocab, d] fp32, or uint16 bits of bf16 / fp16; ids [m] -> [m, d]
    py::array_t<float> embed(const py::array& table, const Arr<int32_t>& ids, const std::string& dtype) {
        DYNIN_CHECK_ARG(table.ndim() == 2 && ids.ndim() == 1, "embed: table [vocab, d], ids [m]");
        const int64_t vocab = table.shape(0), d = table.shape(1), m = ids.shape(0);
        for (py::ssize_t i = 0; i < m; ++i) DYNIN_CHECK_ARG(ids.data()[i] >= 0 && ids.data()[i] < vocab, "embed: id outside the table");
        const DType t = parse_weight_dtype(dtype);
        DeviceBuffer dt = t == DType::F32 ? upload(be_.get(), Arr<float>::ensure(table)) : upload(be_.get(), Arr<uint16_t>::ensure(table));
        DeviceBuffer di = upload(be_.get(), ids), out(be_.get(), sizeof(float) * std::max<int64_t>(m * d, 1));
        be_->embed({dt.as<void>(), t, d, di.as<int32_t>(), m, out.as<float>()});
        return download<float>(be_.get(), out, {m, d});
    }

    // dst with dst[dst_rows[i], :width] = src[src_rows[i], :width] for i < m (rows None: 0, 1, 2, ...;
    // m: the length of the row lists, else src's row count)
    py::array_t<float> copy_rows(const Arr<float>& src, const std::optional<std::vector<int64_t>>& src_rows, const Arr<float>& dst,
                                 const std::optional<std::vector<int64_t>>& dst_rows, int64_t width) {
        DYNIN_CHECK_ARG(src.ndim() == 2 && dst.ndim() == 2 && width >= 0 && width <= src.shape(1) && width <= dst.shape(1),
                        "copy_rows: src, dst 2-D and width within both");
        const int64_t m = src_rows ? static_cast<int64_t>(src_rows->size()) : dst_rows ? static_cast<int64_t>(dst_rows->size()) : src.shape(0);
        auto check = [m](const std::optional<std::vector<int64_t>>& rows, int64_t limit) {
            DYNIN_CHECK_ARG(rows ? static_cast<int64_t>(rows->size()) == m : m <= limit, "copy_rows: row lists of one length m");
            if (rows)
                for (int64_t r : *rows) DYNIN_CHECK_ARG(r >= 0 && r < limit, "copy_rows: row ", r, " out of range");
        };
        check(src_rows, src.shape(0));
        check(dst_rows, dst.shape(0));
        DeviceBuffer ds = upload(be_.get(), src), dd = upload(be_.get(), dst);
        DeviceBuffer dsr(be_.get(), sizeof(int64_t) * std::max<int64_t>(m, 1)), ddr(be_.get(), sizeof(int64_t) * std::max<int64_t>(m, 1));
        if (src_rows) be_->copy_to_device(dsr.as<void>(), src_rows->data(), sizeof(int64_t) * m);
        if (dst_rows) be_->copy_to_device(ddr.as<void>(), dst_rows->data(), sizeof(int64_t) * m);
        be_->copy_rows({ds.as<float>(), src.shape(1), src_rows ? dsr.as<int64_t>() : nullptr, dd.as<float>(), dst.shape(1),
                        dst_rows ? ddr.as<int64_t>() : nullptr, m, width});
        return download<float>(be_.get(), dd, {dst.shape(0), dst.shape(1)});
    }

    // form "llada": u + alpha (c - u); "maskgit": alpha c - beta u
    py::array_t<float> cfg_combine(const Arr<float>& uncond, const Arr<float>& cond, float alpha, float beta, const std::string& form) {
        DYNIN_CHECK_ARG(uncond.size() == cond.size(), "cfg_combine: uncond and cond differ in size");
        DYNIN_CHECK_ARG(form == "llada" || form == "maskgit", "cfg_combine: form llada or maskgit");
        const int64_t n = cond.size();
        DeviceBuffer du = upload(be_.get(), uncond), dc = upload(be_.get(), cond), out(be_.get(), sizeof(float) * std::max<int64_t>(n, 1));
        be_->cfg_combine(du.as<float>(), dc.as<float>(), out.as<float>(), n, alpha, beta,
                         form == "llada" ? Backend::CfgForm::kLlada : Backend::CfgForm::kMaskgit);
        return download<float>(be_.get(), out, {n});
    }

    py::array_t<float> rms_norm(const Arr<float>& x, const Arr<float>& w, float eps) {
        const int64_t m = x.shape(0), d = x.shape(1);
        DYNIN_CHECK_ARG(x.ndim() == 2 && w.ndim() == 1 && w.shape(0) == d, "rms_norm: x [m, d], w [d]");
        DeviceBuffer dx = upload(be_.get(), x), dw = upload(be_.get(), w), out(be_.get(), sizeof(float) * m * d);
        be_->rms_norm({dx.as<float>(), dw.as<void>(), DType::F32, out.as<float>(), m, d, eps});
        return download<float>(be_.get(), out, {m, d});
    }

    // q, k [m, n_heads * head_dim] -> rotated copies
    py::tuple rope(const Arr<float>& q, const Arr<float>& k, const Arr<int32_t>& positions, int64_t head_dim, double theta) {
        const int64_t m = q.shape(0), width = q.shape(1);
        DYNIN_CHECK_ARG(q.ndim() == 2 && k.ndim() == 2 && k.shape(0) == m && k.shape(1) == width && width % head_dim == 0 &&
                            positions.size() == m,
                        "rope: q, k [m, H * head_dim], positions [m]");
        int64_t max_pos = 1;
        for (py::ssize_t i = 0; i < positions.size(); ++i) {
            DYNIN_CHECK_ARG(positions.data()[i] >= 0, "rope: negative position");
            max_pos = std::max<int64_t>(max_pos, positions.data()[i] + 1);
        }
        std::vector<float> s, c;
        rope_tables(max_pos, head_dim, theta, &s, &c);
        DeviceBuffer ds(be_.get(), sizeof(float) * s.size()), dc(be_.get(), sizeof(float) * c.size());
        be_->copy_to_device(ds.as<void>(), s.data(), sizeof(float) * s.size());
        be_->copy_to_device(dc.as<void>(), c.data(), sizeof(float) * c.size());
        DeviceBuffer dq = upload(be_.get(), q), dk = upload(be_.get(), k), dp = upload(be_.get(), positions);
        be_->rope({dq.as<float>(), dk.as<float>(), width, dp.as<int32_t>(), m, width / head_dim, head_dim, ds.as<float>(),
                   dc.as<float>()});
        return py::make_tuple(download<float>(be_.get(), dq, {m, width}), download<float>(be_.get(), dk, {m, width}));
    }

    // Sequences s: query rows [q_start[s], q_start[s+1]), key rows [k_start[s], k_start[s+1]).
    py::array_t<float> attention(const Arr<float>& q, const Arr<float>& k, const Arr<float>& v, std::vector<int64_t> q_start,
                                 std::vector<int64_t> k_start, int64_t n_heads) {
        DYNIN_CHECK_ARG(q.ndim() == 2 && k.ndim() == 2 && v.ndim() == 2 && q.shape(1) == k.shape(1) &&
                            k.shape(1) == v.shape(1) && k.shape(0) == v.shape(0) && q.shape(1) % n_heads == 0,
                        "attention: q [nq, H*D], k, v [nk, H*D]");
        DYNIN_CHECK_ARG(q_start.size() == k_start.size() && q_start.size() >= 2 && q_start.back() == q.shape(0) &&
                            k_start.back() == k.shape(0),
                        "attention: q_start / k_start must be cumulative offsets ending at the row counts");
        const int64_t width = q.shape(1), nq = q.shape(0);
        DeviceBuffer dq = upload(be_.get(), q), dk = upload(be_.get(), k), dv = upload(be_.get(), v),
                     out(be_.get(), sizeof(float) * std::max<int64_t>(nq * width, 1));
        AttentionParams p;
        p.q = dq.as<float>();
        p.ldq = width;
        p.k = dk.as<float>();
        p.v = dv.as<float>();
        p.ldkv = width;
        p.out = out.as<float>();
        p.ldo = width;
        p.q_start = q_start.data();
        p.k_start = k_start.data();
        p.n_seq = static_cast<int64_t>(q_start.size()) - 1;
        p.n_heads = n_heads;
        p.head_dim = width / n_heads;
        p.scale = 1.0f / std::sqrt(static_cast<float>(p.head_dim));
        be_->attention(p);
        return download<float>(be_.get(), out, {nq, width});
    }

    py::array_t<float> swiglu(const Arr<float>& gate_up) {
        const int64_t m = gate_up.shape(0), h = gate_up.shape(1) / 2;
        DYNIN_CHECK_ARG(gate_up.ndim() == 2 && gate_up.shape(1) % 2 == 0, "swiglu: gate_up [m, 2h]");
        DeviceBuffer dg = upload(be_.get(), gate_up), out(be_.get(), sizeof(float) * std::max<int64_t>(m * h, 1));
        be_->swiglu({dg.as<float>(), 2 * h, out.as<float>(), m, h});
        return download<float>(be_.get(), out, {m, h});
    }

    // -> (canvas after the commit, committed per row)
    py::tuple commit_step(const Arr<float>& logits, const std::vector<std::tuple<int64_t, int64_t, int64_t>>& columns,
                          const Arr<int32_t>& cand_row, const Arr<int32_t>& cand_pos, const Arr<int32_t>& canvas,
                          const Arr<int32_t>& k_per_row, const std::string& choice, const std::string& confidence,
                          const std::string& select, double temperature, double threshold, double factor, uint64_t seed,
                          int64_t step) {
        const int64_t n_cand = logits.shape(0), n_cols = logits.shape(1), batch = canvas.shape(0), len = canvas.shape(1);
        DYNIN_CHECK_ARG(logits.ndim() == 2 && canvas.ndim() == 2 && cand_row.size() == n_cand && cand_pos.size() == n_cand &&
                            k_per_row.size() == batch,
                        "commit_step: shapes disagree");
        std::vector<ColumnRange> cols;
        for (const auto& [col, token, count] : columns) cols.push_back({col, token, count});
        DeviceBuffer dl = upload(be_.get(), logits), dr = upload(be_.get(), cand_row), dp = upload(be_.get(), cand_pos),
                     dc = upload(be_.get(), canvas), dk = upload(be_.get(), k_per_row),
                     committed(be_.get(), sizeof(int32_t) * batch);
        CommitStepParams p;
        p.logits = dl.as<float>();
        p.ld = n_cols;
        p.n_cand = n_cand;
        p.n_cols = n_cols;
        p.columns = cols.data();
        p.n_ranges = static_cast<int64_t>(cols.size());
        p.cand_row = dr.as<int32_t>();
        p.cand_pos = dp.as<int32_t>();
        p.canvas = dc.as<int32_t>();
        p.batch = batch;
        p.canvas_len = len;
        p.k_per_row = dk.as<int32_t>();
        p.choice = choice == "argmax" ? TokenChoice::kArgmax : choice == "gumbel" ? TokenChoice::kGumbelOfficial : TokenChoice::kCategorical;
        p.confidence = confidence == "random" ? ConfidenceKind::kRandom : ConfidenceKind::kProbability;
        p.select = select == "topk" ? SelectRule::kTopK : select == "threshold" ? SelectRule::kThreshold : SelectRule::kFactor;
        p.temperature = temperature;
        p.threshold = threshold;
        p.factor = factor;
        p.seed = seed;
        p.step = step;
        p.committed_per_row = committed.as<int32_t>();
        be_->commit_step(p);
        return py::make_tuple(download<int32_t>(be_.get(), dc, {batch, len}), download<int32_t>(be_.get(), committed, {batch}));
    }

    // -> (codes, last samples) after one MaskGIT step
    py::tuple maskgit_step(const Arr<float>& logits, const Arr<int32_t>& cand_row, const Arr<int32_t>& cand_index,
                           const Arr<int32_t>& codes, const Arr<int32_t>& last, std::vector<int64_t> keep_masked,
                           double temperature, uint64_t seed, int64_t step) {
        const int64_t n_cand = logits.shape(0), n_codes = logits.shape(1), batch = codes.shape(0), n = codes.shape(1);
        DYNIN_CHECK_ARG(logits.ndim() == 2 && codes.ndim() == 2 && cand_row.size() == n_cand && cand_index.size() == n_cand &&
                            last.size() == codes.size() && static_cast<int64_t>(keep_masked.size()) == batch,
                        "maskgit_step: shapes disagree");
        DeviceBuffer dl = upload(be_.get(), logits), dr = upload(be_.get(), cand_row), di = upload(be_.get(), cand_index),
                     dc = upload(be_.get(), codes), dlast = upload(be_.get(), last);
        MaskgitStepParams p;
        p.logits = dl.as<float>();
        p.ld = n_codes;
        p.n_cand = n_cand;
        p.n_codes = n_codes;
        p.cand_row = dr.as<int32_t>();
        p.cand_index = di.as<int32_t>();
        p.codes = dc.as<int32_t>();
        p.last_sample = dlast.as<int32_t>();
        p.batch = batch;
        p.n_tokens = n;
        p.keep_masked = keep_masked.data();
        p.temperature = temperature;
        p.seed = seed;
        p.step = step;
        be_->maskgit_step(p);
        return py::make_tuple(download<int32_t>(be_.get(), dc, {batch, n}), download<int32_t>(be_.get(), dlast, {batch, n}));
    }

 private:
    struct GemmOperands {
        DeviceBuffer x, w, y;
        GemmParams p;
    };

    GemmOperands gemm_operands(const Arr<float>& x, const py::array& w, const std::string& dtype) {
        DYNIN_CHECK_ARG(x.ndim() == 2 && w.ndim() == 2 && x.shape(1) == w.shape(1), "gemm: x [m, k], w [n, k]");
        GemmOperands g;
        const int64_t m = x.shape(0), k = x.shape(1), n = w.shape(0);
        g.x = upload(be_.get(), x);
        g.p.w_dtype = parse_weight_dtype(dtype);
        g.w = g.p.w_dtype == DType::F32 ? upload(be_.get(), Arr<float>::ensure(w)) : upload(be_.get(), Arr<uint16_t>::ensure(w));
        g.y = DeviceBuffer(be_.get(), sizeof(float) * std::max<int64_t>(m * n, 1));
        g.p.x = g.x.as<float>();
        g.p.ldx = k;
        g.p.w = g.w.as<void>();
        g.p.ldw = k;
        g.p.y = g.y.as<float>();
        g.p.ldy = n;
        g.p.m = m;
        g.p.n = n;
        g.p.k = k;
        return g;
    }

    void pack(GemmParams& p, int64_t n, int64_t k, std::vector<DeviceBuffer>* storage) {
        const void* packed = be_->pack_weights(p.w, p.w_dtype, n, k, storage);
        DYNIN_CHECK_ARG(packed, "this backend does not pack weights");
        p.w = packed;
        p.w_packed = true;
    }

    std::unique_ptr<Backend> be_;
};

}  // namespace

// det_math.h's exp or log of each x, one value at a time and vec::kLanes at a time (-> scalar, lanes).
py::tuple det_math(const Arr<double>& x, const std::string& fn) {
    DYNIN_CHECK_ARG(fn == "exp" || fn == "log", "det_math: fn exp or log");
    const int64_t n = x.size();
    py::array_t<double> scalar(n), lanes(n);
    for (int64_t i = 0; i < n; ++i) scalar.mutable_data()[i] = fn == "exp" ? det::exp(x.data()[i]) : det::log(x.data()[i]);
    for (int64_t i = 0; i < n; i += vec::kLanes) {
        vec::vd v = vec::splat(1.0);
        for (int64_t l = 0; l < vec::kLanes && i + l < n; ++l) v[l] = x.data()[i + l];
        v = fn == "exp" ? vec::exp(v) : vec::log(v);
        for (int64_t l = 0; l < vec::kLanes && i + l < n; ++l) lanes.mutable_data()[i + l] = v[l];
    }
    return py::make_tuple(scalar, lanes);
}

void bind_ops(py::module_& m) {
    m.def("det_math", &det_math, py::arg("x"), py::arg("fn"),
          "det_math.h's exp or log, scalar and in vector lanes (the sampler twins' two paths)");
    m.def("backend_names", &backend_names, "The backends this build has (\"cpu\", then \"cuda\" when built with it).");
#if DYNIN_RT_CUDA_EMULATED
    m.def("emulation_counters", [] {
        const emu::Counters c = emu::counters();
        py::dict d;
        d["kernel_launches"] = c.kernel_launches;
        d["graph_launches"] = c.graph_launches;
        d["host_syncs"] = c.host_syncs;
        d["mallocs"] = c.mallocs;
        d["frees"] = c.frees;
        return d;
    }, "What the emulated CUDA device has done since start-up (monotonic counts).");
#endif
    py::class_<Ops>(m, "Ops", "Each backend kernel on numpy arrays (tests and benchmarks).")
        .def(py::init<const std::string&>(), py::arg("backend") = "cpu")
        .def("caps", &Ops::caps)
        .def("counters", &Ops::counters)
        .def("packs", &Ops::packs, py::arg("dtype"))
        .def("roundtrip", &Ops::roundtrip, py::arg("arrays"))
        .def("gemm_columns", &Ops::gemm_columns, py::arg("x"), py::arg("w"), py::arg("columns"), py::arg("dtype") = "fp32")
        .def("embed", &Ops::embed, py::arg("table"), py::arg("ids"), py::arg("dtype") = "fp32")
        .def("copy_rows", &Ops::copy_rows, py::arg("src"), py::arg("src_rows"), py::arg("dst"), py::arg("dst_rows"), py::arg("width"))
        .def("cfg_combine", &Ops::cfg_combine, py::arg("uncond"), py::arg("cond"), py::arg("alpha"), py::arg("beta"), py::arg("form"))
        .def("gemm", &Ops::gemm, py::arg("x"), py::arg("w"), py::arg("dtype") = "fp32", py::arg("y") = py::none())
        .def("time_gemm", &Ops::time_gemm, py::arg("x"), py::arg("w"), py::arg("dtype") = "fp32", py::arg("repeats") = 5,
             py::arg("packed") = false)
        .def("gemm_packed", &Ops::gemm_packed, py::arg("x"), py::arg("w"), py::arg("row0"), py::arg("n"),
             py::arg("dtype") = "fp32")
        .def("rms_norm", &Ops::rms_norm, py::arg("x"), py::arg("w"), py::arg("eps"))
        .def("rope", &Ops::rope, py::arg("q"), py::arg("k"), py::arg("positions"), py::arg("head_dim"), py::arg("theta"))
        .def("attention", &Ops::attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("q_start"), py::arg("k_start"),
             py::arg("n_heads"))
        .def("swiglu", &Ops::swiglu, py::arg("gate_up"))
        .def("commit_step", &Ops::commit_step, py::arg("logits"), py::arg("columns"), py::arg("cand_row"), py::arg("cand_pos"),
             py::arg("canvas"), py::arg("k_per_row"), py::arg("choice"), py::arg("confidence"), py::arg("select"),
             py::arg("temperature"), py::arg("threshold"), py::arg("factor"), py::arg("seed"), py::arg("step"))
        .def("maskgit_step", &Ops::maskgit_step, py::arg("logits"), py::arg("cand_row"), py::arg("cand_index"), py::arg("codes"),
             py::arg("last"), py::arg("keep_masked"), py::arg("temperature"), py::arg("seed"), py::arg("step"));
}

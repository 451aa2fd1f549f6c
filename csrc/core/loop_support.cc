#include "dynin_rt/loop_support.h"

#include <chrono>

#include "dynin_rt/common.h"

namespace dynin_rt {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

const float* StepRunner::forward(const ForwardArgs& args, Workspace& ws) {
    const auto t0 = Clock::now();
    const float* logits = engine_.forward(args, ws);
    engine_.backend()->synchronize();
    stats_.seconds_forward += since(t0);
    ++stats_.forwards;
    return logits;
}

const float* StepRunner::guide(const float* uncond, const float* cond, int64_t n, float alpha, float beta,
                               Backend::CfgForm form) {
    const auto t0 = Clock::now();
    Backend* be = engine_.backend();
    guided_.ensure(be, sizeof(float) * static_cast<size_t>(std::max<int64_t>(n, 1)));
    be->cfg_combine(uncond, cond, guided_.as<float>(), n, alpha, beta, form);
    stats_.seconds_sample += since(t0);
    return guided_.as<float>();
}

int32_t StepRunner::commit(CommitStepParams p, const std::vector<int32_t>& cand_row, const std::vector<int32_t>& cand_pos,
                           const std::vector<int32_t>& k_per_row, std::vector<int32_t>& canvas, int64_t batch, int64_t len) {
    const auto t0 = Clock::now();
    Backend* be = engine_.backend();
    const int64_t n = static_cast<int64_t>(cand_row.size());
    int32_t total = 0;
    if (n > 0) {
        cand_row_.ensure(be, sizeof(int32_t) * n);
        cand_pos_.ensure(be, sizeof(int32_t) * n);
        k_.ensure(be, sizeof(int32_t) * batch);
        canvas_.ensure(be, sizeof(int32_t) * batch * len);
        committed_.ensure(be, sizeof(int32_t) * batch);
        be->copy_to_device(cand_row_.as<void>(), cand_row.data(), sizeof(int32_t) * n);
        be->copy_to_device(cand_pos_.as<void>(), cand_pos.data(), sizeof(int32_t) * n);
        be->copy_to_device(k_.as<void>(), k_per_row.data(), sizeof(int32_t) * batch);
        be->copy_to_device(canvas_.as<void>(), canvas.data(), sizeof(int32_t) * batch * len);
        p.n_cand = n;
        p.cand_row = cand_row_.as<int32_t>();
        p.cand_pos = cand_pos_.as<int32_t>();
        p.canvas = canvas_.as<int32_t>();
        p.batch = batch;
        p.canvas_len = len;
        p.k_per_row = k_.as<int32_t>();
        p.committed_per_row = committed_.as<int32_t>();
        be->commit_step(p);
        std::vector<int32_t> committed(static_cast<size_t>(batch));
        be->copy_to_host(canvas.data(), canvas_.as<void>(), sizeof(int32_t) * batch * len);
        be->copy_to_host(committed.data(), committed_.as<void>(), sizeof(int32_t) * batch);
        for (int32_t c : committed) total += c;
    }
    stats_.seconds_sample += since(t0);
    ++stats_.steps;
    stats_.committed_per_step.push_back(total);
    return total;
}

int64_t check_canvas(const Engine& engine, const std::vector<int32_t>& canvas, int64_t batch, const char* name) {
    DYNIN_CHECK_ARG(batch > 0 && !canvas.empty() && canvas.size() % batch == 0, name, " must be a non-empty [B, T] array");
    const int64_t T = static_cast<int64_t>(canvas.size()) / batch;
    const ModelConfig& cfg = engine.config();
    DYNIN_CHECK_ARG(T <= cfg.max_seq_len, name, " of ", T, " tokens exceeds the context of ", cfg.max_seq_len);
    for (int32_t id : canvas) DYNIN_CHECK_ARG(id >= 0 && id < cfg.vocab_size, "token id ", id, " outside [0, ", cfg.vocab_size, ")");
    return T;
}

}  // namespace dynin_rt

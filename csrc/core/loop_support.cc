#include "dynin_rt/loop_support.h"

#include <chrono>

#include "dynin_rt/common.h"

namespace dynin_rt {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

BackendCounters minus(const BackendCounters& a, const BackendCounters& b) {
    return {a.kernel_launches - b.kernel_launches, a.graph_replays - b.graph_replays, a.host_syncs - b.host_syncs,
            a.allocations - b.allocations, a.frees - b.frees};
}
}  // namespace

void TokenRows::validate(const Engine& engine, const char* name) const {
    const ModelConfig& cfg = engine.config();
    DYNIN_CHECK_ARG(batch > 0 && length > 0 && static_cast<int64_t>(ids.size()) == batch * length, name,
                    " must be a non-empty [B, T] array");
    DYNIN_CHECK_ARG(keep.empty() || keep.size() == ids.size(), name, ": the attention mask must have its shape");
    DYNIN_CHECK_ARG(lengths.empty() || static_cast<int64_t>(lengths.size()) == batch, name, ": one length per row");
    DYNIN_CHECK_ARG(length <= cfg.max_seq_len, name, " of ", length, " tokens exceeds the context of ", cfg.max_seq_len);
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t n = row_length(b);
        DYNIN_CHECK_ARG(n > 0 && n <= length, name, ": row ", b, " has length ", n, ", outside [1, ", length, "]");
        for (int64_t t = 0; t < n; ++t)
            DYNIN_CHECK_ARG(at(b, t) >= 0 && at(b, t) < cfg.vocab_size, "token id ", at(b, t), " outside [0, ", cfg.vocab_size,
                            ")");
    }
}

Candidates collect_masked(const std::vector<int32_t>& canvas, int64_t T, int32_t mask, const RowRanges& ranges) {
    Candidates c;
    for (size_t b = 0; b < ranges.begin.size(); ++b)
        for (int64_t t = ranges.begin[b]; t < ranges.end[b]; ++t)
            if (canvas[b * T + t] == mask) c.add(static_cast<int64_t>(b), t);
    return c;
}

std::vector<int64_t> slots_in(const CanvasLayout& layout, const RowRanges& ranges, int64_t streams) {
    const int64_t B = static_cast<int64_t>(ranges.begin.size()), T = layout.length;
    std::vector<int64_t> slots;
    for (int64_t s = 0; s < streams; ++s)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = ranges.begin[b]; t < ranges.end[b]; ++t)
                if (layout.pos_slot[(s * B + b) * T + t] >= 0) slots.push_back(layout.pos_slot[(s * B + b) * T + t]);
    return slots;
}

std::vector<int64_t> row_slots(const CanvasLayout& layout, const std::vector<int64_t>& rows, int64_t batch, int64_t streams) {
    std::vector<int64_t> slots;
    for (int64_t s = 0; s < streams; ++s)
        for (int64_t b : rows)
            for (int64_t slot = layout.row_start[s * batch + b]; slot < layout.row_start[s * batch + b + 1]; ++slot)
                slots.push_back(slot);
    return slots;
}

std::vector<int64_t> head_slots(const CanvasLayout& layout, const Candidates& cand, int64_t batch, int64_t streams,
                                int64_t offset) {
    std::vector<int64_t> head;
    head.reserve(static_cast<size_t>(streams * cand.size()));
    for (int64_t s = 0; s < streams; ++s)
        for (int64_t c = 0; c < cand.size(); ++c) {
            const int64_t slot = layout.pos_slot[(s * batch + cand.row[c]) * layout.length + offset + cand.pos[c]];
            DYNIN_CHECK_ARG(slot >= 0, "a position to generate is masked out by the attention mask");
            head.push_back(slot);
        }
    return head;
}

StepRunner::StepRunner(const Engine& engine, LoopControl& control, SamplerStats* stats, int64_t batch, uint64_t seed,
                       const RowNoise& noise)
    : engine_(engine), control_(control), stats_(stats ? *stats : local_), start_(engine.backend()->counters()),
      batch_(batch), finished_(static_cast<size_t>(batch), 0), seed_(seed) {
    DYNIN_CHECK_ARG(control.rows.empty() || static_cast<int64_t>(control.rows.size()) == batch, "one cancel token per row");
    DYNIN_CHECK_ARG(noise.seed.empty() || static_cast<int64_t>(noise.seed.size()) == batch, "one seed per row");
    DYNIN_CHECK_ARG(noise.noise_row.empty() || static_cast<int64_t>(noise.noise_row.size()) == batch, "one noise row per row");
    stats_.cancelled_rows.assign(static_cast<size_t>(batch), 0);
    if (!noise.seed.empty()) upload(row_seed_, noise.seed);
    if (!noise.noise_row.empty()) upload(noise_row_, noise.noise_row);
}

StepRunner::~StepRunner() { stats_.device = minus(engine_.backend()->counters(), start_); }

template <typename T>
T* StepRunner::upload(DeviceBuffer& buf, const std::vector<T>& host) {
    Backend* be = engine_.backend();
    buf.ensure(be, sizeof(T) * std::max<size_t>(host.size(), 1));
    if (!host.empty()) be->copy_to_device(buf.as<void>(), host.data(), sizeof(T) * host.size());
    return buf.as<T>();
}

bool StepRunner::begin_step() {
    if (control_.all.cancelled()) throw Cancelled("generation cancelled");
    if (control_.poll) control_.poll();
    bool any = false;
    for (int64_t b = 0; b < batch_; ++b) {
        if (!control_.rows.empty() && control_.rows[b].cancelled()) stats_.cancelled_rows[b] = 1;
        any |= running(b);
    }
    return any;
}

std::vector<int64_t> StepRunner::running_rows() const {
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < batch_; ++b)
        if (running(b)) rows.push_back(b);
    return rows;
}

const float* StepRunner::forward(const ForwardArgs& args) {
    const auto t0 = Clock::now();
    const float* logits = engine_.forward(args, ws_);
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

void StepRunner::commit(const CommitRule& rule, const StepLogits& logits, const Candidates& cand,
                        const std::vector<int32_t>& k_per_row, int64_t step, std::vector<int32_t>& canvas, int64_t T) {
    const auto t0 = Clock::now();
    Backend* be = engine_.backend();
    int32_t total = 0;
    if (!cand.empty()) {
        CommitStepParams p;
        p.logits = logits.data;
        p.ld = logits.ld;
        p.n_cand = cand.size();
        p.columns = logits.columns->data();
        p.n_ranges = static_cast<int64_t>(logits.columns->size());
        for (const ColumnRange& c : *logits.columns) p.n_cols += c.count;
        p.cand_row = upload(cand_row_, cand.row);
        p.cand_pos = upload(cand_pos_, cand.pos);
        const std::vector<int32_t> rows(canvas.begin(), canvas.begin() + batch_ * T);
        p.canvas = upload(canvas_, rows);
        p.batch = batch_;
        p.canvas_len = T;
        p.k_per_row = upload(k_, k_per_row);
        p.choice = rule.choice;
        p.confidence = rule.confidence;
        p.select = rule.select;
        p.temperature = rule.temperature;
        p.threshold = rule.threshold;
        p.factor = rule.factor;
        p.seed = seed_;
        p.step = step;
        p.row_seed = row_seed_.bytes() ? row_seed_.as<uint64_t>() : nullptr;
        p.noise_row = noise_row_.bytes() ? noise_row_.as<int64_t>() : nullptr;
        p.committed_per_row = upload(committed_, std::vector<int32_t>(static_cast<size_t>(batch_), 0));
        be->commit_step(p);
        std::vector<int32_t> committed(static_cast<size_t>(batch_));
        be->copy_to_host(canvas.data(), canvas_.as<void>(), sizeof(int32_t) * batch_ * T);
        be->copy_to_host(committed.data(), committed_.as<void>(), sizeof(int32_t) * batch_);
        for (int32_t c : committed) total += c;
    }
    stats_.seconds_sample += since(t0);
    ++stats_.steps;
    stats_.committed_per_step.push_back(total);
}

void StepRunner::maskgit(const StepLogits& logits, const Candidates& cand, const std::vector<int64_t>& keep_masked,
                         double temperature, int64_t step, std::vector<int32_t>& codes, std::vector<int32_t>& last, int64_t N) {
    const auto t0 = Clock::now();
    Backend* be = engine_.backend();
    int32_t unknown_before = 0, unknown_after = 0;
    for (int32_t c : codes) unknown_before += c < 0;
    MaskgitStepParams p;
    p.logits = logits.data;
    p.ld = logits.ld;
    p.n_cand = cand.size();
    p.n_codes = (*logits.columns)[0].count;
    p.cand_row = upload(cand_row_, cand.row);
    p.cand_index = upload(cand_pos_, cand.pos);
    p.codes = upload(codes_, codes);
    p.last_sample = upload(last_, last);
    p.batch = batch_;
    p.n_tokens = N;
    p.keep_masked = keep_masked.data();
    p.temperature = temperature;
    p.seed = seed_;
    p.step = step;
    p.row_seed = row_seed_.bytes() ? row_seed_.as<uint64_t>() : nullptr;
    p.noise_row = noise_row_.bytes() ? noise_row_.as<int64_t>() : nullptr;
    be->maskgit_step(p);
    be->copy_to_host(codes.data(), codes_.as<void>(), sizeof(int32_t) * codes.size());
    be->copy_to_host(last.data(), last_.as<void>(), sizeof(int32_t) * last.size());
    for (int32_t c : codes) unknown_after += c < 0;
    stats_.seconds_sample += since(t0);
    ++stats_.steps;
    stats_.committed_per_step.push_back(unknown_before - unknown_after);
}

void StepRunner::block_done(int64_t block, const std::vector<int32_t>& canvas, int64_t T) const {
    if (control_.on_block) control_.on_block(block, std::vector<int32_t>(canvas.begin(), canvas.begin() + batch_ * T));
}

}  // namespace dynin_rt

#include "dynin_rt/loop_support.h"

#include <algorithm>
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

CacheRefills::CacheRefills(CacheMode cache, int64_t refresh_every) : cache_(cache), every_(refresh_every) {
    DYNIN_CHECK_ARG(refresh_every >= 0, "refresh_every must be >= 0");
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
    plans_per_block_ = control.plans == PlanMode::kPerBlock ||
                       (control.plans == PlanMode::kAuto && !engine.backend()->caps().host_memory);
    graphs_ = plans_per_block_ && control.graphs;
    stats_.cancelled_rows.assign(static_cast<size_t>(batch), 0);
    if (!noise.seed.empty()) upload(row_seed_, noise.seed);
    if (!noise.noise_row.empty()) upload(noise_row_, noise.noise_row);
    upload(remaining_, std::vector<int32_t>{0});
    block_start_ = Clock::now();
}

StepRunner::~StepRunner() {
    for (uint64_t key : recordings_) engine_.backend()->drop_recording(key);
    stats_.device = minus(engine_.backend()->counters(), start_);
}

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

void StepRunner::load_canvas(const std::vector<int32_t>& host, int64_t T, int32_t mask_id) {
    T_ = T;
    mask_ = mask_id;
    upload(canvas_, std::vector<int32_t>(host.begin(), host.begin() + batch_ * T));
}

void StepRunner::pull_canvas(std::vector<int32_t>& host) {
    engine_.backend()->copy_to_host(host.data(), canvas_.as<void>(), sizeof(int32_t) * batch_ * T_);
}

void StepRunner::load_steps(int64_t total_steps, const std::vector<int32_t>& k_table) {
    if (!k_table.empty()) upload(k_table_, k_table);
    upload(step_log_, std::vector<int32_t>(static_cast<size_t>(total_steps * batch_), 0));
}

void StepRunner::start_block(int64_t first_step) {
    upload(step_counter_, std::vector<int64_t>{first_step});
    next_step_ = first_step;
}

void StepRunner::prepare(StepPlan& plan, Candidates cand, ForwardArgs args, int64_t C) {
    args.canvas = canvas_.as<int32_t>();
    engine_.prepare(args, plan.forward);
    engine_.reserve(plan.forward, ws_);
    plan.cand = std::move(cand);
    upload(plan.cand_row, plan.cand.row);
    upload(plan.cand_pos, plan.cand.pos);
    guided_.ensure(engine_.backend(), sizeof(float) * static_cast<size_t>(std::max<int64_t>(plan.cand.size() * C, 1)));
}

void StepRunner::step(const StepPlan& plan, const StepSpec& spec) {
    if (graphs_) {
        const uint64_t key = recording_key(plan, spec);
        if (std::find(recordings_.begin(), recordings_.end(), key) == recordings_.end()) recordings_.push_back(key);
        engine_.backend()->run_recorded(key, [&] { enqueue_step(plan, spec, {}); });
    } else if (plans_per_block_) {
        enqueue_step(plan, spec, {});  // the device runs on: its steps are timed per block (finish())
    } else {
        Backend* be = engine_.backend();
        auto t = Clock::now();
        enqueue_step(plan, spec, [&] {
            be->synchronize();
            stats_.seconds_forward += since(t);
            t = Clock::now();
        });
        be->synchronize();
        stats_.seconds_sample += since(t);
    }
    ++stats_.forwards;
    stats_.positions += plan.forward.M;
    ++stats_.steps;
    steps_run_.push_back(next_step_++);
}

void StepRunner::enqueue_step(const StepPlan& plan, const StepSpec& spec, const std::function<void()>& after_forward) {
    const int64_t n = plan.cand.size();
    const float* logits = engine_.run(plan.forward, canvas_.as<int32_t>(), ws_);
    if (after_forward) after_forward();
    if (spec.cfg) {
        const float* uncond = spec.uncond ? spec.uncond() : logits + n * spec.C;
        engine_.backend()->cfg_combine(uncond, logits, guided_.as<float>(), n * spec.C, spec.alpha, spec.beta, spec.form);
        logits = guided_.as<float>();
    }
    if (spec.maskgit)
        maskgit(logits, spec.C, (*spec.columns)[0].count, plan);
    else
        commit(spec.rule, logits, spec.C, *spec.columns, plan);
}

// Everything a recorded step bakes in: shapes, attention segments, the pointers its kernels get.
uint64_t StepRunner::recording_key(const StepPlan& plan, const StepSpec& spec) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    const PreparedForward& f = plan.forward;
    for (int64_t v : {f.M, f.R, f.C, f.batch, f.slots, plan.cand.size(), spec.C, static_cast<int64_t>(spec.cfg),
                      static_cast<int64_t>(spec.maskgit), static_cast<int64_t>(spec.rule.select),
                      static_cast<int64_t>(spec.rule.choice), static_cast<int64_t>(spec.rule.confidence)})
        mix(static_cast<uint64_t>(v));
    for (int64_t v : f.q_start) mix(static_cast<uint64_t>(v));
    for (int64_t v : f.k_start) mix(static_cast<uint64_t>(v));
    for (const DeviceBuffer* b : {&f.token_index, &f.token_override, &f.positions, &f.active_rows, &f.head_rows, &plan.cand_row,
                                  &plan.cand_pos, &ws_.x, &ws_.h, &ws_.qkv, &ws_.attn, &ws_.gate_up, &ws_.act, &ws_.head_in,
                                  &ws_.logits, &guided_, &canvas_, &step_counter_, &remaining_, &step_log_, &k_table_,
                                  &row_seed_, &noise_row_, &codes_, &last_, &region_start_, &schedule_, &temperatures_})
        mix(reinterpret_cast<uintptr_t>(b->as<void>()));
    if (f.cache) {
        mix(reinterpret_cast<uintptr_t>(f.cache->k.as<void>()));
        mix(reinterpret_cast<uintptr_t>(f.cache->v.as<void>()));
    }
    mix(spec.key);
    return h;
}

void StepRunner::commit(const CommitRule& rule, const float* logits, int64_t ld, const std::vector<ColumnRange>& columns,
                        const StepPlan& plan) {
    CommitStepParams p;
    p.logits = logits;
    p.ld = ld;
    p.n_cand = plan.cand.size();
    p.columns = columns.data();
    p.n_ranges = static_cast<int64_t>(columns.size());
    for (const ColumnRange& c : columns) p.n_cols += c.count;
    p.cand_row = plan.cand_row.as<int32_t>();
    p.cand_pos = plan.cand_pos.as<int32_t>();
    p.canvas = canvas_.as<int32_t>();
    p.batch = batch_;
    p.canvas_len = T_;
    p.choice = rule.choice;
    p.confidence = rule.confidence;
    p.select = rule.select;
    p.temperature = rule.temperature;
    p.threshold = rule.threshold;
    p.factor = rule.factor;
    p.seed = seed_;
    p.row_seed = row_seed_.bytes() ? row_seed_.as<uint64_t>() : nullptr;
    p.noise_row = noise_row_.bytes() ? noise_row_.as<int64_t>() : nullptr;
    p.mask_id = mask_;
    p.step_counter = step_counter_.as<int64_t>();
    p.k_table = k_table_.bytes() ? k_table_.as<int32_t>() : nullptr;
    p.committed_per_row = step_log_.as<int32_t>();
    p.remaining = remaining_.as<int32_t>();
    engine_.backend()->commit_step(p);
}

const float* StepRunner::forward(const StepPlan& plan) {
    const auto t0 = Clock::now();
    const float* logits = engine_.run(plan.forward, canvas_.as<int32_t>(), ws_);
    engine_.backend()->synchronize();
    stats_.seconds_forward += since(t0);
    ++stats_.forwards;
    stats_.positions += plan.forward.M;
    return logits;
}

int32_t StepRunner::remaining() {
    int32_t n = 0;
    engine_.backend()->copy_to_host(&n, remaining_.as<void>(), sizeof(int32_t));
    return n;
}

void StepRunner::load_maskgit(const std::vector<int32_t>& codes, int64_t N, const std::vector<int64_t>& region_start,
                              int32_t offset, const std::vector<int64_t>& schedule, const std::vector<double>& temperatures) {
    N_ = N;
    offset_ = offset;
    unknown_ = 0;
    for (int32_t c : codes) unknown_ += c < 0;
    upload(codes_, codes);
    upload(last_, codes);
    upload(region_start_, region_start);
    upload(schedule_, schedule);
    upload(temperatures_, temperatures);
    load_steps(static_cast<int64_t>(schedule.size()), {});
}

void StepRunner::maskgit(const float* logits, int64_t ld, int64_t n_codes, const StepPlan& plan) {
    MaskgitStepParams p;
    p.logits = logits;
    p.ld = ld;
    p.n_cand = plan.cand.size();
    p.n_codes = n_codes;
    p.cand_row = plan.cand_row.as<int32_t>();
    p.cand_index = plan.cand_pos.as<int32_t>();
    p.codes = codes_.as<int32_t>();
    p.last_sample = last_.as<int32_t>();
    p.batch = batch_;
    p.n_tokens = N_;
    p.seed = seed_;
    p.row_seed = row_seed_.bytes() ? row_seed_.as<uint64_t>() : nullptr;
    p.noise_row = noise_row_.bytes() ? noise_row_.as<int64_t>() : nullptr;
    p.step_counter = step_counter_.as<int64_t>();
    p.schedule = schedule_.as<int64_t>();
    p.temperatures = temperatures_.as<double>();
    p.canvas = canvas_.as<int32_t>();
    p.canvas_len = T_;
    p.region_start = region_start_.as<int64_t>();
    p.mask_id = mask_;
    p.token_offset = offset_;
    p.masked_log = step_log_.as<int32_t>();
    engine_.backend()->maskgit_step(p);
}

void StepRunner::pull_codes(std::vector<int32_t>& codes, std::vector<int32_t>& last) {
    engine_.backend()->copy_to_host(codes.data(), codes_.as<void>(), sizeof(int32_t) * codes.size());
    engine_.backend()->copy_to_host(last.data(), last_.as<void>(), sizeof(int32_t) * last.size());
}

// committed_per_step of the steps run since the last record, from the step log in backend memory
// (committed per row for the commit step, positions left masked per row for MaskGIT).
void StepRunner::record_steps() {
    if (steps_run_.empty()) return;
    const int64_t last = steps_run_.back();
    std::vector<int32_t> log(static_cast<size_t>((last + 1) * batch_));
    engine_.backend()->copy_to_host(log.data(), step_log_.as<void>(), sizeof(int32_t) * log.size());
    for (int64_t step : steps_run_) {
        int64_t sum = 0;
        for (int64_t b = 0; b < batch_; ++b) sum += log[step * batch_ + b];
        if (N_ > 0) {  // MaskGIT logs what stays masked
            stats_.committed_per_step.push_back(static_cast<int32_t>(unknown_ - sum));
            unknown_ = sum;
        } else {
            stats_.committed_per_step.push_back(static_cast<int32_t>(sum));
        }
    }
    steps_run_.clear();
}

void StepRunner::block_done(int64_t block, std::vector<int32_t>& host) {
    finish(host);
    if (control_.on_block) control_.on_block(block, std::vector<int32_t>(host.begin(), host.begin() + batch_ * T_));
}

void StepRunner::finish(std::vector<int32_t>& host) {
    pull_canvas(host);
    record_steps();
    if (plans_per_block_) stats_.seconds_forward += since(block_start_);
    block_start_ = Clock::now();
}

}  // namespace dynin_rt

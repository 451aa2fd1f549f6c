// Pieces the three denoising loops share (core/loop_support.cc), so that each loop reads as its
// algorithm: the per-step control (cancel, Ctrl-C), which rows are still running, candidate
// collection, the slots a cached step recomputes, the canvas in backend memory, step plans, the
// timed forward, guidance, and the fused steps with their parameter fills.
//
// Plans per step or per block. On a host-memory backend (the CPU) a step's candidates are the
// positions still masked, recomputed every step from the canvas (reading it costs nothing), so the
// LM head runs on no more rows than needed. On a device, a block's candidates are fixed when the block
// starts (every position that can commit in it) and the fused steps skip the ones committed since:
// a step then needs nothing from the host, and the host waits once per block (docs/runtime-loop.md).
#pragma once
#include <chrono>
#include <functional>
#include <vector>

#include "dynin_rt/engine.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

// Which step of a block (from 0) runs the full forward that (re)fills the KV cache: every step
// without a cache; with one, the first and every refresh_every-th (validated here, once per call).
class CacheRefills {
 public:
    CacheRefills(CacheMode cache, int64_t refresh_every);
    bool operator()(int64_t i) const { return cache_ == CacheMode::kNone || i == 0 || (every_ > 0 && i % every_ == 0); }

 private:
    CacheMode cache_;
    int64_t every_;
};

// [begin, end) of canvas positions per batch row; an empty range skips the row.
struct RowRanges {
    std::vector<int64_t> begin, end;  // [B]
    explicit RowRanges(int64_t batch) : begin(static_cast<size_t>(batch), 0), end(static_cast<size_t>(batch), 0) {}
    bool empty(int64_t b) const { return begin[b] >= end[b]; }
};

// Candidates of a step, grouped by batch row.
struct Candidates {
    std::vector<int32_t> row, pos;  // [n] batch row, canvas position (or image index)
    int64_t size() const { return static_cast<int64_t>(row.size()); }
    bool empty() const { return row.empty(); }
    void add(int64_t b, int64_t p) {
        row.push_back(static_cast<int32_t>(b));
        pos.push_back(static_cast<int32_t>(p));
    }
};

// The [MASK] positions inside `ranges` of the first B rows of canvas [*, T].
Candidates collect_masked(const std::vector<int32_t>& canvas, int64_t T, int32_t mask, const RowRanges& ranges);

// The slots of `ranges` in each of `streams` copies of the batch (stream s holds layout rows
// s * B .. s * B + B - 1), in slot order: what a cached step recomputes.
std::vector<int64_t> slots_in(const CanvasLayout& layout, const RowRanges& ranges, int64_t streams);

// The slots of every position of the rows in `rows` (whole rows, in slot order), each stream.
std::vector<int64_t> row_slots(const CanvasLayout& layout, const std::vector<int64_t>& rows, int64_t batch, int64_t streams);

// Head slots of the candidates: position pos + offset of each, cond stream first, then uncond.
// Throws when a candidate's position is not a slot (masked out by the keep-mask).
std::vector<int64_t> head_slots(const CanvasLayout& layout, const Candidates& cand, int64_t batch, int64_t streams,
                                int64_t offset = 0);

// The fields of a commit step that stay the same for a whole call.
struct CommitRule {
    TokenChoice choice = TokenChoice::kArgmax;
    ConfidenceKind confidence = ConfidenceKind::kProbability;
    SelectRule select = SelectRule::kTopK;
    double temperature = 0.0, threshold = 0.9, factor = 1.0;
};

// What one step computes, built on the host and uploaded once: its candidates and its forward.
// Reused by every step of a block when plans are per block.
struct StepPlan {
    Candidates cand;
    PreparedForward forward;
    DeviceBuffer cand_row, cand_pos;  // int32 [n] each
    bool ready = false;
};

// What a step does with its forward's logits [n (x2 with CFG), C]: classifier-free guidance, then
// the fused commit step (LLaDA, text to speech) or the MaskGIT step.
struct StepSpec {
    const std::vector<ColumnRange>* columns = nullptr;
    int64_t C = 0;  // logit columns
    bool cfg = false;
    float alpha = 0.0f, beta = 0.0f;
    Backend::CfgForm form = Backend::CfgForm::kLlada;
    // Enqueues the unconditional logits [n, C] and returns them; null: the forward's second half.
    std::function<const float*()> uncond;
    CommitRule rule;
    bool maskgit = false;
    uint64_t key = 0;  // what `uncond` bakes into a recorded step (its buffers), mixed into the key
};

// Runs the steps of one call: checks the control before each step, keeps the canvas, the step
// counter and the per-row noise in backend memory, prepares and runs plans, times and counts.
class StepRunner {
 public:
    StepRunner(const Engine& engine, LoopControl& control, SamplerStats* stats, int64_t batch, uint64_t seed,
               const RowNoise& noise);
    ~StepRunner();  // records what the backend did during the call (stats.device)

    // Whether a block's plan is made once (device-resident steps) or every step (host backends).
    bool plans_per_block() const { return plans_per_block_; }

    // Before every step: throws Cancelled when the call is cancelled, runs the poll hook, stops rows
    // whose token was cancelled. False once no row is running.
    bool begin_step();
    bool running(int64_t row) const { return !stats_.cancelled_rows[row] && !finished_[row]; }
    void finish_row(int64_t row) { finished_[row] = 1; }
    std::vector<int64_t> running_rows() const;

    // The canvas [B, T] in backend memory: loaded once, pulled back into the host copy when the host
    // needs it (every step with per-step plans, at block ends otherwise).
    void load_canvas(const std::vector<int32_t>& host, int64_t T, int32_t mask_id);
    void pull_canvas(std::vector<int32_t>& host);
    // Steps are numbered over the call (the noise key; every number < total_steps). k_table
    // [total_steps, B]: how many candidates each row commits at each step (the exact schedule), or
    // empty for the threshold and factor rules.
    void load_steps(int64_t total_steps, const std::vector<int32_t>& k_table);
    // The number the next fused step runs as; each fused step advances it by one.
    void start_block(int64_t first_step);

    // Fills the plan: candidates and a forward over `args` (whose canvas is the runner's), uploaded;
    // sizes the scratch a step over it needs.
    void prepare(StepPlan& plan, Candidates cand, ForwardArgs args, int64_t C);
    // One step over the plan: forward, guidance, fused step. With per-block plans it needs nothing
    // from the host and is recorded once and replayed (where the backend has graphs).
    void step(const StepPlan& plan, const StepSpec& spec);
    // Candidates still masked after the last commit step, over the batch (a host read on a device).
    int32_t remaining();
    // A forward outside the steps (text to speech's unconditional logits): its logits [n, C].
    const float* forward(const StepPlan& plan);

    // MaskGIT: codes [B, N] (-1 = masked) and the last samples live in backend memory with the
    // schedule and annealed temperatures [steps]; each step rewrites the image regions of the canvas.
    void load_maskgit(const std::vector<int32_t>& codes, int64_t N, const std::vector<int64_t>& region_start, int32_t offset,
                      const std::vector<int64_t>& schedule, const std::vector<double>& temperatures);
    void pull_codes(std::vector<int32_t>& codes, std::vector<int32_t>& last);

    // After each block (a MaskGIT call is one block): pulls the canvas into `host`, records the
    // block's steps in the stats and calls the streaming callback.
    void block_done(int64_t block, std::vector<int32_t>& host);
    // At the end of the call (or when every row stopped): the same without the callback.
    void finish(std::vector<int32_t>& host);

    const Engine& engine() const { return engine_; }
    SamplerStats& stats() { return stats_; }

 private:
    template <typename T>
    T* upload(DeviceBuffer& buf, const std::vector<T>& host);
    void record_steps();
    void enqueue_step(const StepPlan& plan, const StepSpec& spec, const std::function<void()>& after_forward);
    void commit(const CommitRule& rule, const float* logits, int64_t ld, const std::vector<ColumnRange>& columns,
                const StepPlan& plan);
    void maskgit(const float* logits, int64_t ld, int64_t n_codes, const StepPlan& plan);
    uint64_t recording_key(const StepPlan& plan, const StepSpec& spec) const;

    const Engine& engine_;
    LoopControl& control_;
    SamplerStats local_;
    SamplerStats& stats_;
    BackendCounters start_;
    int64_t batch_, T_ = 0, N_ = 0;
    std::vector<uint8_t> finished_;
    uint64_t seed_;
    bool plans_per_block_, graphs_;
    int32_t mask_ = 0, offset_ = 0;
    int64_t unknown_ = 0;               // MaskGIT: positions masked before the unrecorded steps
    int64_t next_step_ = 0;             // the number of the next fused step (its copy in step_counter_)
    std::vector<int64_t> steps_run_;    // numbers of the steps run since the stats last recorded them
    std::vector<uint64_t> recordings_;  // keys of the steps this call recorded (dropped at its end)
    std::chrono::steady_clock::time_point block_start_;
    Workspace ws_;
    DeviceBuffer canvas_, step_counter_, remaining_, step_log_, k_table_;  // step_log_: [total_steps, B]
    DeviceBuffer row_seed_, noise_row_;  // [B] each; null pointers when the batch uses the defaults
    DeviceBuffer guided_;
    DeviceBuffer codes_, last_, region_start_, schedule_, temperatures_;
};

}  // namespace dynin_rt

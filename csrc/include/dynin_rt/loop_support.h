// Pieces the three denoising loops share (core/loop_support.cc), so that each loop reads as its
// algorithm: the per-step control (cancel, Ctrl-C), which rows are still running, candidate
// collection, the slots a cached step recomputes, the timed forward, guidance, and the fused steps
// with their parameter fills.
#pragma once
#include <vector>

#include "dynin_rt/engine.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

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

// Logits of the candidates as the forward returned them: [n, C] over `columns`, leading dim ld.
struct StepLogits {
    const float* data = nullptr;
    int64_t ld = 0;
    const std::vector<ColumnRange>* columns = nullptr;
};

// Runs the steps of one call: checks the control before each step, times and counts the forwards
// and fused steps, holds the workspace, the scratch and the batch's per-row noise in backend memory.
class StepRunner {
 public:
    StepRunner(const Engine& engine, LoopControl& control, SamplerStats* stats, int64_t batch, uint64_t seed,
               const RowNoise& noise);
    ~StepRunner();  // records what the backend did during the call (stats.device)

    // Before every step: throws Cancelled when the call is cancelled, runs the poll hook, stops rows
    // whose token was cancelled. False once no row is running.
    bool begin_step();
    bool running(int64_t row) const { return !stats_.cancelled_rows[row] && !finished_[row]; }
    void finish_row(int64_t row) { finished_[row] = 1; }
    std::vector<int64_t> running_rows() const;

    const float* forward(const ForwardArgs& args);
    const float* guide(const float* uncond, const float* cond, int64_t n, float alpha, float beta, Backend::CfgForm form);
    // One fused commit step on the first B rows of canvas [*, T]; k_per_row [B] for kTopK.
    void commit(const CommitRule& rule, const StepLogits& logits, const Candidates& cand, const std::vector<int32_t>& k_per_row,
                int64_t step, std::vector<int32_t>& canvas, int64_t T);
    // One MaskGIT step; codes and last samples [B, N] updated in place.
    void maskgit(const StepLogits& logits, const Candidates& cand, const std::vector<int64_t>& keep_masked, double temperature,
                 int64_t step, std::vector<int32_t>& codes, std::vector<int32_t>& last, int64_t N);
    // After each finished block: the streaming callback with the first B rows of canvas [*, T].
    void block_done(int64_t block, const std::vector<int32_t>& canvas, int64_t T) const;

    Workspace& workspace() { return ws_; }
    SamplerStats& stats() { return stats_; }

 private:
    template <typename T>
    T* upload(DeviceBuffer& buf, const std::vector<T>& host);

    const Engine& engine_;
    LoopControl& control_;
    SamplerStats local_;
    SamplerStats& stats_;
    BackendCounters start_;
    int64_t batch_;
    std::vector<uint8_t> finished_;
    uint64_t seed_;
    Workspace ws_;
    DeviceBuffer row_seed_, noise_row_;  // [B] each; null pointers when the batch uses the defaults
    DeviceBuffer guided_, cand_row_, cand_pos_, k_, canvas_, committed_, codes_, last_;
};

}  // namespace dynin_rt

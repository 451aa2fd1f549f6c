// Pieces the three denoising loops share (core/loop_support.cc): a forward that is timed and
// counted, classifier-free guidance into a reusable buffer, the fused commit step run on host-side
// candidate lists, and canvas validation.
#pragma once
#include <vector>

#include "dynin_rt/engine.h"
#include "dynin_rt/samplers.h"

namespace dynin_rt {

class StepRunner {
 public:
    StepRunner(const Engine& engine, SamplerStats& stats) : engine_(engine), stats_(stats) {}

    // engine.forward, synchronised, counted in stats.forwards and stats.seconds_forward.
    const float* forward(const ForwardArgs& args, Workspace& ws);

    // uncond/cond logits [n] -> guided logits (backend memory owned by the runner), timed as sampling.
    const float* guide(const float* uncond, const float* cond, int64_t n, float alpha, float beta, Backend::CfgForm form);

    // One fused commit step. `p` carries the logits, columns and sampling options; the runner uploads
    // the candidates (grouped by row), k per row and the canvas [batch, len], runs the step and brings
    // the canvas back. Returns the number committed over the batch; counted in stats.
    int32_t commit(CommitStepParams p, const std::vector<int32_t>& cand_row, const std::vector<int32_t>& cand_pos,
                   const std::vector<int32_t>& k_per_row, std::vector<int32_t>& canvas, int64_t batch, int64_t len);

    SamplerStats& stats() { return stats_; }

 private:
    const Engine& engine_;
    SamplerStats& stats_;
    DeviceBuffer guided_, cand_row_, cand_pos_, k_, canvas_, committed_;
};

// A canvas [batch, T] of valid ids; returns T. `name` labels error messages.
int64_t check_canvas(const Engine& engine, const std::vector<int32_t>& canvas, int64_t batch, const char* name);

}  // namespace dynin_rt

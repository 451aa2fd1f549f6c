// Counter-based noise, the C++ twin of dynin_rt/noise.py (CounterNoise): every uniform is a hash of
// (seed, stream, step, row, position[, index]), so the runtime and the PyTorch reference given the
// same seed draw the same noise without sharing state. Stateless, hence thread-safe.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DYNIN_RT_HD __host__ __device__
#else
#define DYNIN_RT_HD
#endif

namespace dynin_rt {

enum NoiseStream : uint64_t { kStreamToken = 1, kStreamRemask = 2 };

DYNIN_RT_HD inline uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Hash of everything but the innermost index; derive the per-index values with counter_at().
DYNIN_RT_HD inline uint64_t counter_key(uint64_t seed, uint64_t stream, uint64_t step, uint64_t row, uint64_t position) {
    uint64_t h = mix64(seed ^ (stream * 0xD1B54A32D192ED03ull));
    h = mix64(h + step * 0x8CB92BA72F3D8DD7ull);
    h = mix64(h + row * 0xABC98388FB8FAC03ull);
    return mix64(h + position * 0xC13FA9A902A6328Full);
}

DYNIN_RT_HD inline uint64_t counter_at(uint64_t key, uint64_t index) { return mix64(key + index * 0x9E3779B97F4A7C15ull); }

// The seed and noise row of batch row `row` of a sampler step (CommitStepParams, MaskgitStepParams):
// per-row arrays when the batch carries them, else the call's seed and the row itself.
template <typename StepParams>
DYNIN_RT_HD inline uint64_t row_seed_of(const StepParams& p, int64_t row) {
    return p.row_seed ? p.row_seed[row] : p.seed;
}
template <typename StepParams>
DYNIN_RT_HD inline uint64_t noise_row_of(const StepParams& p, int64_t row) {
    return static_cast<uint64_t>(p.noise_row ? p.noise_row[row] : row);
}

// Uniform in the open interval (0, 1) from 53 random bits.
DYNIN_RT_HD inline double bits_to_uniform(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// The Gumbel noise of a uniform is det::gumbel (det_math.h), shared with the CUDA kernels.

}  // namespace dynin_rt

// libFuzzer target over what reads untrusted weight files: the JSON header parser, the safetensors
// validator and the check of a runtime weight file against a model config (ModelWeights).
//
// Input: one byte choosing the config's dtype, then the bytes of a weight file. The whole input is
// also parsed as JSON and as a safetensors buffer. Every malformation must be a FormatError (or an
// InvalidArgument); anything else - a crash, an ASan report, another exception - is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "dynin_rt/common.h"
#include "dynin_rt/json.h"
#include "dynin_rt/model_config.h"
#include "dynin_rt/safetensors.h"
#include "dynin_rt/weights.h"

namespace {

// The tiny backbone of the seed corpus (tests/fuzz/corpus/, written by tests/fuzz/make_corpus.py).
dynin_rt::ModelConfig tiny_config() {
    dynin_rt::ModelConfig cfg;
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.n_layers = 1;
    cfg.mlp_hidden = 16;
    cfg.vocab_size = 32;
    cfg.max_seq_len = 64;
    return cfg;
}

template <typename F>
void expect_format_errors(F&& f) {
    try {
        f();
    } catch (const dynin_rt::FormatError&) {
    } catch (const dynin_rt::InvalidArgument&) {
    }
}

// ModelWeights maps a path: the bytes go into an anonymous in-memory file, named through /proc.
void check_weight_file(const uint8_t* data, size_t size, dynin_rt::DType dtype) {
    const int fd = memfd_create("fuzz_weights", MFD_CLOEXEC);
    if (fd < 0) return;
    size_t done = 0;
    while (done < size) {
        const ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    if (done == size)
        expect_format_errors([&] {
            dynin_rt::ModelWeights weights("/proc/self/fd/" + std::to_string(fd), tiny_config(), dtype);
        });
    close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    expect_format_errors([&] { dynin_rt::json_parse(reinterpret_cast<const char*>(data), size, "fuzz input"); });
    expect_format_errors([&] { dynin_rt::parse_safetensors(data, size, "fuzz input"); });
    if (size == 0) return 0;
    static const dynin_rt::DType kDtypes[] = {dynin_rt::DType::F32, dynin_rt::DType::BF16, dynin_rt::DType::F16};
    check_weight_file(data + 1, size - 1, kDtypes[data[0] % 3]);
    return 0;
}

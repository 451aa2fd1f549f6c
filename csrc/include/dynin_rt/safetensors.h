// A read-only, memory-mapped safetensors file whose header has been validated against its size:
// every tensor's dtype is one dynin_rt computes with, its byte range lies inside the data section,
// matches its shape exactly, is aligned to its element size and overlaps no other tensor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dynin_rt/dtype.h"

namespace dynin_rt {

struct TensorView {
    const void* data = nullptr;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;

    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

// Validates the header of the safetensors bytes [data, data + size) and returns views into them.
// `what` names the source in error messages. Used on mapped files and, by the fuzzer, on buffers.
std::map<std::string, TensorView> parse_safetensors(const unsigned char* data, size_t size, const std::string& what);

class SafetensorsFile {
 public:
    explicit SafetensorsFile(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    const TensorView& get(const std::string& name) const;  // FormatError naming the tensor if absent
    std::vector<std::string> names() const;
    const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
    std::string path_;
    void* map_ = nullptr;
    size_t map_size_ = 0;
    std::map<std::string, TensorView> tensors_;
};

}  // namespace dynin_rt

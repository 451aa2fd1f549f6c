// mmap + header validation of safetensors files. The file format: 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data section that the offsets index.
#include "dynin_rt/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "dynin_rt/common.h"
#include "dynin_rt/json.h"

namespace dynin_rt {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's own limit

int64_t json_nonneg_int(const JsonValue& v, const std::string& what) {
    DYNIN_CHECK_FORMAT(v.kind == JsonValue::Kind::Number && v.is_integer && v.integer >= 0, what,
                       " must be a non-negative integer");
    return v.integer;
}

}  // namespace

std::map<std::string, TensorView> parse_safetensors(const unsigned char* bytes, size_t size, const std::string& path) {
    DYNIN_CHECK_FORMAT(size >= 8, path, ": file of ", size, " bytes is too short for a safetensors header");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    DYNIN_CHECK_FORMAT(header_len <= kMaxHeaderBytes, path, ": header length ", header_len, " is absurd");
    DYNIN_CHECK_FORMAT(header_len <= size - 8, path, ": header length ", header_len,
                       " runs past the end of the file (", size, " bytes); the file is truncated or corrupt");
    const JsonValue header = json_parse(reinterpret_cast<const char*>(bytes + 8), header_len, path);
    DYNIN_CHECK_FORMAT(header.kind == JsonValue::Kind::Object, path, ": header is not a JSON object");
    const uint64_t data_start = 8 + header_len;
    const uint64_t data_size = size - data_start;

    std::map<std::string, TensorView> tensors;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, entry] : header.object) {
        if (name == "__metadata__") continue;
        const std::string what = str_cat(path, ": tensor ", name);
        DYNIN_CHECK_FORMAT(entry.kind == JsonValue::Kind::Object, what, " entry is not an object");
        const JsonValue* dtype = entry.find("dtype");
        const JsonValue* shape = entry.find("shape");
        const JsonValue* offsets = entry.find("data_offsets");
        DYNIN_CHECK_FORMAT(dtype && dtype->kind == JsonValue::Kind::String, what, " has no dtype");
        DYNIN_CHECK_FORMAT(shape && shape->kind == JsonValue::Kind::Array, what, " has no shape");
        DYNIN_CHECK_FORMAT(offsets && offsets->kind == JsonValue::Kind::Array && offsets->array.size() == 2, what,
                           " has no [begin, end] data_offsets");
        TensorView view;
        DYNIN_CHECK_FORMAT(dtype_from_safetensors(dtype->string, &view.dtype), what, " has dtype ", dtype->string,
                           " (dynin_rt reads F32, BF16 and F16)");
        DYNIN_CHECK_FORMAT(shape->array.size() <= 8, what, " has ", shape->array.size(), " dimensions");
        uint64_t numel = 1;
        for (const JsonValue& d : shape->array) {
            const uint64_t n = static_cast<uint64_t>(json_nonneg_int(d, what + " shape entry"));
            DYNIN_CHECK_FORMAT(n == 0 || numel <= std::numeric_limits<uint64_t>::max() / n / 8, what, " shape overflows");
            numel *= n;
            view.shape.push_back(static_cast<int64_t>(n));
        }
        const uint64_t begin = static_cast<uint64_t>(json_nonneg_int(offsets->array[0], what + " data offset"));
        const uint64_t end = static_cast<uint64_t>(json_nonneg_int(offsets->array[1], what + " data offset"));
        DYNIN_CHECK_FORMAT(begin <= end && end <= data_size, what, " data_offsets [", begin, ", ", end,
                           "] lie outside the data section of ", data_size, " bytes (truncated file?)");
        DYNIN_CHECK_FORMAT(end - begin == numel * dtype_size(view.dtype), what, " holds ", end - begin,
                           " bytes but its shape and dtype need ", numel * dtype_size(view.dtype));
        DYNIN_CHECK_FORMAT((data_start + begin) % dtype_size(view.dtype) == 0, what, " is not aligned to its element size");
        view.data = bytes + data_start + begin;
        ranges.emplace_back(begin, end);
        tensors.emplace(name, std::move(view));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        DYNIN_CHECK_FORMAT(ranges[i].first >= ranges[i - 1].second, path, ": tensors overlap in the data section");
    return tensors;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    DYNIN_CHECK_FORMAT(fd >= 0, "cannot open ", path, ": ", std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw FormatError(str_cat(path, " is not a regular file"));
    }
    map_size_ = static_cast<size_t>(st.st_size);
    if (map_size_ < 8) {
        ::close(fd);
        throw FormatError(str_cat(path, ": file of ", map_size_, " bytes is too short for a safetensors header"));
    }
    map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        throw FormatError(str_cat("cannot mmap ", path, ": ", std::strerror(errno)));
    }
    try {
        tensors_ = parse_safetensors(static_cast<const unsigned char*>(map_), map_size_, path);
    } catch (...) {
        ::munmap(map_, map_size_);
        map_ = nullptr;
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, map_size_);
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
    auto it = tensors_.find(name);
    DYNIN_CHECK_FORMAT(it != tensors_.end(), path_, " has no tensor ", name);
    return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
    std::vector<std::string> out;
    for (const auto& kv : tensors_) out.push_back(kv.first);
    return out;
}

}  // namespace dynin_rt

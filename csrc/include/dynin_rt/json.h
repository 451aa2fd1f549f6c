// A small strict JSON reader for safetensors headers. Hostile input is expected (headers come from
// files on disk), so it bounds nesting depth and reports every malformation as a FormatError.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dynin_rt {

struct JsonValue {
    enum class Kind { Null, Bool, Number, String, Array, Object };
    Kind kind = Kind::Null;
    bool boolean = false;
    double number = 0.0;
    bool is_integer = false;  // the literal had no fraction or exponent
    int64_t integer = 0;      // valid when is_integer (and within int64)
    std::string string;
    std::vector<JsonValue> array;
    std::vector<std::pair<std::string, JsonValue>> object;  // in file order; duplicates rejected

    const JsonValue* find(const std::string& key) const;
};

// Parses a whole document; `what` names the source in error messages.
JsonValue json_parse(const char* data, size_t size, const std::string& what);

}  // namespace dynin_rt

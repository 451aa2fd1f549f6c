// Errors and checks shared by every component. Every failure the caller can cause (a file, a shape,
// an id, a length) is reported as an exception with a message, never as a crash; the bindings
// translate InvalidArgument to ValueError, FormatError to dynin_rt.errors.CheckpointError and
// Cancelled to dynin_rt.errors.Cancelled.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace dynin_rt {

// A caller passed something out of range: ids, lengths, options.
struct InvalidArgument : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// A weight file or manifest is malformed or disagrees with the model config.
struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The caller cancelled a running call (LoopControl::all); translated to dynin_rt.errors.Cancelled.
struct Cancelled : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
    os << first;
    append(os, rest...);
}
}  // namespace detail

template <typename... Args>
std::string str_cat(const Args&... args) {
    std::ostringstream os;
    detail::append(os, args...);
    return os.str();
}

}  // namespace dynin_rt

#define DYNIN_CHECK_ARG(cond, ...) \
    do { if (!(cond)) throw ::dynin_rt::InvalidArgument(::dynin_rt::str_cat(__VA_ARGS__)); } while (0)
#define DYNIN_CHECK_FORMAT(cond, ...) \
    do { if (!(cond)) throw ::dynin_rt::FormatError(::dynin_rt::str_cat(__VA_ARGS__)); } while (0)

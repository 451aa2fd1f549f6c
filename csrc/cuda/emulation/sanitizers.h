// The sanitizer annotations the emulation needs, as no-ops in builds without that sanitizer:
// AddressSanitizer's fiber switches, ThreadSanitizer's fibers, acquire / release on sync objects
// (barriers and warp collectives order the kernel threads they join), and regions whose memory
// accesses ThreadSanitizer ignores (the executor's own bookkeeping, shared by every fiber).
#pragma once
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define DYNIN_RT_EMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define DYNIN_RT_EMU_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DYNIN_RT_EMU_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define DYNIN_RT_EMU_TSAN 1
#endif
#endif

#if DYNIN_RT_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if DYNIN_RT_EMU_TSAN
#include <sanitizer/tsan_interface.h>
extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}
#endif

namespace dynin_rt {
namespace emu {

inline void asan_start_switch(void** fake_stack_save, const void* bottom, size_t size) {
#if DYNIN_RT_EMU_ASAN
    __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
    (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

inline void asan_finish_switch(void* fake_stack_save) {
#if DYNIN_RT_EMU_ASAN
    const void* bottom = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(fake_stack_save, &bottom, &size);
#else
    (void)fake_stack_save;
#endif
}

inline void asan_unpoison(const void* p, size_t n) {
#if DYNIN_RT_EMU_ASAN
    __asan_unpoison_memory_region(p, n);
#else
    (void)p, (void)n;
#endif
}

inline void* tsan_current_fiber() {
#if DYNIN_RT_EMU_TSAN
    return __tsan_get_current_fiber();
#else
    return nullptr;
#endif
}

inline void* tsan_create_fiber() {
#if DYNIN_RT_EMU_TSAN
    return __tsan_create_fiber(0);
#else
    return nullptr;
#endif
}

inline void tsan_destroy_fiber(void* f) {
#if DYNIN_RT_EMU_TSAN
    __tsan_destroy_fiber(f);
#else
    (void)f;
#endif
}

inline void tsan_switch_to(void* f, bool sync) {
#if DYNIN_RT_EMU_TSAN
    __tsan_switch_to_fiber(f, sync ? 0 : __tsan_switch_to_fiber_no_sync);
#else
    (void)f, (void)sync;
#endif
}

inline void tsan_release(void* sync_object) {
#if DYNIN_RT_EMU_TSAN
    __tsan_release(sync_object);
#else
    (void)sync_object;
#endif
}

inline void tsan_acquire(void* sync_object) {
#if DYNIN_RT_EMU_TSAN
    __tsan_acquire(sync_object);
#else
    (void)sync_object;
#endif
}

// While alive, ThreadSanitizer ignores this fiber's memory accesses (not its synchronisation).
class TsanIgnore {
 public:
    TsanIgnore() {
#if DYNIN_RT_EMU_TSAN
        AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
        AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
    }
    ~TsanIgnore() {
#if DYNIN_RT_EMU_TSAN
        AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
        AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
    }
    TsanIgnore(const TsanIgnore&) = delete;
    TsanIgnore& operator=(const TsanIgnore&) = delete;
};

}  // namespace emu
}  // namespace dynin_rt

// User-space execution contexts for the emulated kernel threads: a hand-written x86-64 context
// switch (callee-saved registers and the stack pointer), ucontext
// elsewhere. Switches tell AddressSanitizer about the stack change, and ThreadSanitizer sees each
// fiber as a thread of its own, so accesses of two kernel threads race for it as they would on the
// GPU unless a barrier (executor.cc) orders them; the executor gives each kernel thread its own.
#pragma once
#include <cstddef>

#if defined(__x86_64__)
#define DYNIN_RT_EMU_X86_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace dynin_rt {
namespace emu {

struct Context {
#if DYNIN_RT_EMU_X86_SWITCH
    void* sp = nullptr;  // saved stack pointer; the registers sit on that stack
#else
    ucontext_t uc{};
#endif
    const void* stack_bottom = nullptr;  // the context's stack (AddressSanitizer's fiber annotations)
    size_t stack_size = 0;
    void* fake_stack = nullptr;  // AddressSanitizer's fake stack of a suspended context
    void* tsan_fiber = nullptr;  // ThreadSanitizer's fiber (or thread) the context runs as (set by its user)
};

// The calling thread's own context (its original stack), to switch into fibers from.
void init_thread_context(Context* ctx);

// A context with its own stack that runs entry(arg) when first switched to; entry never returns.
class Fiber {
 public:
    using Entry = void (*)(void* arg);
    struct Start {
        Entry entry;
        void* arg;
    };
    Fiber(Entry entry, void* arg);
    ~Fiber();
    Fiber(const Fiber&) = delete;
    Fiber& operator=(const Fiber&) = delete;

    Context& context() { return ctx_; }

 private:
    Start start_;
    char* mapping_ = nullptr;  // guard page + stack
    size_t mapping_bytes_ = 0;
    Context ctx_;
};

// Suspends `from` and resumes `to`. sync: ThreadSanitizer orders what `from` did before what `to`
// does next (for handing a kernel thread its launch); without it the two run unordered.
void switch_context(Context& from, Context& to, bool sync);

// The first thing a fiber's entry function calls (completes the sanitizers' view of the switch).
void fiber_entered();

}  // namespace emu
}  // namespace dynin_rt

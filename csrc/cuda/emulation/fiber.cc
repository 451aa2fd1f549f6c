#include "fiber.h"

#include <pthread.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>

#include "sanitizers.h"

namespace dynin_rt {
namespace emu {

namespace {

// Stacks are reserved, not committed: a kernel thread touches a few KiB (more under the sanitizers).
constexpr size_t kStackBytes = 256 << 10;
constexpr size_t kGuardBytes = 4096;

}  // namespace

#if DYNIN_RT_EMU_X86_SWITCH

// raw_switch(void** save_sp, void* new_sp): pushes the callee-saved registers on the current stack,
// stores the stack pointer, then pops the other context's. (The MXCSR and x87 control words are
// not switched: every context of a worker shares its thread's floating-point environment.) A new
// context's stack holds zeroed registers, with r12 = argument and r13 = entry function, and returns
// into the trampoline, which calls entry(argument).
extern "C" void dynin_rt_emu_raw_switch(void** save_sp, void* new_sp);
extern "C" void dynin_rt_emu_trampoline();
asm(R"(
    .text
    .globl dynin_rt_emu_raw_switch
    .hidden dynin_rt_emu_raw_switch
    .type dynin_rt_emu_raw_switch, @function
dynin_rt_emu_raw_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size dynin_rt_emu_raw_switch, .-dynin_rt_emu_raw_switch

    .globl dynin_rt_emu_trampoline
    .hidden dynin_rt_emu_trampoline
    .type dynin_rt_emu_trampoline, @function
dynin_rt_emu_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size dynin_rt_emu_trampoline, .-dynin_rt_emu_trampoline
    .section .note.GNU-stack,"",@progbits
    .text
)");

namespace {

// The frame raw_switch pops for a new context. stack_top is 16-byte aligned, so after the final
// `ret` the trampoline runs with rsp = stack_top and its call enters entry() ABI-aligned.
void* initial_frame(char* stack_top, void (*entry)(void*), void* arg) {
    auto* sp = reinterpret_cast<uint64_t*>(stack_top);
    *--sp = reinterpret_cast<uint64_t>(&dynin_rt_emu_trampoline);  // at stack_top - 8
    *--sp = 0;                                                        // rbp
    *--sp = 0;                                                        // rbx
    *--sp = reinterpret_cast<uint64_t>(arg);                          // r12
    *--sp = reinterpret_cast<uint64_t>(entry);                        // r13
    *--sp = 0;                                                        // r14
    *--sp = 0;                                                        // r15
    return sp;
}

}  // namespace

#else

namespace {
// makecontext passes int arguments only: the Fiber pointer travels in two halves.
void ucontext_start(unsigned hi, unsigned lo) {
    auto* start = reinterpret_cast<Fiber::Start*>((static_cast<uintptr_t>(hi) << 32) | lo);
    start->entry(start->arg);
}
}  // namespace

#endif

void init_thread_context(Context* ctx) {
    pthread_attr_t attr;
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    ctx->stack_bottom = addr;
    ctx->stack_size = size;
    ctx->tsan_fiber = tsan_current_fiber();
}

Fiber::Fiber(Entry entry, void* arg) : start_{entry, arg} {
    mapping_bytes_ = kGuardBytes + kStackBytes;
    void* m = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    mapping_ = static_cast<char*>(m);
    mprotect(mapping_, kGuardBytes, PROT_NONE);  // an overflow faults instead of corrupting a neighbour
    ctx_.stack_bottom = mapping_ + kGuardBytes;
    ctx_.stack_size = kStackBytes;
    char* top = mapping_ + mapping_bytes_ - 64;
#if DYNIN_RT_EMU_X86_SWITCH
    ctx_.sp = initial_frame(top, start_.entry, start_.arg);
#else
    getcontext(&ctx_.uc);
    ctx_.uc.uc_stack.ss_sp = mapping_ + kGuardBytes;
    ctx_.uc.uc_stack.ss_size = kStackBytes - 64;
    ctx_.uc.uc_link = nullptr;
    const auto bits = reinterpret_cast<uintptr_t>(&start_);
    makecontext(&ctx_.uc, reinterpret_cast<void (*)()>(ucontext_start), 2, static_cast<unsigned>(bits >> 32),
                static_cast<unsigned>(bits));
    (void)top;
#endif
}

Fiber::~Fiber() {
    asan_unpoison(ctx_.stack_bottom, ctx_.stack_size);  // frames abandoned on it (a failed launch) left redzones
    munmap(mapping_, mapping_bytes_);
}

void switch_context(Context& from, Context& to, bool sync) {
    asan_start_switch(&from.fake_stack, to.stack_bottom, to.stack_size);
    tsan_switch_to(to.tsan_fiber, sync);
#if DYNIN_RT_EMU_X86_SWITCH
    dynin_rt_emu_raw_switch(&from.sp, to.sp);
#else
    swapcontext(&from.uc, &to.uc);
#endif
    asan_finish_switch(from.fake_stack);
}

void fiber_entered() { asan_finish_switch(nullptr); }

}  // namespace emu
}  // namespace dynin_rt

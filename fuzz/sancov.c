/* sancov.c - edge-ish coverage of the C library for atheris's libFuzzer under GCC.
 *
 * Linked into the extension only by a fuzzing build (LEANN_FUZZ_COVERAGE=1,
 * fuzz/native_build.py).  GCC's -fsanitize-coverage=trace-pc calls
 * __sanitizer_cov_trace_pc() at the start of every basic block; libFuzzer
 * no longer implements that hook (it wants Clang's inline 8-bit counters), so
 * this file does: each block's return address is hashed onto a table of 8-bit
 * counters that is handed to libFuzzer with __sanitizer_cov_8bit_counters_init,
 * the same call Clang-instrumented code makes.  The hash folds the blocks of a
 * 230 KB text onto 64 Ki counters (a few collisions, no false features).
 * -fsanitize-coverage=trace-cmp's comparison hooks go to libFuzzer directly
 * (value profile, table of recent compares); its float hooks, which libFuzzer
 * lacks, are no-ops here.
 *
 * libFuzzer's symbols are looked up at run time in atheris's core, once
 * atheris.Fuzz has loaded it (leann_fuzz_register_coverage).  Without a
 * fuzzer the counters count and nobody reads them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>

#define LEANN_COV_BITS 16
#define LEANN_COV_SLOTS (1u << LEANN_COV_BITS)

static uint8_t leann_cov_counters[LEANN_COV_SLOTS];

#define HOOK __attribute__((visibility("hidden"), no_sanitize_coverage, used))

HOOK void __sanitizer_cov_trace_pc(void) {
    uint64_t pc = (uint64_t)(uintptr_t)__builtin_return_address(0);
    leann_cov_counters[(uint32_t)((pc * 0x9E3779B97F4A7C15ull) >> (64 - LEANN_COV_BITS))]++;
}

/* GCC emits these for floating-point comparisons; libFuzzer has no such hooks */
HOOK void __sanitizer_cov_trace_cmpf(float a, float b) { (void)a; (void)b; }
HOOK void __sanitizer_cov_trace_cmpd(double a, double b) { (void)a; (void)b; }

/* Integer comparison hooks: forwarded to libFuzzer's, found in atheris's
 * core by leann_fuzz_register_coverage (no-ops until then: the extension
 * loads and runs without a fuzzer). */
static void (*cmp1)(uint8_t, uint8_t), (*cmp2)(uint16_t, uint16_t), (*cmp4)(uint32_t, uint32_t),
    (*cmp8)(uint64_t, uint64_t), (*ccmp1)(uint8_t, uint8_t), (*ccmp2)(uint16_t, uint16_t),
    (*ccmp4)(uint32_t, uint32_t), (*ccmp8)(uint64_t, uint64_t), (*cswitch)(uint64_t, uint64_t *);
HOOK void __sanitizer_cov_trace_cmp1(uint8_t a, uint8_t b) { if (cmp1) cmp1(a, b); }
HOOK void __sanitizer_cov_trace_cmp2(uint16_t a, uint16_t b) { if (cmp2) cmp2(a, b); }
HOOK void __sanitizer_cov_trace_cmp4(uint32_t a, uint32_t b) { if (cmp4) cmp4(a, b); }
HOOK void __sanitizer_cov_trace_cmp8(uint64_t a, uint64_t b) { if (cmp8) cmp8(a, b); }
HOOK void __sanitizer_cov_trace_const_cmp1(uint8_t a, uint8_t b) { if (ccmp1) ccmp1(a, b); }
HOOK void __sanitizer_cov_trace_const_cmp2(uint16_t a, uint16_t b) { if (ccmp2) ccmp2(a, b); }
HOOK void __sanitizer_cov_trace_const_cmp4(uint32_t a, uint32_t b) { if (ccmp4) ccmp4(a, b); }
HOOK void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b) { if (ccmp8) ccmp8(a, b); }
HOOK void __sanitizer_cov_trace_switch(uint64_t v, uint64_t *cases) { if (cswitch) cswitch(v, cases); }

/* Called from fuzz/common.py once atheris.Fuzz has loaded its libFuzzer
 * core (`core` is that library's path): hands the counters to libFuzzer and
 * connects the comparison hooks.  Returns 1 on success, 0 if the core or
 * its symbols are not there. */
__attribute__((visibility("default"), no_sanitize_coverage)) int leann_fuzz_register_coverage(const char *core) {
    void *h = dlopen(core, RTLD_NOW | RTLD_NOLOAD);
    if (!h) return 0;
    void (*init)(uint8_t *, uint8_t *) = (void (*)(uint8_t *, uint8_t *))dlsym(h, "__sanitizer_cov_8bit_counters_init");
    if (!init) return 0;
#define FIND(var, name) *(void **)&var = dlsym(h, name)
    FIND(cmp1, "__sanitizer_cov_trace_cmp1");
    FIND(cmp2, "__sanitizer_cov_trace_cmp2");
    FIND(cmp4, "__sanitizer_cov_trace_cmp4");
    FIND(cmp8, "__sanitizer_cov_trace_cmp8");
    FIND(ccmp1, "__sanitizer_cov_trace_const_cmp1");
    FIND(ccmp2, "__sanitizer_cov_trace_const_cmp2");
    FIND(ccmp4, "__sanitizer_cov_trace_const_cmp4");
    FIND(ccmp8, "__sanitizer_cov_trace_const_cmp8");
    FIND(cswitch, "__sanitizer_cov_trace_switch");
#undef FIND
    init(leann_cov_counters, leann_cov_counters + LEANN_COV_SLOTS);
    return 1;
}

/* ---- the largest single allocation -------------------------------------
 * The fuzzing build links with -Wl,--wrap=malloc,... so that every
 * allocation the library makes passes here: a harness reads the largest
 * request since its last call, to hold the loader to a small multiple of the
 * file's size.  (Sizes only: nothing else changes.) */
#include <stddef.h>
#include <stdatomic.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t c, size_t n);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);

static _Atomic size_t leann_fuzz_largest;

__attribute__((no_sanitize_coverage)) static void leann_fuzz_note(size_t n) {
    size_t cur = atomic_load_explicit(&leann_fuzz_largest, memory_order_relaxed);
    while (n > cur && !atomic_compare_exchange_weak(&leann_fuzz_largest, &cur, n)) {
    }
}

HOOK void *__wrap_malloc(size_t n) {
    leann_fuzz_note(n);
    return __real_malloc(n);
}
HOOK void *__wrap_calloc(size_t c, size_t n) {
    leann_fuzz_note(n && c > SIZE_MAX / n ? SIZE_MAX : c * n);
    return __real_calloc(c, n);
}
HOOK void *__wrap_realloc(void *p, size_t n) {
    leann_fuzz_note(n);
    return __real_realloc(p, n);
}
HOOK int __wrap_posix_memalign(void **p, size_t a, size_t n) {
    leann_fuzz_note(n);
    return __real_posix_memalign(p, a, n);
}

/* The largest allocation the library asked for since the last call. */
__attribute__((visibility("default"), no_sanitize_coverage)) size_t leann_fuzz_largest_allocation(void) {
    return atomic_exchange(&leann_fuzz_largest, 0);
}

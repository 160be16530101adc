/* common.c - errors, checked allocation, threads, CPU features. */
#define _GNU_SOURCE
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

static _Thread_local char last_error[512];
static _Thread_local int last_errno;

const char *leann_last_error(void) { return last_error; }
int leann_last_errno(void) { return last_errno; }

void leann_clear_error(void) {
    last_error[0] = '\0';
    last_errno = 0;
}

int leann_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    last_errno = 0;
    return status;
}

int leann_fail_io(int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    last_errno = err;
    return LEANN_ERR_IO;
}

int leann_mul_ok(size_t count, size_t size, size_t *out) {
    if (size != 0 && count > SIZE_MAX / size) {
        leann_fail(LEANN_ERR_NOMEM, "size overflow: %zu x %zu bytes", count, size);
        return 0;
    }
    *out = count * size;
    return 1;
}

void *leann_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) leann_fail(LEANN_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *leann_calloc(size_t count, size_t size, const char *what) {
    size_t bytes;
    if (!leann_mul_ok(count, size, &bytes)) return NULL;
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) leann_fail(LEANN_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

#if defined(__linux__) && defined(MADV_HUGEPAGE)
typedef struct {
    char *p;
    size_t bytes, grain;
} zero_job;

/* thread t zeroes every nthreads-th grain, so the shares stay balanced */
static int zero_task(void *ctx, int t, int nthreads) {
    const zero_job *z = ctx;
    for (size_t off = (size_t)t * z->grain; off < z->bytes; off += (size_t)nthreads * z->grain)
        memset(z->p + off, 0, z->bytes - off < z->grain ? z->bytes - off : z->grain);
    return LEANN_OK;
}
#endif

void *leann_calloc_big(size_t count, size_t size, const char *what, int threads) {
    size_t bytes;
    if (!leann_mul_ok(count, size, &bytes)) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* Arrays read at random (a node's list, its neighbours' codes) miss
     * the TLB on every access with 4 KiB pages; ask for huge pages.  They
     * are written across their whole extent anyway, so committing them
     * up front (the memset) costs no memory that use would not.  The
     * commit is mostly the kernel clearing pages as they fault in, which
     * the threads do side by side (100k x 768: 0.27 -> 0.15 s on 2). */
    const size_t huge = (size_t)2 << 20;
    if (bytes >= 2 * huge) {
        void *p = NULL;
        if (posix_memalign(&p, huge, bytes) == 0) {
            madvise(p, bytes, MADV_HUGEPAGE);
            zero_job z = {p, bytes, huge};
            size_t grains = (bytes + huge - 1) / huge;
            int nt = leann_resolve_threads(threads);
            if ((size_t)nt > grains) nt = (int)grains;
            if (leann_parallel(nt, zero_task, &z) != LEANN_OK) { /* no thread table: alone */
                leann_clear_error();
                zero_task(&z, 0, 1);
            }
            return p;
        }
    }
#else
    (void)threads;
#endif
    return leann_calloc(count, size, what);
}

int leann_cpu_count(void) {
#ifdef _SC_NPROCESSORS_ONLN
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n >= 1) return n > LEANN_MAX_THREADS ? LEANN_MAX_THREADS : (int)n;
#endif
    return 1;
}

int leann_resolve_threads(int threads) {
    if (threads <= 0) return leann_cpu_count();
    return threads > LEANN_MAX_THREADS ? LEANN_MAX_THREADS : threads;
}

typedef struct {
    leann_task_fn fn;
    void *ctx;
    int tid, nthreads, status;
    char error[512];
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *w = p;
    w->status = w->fn(w->ctx, w->tid, w->nthreads);
    if (w->status != LEANN_OK) snprintf(w->error, sizeof w->error, "%s", last_error);
    return NULL;
}

int leann_parallel(int nthreads, leann_task_fn fn, void *ctx) {
    if (nthreads <= 1) return fn(ctx, 0, 1);
    worker_arg *args = leann_calloc((size_t)nthreads, sizeof *args, "thread arguments");
    pthread_t *tids = leann_calloc((size_t)nthreads, sizeof *tids, "thread handles");
    if (!args || !tids) {
        free(args);
        free(tids);
        return LEANN_ERR_NOMEM;
    }
    int started = 1;
    for (int t = 0; t < nthreads; t++) {
        args[t].fn = fn;
        args[t].ctx = ctx;
        args[t].tid = t;
        args[t].nthreads = nthreads;
    }
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tids[t], NULL, worker_main, &args[t]) != 0) break;
        started++;
    }
    /* Threads that could not start: the caller's thread does their share by
     * running with the ids of the missing ones after its own. */
    worker_main(&args[0]);
    for (int t = started; t < nthreads; t++) worker_main(&args[t]);
    for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
    int status = LEANN_OK;
    for (int t = 0; t < nthreads; t++) {
        if (args[t].status != LEANN_OK) {
            status = args[t].status;
            snprintf(last_error, sizeof last_error, "%s", args[t].error);
            break;
        }
    }
    free(args);
    free(tids);
    return status;
}

int leann_kernel_available(int kernel) {
    switch (kernel) {
    case LEANN_KERNEL_SCALAR:
        return 1;
#ifdef LEANN_X86
    case LEANN_KERNEL_SSSE3:
        return __builtin_cpu_supports("ssse3");
    case LEANN_KERNEL_AVX2:
        return __builtin_cpu_supports("avx2");
    case LEANN_KERNEL_AVX512:
        return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f");
#endif
#ifdef LEANN_NEON
    case LEANN_KERNEL_NEON:
        return 1;
#endif
    default:
        return 0;
    }
}

int leann_kernel_best(void) {
    static const int order[] = {LEANN_KERNEL_AVX512, LEANN_KERNEL_AVX2, LEANN_KERNEL_NEON,
                                LEANN_KERNEL_SSSE3};
    const char *force = getenv("LEANN_KERNEL");
    if (force && *force) {
        static const char *names[] = {"scalar", "ssse3", "avx2", "avx512", "neon"};
        for (int k = 0; k < 5; k++)
            if (strcmp(force, names[k]) == 0 && leann_kernel_available(k)) return k;
    }
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (leann_kernel_available(order[i])) return order[i];
    return LEANN_KERNEL_SCALAR;
}

/* ---- float16 (IEEE binary16), round to nearest even ---- */
uint16_t leann_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xFFu, man = x & 0x7FFFFFu;
    if (exp == 0xFF) return (uint16_t)(sign | 0x7C00u | (man ? 0x200u : 0)); /* inf / nan */
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7C00u); /* overflow -> inf */
    if (e <= 0) {                                   /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent: fine */
    return (uint16_t)(sign | h);
}

float leann_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, x;
    if (exp == 0) {
        if (!man) x = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7F800000u | (man << 13);
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void leann_release_free_memory(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

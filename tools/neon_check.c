/* neon_check.c - the NEON kernels (code lookup, float L2 and inner product)
 * against plain references, for
 * an x86 machine that has no aarch64 hardware: tools/neon_check.py builds
 * this file with the library's sources into a static aarch64 executable and
 * runs neon_check() (its entry point) in an emulator.  On aarch64 itself the
 * tests compare NEON with the scalar kernel natively.
 *
 * Everything lives in static buffers: no allocation, no system call, no
 * thread-local state, so the function runs with nothing but a stack. */
#include "internal.h"

enum { MAX_N = 64, MAX_CB = 32, MAX_DIM = 300 };

static uint8_t codes[MAX_N * MAX_CB];
static uint8_t blocks[(MAX_N / 16) * MAX_CB * 16];
static uint8_t canonical[2 * MAX_CB * 16];
static uint8_t permuted[MAX_CB * 32];
static uint16_t out[MAX_N];
static float fa[MAX_DIM], fb[MAX_DIM];
static uint64_t state;

static uint32_t next(void) { /* xorshift64 */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 32);
}

static uint8_t table_entry(int kind) {
    switch (kind) {
    case 0: return (uint8_t)next();                      /* anything */
    case 1: return (uint8_t)(192 + next() % 64);         /* 8-bit totals saturate */
    default: return (next() & 1) ? 255 : 0;              /* extremes */
    }
}

static double dabs(double x) { return x < 0 ? -x : x; }

/* One float case: a random dimension, both metrics, NEON against a double
 * reference within 1e-4 of the terms' magnitude (the x86 tests' bound). */
static long float_case(leann_dist_fn l2, leann_dist_fn ip) {
    int d = 1 + (int)(next() % MAX_DIM);
    float scale = (float)(1u << (next() % 20)) / 1024.0f;
    for (int i = 0; i < d; i++) {
        fa[i] = ((float)(next() >> 8) / 8388608.0f - 1.0f) * scale;
        fb[i] = ((float)(next() >> 8) / 8388608.0f - 1.0f) * scale;
    }
    double rl2 = 0, rip = 0, mag = 0;
    for (int i = 0; i < d; i++) {
        double t = (double)fa[i] - fb[i];
        rl2 += t * t;
        rip += (double)fa[i] * fb[i];
        mag += dabs((double)fa[i] * fb[i]);
    }
    long bad = dabs(l2(fa, fb, d) - rl2) > 1e-4 * rl2 + 1e-30;
    bad += dabs(ip(fa, fb, d) + rip) > 1e-4 * mag + 1e-30;
    return bad;
}

/* Runs `cases` random cases (code bytes 4/8/16/32, 1..64 codes, both
 * accumulations, three table value ranges) through the NEON and scalar
 * code kernels, and as many float cases through the NEON float kernels;
 * returns how many results differ from the references (-1: no NEON kernel
 * in this build). */
long neon_check(uint64_t seed, long cases) {
    static const int cbs[] = {4, 8, 16, 32};
    leann_scan_fn kernels[2][2] = {
        {leann_get_scan(LEANN_KERNEL_NEON, LEANN_ACC8), leann_get_scan(LEANN_KERNEL_NEON, LEANN_ACC16)},
        {leann_get_scan(LEANN_KERNEL_SCALAR, LEANN_ACC8), leann_get_scan(LEANN_KERNEL_SCALAR, LEANN_ACC16)}};
    leann_dist_fn l2 = leann_get_dist(LEANN_METRIC_L2, LEANN_KERNEL_NEON);
    leann_dist_fn ip = leann_get_dist(LEANN_METRIC_IP, LEANN_KERNEL_NEON);
    if (!kernels[0][0] || !kernels[0][1] || !l2 || !ip || l2 == leann_get_dist(LEANN_METRIC_L2, LEANN_KERNEL_SCALAR))
        return -1;
    state = seed | 1;
    long bad = 0;
    for (long c = 0; c < cases; c++) {
        int cb = cbs[next() % 4], n = 1 + (int)(next() % MAX_N), acc8 = next() & 1, kind = (int)(next() % 3);
        int nb = (n + 15) / 16;
        for (int i = 0; i < n * cb; i++) codes[i] = (uint8_t)next();
        for (int i = 0; i < 2 * cb * 16; i++) canonical[i] = table_entry(kind);
        leann_permute_table(canonical, 2 * cb, permuted);
        memset(blocks, 0, sizeof blocks);
        for (int i = 0; i < n; i++)
            for (int r = 0; r < cb; r++) blocks[(i / 16) * cb * 16 + r * 16 + i % 16] = codes[i * cb + r];
        for (int k = 0; k < 2; k++) {
            kernels[k][acc8 ? 0 : 1](blocks, (size_t)nb, cb, permuted, out);
            for (int i = 0; i < n; i++) {
                uint32_t s = 0;
                for (int r = 0; r < cb; r++) {
                    uint8_t b = codes[i * cb + r];
                    s += canonical[(2 * r) * 16 + (b & 15)] + canonical[(2 * r + 1) * 16 + (b >> 4)];
                }
                if (acc8 && s > 255) s = 255;
                bad += out[i] != s;
            }
        }
        bad += float_case(l2, ip);
    }
    return bad;
}

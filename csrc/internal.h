/* internal.h - declarations shared by the C files; not part of the API. */
#ifndef LEANN_INTERNAL_H
#define LEANN_INTERNAL_H

#include "leann.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define LEANN_X86 1
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define LEANN_NEON 1
#endif

/* ---- errors (common.c) ---- */
int leann_fail(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void leann_clear_error(void);
void *leann_malloc(size_t bytes, const char *what);
void *leann_calloc(size_t count, size_t size, const char *what);
/* count * size with overflow check; returns 0 and sets an error on overflow */
int leann_mul_ok(size_t count, size_t size, size_t *out);

/* ---- threads (common.c) ---- */
typedef int (*leann_task_fn)(void *ctx, int thread_id, int nthreads);
/* Runs fn on nthreads threads (the caller's thread is thread 0).  Returns the
 * first non-OK status any thread returned. */
int leann_parallel(int nthreads, leann_task_fn fn, void *ctx);
int leann_resolve_threads(int threads);

/* ---- deterministic RNG (splitmix64) ---- */
static inline uint64_t leann_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ---- Flash codec (flash.c) ---- */
struct leann_codec {
    int dp, msub, dsub, code_bytes, accumulate;
    float scale;
    float *centroids; /* msub * 16 * dsub */
    uint8_t *sdt;     /* msub * 16 * 16, canonical */
};

/* Code lookup kernel: scores nblocks blocks of 16 neighbours.
 * blocks: nblocks * code_bytes * 16 bytes (row r = byte r of 16 codes).
 * table: permuted table (leann_permute_table), out: nblocks*16 totals. */
typedef void (*leann_scan_fn)(const uint8_t *blocks, size_t nblocks, int code_bytes,
                              const uint8_t *table, uint16_t *out);
leann_scan_fn leann_get_scan(int kernel, int accumulate);
/* Canonical (msub*16) -> kernel layout (same size): for each group of 4 code
 * bytes, the 4 low-nibble tables then the 4 high-nibble tables. */
void leann_permute_table(const uint8_t *canonical, int msub, uint8_t *permuted);
/* Float ADT of a projected vector, then quantised (canonical order). */
void leann_codec_adt_raw(const leann_codec *c, const float *proj1, uint8_t *table);
/* Virtual ADT of an encoded vector (its SDT rows), written straight into the
 * kernel's permuted layout. */
void leann_codec_vadt_permuted(const leann_codec *c, const uint8_t *code, uint8_t *permuted);
/* Symmetric distance between two codes (sum of SDT entries). */
static inline uint32_t leann_sdt_dist(const leann_codec *c, const uint8_t *a,
                                      const uint8_t *b) {
    uint32_t s = 0;
    const uint8_t *t = c->sdt;
    for (int j = 0; j < c->code_bytes; j++) {
        s += t[((2 * j) * 16 + (a[j] & 15)) * 16 + (b[j] & 15)];
        s += t[((2 * j + 1) * 16 + (a[j] >> 4)) * 16 + (b[j] >> 4)];
    }
    if (c->accumulate == LEANN_ACC8 && s > 255) s = 255;
    return s;
}
/* Write code `code` as column `col` of a transposed block of 16. */
static inline void leann_block_put(uint8_t *block, int code_bytes, int col,
                                   const uint8_t *code) {
    for (int r = 0; r < code_bytes; r++) block[r * 16 + col] = code[r];
}

/* ---- float distances (distance.c) ---- */
typedef float (*leann_dist_fn)(const float *a, const float *b, int d);
/* LEANN_METRIC_L2: squared L2; LEANN_METRIC_IP: -<a,b>.  NULL if the kernel
 * is unavailable. */
leann_dist_fn leann_get_dist(int metric, int kernel);


/* ---- HNSW graph shared by the builder and the index (graph.c) ---- */
#define LEANN_NONE 0xFFFFFFFFu
#define LEANN_MAX_LEVEL 24
#define LEANN_NLOCKS 65536 /* striped node locks; a thread never holds two */

typedef struct {
    size_t n;
    int M, cap0, capU;  /* max degree at level 0 (2M) and above (M) */
    /* level 0: fixed stride (builder) or CSR (index, off0 != NULL) */
    uint32_t *ids0;
    uint16_t *deg0;     /* stride layout only */
    uint64_t *off0;     /* CSR only: n + 1 offsets */
    /* upper levels, fixed stride: node v's level l >= 1 is slot ubase[v] + l - 1 */
    uint8_t *levels;
    uint32_t *ubase;
    size_t nslots;
    uint32_t *idsU;
    uint16_t *degU;
    uint32_t entry;
    int maxlevel;
} leann_graph;

static inline uint32_t *leann_graph_list(const leann_graph *g, uint32_t v, int l, int *deg) {
    if (l == 0) {
        if (g->off0) {
            *deg = (int)(g->off0[v + 1] - g->off0[v]);
            return g->ids0 + g->off0[v];
        }
        *deg = g->deg0[v];
        return g->ids0 + (size_t)v * g->cap0;
    }
    size_t slot = (size_t)g->ubase[v] + (size_t)l - 1;
    *deg = g->degU[slot];
    return g->idsU + slot * g->capU;
}
static inline uint16_t *leann_graph_degp(const leann_graph *g, uint32_t v, int l) {
    return l == 0 ? g->deg0 + v : g->degU + (size_t)g->ubase[v] + (size_t)l - 1;
}
int leann_graph_alloc_levels(leann_graph *g, size_t n, int M, uint64_t seed);
void leann_graph_free(leann_graph *g);
/* Level 0 fixed stride -> CSR (frees the stride arrays). */
int leann_graph_compact(leann_graph *g);

typedef struct {
    float d;
    uint32_t id;
} leann_cand;

static inline int leann_cand_less(leann_cand a, leann_cand b) {
    return a.d < b.d || (a.d == b.d && a.id < b.id); /* ties broken by id */
}

/* Sort ascending in place (by d, then id). */
void leann_cand_sort(leann_cand *a, size_t n);

/* Visited set: a bitset, cleared word by word through the list of words a
 * search touched (cheap for small searches on large graphs). */
typedef struct {
    uint64_t *bits;
    uint32_t *touched;
    size_t ntouched, nwords, n;
} leann_visited;
int leann_visited_init(leann_visited *v, size_t n);
void leann_visited_free(leann_visited *v);
static inline void leann_visited_next(leann_visited *v) {
    for (size_t i = 0; i < v->ntouched; i++) v->bits[v->touched[i]] = 0;
    v->ntouched = 0;
}
/* returns 1 if it was already visited, marks it */
static inline int leann_visit(leann_visited *v, uint32_t id) {
    size_t w = id >> 6;
    uint64_t m = 1ull << (id & 63), word = v->bits[w];
    if (word & m) return 1;
    if (!word) v->touched[v->ntouched++] = (uint32_t)w;
    v->bits[w] = word | m;
    return 0;
}

/* Node locks: striped spinlocks (uncontended lock/unlock is one atomic). */
typedef atomic_int leann_lock;
void leann_lock_slow(leann_lock *l);
static inline void leann_lock_acquire(leann_lock *l) {
    if (atomic_exchange_explicit(l, 1, memory_order_acquire)) leann_lock_slow(l);
}
static inline void leann_lock_release(leann_lock *l) { atomic_store_explicit(l, 0, memory_order_release); }

/* Beam of a layer search: sorted ascending, at most ef entries. */
typedef struct {
    float d;
    uint32_t id;
    uint32_t expanded;
} leann_beam_entry;

/* How one query measures distances while walking a graph. */
typedef struct {
    int flash;                 /* 1: code distances from neighbour blocks */
    const uint8_t *table;      /* flash: permuted query table */
    leann_scan_fn scan;
    int cb;                    /* code bytes */
    const uint8_t *codes0;     /* flash: level-0 neighbour blocks, stride bb0 */
    const uint8_t *codesU;     /* flash: upper neighbour blocks, stride bbU */
    size_t bb0, bbU;
    const float *q;            /* exact: the query */
    const float *vectors;
    int dim;
    leann_dist_fn dist;
    leann_lock *locks;         /* builder: striped node locks, else NULL */
    uint32_t *ids_tmp;         /* scratch, >= cap0 */
    uint16_t *d16_tmp;         /* scratch, >= cap0 rounded up to 16 */
    uint32_t *nbr_ids;         /* scratch, >= cap0: expanded neighbours */
    float *nbr_ds;             /* scratch, >= cap0: their distances */
    uint64_t evals, hops;
} leann_qctx;

/* Distance of the query to one node (exact: vectors; flash: own code). */
float leann_qdist(const leann_qctx *qc, uint32_t id, const uint8_t *codes_all);
/* Unvisited neighbours of v at level l with their distances (vis may be NULL:
 * all neighbours).  Returns how many were written to ids/ds. */
int leann_expand(const leann_graph *g, leann_qctx *qc, uint32_t v, int l, leann_visited *vis,
                 uint32_t *ids, float *ds);
/* Greedy walk at level l from *cur (ef = 1). */
void leann_greedy(const leann_graph *g, leann_qctx *qc, int l, uint32_t *cur, float *curd);
/* Beam search at level l from ep.  beam (capacity >= ef) receives the best
 * ef nodes found, ascending; returns how many. */
int leann_search_layer(const leann_graph *g, leann_qctx *qc, int l, leann_cand ep, int ef,
                       leann_visited *vis, leann_beam_entry *beam);

#endif /* LEANN_INTERNAL_H */

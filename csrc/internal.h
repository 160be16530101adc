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

/* Prefetch for reading (LEANN_PREFETCH) or writing (LEANN_PREFETCHW).  As
 * volatile asm: GCC 12 at -O3 deleted every __builtin_prefetch of the
 * layer walk as dead code, which left its misses exposed. */
#if defined(__GNUC__) && defined(LEANN_X86)
#define LEANN_PREFETCH(p) __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)(p)))
#define LEANN_PREFETCHW(p) __asm__ volatile("prefetchw %0" : : "m"(*(const char *)(p)))
#elif defined(__GNUC__) && defined(__aarch64__)
#define LEANN_PREFETCH(p) __asm__ volatile("prfm pldl1keep, %0" : : "Q"(*(const char *)(p)))
#define LEANN_PREFETCHW(p) __asm__ volatile("prfm pstl1keep, %0" : : "Q"(*(const char *)(p)))
#elif defined(__GNUC__)
#define LEANN_PREFETCH(p) __builtin_prefetch((p))
#define LEANN_PREFETCHW(p) __builtin_prefetch((p), 1)
#else
#define LEANN_PREFETCH(p) ((void)(p))
#define LEANN_PREFETCHW(p) ((void)(p))
#endif

/* ---- errors (common.c) ---- */
int leann_fail(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A LEANN_ERR_IO failure that keeps the system call's errno (err) for
 * leann_last_errno. */
int leann_fail_io(int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void leann_clear_error(void);
void *leann_malloc(size_t bytes, const char *what);
void *leann_calloc(size_t count, size_t size, const char *what);
/* calloc for large arrays read at random: huge pages where the system
 * offers them (Linux THP), committed up front by `threads` threads (<= 0:
 * every core); free() releases it. */
void *leann_calloc_big(size_t count, size_t size, const char *what, int threads);
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
    int ksub;         /* centroids a subspace: 16 (4-bit codes) or 256 (8-bit) */
    float scale;
    float *centroids; /* msub * ksub * dsub */
    float *cent_t;    /* the same, transposed per subspace: msub * dsub * ksub (encoder) */
    uint8_t *sdt;     /* msub * 16 * 16, canonical (4-bit codecs; NULL for 8-bit) */
    /* optional PCA (leann_codec_set_pca): what search needs to code a query */
    int dim;            /* 0 when absent */
    float *mean;        /* dim */
    float *components;  /* dp * dim, row i = component i */
    float bias;         /* mean(exact^2 - code distance - query residual) on a sample */
};

int leann_codec_clone(const leann_codec *c, leann_codec **out);
/* PCA projection of one vector (dim) and its squared residual (the energy
 * the projection drops).  Needs leann_codec_set_pca. */
void leann_codec_project1(const leann_codec *c, const float *x, float *proj, float *residual);
/* Float asymmetric table (msub*ksub, canonical) of a projected vector. */
void leann_codec_adt_float(const leann_codec *c, const float *proj, float *table);
static inline float leann_code_dist_float(const float *t, const uint8_t *code, int cb) {
    float s = 0.0f;
    for (int j = 0; j < cb; j++) s += t[(2 * j) * 16 + (code[j] & 15)] + t[(2 * j + 1) * 16 + (code[j] >> 4)];
    return s;
}
/* The same for 8-bit codes (cb = msub, a table of msub*256). */
static inline float leann_code_dist_float8(const float *t, const uint8_t *code, int cb) {
    float s = 0.0f;
    for (int j = 0; j < cb; j++) s += t[j * 256 + code[j]];
    return s;
}
/* Either, by the table's centroids a subspace. */
static inline float leann_code_dist_ftable(const float *t, const uint8_t *code, int cb, int ksub) {
    return ksub == 256 ? leann_code_dist_float8(t, code, cb) : leann_code_dist_float(t, code, cb);
}
/* Float symmetric distances of an 8-bit codec, msub*256*256 ([i][a][b]),
 * allocated (the caller frees): what the heuristic compares codes by in
 * live updates of an index with 8-bit search codes. */
float *leann_codec_sdt_float8(const leann_codec *c);
static inline float leann_sdt_dist_float8(const float *t, const uint8_t *a, const uint8_t *b, int cb) {
    float s = 0.0f;
    for (int j = 0; j < cb; j++) s += t[((size_t)j * 256 + a[j]) * 256 + b[j]];
    return s;
}

/* Code lookup kernel: scores nblocks blocks of 16 neighbours.
 * blocks: nblocks * code_bytes * 16 bytes (row r = byte r of 16 codes).
 * table: permuted table (leann_permute_table), out: nblocks*16 totals. */
typedef void (*leann_scan_fn)(const uint8_t *blocks, size_t nblocks, int code_bytes,
                              const uint8_t *table, uint16_t *out);
leann_scan_fn leann_get_scan(int kernel, int accumulate);
/* Which of n (<= 64) code totals are <= lim, as bits of a mask (bit i:
 * d[i]).  d must hold n rounded up to 16 entries (a scan's output does). */
typedef uint64_t (*leann_mask_le_fn)(const uint16_t *d, int n, uint16_t lim);
leann_mask_le_fn leann_get_mask_le(int kernel);
/* Canonical (msub*16) -> kernel layout (same size): for each group of 4 code
 * bytes, the 4 low-nibble tables then the 4 high-nibble tables. */
void leann_permute_table(const uint8_t *canonical, int msub, uint8_t *permuted);
/* Float ADT of a projected vector, then quantised (canonical order). */
void leann_codec_adt_raw(const leann_codec *c, const float *proj1, uint8_t *table);
/* Virtual ADT of an encoded vector (its SDT rows), written straight into the
 * kernels' permuted layout, with stores that suit `kernel`'s scan. */
typedef void (*leann_vadt_fn)(const leann_codec *c, const uint8_t *code, uint8_t *permuted);
leann_vadt_fn leann_get_vadt(int kernel);
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

/* A finished level in compact form: degrees as bytes, neighbour ids
 * bit-packed at `width` bits (enough for n - 1), a bit offset per block of
 * 64 lists.  Upper levels list their nodes (ascending) and are indexed by
 * position in that list; level 0 holds every node. */
typedef struct {
    size_t count;       /* lists at this level */
    uint32_t *nodes;    /* level >= 1: node ids, ascending; level 0: NULL */
    uint8_t *deg;       /* count */
    uint64_t *boff;     /* count / 64 + 1 block offsets, in bits */
    uint64_t *bits;     /* nwords, the last one spare */
    size_t nwords;
    int width;
} leann_packed;

static inline uint32_t leann_bits_get(const uint64_t *w, uint64_t pos, int width) {
    uint64_t i = pos >> 6;
    unsigned o = (unsigned)(pos & 63);
    uint64_t v = w[i] >> o;
    if (o + (unsigned)width > 64) v |= w[i + 1] << (64 - o);
    return (uint32_t)(v & ((1ull << width) - 1));
}
static inline void leann_bits_put(uint64_t *w, uint64_t pos, int width, uint32_t x) {
    uint64_t i = pos >> 6;
    unsigned o = (unsigned)(pos & 63);
    w[i] |= (uint64_t)x << o;
    if (o + (unsigned)width > 64) w[i + 1] |= (uint64_t)x >> (64 - o);
}
/* Position of node v in an upper level's node list, or -1. */
static inline long leann_packed_find(const leann_packed *p, uint32_t v) {
    if (!p->nodes) return v < p->count ? (long)v : -1;
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = (lo + hi) >> 1;
        if (p->nodes[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo < p->count && p->nodes[lo] == v ? (long)lo : -1;
}
/* Decode list i into out; returns its degree. */
static inline int leann_packed_decode(const leann_packed *p, size_t i, uint32_t *out) {
    size_t b = i >> 6;
    uint64_t pos = p->boff[b], acc = 0;
    for (size_t j = b << 6; j < i; j++) acc += p->deg[j];
    pos += acc * (uint64_t)p->width;
    int deg = p->deg[i];
    for (int k = 0; k < deg; k++) out[k] = leann_bits_get(p->bits, pos + (uint64_t)k * p->width, p->width);
    return deg;
}

typedef struct {
    size_t n;
    int M, cap0, capU;  /* max degree at level 0 (2M) and above (M) */
    leann_packed *packed; /* maxlevel + 1 compact levels (finished indexes), or NULL */
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
/* Neighbours of v at level l in any layout: a pointer into the graph, or
 * into buf (capacity >= the level's max degree) when they were decoded.
 * Packed upper levels: a node missing from the level has no neighbours. */
static inline const uint32_t *leann_graph_nbrs(const leann_graph *g, uint32_t v, int l, uint32_t *buf,
                                               int *deg) {
    if (g->packed) {
        long i = leann_packed_find(&g->packed[l], v);
        *deg = i < 0 ? 0 : leann_packed_decode(&g->packed[l], (size_t)i, buf);
        return buf;
    }
    return leann_graph_list(g, v, l, deg);
}
/* Top level of a node (any layout). */
int leann_graph_level(const leann_graph *g, uint32_t v);
/* CSR + fixed-stride upper levels -> packed levels (frees the old arrays). */
int leann_graph_pack(leann_graph *g);
void leann_packed_free(leann_packed *p);
/* Make every node reachable from the entry at level 0 (stride layout);
 * degree bounds are kept. */
int leann_graph_repair_reachability(leann_graph *g);

static inline uint16_t *leann_graph_degp(const leann_graph *g, uint32_t v, int l) {
    return l == 0 ? g->deg0 + v : g->degU + (size_t)g->ubase[v] + (size_t)l - 1;
}
int leann_graph_alloc_levels(leann_graph *g, size_t n, int M, uint64_t seed);
/* The random top level of node i (the HNSW distribution for M), a hash of
 * (seed, i): the same node draws the same level in a bulk build and when
 * it is inserted later. */
int leann_graph_random_level(uint64_t seed, size_t i, int M);
/* Node levels known, the fixed-stride arrays for them: ubase, nslots and
 * zeroed lists at every level (ids0/deg0 with cap0, idsU/degU with capU). */
int leann_graph_alloc_lists(leann_graph *g);
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
int leann_cmp_u64(const void *a, const void *b); /* qsort comparator */

/* ---- neighbour selection and reverse links: the only ones (build.c and
 * prune.c call these; each supplies how it measures distances and stores a
 * list) ---- */
typedef struct {
    /* 1 when one of kept[0..k) is closer to candidate c than d, c's
     * distance to the base (selection bias included) */
    int (*occluded)(void *ctx, uint32_t c, float d, const leann_cand *kept, int k);
    void (*kept)(void *ctx, uint32_t c, int k); /* c became kept[k] (may be NULL) */
    void (*prefetch)(void *ctx, uint32_t c);    /* a candidate looked at soon (may be NULL) */
    void *ctx;
} leann_selector;

#define LEANN_SELECT_PREFETCH 8
/* The HNSW heuristic: walk the candidates (ascending by distance to the
 * base) and keep one only if no neighbour kept so far is closer to it than
 * the base is (its distance + bias); at most cap.  Returns how many were
 * written to out.  Inline so that each caller's callbacks inline too. */
static inline int leann_select(const leann_selector *sel, const leann_cand *cands, int nc, int cap, float bias,
                               leann_cand *out) {
    int k = 0;
    if (sel->prefetch)
        for (int i = 0; i < nc && i < LEANN_SELECT_PREFETCH; i++) sel->prefetch(sel->ctx, cands[i].id);
    for (int i = 0; i < nc && k < cap; i++) {
        if (sel->prefetch && i + LEANN_SELECT_PREFETCH < nc) sel->prefetch(sel->ctx, cands[i + LEANN_SELECT_PREFETCH].id);
        if (k && sel->occluded(sel->ctx, cands[i].id, cands[i].d + bias, out, k)) continue;
        if (sel->kept) sel->kept(sel->ctx, cands[i].id, k);
        out[k++] = cands[i];
    }
    return k;
}

/* How a reverse link reads and writes one list. */
typedef struct {
    /* pool[i] = {distance from the list's owner, ids[i]} for i < deg, and
     * pool[deg] the same for v */
    void (*dists)(void *ctx, const uint32_t *ids, int deg, uint32_t v, leann_cand *pool);
    void (*put)(void *ctx, int pos, uint32_t id); /* store list entry pos */
    void *ctx;
} leann_list_ops;

/* Offer the link owner -> v to the owner's list ids[0..deg) of capacity
 * cap: nothing if it is there, appended while there is room, else the list
 * is re-selected by the heuristic among its links and v.  pool and out:
 * cap + 1 entries of scratch.  Returns the list's new degree. */
static inline int leann_reverse_link(const leann_selector *sel, const leann_list_ops *ops, const uint32_t *ids,
                                     int deg, int cap, uint32_t v, leann_cand *pool, leann_cand *out) {
    for (int i = 0; i < deg; i++)
        if (ids[i] == v) return deg;
    if (deg < cap) {
        ops->put(ops->ctx, deg, v);
        return deg + 1;
    }
    ops->dists(ops->ctx, ids, deg, v, pool);
    leann_cand_sort(pool, (size_t)deg + 1);
    int k = leann_select(sel, pool, deg + 1, cap, 0.0f, out);
    for (int i = 0; i < k; i++) ops->put(ops->ctx, i, out[i].id);
    return k;
}

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

/* Beam of a layer search: at most ef entries ascending by (distance, id),
 * kept as one 64-bit key each (leann_beam_key) and, beside the keys, a flag
 * for the entries expanded so far.  A key compares as its (distance, id)
 * does, so the beam's binary search is one load and one integer compare a
 * step, and an insertion moves 9 bytes an entry. */
typedef struct {
    uint64_t *keys;
    uint8_t *done;  /* LEANN_BEAM_DONE: expanded; LEANN_BEAM_HIDDEN: walked
                       through, never returned (leann_returnable) */
    size_t cap;
} leann_beam;
#define LEANN_BEAM_DONE 1
#define LEANN_BEAM_HIDDEN 2
int leann_beam_init(leann_beam *b, size_t cap);
void leann_beam_free(leann_beam *b);
/* The float's bits made monotonic (negative values flipped) above the id:
 * orders like leann_cand_less. */
static inline uint64_t leann_beam_key(float d, uint32_t id) {
    uint32_t u;
    memcpy(&u, &d, sizeof u);
    u ^= (uint32_t)((int32_t)u >> 31) | 0x80000000u;
    return (uint64_t)u << 32 | id;
}
static inline uint32_t leann_beam_id(uint64_t key) { return (uint32_t)key; }
static inline float leann_beam_dist(uint64_t key) {
    uint32_t u = (uint32_t)(key >> 32);
    u = (u & 0x80000000u) ? u ^ 0x80000000u : ~u;
    float d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Prefetches one walk's step leaves for the next expansion (of another
 * walk) to issue. */
typedef struct {
    const char *p;
    size_t bytes;
} leann_deferred;

/* Where a walk's distances come from: one source a walk, chosen by whoever
 * sets up the leann_qctx; leann_qdist and leann_expand switch on it. */
typedef enum {
    LEANN_SRC_VECTORS = 0, /* exact distances to stored vectors (q, vectors,
                              dim, dist): the exact search, exact builds and
                              insertions into an index with stored vectors */
    LEANN_SRC_BLOCKS,      /* the Flash build: a list's code distances from its
                              neighbour code blocks (codes0/codesU) through
                              the integer table and scan; one node's from
                              its own code (codes) */
    LEANN_SRC_CODES_INT,   /* every node's own code (codes) through the
                              permuted integer table (table; blocks of 16
                              gathered into blk_tmp and scanned when it is
                              set): insertions into a finished graph */
    LEANN_SRC_CODES_FLOAT, /* every node's own code (codes) through a float
                              table (ftable, fk centroids a subspace) plus
                              foff: the two-level search, and insertions
                              with 8-bit codes */
} leann_dist_src;

/* How one query measures distances while walking a graph. */
typedef struct {
    leann_dist_src src;
    const uint8_t *codes;      /* BLOCKS and CODES_*: every node's own code (n * cb) */
    const uint8_t *table;      /* BLOCKS, CODES_INT: permuted query table */
    const float *ftable;       /* CODES_FLOAT: float query table
                                  (leann_code_dist_ftable) ... */
    float foff;                /* ... plus foff: the two-level search's scale */
    int fk;                    /* CODES_FLOAT: centroids a subspace (16 or 256) */
    leann_scan_fn scan;
    leann_mask_le_fn mask_le;  /* BLOCKS: the scan kernel's companion */
    int cb;                    /* code bytes */
    const uint8_t *codes0;     /* BLOCKS: level-0 neighbour blocks, stride bb0 */
    const uint8_t *codesU;     /* BLOCKS: upper neighbour blocks, stride bbU */
    size_t bb0, bbU;
    const float *q;            /* VECTORS: the query */
    const float *vectors;
    int dim;
    leann_dist_fn dist;
    leann_lock *locks;         /* builder: striped node locks, else NULL */
    leann_deferred *defer;     /* builder: shared by a thread's walks, else NULL */
    uint32_t *ids_tmp;         /* scratch, >= cap0 */
    uint16_t *d16_tmp;         /* scratch, >= cap0 rounded up to 16 */
    uint8_t *blk_tmp;          /* codes: scratch for a list's codes in blocks of
                                  16 (cap0 rounded up to 16 * cb), scored by
                                  scan; NULL: scalar lookups */
    uint32_t *nbr_ids;         /* scratch, >= cap0: expanded neighbours */
    float *nbr_ds;             /* scratch, >= cap0: their distances */
    uint64_t evals, hops;
} leann_qctx;

/* The scratch a walk's expansions need for lists of up to cap entries
 * (ids_tmp, d16_tmp, nbr_ids, nbr_ds; blk_tmp too when cb > 0: walks on
 * per-node codes), zeroed; leann_qctx_release frees it. */
int leann_qctx_alloc(leann_qctx *qc, int cap, int cb);
void leann_qctx_release(leann_qctx *qc);
/* Distance of the query to one node, from qc's source (BLOCKS: the node's
 * own code). */
float leann_qdist(const leann_qctx *qc, uint32_t id);
/* Unvisited neighbours of v at level l with their distances (vis may be NULL:
 * all neighbours).  BLOCKS: neighbours whose code distance exceeds `bound`
 * are skipped (INFINITY: none).  Returns how many were written to ids/ds. */
int leann_expand(const leann_graph *g, leann_qctx *qc, uint32_t v, int l, leann_visited *vis, float bound,
                 uint32_t *ids, float *ds);
/* Greedy walk at level l from *cur (ef = 1). */
void leann_greedy(const leann_graph *g, leann_qctx *qc, int l, uint32_t *cur, float *curd);
/* Beam search at level l from ep.  beam (capacity >= ef) receives the best
 * ef nodes found, ascending; returns how many. */
int leann_search_layer(const leann_graph *g, leann_qctx *qc, int l, leann_cand ep, int ef,
                       leann_visited *vis, leann_beam beam);
/* The same search one expansion at a time, so that a thread can interleave
 * several (the builder does): each step ends by prefetching the list it will
 * expand next, whose misses then overlap the other walks' steps.  lookahead:
 * how many later beam entries each step also prefetches (a guess at what
 * comes next; a lone walk has nothing else to overlap). */
/* Bit i of a bitset of 64-bit words (tombstones, allowed sets). */
static inline int leann_bit(const uint64_t *words, size_t i) { return (int)(words[i >> 6] >> (i & 63) & 1); }
/* The tombstone test, the only one: whether node id is deleted (tomb NULL:
 * no node is). */
static inline int leann_is_dead(const uint64_t *tomb, size_t id) { return tomb && leann_bit(tomb, id); }
/* Which nodes a walk may return: not tombstoned and, with an allowed
 * bitset, allowed.  Other nodes are walked through (expanded while closer
 * than the ef-th returnable node) but never enter the result. */
typedef struct {
    const uint64_t *allowed; /* NULL: every node */
    const uint64_t *tomb;    /* NULL: none deleted */
} leann_returnable;
static inline int leann_is_returnable(const leann_returnable *r, uint32_t id) {
    if (leann_is_dead(r->tomb, id)) return 0;
    return !r->allowed || leann_bit(r->allowed, id);
}
typedef struct {
    leann_beam beam;         /* grows (realloc) only with a predicate */
    leann_visited *vis;
    const leann_returnable *ret; /* NULL: every node is returnable */
    int len, cur, ef, l, lookahead;
    int nok;                 /* returnable entries in the beam */
    int err;                 /* LEANN_OK, or why a step stopped */
} leann_walk;
/* An empty walk at level l (ret as above): leann_walk_offer fills it
 * without a graph (a scan). */
void leann_walk_init(leann_walk *w, int l, int ef, int lookahead, leann_visited *vis, leann_beam beam,
                     const leann_returnable *ret);
/* The walk from ep (visited and offered). */
void leann_walk_start(leann_walk *w, const leann_graph *g, const leann_qctx *qc, int l, leann_cand ep, int ef,
                      int lookahead, leann_visited *vis, leann_beam beam, const leann_returnable *ret);
/* Offer a node to the beam: it enters when it is closer than the ef-th
 * returnable entry (or fewer than ef are held).  Returns its position, or
 * -1 when it did not enter (or, with w->err set, memory ran out). */
int leann_walk_offer(leann_walk *w, float d, uint32_t id);
/* One expansion; returns 0 once the beam holds nothing left to expand
 * (w->beam.keys[0 .. w->len) is then the result, ascending; with a
 * predicate, the entries flagged LEANN_BEAM_HIDDEN are not part of it) or
 * on an error (w->err). */
int leann_walk_step(leann_walk *w, const leann_graph *g, leann_qctx *qc);
/* The walk's returnable entries, ascending, at most max; returns how many. */
size_t leann_walk_results(const leann_walk *w, leann_cand *out, size_t max);

/* ---- the index (search.c, prune.c, index_io.c) ---- */
typedef struct leann_lru leann_lru;
typedef struct leann_vpool leann_vpool;
void leann_vpool_free(leann_vpool *p);
struct leann_index {
    leann_graph g;
    uint8_t *codes;      /* n * code_bytes or NULL */
    int code_bytes;
    leann_codec *codec;  /* owned copy for search over codes, or NULL */
    float *vectors;      /* n * dim or NULL */
    int dim, metric;
    uint64_t *tomb;      /* tombstones, (n + 63) / 64 words, or NULL */
    size_t ntomb;
    /* persistent hub cache: ids ascending, float16 rows */
    uint32_t *hub_ids;
    uint16_t *hub_vecs;
    size_t nhub;
    leann_lru *lru;      /* cross-query cache of recomputed rows, or NULL */
    _Atomic(leann_vpool *) vpool; /* visited sets of searches (search.c) */
    float calib[LEANN_CALIB_LEVELS]; /* estimate error quantiles (leann_index_set_calibration) */
    int has_calib;
    /* the candidates' distance estimate (leann_index_set_estimator) */
    int est_kind;        /* LEANN_EST_CODE or LEANN_EST_NORMALISED */
    float est_norm;      /* NORMALISED: every search-space vector's norm */
    float *est_pmean;    /* NORMALISED: components . mean (dp) */
    float *est_ntab;     /* NORMALISED: per subspace and centroid, 2 <pmean_j, c> + |c|^2 (msub * ksub) */
    float est_mm;        /* NORMALISED: |mean|^2 */
    char *umeta;         /* caller's metadata blob, saved with the index */
    size_t umeta_len;
};
/* The one index constructor (build, load, live updates): a zeroed index
 * that owns graph g (moved: *g is zeroed; NULL: an empty graph), codes
 * (code_bytes each, or NULL) and vectors (dim each, or NULL).  On failure
 * (LEANN_ERR_NOMEM) nothing was taken: the caller still owns them. */
int leann_index_new(leann_graph *g, uint8_t *codes, int code_bytes, float *vectors, int dim, int metric,
                    leann_index **out);
void leann_lru_free(leann_lru *c);
int leann_lru_get(leann_lru *c, uint32_t id, float *out); /* 1 on a hit */
void leann_lru_put(leann_lru *c, uint32_t id, const float *row);
int leann_hub_get(const leann_index *idx, uint32_t id, float *out); /* 1 on a hit */
uint16_t leann_f32_to_f16(float f);
float leann_f16_to_f32(uint16_t h);

#endif /* LEANN_INTERNAL_H */

/*
 * leann.h - the whole public C API of leann-store's native core.
 *
 * Conventions
 *  - Every function that can fail returns an int status (LEANN_OK = 0) and
 *    leaves a human-readable message in a thread-local buffer read with
 *    leann_last_error().  Nothing aborts or exits the process.
 *  - Node ids are 32-bit inside the library (n < 2^32 - 1).
 *  - Vectors are row-major float32; codes are 4-bit PQ codes packed two per
 *    byte in the canonical order: byte j holds subspace 2j in its low nibble
 *    and subspace 2j+1 in its high nibble.  Tables handed in or out are in the
 *    canonical order (subspace-major, 16 entries each); any ISA-specific
 *    permutation happens inside the library.
 *  - Build graphs use squared L2 distances.  Callers map cosine (normalise)
 *    and inner product (augment by one dimension) onto L2 before building;
 *    search can rank by L2 or by negative inner product.
 */
#ifndef LEANN_H
#define LEANN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* CDEF-BEGIN: the cffi builder reads the declarations from here on */

/* ---- status codes ------------------------------------------------------ */
enum {
    LEANN_OK = 0,
    LEANN_ERR_INVALID = 1,   /* bad argument */
    LEANN_ERR_NOMEM = 2,     /* an allocation failed */
    LEANN_ERR_IO = 3,        /* file system error */
    LEANN_ERR_CORRUPT = 4,   /* a file or buffer failed validation */
    LEANN_ERR_CALLBACK = 5,  /* a user callback reported failure */
    LEANN_ERR_CANCELLED = 6, /* cancelled through leann_builder_cancel */
    LEANN_ERR_INTERNAL = 7   /* an invariant broke: a bug, please report */
};

/* Message describing the last failure on the calling thread ("" if none). */
const char *leann_last_error(void);

/* ---- CPU dispatch ------------------------------------------------------ */
enum {
    LEANN_KERNEL_AUTO = -1,
    LEANN_KERNEL_SCALAR = 0,
    LEANN_KERNEL_SSSE3 = 1,
    LEANN_KERNEL_AVX2 = 2,
    LEANN_KERNEL_AVX512 = 3, /* AVX-512BW */
    LEANN_KERNEL_NEON = 4
};
/* 1 if this build has the kernel and this CPU can run it. */
int leann_kernel_available(int kernel);
/* The kernel LEANN_KERNEL_AUTO resolves to on this CPU. */
int leann_kernel_best(void);
/* Number of online CPUs (>= 1). */
int leann_cpu_count(void);

/* ---- Flash codec --------------------------------------------------------
 * Works on vectors already projected by PCA (dimension dp).  Subspace i owns
 * the dims [i*dsub, (i+1)*dsub) with dsub = dp / msub; the caller orders the
 * PCA components so that this split balances variance.
 * Distances in tables are squared L2 between a sub-vector and a centroid,
 * quantised with one global scale:  q = min(255, floor(d / scale + 0.5)).
 */
typedef struct leann_codec leann_codec;

enum { LEANN_ACC8 = 8, LEANN_ACC16 = 16 };

/* msub in {8,16,32,64}; centroids: msub*16*dsub floats; scale > 0. */
int leann_codec_new(int dp, int msub, const float *centroids, float scale,
                    int accumulate, leann_codec **out);
void leann_codec_free(leann_codec *codec);
int leann_codec_code_bytes(const leann_codec *codec);
/* codes: n * code_bytes; threads <= 0 means all cores. */
int leann_codec_encode(const leann_codec *codec, const float *proj, size_t n,
                       uint8_t *codes, int threads);
/* Canonical asymmetric table of one projected vector: msub*16 bytes. */
int leann_codec_adt(const leann_codec *codec, const float *proj1, uint8_t *table);
/* Canonical symmetric table: msub*16*16 bytes, [i][a][b]. */
int leann_codec_sdt(const leann_codec *codec, uint8_t *sdt);

/* Score n codes against a canonical table with one kernel.  The codes are
 * transposed into blocks of 16 and the table permuted as the hot loops do, so
 * this exercises exactly the production kernels (used by the tests).
 * out: n uint16 totals (8-bit accumulation saturates at 255). */
int leann_scan_codes(const uint8_t *codes, size_t n, int code_bytes,
                     const uint8_t *table, int accumulate, int kernel,
                     uint16_t *out);

enum { LEANN_METRIC_L2 = 0, LEANN_METRIC_IP = 1 };

/* One float distance with one kernel (tests compare SIMD with scalar). */
int leann_float_distance(int metric, int kernel, const float *a, const float *b, int d,
                         float *out);

/* ---- Graph construction ------------------------------------------------ */
enum { LEANN_BUILDER_FLASH = 0, LEANN_BUILDER_EXACT = 1 };

typedef struct {
    size_t n;              /* number of vectors */
    int dim;               /* dimension of the stored / build vectors */
    int M;                 /* upper-layer degree; base layer gets 2*M */
    int ef_construction;
    int builder;           /* LEANN_BUILDER_* */
    int search_metric;     /* LEANN_METRIC_*: how search ranks */
    int store_vectors;     /* keep float vectors in the index */
    int threads;           /* <= 0: all cores */
    uint64_t seed;
} leann_build_params;

typedef struct leann_builder leann_builder;
typedef struct leann_index leann_index;

/* Create a builder.  codec is borrowed (flash only) and must outlive it. */
int leann_builder_new(const leann_build_params *params, const leann_codec *codec,
                      leann_builder **out);
/* Float storage (n*dim) the caller fills before run when the exact builder is
 * used or vectors are stored, else NULL.  For the flash builder with stored
 * vectors the storage is allocated lazily: call this after run.  */
float *leann_builder_vectors(leann_builder *b);
/* Flash only: hand the projected vectors (n*dp, borrowed during run). */
int leann_builder_set_projected(leann_builder *b, const float *proj);
/* Run the construction (blocking, multi-threaded). */
int leann_builder_run(leann_builder *b);
/* Thread-safe: nodes inserted so far / request cancellation. */
size_t leann_builder_progress(const leann_builder *b);
void leann_builder_cancel(leann_builder *b);
/* Distance evaluations and node expansions of the construction so far. */
void leann_builder_stats(const leann_builder *b, uint64_t *distance_evals, uint64_t *hops);
/* Flash + stored vectors: allocate the float storage after run so that it
 * never coexists with the build-time neighbour code blocks. */
int leann_builder_alloc_vectors(leann_builder *b);
/* Turn a finished builder into an index (the builder is consumed). */
int leann_builder_finish(leann_builder *b, leann_index **out);
void leann_builder_free(leann_builder *b);

/* ---- Index ------------------------------------------------------------- */
void leann_index_free(leann_index *idx);
size_t leann_index_size(const leann_index *idx);
int leann_index_dim(const leann_index *idx);
int leann_index_max_level(const leann_index *idx);
uint32_t leann_index_entry_point(const leann_index *idx);
int leann_index_level(const leann_index *idx, uint32_t node);
/* Max neighbours a node may have at a level. */
int leann_index_max_degree(const leann_index *idx, int level);
/* Copies up to cap neighbour ids; returns the degree (>= 0) or -status. */
int leann_index_neighbors(const leann_index *idx, uint32_t node, int level,
                          uint32_t *out, int cap);
/* Bytes the index holds in memory (graph + vectors + codes). */
size_t leann_index_memory(const leann_index *idx);

typedef struct {
    uint64_t distance_evals; /* exact distance computations */
    uint64_t hops;           /* nodes expanded */
} leann_search_stats;

/* Exact-distance search over stored vectors.  queries: nq*dim; out_ids and
 * out_dist: nq*k, padded with -1 / +inf when fewer than k are reachable.
 * stats: nq entries or NULL. */
int leann_index_search(const leann_index *idx, const float *queries, size_t nq,
                       int k, int ef, int threads, int64_t *out_ids,
                       float *out_dist, leann_search_stats *stats);
/* CDEF-END */

#ifdef __cplusplus
}
#endif
#endif /* LEANN_H */

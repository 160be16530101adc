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
/* errno of the system call behind the last LEANN_ERR_IO on the calling
 * thread (0 if none), so that callers can tell a missing file from a
 * forbidden one. */
int leann_last_errno(void);

/* ---- limits: every check, in C and in Python (read through cffi), uses
 * these and only these ----------------------------------------------------- */
enum {
    LEANN_MAX_DIM = 65536,       /* vector and projected dimension */
    LEANN_MIN_M = 2,
    LEANN_MAX_M = 256,           /* graph degree M (the base layer keeps 2M) */
    LEANN_MAX_EF_CONSTRUCTION = 100000,
    LEANN_MAX_EF = 1000000,      /* beam width of a search */
    LEANN_MAX_BATCH = 65536,     /* ids asked from the caller at once */
    LEANN_MAX_DEGREE = 255,      /* link caps after pruning (byte degrees) */
    LEANN_MAX_LEVEL_ARG = 255,   /* levels a caller may name */
    LEANN_MAX_THREADS = 1024,
    LEANN_MAX_PCA_DIM = 4096,
    LEANN_MAX_BUILD_SUBSPACES = 64 /* build codes; search codes may have more */
};

/* Hand memory the C allocator holds free back to the system (glibc:
 * malloc_trim; elsewhere nothing).  Builds call it between phases, so that
 * freed training buffers do not add to the graph phase's peak. */
void leann_release_free_memory(void);

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

/* msub in {8,16,32,64,80,96,112,128} (more than 64 only for search codes:
 * the build kernels take up to 64); bits: 4 (16 centroids a subspace, two
 * codes a byte: what the build and the lookup kernels take) or 8 (256
 * centroids, a byte a subspace: search codes only, scored through float
 * tables); centroids: msub*2^bits*dsub floats; scale > 0 (4-bit tables). */
int leann_codec_new(int dp, int msub, int bits, const float *centroids, float scale,
                    int accumulate, leann_codec **out);
/* 4 or 8 (0 for NULL). */
int leann_codec_bits(const leann_codec *codec);
/* 1 if msub is a number of subspaces leann_codec_new takes, else 0. */
int leann_codec_valid_subspaces(int msub);
void leann_codec_free(leann_codec *codec);
int leann_codec_code_bytes(const leann_codec *codec);
/* codes: n * code_bytes; threads <= 0 means all cores. */
int leann_codec_encode(const leann_codec *codec, const float *proj, size_t n,
                       uint8_t *codes, int threads);
/* The same with one kernel (LEANN_KERNEL_*): every kernel gives the same codes. */
int leann_codec_encode_kernel(const leann_codec *codec, const float *proj, size_t n,
                              uint8_t *codes, int threads, int kernel);
/* k-means' update step: per subspace and centroid, the float64 sum of the
 * sub-vectors of the n projected rows coded to it (sums: msub*K*dsub with
 * K = 2^bits, each centroid's rows added in row order) and their count
 * (msub*K). */
int leann_codec_centroid_sums(const leann_codec *codec, const float *proj, size_t n, const uint8_t *codes,
                              double *sums, int64_t *counts);
/* Canonical asymmetric table of one projected vector: msub*16 bytes
 * (4-bit codecs). */
int leann_codec_adt(const leann_codec *codec, const float *proj1, uint8_t *table);
/* Float asymmetric table of one projected vector: msub*2^bits squared
 * distances (either codec). */
int leann_codec_adt_f32(const leann_codec *codec, const float *proj1, float *table);
/* Canonical symmetric table: msub*16*16 bytes, [i][a][b] (4-bit codecs). */
int leann_codec_sdt(const leann_codec *codec, uint8_t *sdt);
/* Virtual ADT of one code (row code_i of each subspace i's SDT), in the
 * kernels' permuted layout, as `kernel`'s variant writes it: msub*16 bytes
 * (for the tests; the builder scores candidates with it). */
int leann_codec_vadt_kernel(const leann_codec *codec, const uint8_t *code, int kernel, uint8_t *permuted);

/* Score n codes against a canonical table with one kernel.  The codes are
 * transposed into blocks of 16 and the table permuted as the hot loops do, so
 * this exercises exactly the production kernels (used by the tests).
 * out: n uint16 totals (8-bit accumulation saturates at 255). */
int leann_scan_codes(const uint8_t *codes, size_t n, int code_bytes,
                     const uint8_t *table, int accumulate, int kernel,
                     uint16_t *out);

/* Which of n (<= 64) totals d[i] are <= lim, as mask bits, with one kernel
 * (the walk's bound filter).  d must hold n rounded up to 16 entries. */
int leann_mask_le_kernel(const uint16_t *d, int n, uint16_t lim, int kernel, uint64_t *mask);

enum { LEANN_METRIC_L2 = 0, LEANN_METRIC_IP = 1 };

/* One float distance with one kernel (tests compare SIMD with scalar). */
int leann_float_distance(int metric, int kernel, const float *a, const float *b, int d,
                         float *out);

/* PCA that turns input vectors (dim) into the codec's projections, and the
 * calibrated bias added to code distances so they estimate exact squared L2:
 * needed by a codec that codes search queries (leann_index_set_codes). */
int leann_codec_set_pca(leann_codec *codec, int dim, const float *mean, const float *components,
                        float bias);
/* dim is 0 without a PCA. */
int leann_codec_info(const leann_codec *codec, int *dim, int *dp, int *msub, int *accumulate,
                     float *scale, float *bias);
/* centroids: msub*2^bits*(dp/msub); mean: dim; components: dp*dim (ignored without a PCA). */
int leann_codec_export(const leann_codec *codec, float *centroids, float *mean, float *components);

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
    float selection_relax; /* flash: taken off the heuristic's asymmetric
                              query distances, in table units (the codes' mean
                              squared quantisation error / scale debiases
                              them: more edges, exact-builder recall); 0 for
                              a graph that will be pruned */
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
/* Flash only: hand the projected rows [first, first + count) (count*dp,
 * borrowed until the next run); first must be the next node to insert.  Their
 * codes are computed here.  A build goes chunk by chunk (set, run, set, run)
 * so that no more than a chunk of projections exists at once. */
int leann_builder_set_projected(leann_builder *b, const float *proj, size_t first, size_t count);
/* Insert nodes up to (not including) upto (blocking, multi-threaded); the
 * call that reaches n ends the insertions. */
int leann_builder_run(leann_builder *b, size_t upto);
/* Thread-safe: nodes inserted so far / request cancellation. */
size_t leann_builder_progress(const leann_builder *b);
void leann_builder_cancel(leann_builder *b);
/* Distance evaluations and node expansions of the construction so far. */
void leann_builder_stats(const leann_builder *b, uint64_t *distance_evals, uint64_t *hops);
/* Turn a builder that ran to n into an index: repairs reachability and
 * compacts the graph, on the caller's thread (the builder is consumed). */
int leann_builder_finish(leann_builder *b, leann_index **out);
void leann_builder_free(leann_builder *b);

/* ---- Index ------------------------------------------------------------- */
void leann_index_free(leann_index *idx);
/* Flash + stored vectors: the float storage (n * dim, zeroed by `threads`
 * threads, <= 0: every core) is attached to the finished, packed index, so
 * that it never coexists with the build's neighbour code blocks or the
 * graph's unpacked form; the caller fills it through leann_index_vectors. */
int leann_index_alloc_vectors(leann_index *idx, int threads);
float *leann_index_vectors(leann_index *idx);
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
 * out_dist: nq*k, padded with -1 / +inf when fewer than k are returnable.
 * Tombstoned ids are never returned; allowed (a bitset of allowed_words =
 * (n + 63) / 64 words, borrowed) or NULL restricts the returnable ids.
 * Either one switches to a walk that passes through unreturnable nodes
 * (small allowed sets are scanned instead), so k results come back whenever
 * k returnable ids exist.  stats: nq entries or NULL. */
int leann_index_search(const leann_index *idx, const float *queries, size_t nq,
                       int k, int ef, int threads, const uint64_t *allowed,
                       size_t allowed_words, int64_t *out_ids,
                       float *out_dist, leann_search_stats *stats);

/* ---- Finishing an index ------------------------------------------------ */
/* LEANN pruning of level 0 (before leann_index_pack): hubs (the hub_fraction
 * of nodes with the most links) keep up to hub_degree links, every other node
 * up to degree; reverse links may fill any list up to hub_degree.  Distances
 * come from codes (codec + n codes; codes NULL: the index's own build
 * codes), not from vectors. */
int leann_index_prune(leann_index *idx, const leann_codec *codec, const uint8_t *codes,
                      double hub_fraction, int hub_degree, int degree, int threads);
/* Compact every level: byte degrees, bit-packed ids, no per-node offsets. */
int leann_index_pack(leann_index *idx);
int leann_index_is_packed(const leann_index *idx);
/* Codes the search ranks candidates by (codec with PCA; n codes); copied. */
int leann_index_set_codes(leann_index *idx, const leann_codec *codec, const uint8_t *codes);
/* The index's search codec (owned by the index) or NULL. */
const leann_codec *leann_index_codec(const leann_index *idx);
int leann_index_has_vectors(const leann_index *idx);

/* ---- Caches, tombstones, metadata -------------------------------------- */
/* Cross-query LRU of recomputed rows; bytes = 0 turns it off. */
int leann_index_set_cache(leann_index *idx, size_t bytes);
size_t leann_index_cache_entries(const leann_index *idx);
/* The count nodes with the most in-links (hub cache candidates), best first. */
int leann_index_hub_candidates(const leann_index *idx, uint32_t *out, size_t count);
/* Persistent hub cache: rows (count*dim, search space) kept as float16 and
 * saved with the index; count = 0 clears it. */
int leann_index_set_hub_cache(leann_index *idx, const uint32_t *ids, const float *rows, size_t count);
size_t leann_index_hub_count(const leann_index *idx);
/* Tombstones: never returned, still walked through.  All ids are checked
 * before any is marked. */
int leann_index_delete(leann_index *idx, const int64_t *ids, size_t count);
size_t leann_index_deleted_count(const leann_index *idx);
int leann_index_is_deleted(const leann_index *idx, uint32_t id);
/* Code error calibration for the two-level search's adaptive stop: the
 * quantiles of (exact - code distance), in squared-L2 units of the search
 * space, over near pairs of a build sample, at the probabilities
 * leann_calib_level(0 .. LEANN_CALIB_LEVELS - 1) (ascending).  count must be
 * LEANN_CALIB_LEVELS and the values finite and non-decreasing; count = 0
 * clears it.  Saved with the index. */
enum { LEANN_CALIB_LEVELS = 16 };
double leann_calib_level(int i);
int leann_index_set_calibration(leann_index *idx, const float *quantiles, int count);
/* Copies the calibration (LEANN_CALIB_LEVELS floats); returns 1, or 0 when
 * the index has none. */
int leann_index_calibration(const leann_index *idx, float *quantiles);
/* How the two-level search estimates a candidate's exact distance from its
 * code, to rank the beam and to stop (the calibration then holds the
 * quantiles of exact - estimate, in that estimate's units):
 *   LEANN_EST_CODE: the code distance (squared L2 of the query's projection
 *     to the code's centroids, plus the query's PCA residual and the
 *     codec's bias): every index saved before format version 4.
 *   LEANN_EST_NORMALISED: for an IP index whose search-space vectors all
 *     have the norm `norm` (cosine: 1; the IP metric's augmented rows: the
 *     radius), -norm * <q, r> / |r| with r the code's reconstruction (mean
 *     plus components times centroids): the reconstruction pointed where
 *     the vector points, with the length every vector has.  In the search
 *     distance's units (-<q, x>).
 * Setting an estimator clears the calibration (it described the other).
 * Needs search codes with a PCA; LEANN_EST_NORMALISED needs the IP metric
 * and a finite norm > 0. */
enum { LEANN_EST_CODE = 0, LEANN_EST_NORMALISED = 1 };
int leann_index_set_estimator(leann_index *idx, int kind, float norm);
/* The estimator kind; *norm (may be NULL) receives its norm (0 for CODE). */
int leann_index_estimator(const leann_index *idx, float *norm);
/* An opaque blob saved with the index (the Python layer keeps JSON there). */
int leann_index_set_meta(leann_index *idx, const char *data, size_t len);
size_t leann_index_meta(const leann_index *idx, const char **data);

/* ---- Two-level search with recompute ------------------------------------
 * begin -> next (repeatedly) -> result -> free.  next returns the ids whose
 * rows the caller must supply (*nneed > 0, written to need, capacity
 * batch_size); the caller passes those rows (search space, same order) to
 * the following next call.  *nneed == 0: finished.  A search whose caller
 * gives up (an embedding failed) is simply freed; the index is unaffected. */
typedef struct {
    uint64_t recomputed;  /* rows the caller embedded */
    uint64_t embed_calls; /* batches asked from the caller */
    uint64_t cache_hits;  /* rows found in the hub cache or the LRU */
    uint64_t exact;       /* exact distances computed */
    uint64_t code_evals;  /* approximate (code) distances */
    uint64_t hops;        /* nodes expanded */
    uint64_t engine_ns;   /* time spent in begin and next (the walk, the
                             ranking, the exact scores), not the caller's */
    uint64_t stopped;     /* 1: ended early by leann_search_stop */
} leann_recompute_stats;

typedef struct {
    int k;
    int ef;
    double rerank_ratio;  /* (0, 1]: share of seen nodes scored exactly */
    int batch_size;       /* most rows asked at once */
    size_t max_recompute; /* cap on exact distances per query; 0 = none */
    const uint64_t *allowed; /* bitset of returnable ids or NULL (borrowed) */
    size_t allowed_words;    /* (n + 63) / 64 */
    double confidence;    /* adaptive stop: in (0, 1), or 0 = off (score the
                             whole share).  Candidates are scored in order of
                             code distance; scoring stops once none left can
                             enter the top k unless its code error is below
                             the calibrated (1 - confidence) quantile.  Needs
                             a calibrated index (else off). */
} leann_search_params;

typedef struct leann_search leann_search;
int leann_search_begin(const leann_index *idx, const float *query, const leann_search_params *params,
                       leann_search **out);
int leann_search_next(leann_search *s, const float *rows, size_t nrows, int64_t *need, int *nneed);
/* Ends a search now (a caller's time budget ran out): the ids last asked
 * for are dropped and the result is the k best scored so far.  Returns 1
 * when it ended, 0 when fewer than k candidates are scored yet (the search
 * goes on: a result needs k) or it had already finished. */
int leann_search_stop(leann_search *s);
/* ids/dist: k entries, ascending, padded with -1 / +inf. */
int leann_search_result(leann_search *s, int64_t *ids, float *dist, leann_recompute_stats *stats);
void leann_search_free(leann_search *s);

/* ---- Live updates (update.c) --------------------------------------------- */
typedef struct {
    int ef_construction; /* beam width of an insertion's walks */
    int degree;          /* links a new node picks at level 0 (the heuristic
                            may keep fewer; later reverse links add more, up
                            to the level's list cap) */
    int upper_degree;    /* the same at the levels above */
    int threads;         /* <= 0: all cores */
    uint64_t seed;       /* levels of new nodes: node i draws the level a
                            bulk build with this seed would give it */
} leann_update_params;

/* A new index: src's nodes (same ids, tombstones kept), then m new nodes
 * (ids n .. n + m - 1) inserted into the finished graph.  proj: m rows of
 * the search codec's projection (leann_codec_info's dp floats each); their
 * codes are computed here.  An index that stores vectors also takes the new
 * rows' (m * dim, build space; NULL otherwise) and walks and selects on
 * exact distances, as its build did.  Each insertion walks the graph on code
 * distances (the new node's table against every node's code), picks its
 * links with the build's heuristic on symmetric code distances and offers
 * each picked node the reverse link, re-selecting that node's list when
 * it is full: the rules of LEANN pruning, applied as nodes arrive.  Links
 * to tombstoned nodes are never made; they are still walked.  src is
 * unchanged (searches may run on it meanwhile). */
int leann_index_add(const leann_index *src, const float *proj, const float *vectors, size_t m,
                    const leann_update_params *params, leann_index **out);

/* A new index without src's tombstoned nodes, from the codes alone: every
 * list that linked a tombstoned node is re-selected (the heuristic again)
 * from its live links and the live nodes the dead ones linked, two dead
 * hops away (further while it finds none; the nearest live codes when none
 * is within reach).  map[i] (src's size): node i's new id, or -1 if it was
 * removed; new ids keep the old order. */
int leann_index_compact(const leann_index *src, const leann_update_params *params, int64_t *map,
                        leann_index **out);

/* ---- Index file -------------------------------------------------------- */
/* Atomic save (temp file, fsync, rename); *written = bytes (may be NULL). */
int leann_index_save(const leann_index *idx, const char *path, uint64_t *written);
/* Bytes leann_index_save would write. */
int leann_index_saved_size(const leann_index *idx, uint64_t *bytes);
/* Load and validate every section; a bad file is LEANN_ERR_CORRUPT naming
 * the section. */
int leann_index_load(const char *path, leann_index **out);
/* CDEF-END */

#ifdef __cplusplus
}
#endif
#endif /* LEANN_H */

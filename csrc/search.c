/* search.c - the built index, its exact-distance search over stored
 * vectors (HNSW: greedy through the upper levels, beam search at level 0),
 * the two-level search (a walk on codes, then exact scores of the best
 * candidates, from stored vectors or the caller's rows), tombstones and
 * metadata. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int leann_index_new(leann_graph *g, uint8_t *codes, int code_bytes, float *vectors, int dim, int metric,
                    leann_index **out) {
    *out = NULL;
    leann_index *idx = leann_calloc(1, sizeof *idx, "index");
    if (!idx) return LEANN_ERR_NOMEM;
    atomic_init(&idx->vpool, NULL);
    if (g) {
        idx->g = *g;
        memset(g, 0, sizeof *g);
    }
    idx->codes = codes;
    idx->code_bytes = codes ? code_bytes : 0;
    idx->vectors = vectors;
    idx->dim = dim;
    idx->metric = metric;
    *out = idx;
    return LEANN_OK;
}

void leann_index_free(leann_index *idx) {
    if (!idx) return;
    leann_graph_free(&idx->g);
    free(idx->codes);
    leann_codec_free(idx->codec);
    free(idx->vectors);
    free(idx->tomb);
    free(idx->hub_ids);
    free(idx->hub_vecs);
    leann_lru_free(idx->lru);
    leann_vpool_free(atomic_load(&idx->vpool));
    free(idx->umeta);
    free(idx->est_pmean);
    free(idx->est_ntab);
    free(idx);
}

int leann_index_alloc_vectors(leann_index *idx, int threads) {
    if (!idx) return leann_fail(LEANN_ERR_INVALID, "index is NULL");
    if (idx->vectors) return leann_fail(LEANN_ERR_INVALID, "the index already stores vectors");
    idx->vectors = leann_calloc_big(idx->g.n, (size_t)idx->dim * sizeof(float), "stored vectors", threads);
    return idx->vectors ? LEANN_OK : LEANN_ERR_NOMEM;
}

float *leann_index_vectors(leann_index *idx) { return idx ? idx->vectors : NULL; }

size_t leann_index_size(const leann_index *idx) { return idx ? idx->g.n : 0; }
int leann_index_dim(const leann_index *idx) { return idx ? idx->dim : 0; }
int leann_index_max_level(const leann_index *idx) { return idx ? idx->g.maxlevel : -1; }
uint32_t leann_index_entry_point(const leann_index *idx) { return idx ? idx->g.entry : LEANN_NONE; }

int leann_index_level(const leann_index *idx, uint32_t node) {
    if (!idx || node >= idx->g.n) return -leann_fail(LEANN_ERR_INVALID, "node id out of range");
    return leann_graph_level(&idx->g, node);
}

int leann_index_max_degree(const leann_index *idx, int level) {
    if (!idx) return 0;
    return level == 0 ? idx->g.cap0 : idx->g.capU;
}

int leann_index_neighbors(const leann_index *idx, uint32_t node, int level, uint32_t *out, int cap) {
    if (!idx || node >= idx->g.n) return -leann_fail(LEANN_ERR_INVALID, "node id out of range");
    if (level < 0 || level > leann_graph_level(&idx->g, node))
        return -leann_fail(LEANN_ERR_INVALID, "node %u has no level %d", node, level);
    int deg;
    uint32_t buf[256];
    const uint32_t *ids = leann_graph_nbrs(&idx->g, node, level, buf, &deg);
    for (int i = 0; i < deg && i < cap; i++) out[i] = ids[i];
    return deg;
}

size_t leann_index_memory(const leann_index *idx) {
    if (!idx) return 0;
    const leann_graph *g = &idx->g;
    size_t bytes = 0;
    if (g->packed) {
        for (int l = 0; l <= g->maxlevel; l++) {
            const leann_packed *p = &g->packed[l];
            bytes += p->count * (1 + (p->nodes ? 4 : 0)) + (p->count / 64 + 1) * 8 + p->nwords * 8;
        }
    } else {
        bytes += g->n * (sizeof(uint8_t) + sizeof(uint32_t)); /* levels, ubase */
        if (g->off0) bytes += (g->n + 1) * sizeof(uint64_t) + (size_t)g->off0[g->n] * sizeof(uint32_t);
        bytes += g->nslots * ((size_t)g->capU * sizeof(uint32_t) + sizeof(uint16_t));
    }
    bytes += g->n * (size_t)idx->code_bytes;
    if (idx->tomb) bytes += (g->n + 63) / 64 * 8;
    bytes += idx->nhub * (4 + (size_t)idx->dim * 2);
    if (idx->vectors) bytes += g->n * (size_t)idx->dim * sizeof(float);
    return bytes;
}

/* ---- visited sets: a pool per index (hnswlib's VisitedListPool), so that
 * no search allocates or clears an n-entry set.  A set is the graph walk's
 * bitset, reset through the words the last walk touched. ---- */
typedef struct leann_vbits {
    leann_visited vis;
    struct leann_vbits *next; /* free list */
} leann_vbits;

struct leann_vpool {
    pthread_mutex_t mu;
    leann_vbits *free_bits;
};

/* The index's pool, created on first use (racing creators: one wins). */
static leann_vpool *vpool_of(const leann_index *cidx) {
    leann_index *idx = (leann_index *)cidx; /* the pool is the only state a search changes */
    leann_vpool *p = atomic_load_explicit(&idx->vpool, memory_order_acquire);
    if (p) return p;
    leann_vpool *mine = leann_calloc(1, sizeof *mine, "visited pool");
    if (!mine) return NULL;
    if (pthread_mutex_init(&mine->mu, NULL) != 0) {
        free(mine);
        leann_fail(LEANN_ERR_NOMEM, "cannot create the visited pool's lock");
        return NULL;
    }
    leann_vpool *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&idx->vpool, &none, mine, memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    pthread_mutex_destroy(&mine->mu);
    free(mine);
    return none; /* another thread's */
}

static leann_vbits *vbits_get(const leann_index *idx) {
    leann_vpool *p = vpool_of(idx);
    if (!p) return NULL;
    pthread_mutex_lock(&p->mu);
    leann_vbits *v = p->free_bits;
    if (v) p->free_bits = v->next;
    pthread_mutex_unlock(&p->mu);
    if (v) return v; /* a walk's start clears what the last one touched */
    v = leann_calloc(1, sizeof *v, "visited set");
    if (v && leann_visited_init(&v->vis, idx->g.n) != LEANN_OK) {
        free(v);
        v = NULL;
    }
    return v;
}

static void vbits_put(const leann_index *idx, leann_vbits *v) {
    if (!v) return;
    leann_vpool *p = atomic_load_explicit(&((leann_index *)idx)->vpool, memory_order_acquire);
    pthread_mutex_lock(&p->mu);
    v->next = p->free_bits;
    p->free_bits = v;
    pthread_mutex_unlock(&p->mu);
}

void leann_vpool_free(leann_vpool *p) {
    if (!p) return;
    for (leann_vbits *v = p->free_bits; v;) {
        leann_vbits *next = v->next;
        leann_visited_free(&v->vis);
        free(v);
        v = next;
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

typedef struct {
    const leann_index *idx;
    const float *queries;
    size_t nq;
    int k, ef;
    int64_t *ids;
    float *dist;
    leann_search_stats *stats;
    const uint64_t *allowed; /* returnable ids or NULL */
    atomic_size_t next;
} search_job;


static int search_task(void *p, int tid, int nt) {
    (void)tid;
    (void)nt;
    search_job *job = p;
    const leann_index *idx = job->idx;
    const leann_graph *g = &idx->g;
    int ef = job->ef > job->k ? job->ef : job->k;
    leann_qctx qc;
    memset(&qc, 0, sizeof qc);
    leann_vbits *vb = vbits_get(idx);
    int st = vb ? LEANN_OK : LEANN_ERR_NOMEM;
    leann_beam beam = {0};
    if (st == LEANN_OK) st = leann_beam_init(&beam, (size_t)ef + 1);
    if (leann_qctx_alloc(&qc, g->cap0 + 16, 0) != LEANN_OK) st = LEANN_ERR_NOMEM;
    qc.src = LEANN_SRC_VECTORS;
    qc.vectors = idx->vectors;
    qc.dim = idx->dim;
    qc.dist = leann_get_dist(idx->metric, LEANN_KERNEL_AUTO);
    while (st == LEANN_OK) {
        size_t qi = atomic_fetch_add(&job->next, 1);
        if (qi >= job->nq) break;
        qc.q = job->queries + qi * (size_t)idx->dim;
        qc.evals = qc.hops = 0;
        uint32_t ep = g->entry;
        float epd = leann_qdist(&qc, ep);
        qc.evals++;
        for (int l = g->maxlevel; l > 0; l--) leann_greedy(g, &qc, l, &ep, &epd);
        int len = leann_search_layer(g, &qc, 0, (leann_cand){epd, ep}, ef, &vb->vis, beam);
        int64_t *oid = job->ids + qi * (size_t)job->k;
        float *od = job->dist + qi * (size_t)job->k;
        for (int i = 0; i < job->k; i++) {
            oid[i] = i < len ? (int64_t)leann_beam_id(beam.keys[i]) : -1;
            od[i] = i < len ? leann_beam_dist(beam.keys[i]) : INFINITY;
        }
        if (job->stats) {
            job->stats[qi].distance_evals = qc.evals;
            job->stats[qi].hops = qc.hops;
        }
    }
    vbits_put(idx, vb);
    leann_beam_free(&beam);
    leann_qctx_release(&qc);
    return st;
}

/* ======================================================================
 * Two-level search: walk on codes, recompute only the best share
 *
 * Level one is an HNSW beam search that uses nothing but code distances:
 * every node the walk sees gets an approximate distance from the query's
 * float table over its code, plus the query's PCA residual and the codec's
 * calibrated bias, so approximate and exact distances share a scale.  The
 * upper levels are descended greedily, level 0 keeps a beam of the ef best
 * returnable nodes.  Code distances cost nanoseconds, a recompute costs a
 * model forward pass (tens of milliseconds), so the walk is as wide as ef
 * asks and recomputes nothing.
 *
 * Level two scores exactly only the best share of the beam: the first
 * max(k, ceil(rerank_ratio * ef)) nodes by code distance (at most
 * max_recompute), best first, in batches of at most batch_size.  Their rows
 * come from stored vectors, the hub cache, the LRU, or the caller (the
 * search pauses and returns the ids it needs).  The k best exact distances
 * are returned.  How many passages a query recomputes is therefore known
 * before the first one is asked for, and it does not grow with ef.
 *
 * Level one's walk is graph.c's (leann_walk), with the code distances
 * as its float-table source.  Filters and tombstones act inside it (its
 * returnable predicate): a node that may not be returned never counts
 * toward the beam's ef and is never scored exactly, but it is still
 * expanded while it is closer than the ef-th returnable node, so the walk
 * passes through it.  When the allowed set is small enough that scanning
 * its codes costs no more than the walk would (|A|^2 <= ef * mean degree * n,
 * or |A| <= ef), the beam is filled by scanning every allowed code instead.
 * If a walk ends with fewer than k returnable nodes while at least k exist
 * (a filter that cuts the graph), the allowed codes are scanned as well, so
 * k results come back whenever k allowed nodes exist.
 * ====================================================================== */

enum { SEARCH_RUNNING = 0, SEARCH_WAITING = 1, SEARCH_DONE = 2 };

/* The adaptive stop is first tested after max(2k, ADAPTIVE_MIN_FIRST)
 * exact scores.  The bound compares code distances with the k-th best exact
 * one, which is noisy while few are known: with 2k alone, small k stopped
 * too early (devcorpus, k = 5: recall@5 0.913 / 0.903 at 300 passages,
 * 0.938 / 0.917 at 50k; with 20: 0.977 / 0.966 and 0.961 / 0.938, about
 * five more passages per query; k >= 10 is unchanged). */
#define ADAPTIVE_MIN_FIRST 20

/* The adaptive stop of an index with the normalised estimate
 * (LEANN_EST_NORMALISED) models each query's own error: the first k +
 * NORMALISED_FIRST_EXTRA candidates are scored, then their exact - estimate
 * errors (mean, deviation) say which candidates could still enter the top
 * k; the second round trip asks for at most as many as the first, each
 * later one for twice as many as the one before (within batch_size), and
 * without max_recompute a query scores at most k * (1 + 1 / (1 -
 * confidence)) candidates (the tail bound: 60 at k = 10 and confidence
 * 0.8, 210 at 0.95, where the share rerank_ratio * ef binds first).  Devcorpus (summaries / short queries, 300 a set,
 * confidence 0.8, 40-byte codes): first k + 2 gives recall@10 0.916 /
 * 0.895 at 21.4 / 21.9 recomputes (p95 27 / 29, embed calls p95 3); first
 * k 0.912 / 0.898 at 21.1 / 21.6 with more calls; the build's global
 * error quantile instead of the query's own errors (and rounds of 32)
 * 0.930 / 0.883 at 24.6 / 23.4 with p95 44.  The map: docs/internals.md. */
#define NORMALISED_FIRST_EXTRA 2

struct leann_search {
    const leann_index *idx;
    int k, ef, batch, state, walked;
    int scanned;             /* 1: the beam was filled by a scan, not a walk */
    size_t max_exact;
    double ratio;
    leann_returnable ret;    /* tombstones and the allowed bitset (borrowed) */
    size_t nallowed;         /* returnable nodes (allowed and not deleted) */
    float *q, *table, *row;
    leann_qctx qc;           /* the walk's distances: codes through the float
                                table, or (exact) the stored vectors */
    leann_vbits *vb;         /* visited set, from the index's pool */
    leann_walk w;            /* level 0; owns its beam */
    leann_cand *order;       /* the walk's returnable best, ascending: the
                                order level two scores them in (capacity ef) */
    size_t norder;
    size_t target, pos; /* entries of order to score exactly at most; next one */
    leann_cand *ex;     /* exact distances so far, capacity target */
    size_t nex;
    /* adaptive stop: scoring ends once no candidate left has a code
     * distance below (k-th best exact squared L2) - delta */
    int adaptive;
    float delta;       /* the calibrated (1 - confidence) quantile of exact - code */
    /* LEANN_EST_NORMALISED: the stop's error model, from this query's
     * scored candidates (see score_end) */
    float z;           /* deviations below the mean error a candidate may lie */
    double esum, esq;  /* sum of (exact - estimate) and of its square */
    size_t nerr;
    float *asked_est;  /* the estimates of the ids asked (batch) */
    size_t round;      /* ids asked at most per round trip after the first */
    size_t tail;       /* without max_recompute: exact scores at most */
    size_t first;      /* scored before the first stop test */
    float *best;       /* the k best exact squared L2 so far, ascending */
    int nbest;
    leann_dist_fn l2;  /* squared L2 (the codes' scale) when the metric is IP */
    int64_t *asked;
    size_t nasked;
    leann_dist_fn dist;
    leann_recompute_stats st;
    /* LEANN_EST_NORMALISED: the query's table of <q's projection + pmean,
     * centroid> (msub * ksub) and <q, mean>; NULL with the code estimate */
    float *atab;
    float qm;
};

/* The walk's returnable nodes, or NULL when every node is. */
static inline const leann_returnable *returnable(const leann_search *s) {
    return s->ret.allowed || s->ret.tomb ? &s->ret : NULL;
}

/* Fill the beam from every returnable node, scored as the walk would. */
static int scan_allowed(leann_search *s) {
    const leann_index *idx = s->idx;
    size_t n = idx->g.n, words = (n + 63) / 64;
    leann_walk_init(&s->w, 0, s->ef, 0, &s->vb->vis, s->w.beam, returnable(s));
    for (size_t w = 0; w < words; w++) {
        uint64_t x = (s->ret.allowed ? s->ret.allowed[w] : ~0ull) & (idx->tomb ? ~idx->tomb[w] : ~0ull);
        while (x) {
            uint32_t id = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
            x &= x - 1;
            if (id >= n) break;
            s->qc.evals++;
            leann_walk_offer(&s->w, leann_qdist(&s->qc, id), id);
            if (s->w.err) return s->w.err;
        }
    }
    s->scanned = 1;
    return LEANN_OK;
}

/* The standard normal quantile at p in (0, 1), by bisection on erfc. */
static double probit(double p) {
    double lo = -8.0, hi = 8.0;
    for (int i = 0; i < 60; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* LEANN_EST_NORMALISED: the estimate of one code's exact distance,
 * -norm * <q, r> / |r| (see leann_index_set_estimator). */
static inline float normalised_estimate(const leann_search *s, const uint8_t *code) {
    const leann_index *idx = s->idx;
    const leann_codec *c = idx->codec;
    const float *a = s->atab, *nt = idx->est_ntab;
    float ip = s->qm, n2 = idx->est_mm;
    if (c->ksub == 256) {
        for (int j = 0; j < c->msub; j++) {
            ip += a[j * 256 + code[j]];
            n2 += nt[j * 256 + code[j]];
        }
    } else {
        for (int b = 0; b < c->code_bytes; b++) {
            int lo = (2 * b) * 16 + (code[b] & 15), hi = (2 * b + 1) * 16 + (code[b] >> 4);
            ip += a[lo] + a[hi];
            n2 += nt[lo] + nt[hi];
        }
    }
    return -idx->est_norm * ip / sqrtf(n2 > 1e-12f ? n2 : 1e-12f);
}

/* The order level two scores in: with the normalised estimator, the
 * walk's candidates re-ranked by it (the walk itself runs on code
 * distances, which steer it as well at a third of the lookups). */
static void rank_candidates(leann_search *s) {
    if (!s->atab) return;
    const leann_index *idx = s->idx;
    for (size_t i = 0; i < s->norder; i++)
        s->order[i].d = normalised_estimate(s, idx->codes + (size_t)s->order[i].id * idx->code_bytes);
    leann_cand_sort(s->order, s->norder);
}

/* Level one, then the order in which level two scores the beam. */
static int run_walk(leann_search *s) {
    if (!s->scanned) {
        while (leann_walk_step(&s->w, &s->idx->g, &s->qc)) {
        }
        if (s->w.err) return s->w.err;
    }
    s->norder = leann_walk_results(&s->w, s->order, (size_t)s->ef);
    if (s->norder < (size_t)s->k && s->nallowed > s->norder) { /* a filter that cuts the graph */
        int st = scan_allowed(s);
        if (st != LEANN_OK) return st;
        s->norder = leann_walk_results(&s->w, s->order, (size_t)s->ef);
    }
    rank_candidates(s);
    size_t t = (size_t)ceil(s->ratio * (double)s->ef);
    if (t < (size_t)s->k) t = (size_t)s->k;
    if (s->max_exact && t > s->max_exact) t = s->max_exact;
    if (!s->max_exact && s->asked_est && t > s->tail) t = s->tail; /* the tail bound */
    s->target = t < s->norder ? t : s->norder;
    s->pos = 0;
    s->walked = 1;
    return LEANN_OK;
}

static int score_row(leann_search *s, uint32_t id, float est, const float *row) {
    float d = s->dist(s->q, row, s->idx->dim);
    s->ex[s->nex++] = (leann_cand){d, id};
    if (s->asked_est) {
        s->esum += (double)d - est;
        s->esq += ((double)d - est) * ((double)d - est);
        s->nerr++;
    }
    if (s->adaptive) { /* keep the k best squared L2 distances, ascending */
        float l2 = s->l2 ? s->l2(s->q, row, s->idx->dim) : d;
        int i = s->nbest < s->k ? s->nbest++ : s->k;
        if (i == s->k && !(l2 < s->best[s->k - 1])) return LEANN_OK;
        if (i == s->k) i = s->k - 1;
        while (i > 0 && s->best[i - 1] > l2) {
            s->best[i] = s->best[i - 1];
            i--;
        }
        s->best[i] = l2;
    }
    return LEANN_OK;
}

/* Where scoring stops for now: the share's end, or with the adaptive stop,
 * the end of the beam's prefix whose code distances could still beat the
 * k-th best exact distance by the calibrated error (the beam is sorted by
 * code distance, so the candidates that could are a prefix). */
static size_t score_end(const leann_search *s) {
    if (!s->adaptive) return s->target;
    if (s->pos < s->first || s->nbest < s->k) return s->first < s->target ? s->first : s->target;
    if (s->idx->est_kind == LEANN_EST_NORMALISED) {
        /* this query's own estimate error, from the candidates scored so
         * far (exact - estimate: mean mu, deviation sd): a candidate may
         * still beat the k-th best exact distance while its estimate + mu
         * - z sd lies below it.  The beam is sorted by estimate, so those
         * candidates are a prefix. */
        double n = (double)s->nerr, mu = s->esum / n, var = n > 1 ? (s->esq - n * mu * mu) / (n - 1) : 0.0;
        float bound = s->best[s->k - 1] - (float)mu + s->z * (float)sqrt(var > 0 ? var : 0.0);
        size_t j = s->pos;
        while (j < s->target && s->order[j].d < bound) j++;
        return j;
    }
    float bound = s->best[s->k - 1] - s->delta;
    size_t j = s->pos;
    while (j < s->target && s->order[j].d < bound) j++;
    return j;
}

/* Score the next batch of the beam: rows at hand now, the rest go to `need`.
 * With the adaptive stop a batch is the next batch_size positions below the
 * bound, whether their rows are cached or not, so that where the search
 * stops (and what it returns) does not depend on what the caches hold. */
static int next_batch(leann_search *s, int64_t *need, int *nneed) {
    const leann_index *idx = s->idx;
    int st = LEANN_OK, m = 0;
    size_t end = score_end(s);
    if (s->adaptive && end > s->pos + (size_t)s->batch) end = s->pos + (size_t)s->batch;
    if (s->asked_est && s->pos >= s->first && end > s->pos + s->round) end = s->pos + s->round;
    while (s->pos < end && m < s->batch && st == LEANN_OK) {
        float est = s->order[s->pos].d;
        uint32_t id = s->order[s->pos++].id;
        if (idx->vectors) {
            st = score_row(s, id, est, idx->vectors + (size_t)id * idx->dim);
        } else if (idx->nhub && leann_hub_get(idx, id, s->row)) {
            s->st.cache_hits++;
            st = score_row(s, id, est, s->row);
        } else if (idx->lru && leann_lru_get(idx->lru, id, s->row)) {
            s->st.cache_hits++;
            st = score_row(s, id, est, s->row);
        } else {
            need[m] = id;
            if (s->asked_est) s->asked_est[m] = est;
            s->asked[m++] = id;
        }
    }
    s->nasked = (size_t)m;
    *nneed = m;
    if (m) s->state = SEARCH_WAITING;
    return st;
}

void leann_search_free(leann_search *s) {
    if (!s) return;
    free(s->q);
    free(s->table);
    free(s->row);
    vbits_put(s->idx, s->vb);
    leann_qctx_release(&s->qc);
    leann_beam_free(&s->w.beam);
    free(s->order);
    free(s->ex);
    free(s->best);
    free(s->asked);
    free(s->asked_est);
    free(s->atab);
    free(s);
}

static size_t popcount_allowed(const leann_index *idx, const uint64_t *allowed) {
    size_t words = (idx->g.n + 63) / 64, c = 0;
    for (size_t w = 0; w < words; w++) {
        uint64_t x = allowed ? allowed[w] : ~0ull;
        if (idx->tomb) x &= ~idx->tomb[w];
        if (w == words - 1 && (idx->g.n & 63)) x &= (1ull << (idx->g.n & 63)) - 1;
        c += (size_t)__builtin_popcountll(x);
    }
    return c;
}

/* Mean level-0 degree (packed or not). */
static double mean_degree(const leann_graph *g) {
    if (g->packed) {
        double width = g->packed[0].width ? (double)g->packed[0].width : 1.0;
        return (double)g->packed[0].nwords * 64.0 / width / (double)g->n;
    }
    if (g->off0) return (double)g->off0[g->n] / (double)g->n;
    return (double)g->cap0;
}

/* The calibrated quantile of (exact - code distance) at probability p, by
 * linear interpolation in log p between the stored levels (clamped). */
static float calib_quantile(const leann_index *idx, double p) {
    const float *q = idx->calib;
    double lp = log(p), lo = log(leann_calib_level(0)), hi = log(leann_calib_level(LEANN_CALIB_LEVELS - 1));
    if (lp <= lo) return q[0];
    if (lp >= hi) return q[LEANN_CALIB_LEVELS - 1];
    double x = (lp - lo) / (hi - lo) * (LEANN_CALIB_LEVELS - 1);
    int i = (int)x;
    if (i >= LEANN_CALIB_LEVELS - 1) i = LEANN_CALIB_LEVELS - 2;
    double f = x - i;
    return (float)(q[i] + f * (q[i + 1] - q[i]));
}

static int check_params(const leann_index *idx, const leann_search_params *p) {
    size_t n = idx->g.n;
    if (p->k <= 0 || (size_t)p->k > n) return leann_fail(LEANN_ERR_INVALID, "k must be in [1, %zu], got %d", n, p->k);
    if (p->ef < 1 || p->ef > LEANN_MAX_EF)
        return leann_fail(LEANN_ERR_INVALID, "ef must be in [1, %d], got %d", LEANN_MAX_EF, p->ef);
    if (!(p->rerank_ratio > 0.0 && p->rerank_ratio <= 1.0))
        return leann_fail(LEANN_ERR_INVALID, "rerank_ratio must be in (0, 1], got %g", p->rerank_ratio);
    if (p->batch_size < 1 || p->batch_size > LEANN_MAX_BATCH)
        return leann_fail(LEANN_ERR_INVALID, "batch_size must be in [1, %d], got %d", LEANN_MAX_BATCH, p->batch_size);
    if (p->max_recompute != 0 && p->max_recompute < (size_t)p->k)
        return leann_fail(LEANN_ERR_INVALID, "max_recompute (%zu) must be 0 (no limit) or at least k (%d)",
                          p->max_recompute, p->k);
    if (p->allowed && p->allowed_words != (n + 63) / 64)
        return leann_fail(LEANN_ERR_INVALID, "the allowed bitset has %zu words, the index needs %zu",
                          p->allowed_words, (n + 63) / 64);
    if (!(p->confidence == 0.0 || (p->confidence > 0.0 && p->confidence < 1.0)))
        return leann_fail(LEANN_ERR_INVALID, "confidence must be in (0, 1), or 0 for none, got %g", p->confidence);
    return LEANN_OK;
}

/* A search positioned at level 0: the walk's entry visited (or, for a small
 * allowed set, the beam filled by a scan).  exact_walk: distances from the
 * stored vectors instead of codes. */
static int search_new(const leann_index *idx, const float *query, const leann_search_params *p, int exact_walk,
                      leann_search **out) {
    *out = NULL;
    int st = check_params(idx, p);
    if (st != LEANN_OK) return st;
    for (int i = 0; i < idx->dim; i++)
        if (!isfinite(query[i])) return leann_fail(LEANN_ERR_INVALID, "the query has a non-finite value");
    size_t n = idx->g.n;
    leann_search *s = leann_calloc(1, sizeof *s, "search");
    if (!s) return LEANN_ERR_NOMEM;
    s->idx = idx;
    s->k = p->k;
    s->ef = p->ef > p->k ? p->ef : p->k;
    s->batch = p->batch_size;
    s->ratio = p->rerank_ratio;
    s->max_exact = p->max_recompute;
    s->ret = (leann_returnable){p->allowed, idx->ntomb ? idx->tomb : NULL};
    s->dist = leann_get_dist(idx->metric, LEANN_KERNEL_AUTO);
    s->adaptive = !exact_walk && p->confidence > 0.0 && idx->has_calib;
    if (s->adaptive) {
        s->delta = calib_quantile(idx, 1.0 - p->confidence);
        s->first = 2 * (size_t)p->k > ADAPTIVE_MIN_FIRST ? 2 * (size_t)p->k : ADAPTIVE_MIN_FIRST;
        s->l2 = idx->metric == LEANN_METRIC_L2 ? NULL : leann_get_dist(LEANN_METRIC_L2, LEANN_KERNEL_AUTO);
        if (idx->est_kind == LEANN_EST_NORMALISED) { /* estimates in the search distance's units */
            s->l2 = NULL;
            s->first = (size_t)p->k + NORMALISED_FIRST_EXTRA;
            s->z = (float)probit(p->confidence);
            s->round = s->first;
            s->tail = (size_t)ceil((double)p->k * (1.0 + 1.0 / (1.0 - p->confidence)));
            s->asked_est = leann_malloc((size_t)s->batch * sizeof(float), "search batch");
        }
        s->best = leann_malloc((size_t)p->k * sizeof(float), "search bound");
    }
    if (!exact_walk && idx->est_kind == LEANN_EST_NORMALISED)
        s->atab = leann_malloc((size_t)idx->codec->msub * idx->codec->ksub * sizeof(float), "search table");
    const leann_codec *c = idx->codec;
    s->q = leann_malloc((size_t)idx->dim * sizeof(float), "search query");
    s->row = leann_malloc((size_t)idx->dim * sizeof(float), "search row");
    if (!exact_walk)
        s->table = leann_malloc(((size_t)c->msub * c->ksub + (size_t)c->dp) * sizeof(float), "search table");
    s->vb = vbits_get(idx);
    s->order = leann_malloc((size_t)s->ef * sizeof(leann_cand), "search beam");
    s->ex = leann_malloc((size_t)s->ef * sizeof(leann_cand), "search results");
    s->asked = leann_malloc((size_t)s->batch * sizeof(int64_t), "search batch");
    int cap = idx->g.cap0 > idx->g.capU ? idx->g.cap0 : idx->g.capU;
    leann_beam beam = {0};
    if (!s->q || !s->row || (!exact_walk && !s->table) || (!exact_walk && idx->est_kind && !s->atab) || !s->vb || !s->order || !s->ex || !s->asked ||
        (s->adaptive && !s->best) || (s->adaptive && idx->est_kind && !s->asked_est) || leann_beam_init(&beam, (size_t)s->ef + 1) != LEANN_OK ||
        leann_qctx_alloc(&s->qc, cap + 16, 0) != LEANN_OK) {
        s->w.beam = beam;
        leann_search_free(s);
        return LEANN_ERR_NOMEM;
    }
    s->w.beam = beam;
    memcpy(s->q, query, (size_t)idx->dim * sizeof(float));
    if (exact_walk) {
        s->qc.src = LEANN_SRC_VECTORS;
        s->qc.q = s->q;
        s->qc.vectors = idx->vectors;
        s->qc.dim = idx->dim;
        s->qc.dist = s->dist;
    } else {
        float *proj = s->table + (size_t)c->msub * c->ksub, rq;
        leann_codec_project1(c, query, proj, &rq);
        leann_codec_adt_float(c, proj, s->table);
        s->qc.src = LEANN_SRC_CODES_FLOAT;
        s->qc.codes = idx->codes;
        s->qc.cb = idx->code_bytes;
        s->qc.ftable = s->table;
        s->qc.fk = c->ksub;
        s->qc.foff = rq + c->bias; /* code distances on the exact distances' scale */
        if (s->atab) { /* the normalised estimate's query table */
            double qm = 0.0;
            for (int k = 0; k < idx->dim; k++) qm += (double)query[k] * c->mean[k];
            s->qm = (float)qm;
            for (int j = 0; j < c->msub; j++)
                for (int a = 0; a < c->ksub; a++) {
                    const float *cent = c->centroids + ((size_t)j * c->ksub + a) * c->dsub;
                    float v = 0.0f;
                    for (int t = 0; t < c->dsub; t++) v += (proj[j * c->dsub + t] + idx->est_pmean[j * c->dsub + t]) * cent[t];
                    s->atab[(size_t)j * c->ksub + a] = v;
                }
        }
    }
    const leann_graph *g = &idx->g;
    s->nallowed = returnable(s) ? popcount_allowed(idx, p->allowed) : n;
    int small = 0;
    if (s->nallowed < n) {
        double cnt = (double)s->nallowed;
        small = cnt * cnt <= (double)s->ef * mean_degree(g) * (double)n || s->nallowed <= (size_t)s->ef;
    }
    if (small) {
        st = scan_allowed(s); /* small allowed set: no walk */
    } else {
        /* upper levels: greedy, nothing recomputed */
        uint32_t cur = g->entry;
        float curd = leann_qdist(&s->qc, cur);
        s->qc.evals++;
        for (int l = g->maxlevel; l > 0; l--) leann_greedy(g, &s->qc, l, &cur, &curd);
        leann_walk_start(&s->w, g, &s->qc, 0, (leann_cand){curd, cur}, s->ef, 2, &s->vb->vis, s->w.beam,
                         returnable(s));
        st = s->w.err;
    }
    if (st != LEANN_OK) {
        leann_search_free(s);
        return st;
    }
    *out = s;
    return LEANN_OK;
}

int leann_search_begin(const leann_index *idx, const float *query, const leann_search_params *p,
                       leann_search **out) {
    if (!out) return leann_fail(LEANN_ERR_INVALID, "leann_search_begin: NULL argument");
    *out = NULL;
    if (!idx || !query || !p) return leann_fail(LEANN_ERR_INVALID, "leann_search_begin: NULL argument");
    if (!idx->codes || !idx->codec || !idx->codec->dim)
        return leann_fail(LEANN_ERR_INVALID, "this index has no search codes");
    if (!idx->g.packed) return leann_fail(LEANN_ERR_INVALID, "the index is not finished (pack it first)");
    uint64_t t0 = now_ns();
    int st = search_new(idx, query, p, 0, out);
    if (st == LEANN_OK) (*out)->st.engine_ns += now_ns() - t0;
    return st;
}

static int search_next(leann_search *s, const float *rows, size_t nrows, int64_t *need, int *nneed);

int leann_search_next(leann_search *s, const float *rows, size_t nrows, int64_t *need, int *nneed) {
    if (!s || !need || !nneed) return leann_fail(LEANN_ERR_INVALID, "leann_search_next: NULL argument");
    uint64_t t0 = now_ns();
    int st = search_next(s, rows, nrows, need, nneed);
    s->st.engine_ns += now_ns() - t0;
    return st;
}

int leann_search_stop(leann_search *s) {
    if (!s || s->state == SEARCH_DONE || s->nex < (size_t)s->k) return 0;
    s->nasked = 0;
    s->state = SEARCH_DONE;
    s->st.stopped = 1;
    return 1;
}

static int search_next(leann_search *s, const float *rows, size_t nrows, int64_t *need, int *nneed) {
    *nneed = 0;
    if (s->state == SEARCH_DONE) return LEANN_OK;
    const leann_index *idx = s->idx;
    int st = LEANN_OK;
    if (s->state == SEARCH_WAITING) {
        if (!rows || nrows != s->nasked)
            return leann_fail(LEANN_ERR_INVALID, "expected %zu embedding rows for the ids asked, got %zu",
                              s->nasked, rows ? nrows : 0);
        size_t total = s->nasked * (size_t)idx->dim;
        for (size_t i = 0; i < total; i++)
            if (!isfinite(rows[i]))
                return leann_fail(LEANN_ERR_INVALID, "the embedding of id %lld has a non-finite value",
                                  (long long)s->asked[i / (size_t)idx->dim]);
        for (size_t i = 0; i < s->nasked && st == LEANN_OK; i++) {
            const float *r = rows + i * (size_t)idx->dim;
            st = score_row(s, (uint32_t)s->asked[i], s->asked_est ? s->asked_est[i] : 0.0f, r);
            leann_lru_put(idx->lru, (uint32_t)s->asked[i], r);
        }
        if (st != LEANN_OK) return st;
        s->st.recomputed += s->nasked;
        s->st.embed_calls++;
        if (s->asked_est && s->pos > s->first) s->round *= 2; /* a query still in doubt after a round */
        s->nasked = 0;
        s->state = SEARCH_RUNNING;
    } else if (rows && nrows) {
        return leann_fail(LEANN_ERR_INVALID, "rows were handed in, but the search asked for none");
    }
    if (!s->walked && (st = run_walk(s)) != LEANN_OK) return st;
    while (s->pos < score_end(s)) {
        st = next_batch(s, need, nneed);
        if (st != LEANN_OK || *nneed) return st;
    }
    s->state = SEARCH_DONE;
    return LEANN_OK;
}

int leann_search_result(leann_search *s, int64_t *ids, float *dist, leann_recompute_stats *stats) {
    if (!s || !ids || !dist) return leann_fail(LEANN_ERR_INVALID, "leann_search_result: NULL argument");
    if (s->state != SEARCH_DONE) return leann_fail(LEANN_ERR_INVALID, "the search has not finished");
    leann_cand_sort(s->ex, s->nex);
    for (int i = 0; i < s->k; i++) {
        ids[i] = (size_t)i < s->nex ? (int64_t)s->ex[i].id : -1;
        dist[i] = (size_t)i < s->nex ? s->ex[i].d : INFINITY;
    }
    if (stats) {
        *stats = s->st;
        stats->code_evals = s->qc.evals;
        stats->hops = s->qc.hops;
        stats->exact = s->nex;
    }
    return LEANN_OK;
}

/* Filtered or tombstoned exact search: the two-level search's walk with
 * exact distances from the stored vectors (search_new, exact_walk). */
static int filtered_task(void *p, int tid, int nt) {
    (void)tid;
    (void)nt;
    search_job *job = p;
    for (;;) {
        size_t qi = atomic_fetch_add(&job->next, 1);
        if (qi >= job->nq) return LEANN_OK;
        leann_search_params sp;
        memset(&sp, 0, sizeof sp);
        sp.k = job->k;
        sp.ef = job->ef;
        sp.rerank_ratio = 1.0;
        sp.batch_size = 1;
        sp.allowed = job->allowed;
        sp.allowed_words = job->allowed ? (job->idx->g.n + 63) / 64 : 0;
        leann_search *s;
        int st = search_new(job->idx, job->queries + qi * (size_t)job->idx->dim, &sp, 1, &s);
        if (st == LEANN_OK) st = run_walk(s);
        if (st != LEANN_OK) {
            leann_search_free(s);
            return st;
        }
        int64_t *oid = job->ids + qi * (size_t)job->k;
        float *od = job->dist + qi * (size_t)job->k;
        for (int i = 0; i < job->k; i++) {
            oid[i] = (size_t)i < s->norder ? (int64_t)s->order[i].id : -1;
            od[i] = (size_t)i < s->norder ? s->order[i].d : INFINITY;
        }
        if (job->stats) {
            job->stats[qi].distance_evals = s->qc.evals;
            job->stats[qi].hops = s->qc.hops;
        }
        leann_search_free(s);
    }
}

int leann_index_search(const leann_index *idx, const float *queries, size_t nq, int k, int ef, int threads,
                       const uint64_t *allowed, size_t allowed_words, int64_t *out_ids, float *out_dist,
                       leann_search_stats *stats) {
    if (!idx || (!queries && nq) || (!out_ids && nq) || (!out_dist && nq))
        return leann_fail(LEANN_ERR_INVALID, "leann_index_search: NULL argument");
    if (!idx->vectors)
        return leann_fail(LEANN_ERR_INVALID, "this index keeps no vectors: exact search needs them");
    if (k <= 0 || (size_t)k > idx->g.n)
        return leann_fail(LEANN_ERR_INVALID, "k must be in [1, %zu], got %d", idx->g.n, k);
    if (ef < 1 || ef > LEANN_MAX_EF)
        return leann_fail(LEANN_ERR_INVALID, "ef must be in [1, %d], got %d", LEANN_MAX_EF, ef);
    if (allowed && allowed_words != (idx->g.n + 63) / 64)
        return leann_fail(LEANN_ERR_INVALID, "the allowed bitset has %zu words, the index needs %zu",
                          allowed_words, (idx->g.n + 63) / 64);
    size_t total;
    if (!leann_mul_ok(nq, (size_t)idx->dim, &total)) return LEANN_ERR_INVALID;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(queries[i]))
            return leann_fail(LEANN_ERR_INVALID, "query %zu has a non-finite value", i / (size_t)idx->dim);
    search_job job = {idx, queries, nq, k, ef, out_ids, out_dist, stats, allowed, 0};
    atomic_init(&job.next, 0);
    int nt = leann_resolve_threads(threads);
    if ((size_t)nt > nq) nt = nq ? (int)nq : 1;
    /* the index picks its path: the plain beam search only when every node
     * may be returned */
    int filtered = allowed != NULL || idx->ntomb > 0;
    return leann_parallel(nt, filtered ? filtered_task : search_task, &job);
}


/* ---- code error calibration ---- */
double leann_calib_level(int i) {
    if (i < 0) i = 0;
    if (i > LEANN_CALIB_LEVELS - 1) i = LEANN_CALIB_LEVELS - 1;
    /* 0.002 .. 0.5, evenly in log p: confidences from 0.5 to 0.998 */
    return 0.002 * pow(250.0, (double)i / (LEANN_CALIB_LEVELS - 1));
}

int leann_index_set_calibration(leann_index *idx, const float *q, int count) {
    if (!idx || (!q && count)) return leann_fail(LEANN_ERR_INVALID, "leann_index_set_calibration: NULL argument");
    if (count == 0) {
        idx->has_calib = 0;
        return LEANN_OK;
    }
    if (count != LEANN_CALIB_LEVELS)
        return leann_fail(LEANN_ERR_INVALID, "a calibration has %d quantiles, got %d", LEANN_CALIB_LEVELS, count);
    if (!idx->codes) return leann_fail(LEANN_ERR_INVALID, "a calibration needs search codes");
    for (int i = 0; i < count; i++) {
        if (!isfinite(q[i])) return leann_fail(LEANN_ERR_INVALID, "calibration quantile %d is not finite", i);
        if (i && q[i] < q[i - 1])
            return leann_fail(LEANN_ERR_INVALID, "calibration quantiles must not decrease (%d: %g < %g)", i,
                              (double)q[i], (double)q[i - 1]);
    }
    memcpy(idx->calib, q, sizeof idx->calib);
    idx->has_calib = 1;
    return LEANN_OK;
}

int leann_index_calibration(const leann_index *idx, float *q) {
    if (!idx || !idx->has_calib) return 0;
    if (q) memcpy(q, idx->calib, sizeof idx->calib);
    return 1;
}

/* ---- codes, tombstones, metadata ---- */
int leann_index_set_codes(leann_index *idx, const leann_codec *codec, const uint8_t *codes) {
    if (!idx || !codec || !codes) return leann_fail(LEANN_ERR_INVALID, "leann_index_set_codes: NULL argument");
    if (!codec->dim) return leann_fail(LEANN_ERR_INVALID, "the search codec needs its PCA (leann_codec_set_pca)");
    if (codec->dim != idx->dim)
        return leann_fail(LEANN_ERR_INVALID, "the codec takes dimension %d, the index has %d", codec->dim, idx->dim);
    size_t bytes;
    if (!leann_mul_ok(idx->g.n, (size_t)codec->code_bytes, &bytes)) return LEANN_ERR_INVALID;
    uint8_t *copy = leann_malloc(bytes ? bytes : 1, "search codes");
    if (!copy) return LEANN_ERR_NOMEM;
    leann_codec *cc;
    int st = leann_codec_clone(codec, &cc);
    if (st != LEANN_OK) {
        free(copy);
        return st;
    }
    memcpy(copy, codes, bytes);
    free(idx->codes);
    leann_codec_free(idx->codec);
    idx->codes = copy;
    idx->code_bytes = codec->code_bytes;
    idx->codec = cc;
    idx->has_calib = 0; /* it described the old codes */
    leann_index_set_estimator(idx, LEANN_EST_CODE, 0.0f); /* so did the estimator's tables */
    return LEANN_OK;
}

int leann_index_set_estimator(leann_index *idx, int kind, float norm) {
    if (!idx) return leann_fail(LEANN_ERR_INVALID, "leann_index_set_estimator: NULL argument");
    if (kind != LEANN_EST_CODE && kind != LEANN_EST_NORMALISED)
        return leann_fail(LEANN_ERR_INVALID, "unknown distance estimator %d", kind);
    float *pmean = NULL, *ntab = NULL;
    double mm = 0.0;
    if (kind == LEANN_EST_NORMALISED) {
        const leann_codec *c = idx->codec;
        if (!idx->codes || !c || !c->dim)
            return leann_fail(LEANN_ERR_INVALID, "the normalised estimator needs search codes with a PCA");
        if (idx->metric != LEANN_METRIC_IP)
            return leann_fail(LEANN_ERR_INVALID, "the normalised estimator is for the IP metric");
        if (!(isfinite(norm) && norm > 0.0f))
            return leann_fail(LEANN_ERR_INVALID, "the normalised estimator needs a finite norm > 0, got %g",
                              (double)norm);
        pmean = leann_malloc((size_t)c->dp * sizeof(float), "estimator tables");
        ntab = leann_malloc((size_t)c->msub * c->ksub * sizeof(float), "estimator tables");
        if (!pmean || !ntab) {
            free(pmean);
            free(ntab);
            return LEANN_ERR_NOMEM;
        }
        for (int k = 0; k < c->dim; k++) mm += (double)c->mean[k] * c->mean[k];
        for (int i = 0; i < c->dp; i++) {
            const float *row = c->components + (size_t)i * c->dim;
            double s = 0.0;
            for (int k = 0; k < c->dim; k++) s += (double)c->mean[k] * row[k];
            pmean[i] = (float)s;
        }
        for (int j = 0; j < c->msub; j++)
            for (int a = 0; a < c->ksub; a++) {
                const float *cent = c->centroids + ((size_t)j * c->ksub + a) * c->dsub;
                double s = 0.0;
                for (int t = 0; t < c->dsub; t++) s += 2.0 * pmean[j * c->dsub + t] * cent[t] + (double)cent[t] * cent[t];
                ntab[(size_t)j * c->ksub + a] = (float)s;
            }
    }
    free(idx->est_pmean);
    free(idx->est_ntab);
    idx->est_kind = kind;
    idx->est_norm = kind == LEANN_EST_NORMALISED ? norm : 0.0f;
    idx->est_pmean = pmean;
    idx->est_ntab = ntab;
    idx->est_mm = (float)mm;
    idx->has_calib = 0; /* it described the other estimator */
    return LEANN_OK;
}

int leann_index_estimator(const leann_index *idx, float *norm) {
    if (norm) *norm = idx ? idx->est_norm : 0.0f;
    return idx ? idx->est_kind : LEANN_EST_CODE;
}

const leann_codec *leann_index_codec(const leann_index *idx) { return idx ? idx->codec : NULL; }
int leann_index_has_vectors(const leann_index *idx) { return idx && idx->vectors ? 1 : 0; }
int leann_index_is_packed(const leann_index *idx) { return idx && idx->g.packed ? 1 : 0; }

int leann_index_delete(leann_index *idx, const int64_t *ids, size_t count) {
    if (!idx || (!ids && count)) return leann_fail(LEANN_ERR_INVALID, "leann_index_delete: NULL argument");
    for (size_t i = 0; i < count; i++)
        if (ids[i] < 0 || (uint64_t)ids[i] >= idx->g.n)
            return leann_fail(LEANN_ERR_INVALID, "id %lld is not in the index (0..%zu)", (long long)ids[i], idx->g.n - 1);
    if (!count) return LEANN_OK;
    if (!idx->tomb) {
        idx->tomb = leann_calloc((idx->g.n + 63) / 64, sizeof(uint64_t), "tombstones");
        if (!idx->tomb) return LEANN_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t id = (uint64_t)ids[i];
        if (!leann_is_dead(idx->tomb, id)) {
            idx->tomb[id >> 6] |= 1ull << (id & 63);
            idx->ntomb++;
        }
    }
    return LEANN_OK;
}

size_t leann_index_deleted_count(const leann_index *idx) { return idx ? idx->ntomb : 0; }

int leann_index_is_deleted(const leann_index *idx, uint32_t id) {
    if (!idx || id >= idx->g.n) return 0;
    return leann_is_dead(idx->tomb, id);
}

int leann_index_set_meta(leann_index *idx, const char *data, size_t len) {
    if (!idx || (!data && len)) return leann_fail(LEANN_ERR_INVALID, "leann_index_set_meta: NULL argument");
    char *copy = leann_malloc(len + 1, "index metadata");
    if (!copy) return LEANN_ERR_NOMEM;
    if (len) memcpy(copy, data, len);
    copy[len] = 0;
    free(idx->umeta);
    idx->umeta = copy;
    idx->umeta_len = len;
    return LEANN_OK;
}

size_t leann_index_meta(const leann_index *idx, const char **data) {
    *data = idx && idx->umeta ? idx->umeta : "";
    return idx ? idx->umeta_len : 0;
}

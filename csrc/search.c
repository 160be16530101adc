/* search.c - the built index and its exact-distance search over stored
 * vectors (HNSW: greedy through the upper levels, beam search at level 0). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

struct leann_index {
    leann_graph g;
    uint8_t *codes;   /* n * code_bytes (flash) or NULL */
    int code_bytes;
    float *vectors;   /* n * dim or NULL */
    int dim, metric;
};

int leann_index_from_builder(leann_graph *g, uint8_t *codes, int code_bytes, float *vectors,
                             const leann_build_params *p, leann_index **out) {
    leann_index *idx = leann_calloc(1, sizeof *idx, "index");
    if (!idx) return LEANN_ERR_NOMEM;
    idx->g = *g;
    idx->codes = codes;
    idx->code_bytes = codes ? code_bytes : 0;
    idx->vectors = vectors;
    idx->dim = p->dim;
    idx->metric = p->search_metric;
    *out = idx;
    return LEANN_OK;
}

void leann_index_free(leann_index *idx) {
    if (!idx) return;
    leann_graph_free(&idx->g);
    free(idx->codes);
    free(idx->vectors);
    free(idx);
}

size_t leann_index_size(const leann_index *idx) { return idx ? idx->g.n : 0; }
int leann_index_dim(const leann_index *idx) { return idx ? idx->dim : 0; }
int leann_index_max_level(const leann_index *idx) { return idx ? idx->g.maxlevel : -1; }
uint32_t leann_index_entry_point(const leann_index *idx) { return idx ? idx->g.entry : LEANN_NONE; }

int leann_index_level(const leann_index *idx, uint32_t node) {
    if (!idx || node >= idx->g.n) return -leann_fail(LEANN_ERR_INVALID, "node id out of range");
    return idx->g.levels[node];
}

int leann_index_max_degree(const leann_index *idx, int level) {
    if (!idx) return 0;
    return level == 0 ? idx->g.cap0 : idx->g.capU;
}

int leann_index_neighbors(const leann_index *idx, uint32_t node, int level, uint32_t *out, int cap) {
    if (!idx || node >= idx->g.n) return -leann_fail(LEANN_ERR_INVALID, "node id out of range");
    if (level < 0 || level > idx->g.levels[node])
        return -leann_fail(LEANN_ERR_INVALID, "node %u has no level %d", node, level);
    int deg;
    const uint32_t *ids = leann_graph_list(&idx->g, node, level, &deg);
    for (int i = 0; i < deg && i < cap; i++) out[i] = ids[i];
    return deg;
}

size_t leann_index_memory(const leann_index *idx) {
    if (!idx) return 0;
    const leann_graph *g = &idx->g;
    size_t bytes = g->n * (sizeof(uint8_t) + sizeof(uint32_t)); /* levels, ubase */
    if (g->off0) bytes += (g->n + 1) * sizeof(uint64_t) + (size_t)g->off0[g->n] * sizeof(uint32_t);
    bytes += g->nslots * ((size_t)g->capU * sizeof(uint32_t) + sizeof(uint16_t));
    bytes += g->n * (size_t)idx->code_bytes;
    if (idx->vectors) bytes += g->n * (size_t)idx->dim * sizeof(float);
    return bytes;
}

typedef struct {
    const leann_index *idx;
    const float *queries;
    size_t nq;
    int k, ef;
    int64_t *ids;
    float *dist;
    leann_search_stats *stats;
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
    leann_visited vis = {0};
    int st = leann_visited_init(&vis, g->n);
    leann_beam_entry *beam = leann_calloc((size_t)ef + 1, sizeof *beam, "search beam");
    if (!beam) st = LEANN_ERR_NOMEM;
    qc.ids_tmp = leann_calloc((size_t)g->cap0 + 16, sizeof(uint32_t), "search scratch");
    qc.nbr_ids = leann_calloc((size_t)g->cap0 + 16, sizeof(uint32_t), "search scratch");
    qc.nbr_ds = leann_calloc((size_t)g->cap0 + 16, sizeof(float), "search scratch");
    if (!qc.ids_tmp || !qc.nbr_ids || !qc.nbr_ds) st = LEANN_ERR_NOMEM;
    qc.vectors = idx->vectors;
    qc.dim = idx->dim;
    qc.dist = leann_get_dist(idx->metric, LEANN_KERNEL_AUTO);
    while (st == LEANN_OK) {
        size_t qi = atomic_fetch_add(&job->next, 1);
        if (qi >= job->nq) break;
        qc.q = job->queries + qi * (size_t)idx->dim;
        qc.evals = qc.hops = 0;
        uint32_t ep = g->entry;
        float epd = leann_qdist(&qc, ep, NULL);
        qc.evals++;
        for (int l = g->maxlevel; l > 0; l--) leann_greedy(g, &qc, l, &ep, &epd);
        int len = leann_search_layer(g, &qc, 0, (leann_cand){epd, ep}, ef, &vis, beam);
        int64_t *oid = job->ids + qi * (size_t)job->k;
        float *od = job->dist + qi * (size_t)job->k;
        for (int i = 0; i < job->k; i++) {
            oid[i] = i < len ? (int64_t)beam[i].id : -1;
            od[i] = i < len ? beam[i].d : INFINITY;
        }
        if (job->stats) {
            job->stats[qi].distance_evals = qc.evals;
            job->stats[qi].hops = qc.hops;
        }
    }
    leann_visited_free(&vis);
    free(beam);
    free(qc.ids_tmp);
    free(qc.nbr_ids);
    free(qc.nbr_ds);
    return st;
}

int leann_index_search(const leann_index *idx, const float *queries, size_t nq, int k, int ef,
                       int threads, int64_t *out_ids, float *out_dist, leann_search_stats *stats) {
    if (!idx || (!queries && nq) || (!out_ids && nq) || (!out_dist && nq))
        return leann_fail(LEANN_ERR_INVALID, "leann_index_search: NULL argument");
    if (!idx->vectors)
        return leann_fail(LEANN_ERR_INVALID, "this index keeps no vectors: exact search needs them");
    if (k <= 0 || (size_t)k > idx->g.n)
        return leann_fail(LEANN_ERR_INVALID, "k must be in [1, %zu], got %d", idx->g.n, k);
    if (ef < 1 || ef > 1000000) return leann_fail(LEANN_ERR_INVALID, "ef must be in [1, 1000000], got %d", ef);
    size_t total;
    if (!leann_mul_ok(nq, (size_t)idx->dim, &total)) return LEANN_ERR_INVALID;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(queries[i]))
            return leann_fail(LEANN_ERR_INVALID, "query %zu has a non-finite value", i / (size_t)idx->dim);
    search_job job = {idx, queries, nq, k, ef, out_ids, out_dist, stats, 0};
    atomic_init(&job.next, 0);
    int nt = leann_resolve_threads(threads);
    if ((size_t)nt > nq) nt = nq ? (int)nq : 1;
    return leann_parallel(nt, search_task, &job);
}

/* prune.c - LEANN's high-degree-preserving pruning of the base layer.
 *
 * Nodes are ranked by out-degree; the top hub_fraction are hubs.  Every node
 * re-selects its links from its current list with the HNSW heuristic, keeping
 * at most hub_degree links (hubs) or degree links (everyone else).  Then every
 * kept link v -> u adds the reverse link u -> v, which may fill u's list up to
 * hub_degree (not degree): ordinary nodes thereby keep the links that hubs
 * send them.  A list only shrinks, by the heuristic again, when a reverse link
 * would take it past hub_degree.  Distances come from the codes alone (the
 * symmetric centroid table), so pruning needs no embeddings.  Finally every
 * node is made reachable from the entry point again, and upper-level lists
 * are cut to hub_degree links.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    const leann_graph *g;  /* the CSR graph being pruned (read only) */
    const leann_codec *codec;
    const uint8_t *codes;
    int cb, hub_degree, degree;
    const uint8_t *hub;
    uint32_t *ids;         /* n * hub_degree, output */
    uint16_t *deg;         /* n, output */
    atomic_size_t next;
} prune_job;

static inline float code_pair(const leann_codec *c, const uint8_t *codes, int cb, uint32_t x, uint32_t y) {
    return (float)leann_sdt_dist(c, codes + (size_t)x * cb, codes + (size_t)y * cb);
}

/* The selection heuristic (leann_select) on code distances. */
static int prune_occluded(void *ctx, uint32_t c, float d, const leann_cand *kept, int k) {
    const prune_job *job = ctx;
    for (int j = 0; j < k; j++)
        if (code_pair(job->codec, job->codes, job->cb, c, kept[j].id) < d) return 1;
    return 0;
}

static int heuristic(const prune_job *job, const leann_cand *cands, int nc, int cap, leann_cand *out) {
    leann_selector sel = {prune_occluded, NULL, NULL, (void *)job};
    return leann_select(&sel, cands, nc, cap, 0.0f, out);
}

static int prune_task(void *p, int tid, int nt) {
    (void)tid;
    (void)nt;
    prune_job *job = p;
    const leann_graph *g = job->g;
    leann_cand *cands = leann_malloc(((size_t)g->cap0 + 1) * sizeof *cands, "prune scratch");
    leann_cand *kept = leann_malloc(((size_t)job->hub_degree + 1) * sizeof *kept, "prune scratch");
    if (!cands || !kept) {
        free(cands);
        free(kept);
        return LEANN_ERR_NOMEM;
    }
    for (;;) {
        size_t v = atomic_fetch_add(&job->next, 1);
        if (v >= g->n) break;
        int deg;
        const uint32_t *list = leann_graph_list(g, (uint32_t)v, 0, &deg);
        for (int i = 0; i < deg; i++)
            cands[i] = (leann_cand){code_pair(job->codec, job->codes, job->cb, (uint32_t)v, list[i]), list[i]};
        leann_cand_sort(cands, (size_t)deg);
        int cap = job->hub[v] ? job->hub_degree : job->degree;
        int k = heuristic(job, cands, deg, cap, kept);
        for (int i = 0; i < k; i++) job->ids[v * (size_t)job->hub_degree + (size_t)i] = kept[i].id;
        job->deg[v] = (uint16_t)k;
    }
    free(cands);
    free(kept);
    return LEANN_OK;
}

/* One pruned list, for leann_reverse_link. */
typedef struct {
    prune_job *job;
    uint32_t u;
} prune_list;

static void prune_list_dists(void *ctx, const uint32_t *ids, int deg, uint32_t v, leann_cand *pool) {
    const prune_list *x = ctx;
    const prune_job *job = x->job;
    for (int i = 0; i < deg; i++) pool[i] = (leann_cand){code_pair(job->codec, job->codes, job->cb, x->u, ids[i]), ids[i]};
    pool[deg] = (leann_cand){code_pair(job->codec, job->codes, job->cb, x->u, v), v};
}

static void prune_list_put(void *ctx, int pos, uint32_t id) {
    const prune_list *x = ctx;
    x->job->ids[(size_t)x->u * x->job->hub_degree + (size_t)pos] = id;
}

/* Add v to u's list; when full, re-select u's list among its links and v. */
static void add_reverse(prune_job *job, leann_cand *pool, leann_cand *out, uint32_t u, uint32_t v) {
    leann_selector sel = {prune_occluded, NULL, NULL, job};
    prune_list x = {job, u};
    leann_list_ops ops = {prune_list_dists, prune_list_put, &x};
    job->deg[u] = (uint16_t)leann_reverse_link(&sel, &ops, job->ids + (size_t)u * job->hub_degree, job->deg[u],
                                               job->hub_degree, v, pool, out);
}

int leann_index_prune(leann_index *idx, const leann_codec *codec, const uint8_t *codes, double hub_fraction,
                      int hub_degree, int degree, int threads) {
    if (!idx || !codec) return leann_fail(LEANN_ERR_INVALID, "leann_index_prune: NULL argument");
    if (codec->ksub != 16) return leann_fail(LEANN_ERR_INVALID, "prune: pruning takes a 4-bit codec");
    if (!codes) { /* the index's own (build) codes */
        if (!idx->codes || idx->code_bytes != codec->code_bytes)
            return leann_fail(LEANN_ERR_INVALID, "prune: the index holds no codes of this codec");
        codes = idx->codes;
    }
    leann_graph *g = &idx->g;
    if (!g->off0 || g->packed) return leann_fail(LEANN_ERR_INVALID, "prune runs once, on a freshly built index");
    if (!(hub_fraction >= 0.0 && hub_fraction <= 1.0))
        return leann_fail(LEANN_ERR_INVALID, "hub_fraction must be in [0, 1], got %g", hub_fraction);
    if (hub_degree < 1 || hub_degree > LEANN_MAX_DEGREE)
        return leann_fail(LEANN_ERR_INVALID, "hub_degree must be in [1, %d], got %d", LEANN_MAX_DEGREE, hub_degree);
    if (degree < 1 || degree > hub_degree)
        return leann_fail(LEANN_ERR_INVALID, "degree must be in [1, hub_degree = %d], got %d", hub_degree, degree);
    size_t n = g->n;
    prune_job job = {g, codec, codes, codec->code_bytes, hub_degree, degree, NULL, NULL, NULL, 0};
    atomic_init(&job.next, 0);
    uint8_t *hub = leann_calloc(n, 1, "hub flags");
    uint64_t *order = leann_malloc(n * sizeof(uint64_t), "hub ranking");
    job.ids = leann_calloc(n, (size_t)hub_degree * sizeof(uint32_t), "pruned links");
    job.deg = leann_calloc(n, sizeof(uint16_t), "pruned degrees");
    uint32_t *first = NULL;
    uint64_t *first_off = leann_malloc((n + 1) * sizeof(uint64_t), "pruned link snapshot");
    leann_cand *pool = leann_malloc(((size_t)hub_degree + 1) * sizeof *pool, "prune scratch");
    leann_cand *tmp = leann_malloc(((size_t)hub_degree + 1) * sizeof *tmp, "prune scratch");
    int st = LEANN_OK;
    if (!hub || !order || !job.ids || !job.deg || !first_off || !pool || !tmp) {
        st = LEANN_ERR_NOMEM;
        goto done;
    }
    /* hubs: the ceil(hub_fraction * n) largest out-degrees, ties by id */
    for (size_t v = 0; v < n; v++) {
        uint64_t deg = g->off0[v + 1] - g->off0[v];
        order[v] = ((uint64_t)(0xFFFF - deg) << 32) | v;
    }
    qsort(order, n, sizeof *order, leann_cmp_u64);
    size_t nhub = (size_t)ceil(hub_fraction * (double)n);
    if (nhub > n) nhub = n;
    for (size_t i = 0; i < nhub; i++) hub[order[i] & 0xFFFFFFFFu] = 1;
    job.hub = hub;
    int nt = leann_resolve_threads(threads);
    st = leann_parallel(nt, prune_task, &job);
    if (st != LEANN_OK) goto done;
    /* reverse links of the selected lists (a snapshot: lists change meanwhile) */
    size_t total = 0;
    for (size_t v = 0; v < n; v++) total += job.deg[v];
    first = leann_malloc((total ? total : 1) * sizeof(uint32_t), "pruned link snapshot");
    if (!first) {
        st = LEANN_ERR_NOMEM;
        goto done;
    }
    first_off[0] = 0;
    for (size_t v = 0; v < n; v++) {
        memcpy(first + first_off[v], job.ids + v * (size_t)hub_degree, job.deg[v] * sizeof(uint32_t));
        first_off[v + 1] = first_off[v] + job.deg[v];
    }
    for (size_t v = 0; v < n; v++)
        for (uint64_t e = first_off[v]; e < first_off[v + 1]; e++) add_reverse(&job, pool, tmp, first[e], (uint32_t)v);
    /* swap the pruned lists in, restore reachability, compact again */
    free(g->ids0);
    free(g->off0);
    g->ids0 = job.ids;
    g->deg0 = job.deg;
    g->off0 = NULL;
    g->cap0 = hub_degree;
    job.ids = NULL;
    job.deg = NULL;
    st = leann_graph_repair_reachability(g);
    if (st == LEANN_OK) st = leann_graph_compact(g);
    /* upper levels only steer the entry: their lists keep the first
     * hub_degree links (the heuristic's closest picks come first) */
    if (st == LEANN_OK && g->capU > hub_degree) {
        size_t slots = g->nslots ? g->nslots : 1;
        uint32_t *ids = leann_malloc(slots * (size_t)hub_degree * sizeof(uint32_t), "upper-level links");
        if (!ids) {
            st = LEANN_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < g->nslots; i++) {
            if (g->degU[i] > hub_degree) g->degU[i] = (uint16_t)hub_degree;
            memcpy(ids + i * (size_t)hub_degree, g->idsU + i * (size_t)g->capU, g->degU[i] * sizeof(uint32_t));
        }
        free(g->idsU);
        g->idsU = ids;
        g->capU = hub_degree;
    }
done:
    free(hub);
    free(order);
    free(job.ids);
    free(job.deg);
    free(first);
    free(first_off);
    free(pool);
    free(tmp);
    return st;
}

int leann_index_pack(leann_index *idx) {
    if (!idx) return leann_fail(LEANN_ERR_INVALID, "index is NULL");
    return leann_graph_pack(&idx->g);
}

/* update.c - live updates of a finished (pruned, packed) index: insertion of
 * new nodes and compaction away of tombstoned ones, on the search codes (or
 * on exact distances, for an index that stores vectors).
 *
 * Both produce a new index and leave the source untouched, so searches keep
 * running on it until the caller swaps.  The source's packed levels are
 * unpacked into fixed-stride lists at the source's caps (cap0 at level 0,
 * capU above; after LEANN pruning both are hub_degree), changed there, then
 * compacted and packed again: the unpacked graph is the only extra memory
 * (n * (cap0 + 1) * 4 bytes at level 0, ~0.6 MB per 10k nodes at cap 12).
 *
 * Insertion is the Flash insertion of build.c, on the search codes: a walk
 * on code distances from the new node's query table (of its projection:
 * quantised for 4-bit codes, float for 8-bit ones), the build's selection
 * heuristic on symmetric code distances (leann_select), and reverse links through leann_reverse_link,
 * which re-selects a full list by the same heuristic.  Own lists are capped
 * at `degree`, every list at the level's cap: LEANN pruning's rule (a node
 * keeps its few best links; reverse links fill lists up to hub_degree).
 * An index that stores vectors inserts and re-selects on exact distances
 * instead, as its build did.  Threads insert concurrently under the striped
 * node locks of the builder.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    leann_graph g;              /* stride layout, being changed */
    const leann_codec *codec;
    const uint8_t *codes;       /* every node's code (n * cb) */
    int cb;
    float *fsdt;                /* 8-bit codes: float symmetric table (owned), else NULL */
    const float *vectors;       /* every node's stored vector (n * dim): distances
                                   are then exact, as the build's were; NULL:
                                   code distances */
    int dim;
    leann_dist_fn l2;
    const uint64_t *tomb;       /* tombstones of the first tomb_n ids (the source's
                                   nodes; inserted ones are live), or NULL */
    size_t tomb_n;
    const float *proj;          /* projections of nodes [first, g.n) */
    size_t first;
    int own0, ownU, ef;
    leann_lock *locks;
    pthread_mutex_t global;
    atomic_size_t next;
    atomic_int failed;
} upd;

static inline int is_dead(const upd *u, uint32_t id) {
    return id < u->tomb_n && leann_is_dead(u->tomb, id);
}

/* Distance between two nodes for the heuristic: exact with stored vectors,
 * else symmetric code distance. */
static inline float pair(const upd *u, uint32_t x, uint32_t y) {
    if (u->vectors) return u->l2(u->vectors + (size_t)x * u->dim, u->vectors + (size_t)y * u->dim, u->dim);
    if (u->fsdt) return leann_sdt_dist_float8(u->fsdt, u->codes + (size_t)x * u->cb, u->codes + (size_t)y * u->cb, u->cb);
    return (float)leann_sdt_dist(u->codec, u->codes + (size_t)x * u->cb, u->codes + (size_t)y * u->cb);
}

/* ---- unpacking ---- */
/* src's levels into g (stride layout, n >= src's n nodes; nodes past src's
 * draw their level from seed), with src's lists copied in. */
static int unpack(const leann_index *src, size_t n, uint64_t seed, leann_graph *g) {
    const leann_graph *s = &src->g;
    memset(g, 0, sizeof *g);
    if (!s->packed) return leann_fail(LEANN_ERR_INVALID, "live updates need a finished (packed) index");
    g->n = n;
    g->M = s->M;
    g->cap0 = s->cap0;
    g->capU = s->capU;
    g->entry = s->entry;
    g->maxlevel = s->maxlevel;
    g->levels = leann_calloc(n ? n : 1, 1, "node levels");
    if (!g->levels) return LEANN_ERR_NOMEM;
    for (int l = 1; l <= s->maxlevel; l++) /* ascending: a node's top level wins */
        for (size_t i = 0; i < s->packed[l].count; i++) g->levels[s->packed[l].nodes[i]] = (uint8_t)l;
    for (size_t v = s->n; v < n; v++) g->levels[v] = (uint8_t)leann_graph_random_level(seed, v, s->M);
    int st = leann_graph_alloc_lists(g);
    if (st != LEANN_OK) return st;
    for (size_t v = 0; v < s->n; v++) {
        int deg = leann_packed_decode(&s->packed[0], v, g->ids0 + v * (size_t)g->cap0);
        if (deg > g->cap0) return leann_fail(LEANN_ERR_CORRUPT, "node %zu has %d links, over its cap %d", v, deg, g->cap0);
        g->deg0[v] = (uint16_t)deg;
    }
    uint32_t buf[256];
    for (int l = 1; l <= s->maxlevel; l++) {
        const leann_packed *p = &s->packed[l];
        for (size_t i = 0; i < p->count; i++) {
            uint32_t v = p->nodes[i];
            int deg = leann_packed_decode(p, i, buf);
            if (deg > g->capU) return leann_fail(LEANN_ERR_CORRUPT, "node %u has %d links at level %d", v, deg, l);
            size_t slot = (size_t)g->ubase[v] + (size_t)l - 1;
            memcpy(g->idsU + slot * g->capU, buf, (size_t)deg * sizeof(uint32_t));
            g->degU[slot] = (uint16_t)deg;
        }
    }
    return LEANN_OK;
}

/* A new index around graph g (consumed: repaired, compacted and packed) and
 * codes (consumed), with src's codec, calibration, metadata and hub cache
 * (hub ids through map when given). */
static int finish(const leann_index *src, leann_graph *g, uint8_t *codes, float *vectors, const int64_t *map,
                  leann_index **out) {
    int st = leann_graph_repair_reachability(g);
    if (st == LEANN_OK) st = leann_graph_compact(g);
    if (st == LEANN_OK) st = leann_graph_pack(g);
    leann_index *idx = NULL;
    if (st == LEANN_OK) st = leann_index_new(g, codes, src->code_bytes, vectors, src->dim, src->metric, &idx);
    if (st != LEANN_OK) {
        leann_graph_free(g);
        free(codes);
        free(vectors);
        return st;
    }
    st = leann_codec_clone(src->codec, &idx->codec);
    if (st == LEANN_OK) st = leann_index_set_estimator(idx, src->est_kind, src->est_norm);
    memcpy(idx->calib, src->calib, sizeof idx->calib); /* (after the estimator, which clears it) */
    idx->has_calib = src->has_calib;
    if (st == LEANN_OK && src->umeta_len) {
        idx->umeta = leann_malloc(src->umeta_len, "index metadata");
        if (!idx->umeta) st = LEANN_ERR_NOMEM;
        else {
            memcpy(idx->umeta, src->umeta, src->umeta_len);
            idx->umeta_len = src->umeta_len;
        }
    }
    if (st == LEANN_OK && src->nhub) {
        idx->hub_ids = leann_malloc(src->nhub * sizeof(uint32_t), "hub cache");
        idx->hub_vecs = leann_malloc(src->nhub * (size_t)src->dim * sizeof(uint16_t), "hub cache");
        if (!idx->hub_ids || !idx->hub_vecs) st = LEANN_ERR_NOMEM;
        for (size_t i = 0; st == LEANN_OK && i < src->nhub; i++) {
            int64_t id = map ? map[src->hub_ids[i]] : (int64_t)src->hub_ids[i];
            if (id < 0) continue; /* map keeps the order: the ids stay ascending */
            idx->hub_ids[idx->nhub] = (uint32_t)id;
            memcpy(idx->hub_vecs + idx->nhub * (size_t)src->dim, src->hub_vecs + i * (size_t)src->dim,
                   (size_t)src->dim * sizeof(uint16_t));
            idx->nhub++;
        }
    }
    if (st != LEANN_OK) {
        leann_index_free(idx);
        return st;
    }
    *out = idx;
    return LEANN_OK;
}

static int check_params(const leann_index *src, const leann_update_params *p) {
    if (!src || !p) return leann_fail(LEANN_ERR_INVALID, "live update: NULL argument");
    if (!src->codec || !src->codes)
        return leann_fail(LEANN_ERR_INVALID, "live updates need an index that keeps search codes");
    if (!src->g.packed) return leann_fail(LEANN_ERR_INVALID, "live updates need a finished (packed) index");
    if (p->ef_construction < 1 || p->ef_construction > LEANN_MAX_EF_CONSTRUCTION)
        return leann_fail(LEANN_ERR_INVALID, "ef_construction must be in [1, %d], got %d", LEANN_MAX_EF_CONSTRUCTION,
                          p->ef_construction);
    if (p->degree < 1 || p->degree > src->g.cap0)
        return leann_fail(LEANN_ERR_INVALID, "degree must be in [1, %d] (the index's level-0 cap), got %d",
                          src->g.cap0, p->degree);
    if (p->upper_degree < 1 || p->upper_degree > src->g.capU)
        return leann_fail(LEANN_ERR_INVALID, "upper_degree must be in [1, %d], got %d", src->g.capU, p->upper_degree);
    return LEANN_OK;
}

/* ---- insertion ---- */
static int ins_occluded(void *ctx, uint32_t c, float d, const leann_cand *kept, int k) {
    const upd *u = ctx;
    for (int j = 0; j < k; j++)
        if (pair(u, c, kept[j].id) < d) return 1;
    return 0;
}

static void ins_prefetch(void *ctx, uint32_t c) {
    const upd *u = ctx;
    LEANN_PREFETCH(u->codes + (size_t)c * u->cb);
}

typedef struct {
    upd *u;
    uint32_t v;
    int l;
} ins_list;

static void ins_list_dists(void *ctx, const uint32_t *ids, int deg, uint32_t q, leann_cand *pool) {
    const ins_list *x = ctx;
    for (int i = 0; i < deg; i++) pool[i] = (leann_cand){pair(x->u, x->v, ids[i]), ids[i]};
    pool[deg] = (leann_cand){pair(x->u, x->v, q), q};
}

static void ins_list_put(void *ctx, int pos, uint32_t id) {
    const ins_list *x = ctx;
    int deg;
    leann_graph_list(&x->u->g, x->v, x->l, &deg)[pos] = id;
}

typedef struct {
    leann_qctx qc;
    leann_visited vis;
    leann_beam beam;
    leann_cand *cands, *sel, *pool, *out;
    uint8_t *adt, *ptab; /* 4-bit codes: the new node's quantised table */
    float *ftab;         /* 8-bit codes: its float table */
} ins_scratch;

static void ins_scratch_free(ins_scratch *s) {
    leann_visited_free(&s->vis);
    leann_beam_free(&s->beam);
    free(s->cands);
    free(s->sel);
    free(s->pool);
    free(s->out);
    free(s->adt);
    free(s->ptab);
    free(s->ftab);
    leann_qctx_release(&s->qc);
}

static int ins_scratch_init(ins_scratch *s, upd *u) {
    memset(s, 0, sizeof *s);
    int cap = (u->g.cap0 > u->g.capU ? u->g.cap0 : u->g.capU) + 16;
    size_t ef = (size_t)u->ef + (size_t)cap + 1, tb = (size_t)u->codec->msub * 16;
    if (leann_visited_init(&s->vis, u->g.n) != LEANN_OK || leann_beam_init(&s->beam, ef) != LEANN_OK)
        return LEANN_ERR_NOMEM;
    s->cands = leann_malloc(ef * sizeof(leann_cand), "insertion scratch");
    s->sel = leann_malloc(((size_t)cap + 1) * sizeof(leann_cand), "insertion scratch");
    s->pool = leann_malloc(((size_t)cap + 1) * sizeof(leann_cand), "insertion scratch");
    s->out = leann_malloc(((size_t)cap + 1) * sizeof(leann_cand), "insertion scratch");
    s->adt = leann_malloc(tb, "query table");
    s->ptab = leann_malloc(tb, "query table");
    s->ftab = leann_malloc((size_t)u->codec->msub * u->codec->ksub * sizeof(float), "query table");
    if (!s->cands || !s->sel || !s->pool || !s->out || !s->adt || !s->ptab || !s->ftab ||
        leann_qctx_alloc(&s->qc, cap, u->vectors ? 0 : u->cb) != LEANN_OK)
        return LEANN_ERR_NOMEM;
    s->qc.locks = u->locks;
    if (u->vectors) { /* exact walks, as the build's */
        s->qc.src = LEANN_SRC_VECTORS;
        s->qc.vectors = u->vectors;
        s->qc.dim = u->dim;
        s->qc.dist = u->l2;
        return u->l2 ? LEANN_OK : leann_fail(LEANN_ERR_INTERNAL, "no distance kernel");
    }
    s->qc.codes = u->codes;
    s->qc.cb = u->cb;
    if (u->fsdt) { /* 8-bit codes: walked through float tables */
        s->qc.src = LEANN_SRC_CODES_FLOAT;
        s->qc.ftable = s->ftab;
        s->qc.fk = u->codec->ksub;
        return LEANN_OK;
    }
    s->qc.scan = leann_get_scan(LEANN_KERNEL_AUTO, u->codec->accumulate);
    if (!s->qc.scan) return leann_fail(LEANN_ERR_INTERNAL, "no scan kernel");
    s->qc.src = LEANN_SRC_CODES_INT;
    s->qc.table = s->ptab;
    return LEANN_OK;
}

/* q's list at level l becomes sel[0..k), keeping links other insertions
 * added meanwhile while there is room (under q's lock). */
static void set_own(upd *u, uint32_t q, int l, const leann_cand *sel, int k) {
    leann_lock *lock = &u->locks[q & (LEANN_NLOCKS - 1)];
    leann_lock_acquire(lock);
    int deg, cap = l == 0 ? u->g.cap0 : u->g.capU;
    uint32_t *ids = leann_graph_list(&u->g, q, l, &deg);
    uint32_t keep[256];
    int nkeep = 0;
    for (int i = 0; i < deg && nkeep < 256; i++) keep[nkeep++] = ids[i];
    int pos = 0;
    for (int i = 0; i < k; i++) ids[pos++] = sel[i].id;
    for (int i = 0; i < nkeep && pos < cap; i++) {
        int dup = 0;
        for (int j = 0; j < k; j++) dup |= sel[j].id == keep[i];
        if (!dup) ids[pos++] = keep[i];
    }
    *leann_graph_degp(&u->g, q, l) = (uint16_t)pos;
    leann_lock_release(lock);
}

static void insert_one(upd *u, ins_scratch *s, uint32_t q) {
    leann_qctx *qc = &s->qc;
    leann_graph *g = &u->g;
    if (u->vectors) {
        qc->q = u->vectors + (size_t)q * u->dim;
    } else if (u->fsdt) {
        leann_codec_adt_float(u->codec, u->proj + (size_t)(q - u->first) * u->codec->dp, s->ftab);
    } else {
        leann_codec_adt_raw(u->codec, u->proj + (size_t)(q - u->first) * u->codec->dp, s->adt);
        leann_permute_table(s->adt, u->codec->msub, s->ptab);
    }
    int level = g->levels[q];
    pthread_mutex_lock(&u->global);
    int maxl = g->maxlevel;
    uint32_t ep = g->entry;
    int hold = level > maxl;
    if (!hold) pthread_mutex_unlock(&u->global);
    float epd = leann_qdist(qc, ep);
    for (int l = maxl; l > level; l--) leann_greedy(g, qc, l, &ep, &epd);
    leann_selector sel = {ins_occluded, NULL, ins_prefetch, u};
    for (int l = level < maxl ? level : maxl; l >= 0; l--) {
        int len = leann_search_layer(g, qc, l, (leann_cand){epd, ep}, u->ef, &s->vis, s->beam);
        int nc = 0;
        for (int i = 0; i < len; i++) {
            uint32_t id = leann_beam_id(s->beam.keys[i]);
            if (id != q && !is_dead(u, id)) s->cands[nc++] = (leann_cand){leann_beam_dist(s->beam.keys[i]), id};
        }
        int k = leann_select(&sel, s->cands, nc, l == 0 ? u->own0 : u->ownU, 0.0f, s->sel);
        set_own(u, q, l, s->sel, k);
        for (int i = 0; i < k; i++) {
            uint32_t v = s->sel[i].id;
            leann_lock *lock = &u->locks[v & (LEANN_NLOCKS - 1)];
            leann_lock_acquire(lock);
            int deg;
            const uint32_t *ids = leann_graph_list(g, v, l, &deg);
            ins_list x = {u, v, l};
            leann_list_ops ops = {ins_list_dists, ins_list_put, &x};
            *leann_graph_degp(g, v, l) = (uint16_t)leann_reverse_link(&sel, &ops, ids, deg, l ? g->capU : g->cap0, q,
                                                                      s->pool, s->out);
            leann_lock_release(lock);
        }
        if (k) { /* the closest kept link seeds the next level down */
            ep = s->sel[0].id;
            epd = s->sel[0].d;
        } else if (len) {
            ep = leann_beam_id(s->beam.keys[0]);
            epd = leann_beam_dist(s->beam.keys[0]);
        }
    }
    if (hold) {
        g->entry = q;
        g->maxlevel = level;
        pthread_mutex_unlock(&u->global);
    }
}

static int insert_task(void *ctx, int tid, int nt) {
    (void)tid;
    (void)nt;
    upd *u = ctx;
    ins_scratch s;
    int st = ins_scratch_init(&s, u);
    while (st == LEANN_OK) {
        size_t q = atomic_fetch_add(&u->next, 1);
        if (q >= u->g.n) break;
        insert_one(u, &s, (uint32_t)q);
    }
    ins_scratch_free(&s);
    return st;
}

int leann_index_add(const leann_index *src, const float *proj, const float *vectors, size_t m,
                    const leann_update_params *p, leann_index **out) {
    *out = NULL;
    int st = check_params(src, p);
    if (st != LEANN_OK) return st;
    if (!proj && m) return leann_fail(LEANN_ERR_INVALID, "leann_index_add: projections are NULL");
    if (src->vectors && !vectors && m)
        return leann_fail(LEANN_ERR_INVALID, "this index stores vectors: leann_index_add needs the new rows' vectors");
    size_t n0 = src->g.n, n = n0 + m;
    if (n < n0 || n >= LEANN_NONE) return leann_fail(LEANN_ERR_INVALID, "too many nodes (%zu + %zu)", n0, m);
    const leann_codec *c = src->codec;
    for (size_t i = 0; i < m * (size_t)c->dp; i++)
        if (!isfinite(proj[i])) return leann_fail(LEANN_ERR_INVALID, "row %zu has a non-finite value", i / c->dp);
    size_t dim = (size_t)src->dim;
    if (src->vectors)
        for (size_t i = 0; i < m * dim; i++)
            if (!isfinite(vectors[i])) return leann_fail(LEANN_ERR_INVALID, "row %zu has a non-finite value", i / dim);
    upd u;
    memset(&u, 0, sizeof u);
    uint8_t *codes = leann_malloc(n * (size_t)src->code_bytes + 1, "search codes");
    float *vecs = src->vectors ? leann_malloc(n * dim * sizeof(float), "stored vectors") : NULL;
    u.locks = leann_calloc(LEANN_NLOCKS, sizeof(leann_lock), "node locks");
    if (!codes || !u.locks || (src->vectors && !vecs)) {
        free(codes);
        free(vecs);
        free(u.locks);
        return LEANN_ERR_NOMEM;
    }
    if (vecs) {
        memcpy(vecs, src->vectors, n0 * dim * sizeof(float));
        if (m) memcpy(vecs + n0 * dim, vectors, m * dim * sizeof(float));
    }
    for (int i = 0; i < LEANN_NLOCKS; i++) atomic_init(&u.locks[i], 0);
    memcpy(codes, src->codes, n0 * (size_t)src->code_bytes);
    int nt = leann_resolve_threads(p->threads);
    st = m ? leann_codec_encode(c, proj, m, codes + n0 * (size_t)src->code_bytes, nt) : LEANN_OK;
    if (st == LEANN_OK) st = unpack(src, n, p->seed, &u.g);
    if (st != LEANN_OK) {
        leann_graph_free(&u.g);
        free(codes);
        free(vecs);
        free(u.locks);
        return st;
    }
    u.vectors = vecs;
    u.dim = src->dim;
    u.l2 = leann_get_dist(LEANN_METRIC_L2, LEANN_KERNEL_AUTO);
    u.codec = c;
    u.codes = codes;
    u.cb = src->code_bytes;
    u.tomb = src->tomb;
    u.tomb_n = n0;
    u.proj = proj;
    u.first = n0;
    u.own0 = p->degree;
    u.ownU = p->upper_degree;
    u.ef = p->ef_construction;
    atomic_init(&u.next, n0);
    pthread_mutex_init(&u.global, NULL);
    if (m && !vecs && c->ksub == 256 && !(u.fsdt = leann_codec_sdt_float8(c))) st = LEANN_ERR_NOMEM;
    if (m && st == LEANN_OK) {
        if ((size_t)nt > m) nt = (int)m;
        st = leann_parallel(nt, insert_task, &u);
    }
    pthread_mutex_destroy(&u.global);
    free(u.locks);
    free(u.fsdt);
    if (st != LEANN_OK) {
        leann_graph_free(&u.g);
        free(codes);
        free(vecs);
        return st;
    }
    leann_index *idx;
    st = finish(src, &u.g, codes, vecs, NULL, &idx);
    if (st != LEANN_OK) return st;
    if (src->tomb) { /* the old nodes' tombstones, the new nodes live */
        idx->tomb = leann_calloc((n + 63) / 64, sizeof(uint64_t), "tombstones");
        if (!idx->tomb) {
            leann_index_free(idx);
            return LEANN_ERR_NOMEM;
        }
        memcpy(idx->tomb, src->tomb, (n0 + 63) / 64 * sizeof(uint64_t));
        idx->ntomb = src->ntomb;
    }
    *out = idx;
    return LEANN_OK;
}

/* ---- compaction ---- */
typedef struct {
    const leann_graph *old;     /* unpacked source (read only) */
    leann_graph *g;             /* same shape: the repaired lists */
    upd du;                     /* distances only (pair): codes or stored vectors */
    const uint64_t *tomb;       /* NULL: none deleted */
    atomic_size_t next;
} repair_job;

#define REPAIR_MAX_CANDS 1024
#define REPAIR_MAX_HOPS 16
/* v's list at level l, rebuilt when it links a dead node: its live links
 * plus the live nodes reached through dead ones (two dead hops, more while
 * none is found), re-selected by the heuristic at the level's cap. */
static void repair_list(const repair_job *j, uint32_t v, int l, uint32_t *cand_ids, leann_cand *cands,
                        leann_cand *kept, uint32_t *frontier, uint32_t *buf, uint32_t *seen) {
    const leann_graph *o = j->old;
    int deg, cap = l ? o->capU : o->cap0, unused;
    const uint32_t *ids = leann_graph_list(o, v, l, &deg);
    uint32_t *dst = leann_graph_list(j->g, v, l, &unused);
    int dead = 0;
    for (int i = 0; i < deg; i++) dead |= leann_is_dead(j->tomb, ids[i]);
    if (!dead) {
        memcpy(dst, ids, (size_t)deg * sizeof(uint32_t));
        *leann_graph_degp(j->g, v, l) = (uint16_t)deg;
        return;
    }
    int nc = 0, nf = 0, nseen = 0;
    for (int i = 0; i < deg; i++) {
        if (leann_is_dead(j->tomb, ids[i])) frontier[nf++] = seen[nseen++] = ids[i];
        else cand_ids[nc++] = ids[i];
    }
    /* two dead hops always; further ones only while no live node is found
     * (a whole neighbourhood deleted: a document's passages can be) */
    for (int hop = 0; nf && hop < REPAIR_MAX_HOPS && (hop < 2 || nc == 0); hop++) {
        int nnext = 0;
        for (int f = 0; f < nf && nc < REPAIR_MAX_CANDS; f++) {
            uint32_t d = frontier[f];
            if (l > o->levels[d]) continue;
            int dd;
            const uint32_t *dl = leann_graph_list(o, d, l, &dd);
            for (int i = 0; i < dd && nc < REPAIR_MAX_CANDS; i++) {
                uint32_t w = dl[i];
                if (w == v) continue;
                int dup = 0;
                if (leann_is_dead(j->tomb, w)) {
                    for (int k = 0; k < nseen && !dup; k++) dup = seen[k] == w;
                    if (!dup && nseen < REPAIR_MAX_CANDS) buf[nnext++] = seen[nseen++] = w;
                    continue;
                }
                for (int k = 0; k < nc && !dup; k++) dup = cand_ids[k] == w;
                if (!dup) cand_ids[nc++] = w;
            }
        }
        memcpy(frontier, buf, (size_t)nnext * sizeof(uint32_t));
        nf = nnext;
    }
    if (nc == 0) { /* no live node within reach of the dead hops: the nearest live ones */
        for (size_t w = 0; w < o->n; w++) {
            if (w == v || leann_is_dead(j->tomb, (uint32_t)w) || o->levels[w] < l) continue;
            float d = pair(&j->du, v, (uint32_t)w);
            if (nc == cap && d >= cands[nc - 1].d) continue;
            int i = nc < cap ? nc++ : cap - 1;
            for (; i > 0 && cands[i - 1].d > d; i--) cands[i] = cands[i - 1];
            cands[i] = (leann_cand){d, (uint32_t)w};
        }
        for (int i = 0; i < nc; i++) cand_ids[i] = cands[i].id;
    }
    for (int i = 0; i < nc; i++) cands[i] = (leann_cand){pair(&j->du, v, cand_ids[i]), cand_ids[i]};
    leann_cand_sort(cands, (size_t)nc);
    leann_selector sel = {ins_occluded, NULL, NULL, (void *)&j->du};
    int k = leann_select(&sel, cands, nc, cap, 0.0f, kept);
    for (int i = 0; i < k; i++) dst[i] = kept[i].id;
    *leann_graph_degp(j->g, v, l) = (uint16_t)k;
}

static int repair_task(void *ctx, int tid, int nt) {
    (void)tid;
    (void)nt;
    repair_job *j = ctx;
    uint32_t *cand_ids = leann_malloc(REPAIR_MAX_CANDS * sizeof(uint32_t), "repair scratch");
    uint32_t *frontier = leann_malloc(2 * REPAIR_MAX_CANDS * sizeof(uint32_t), "repair scratch");
    uint32_t *buf = leann_malloc(2 * REPAIR_MAX_CANDS * sizeof(uint32_t), "repair scratch");
    uint32_t *seen = leann_malloc(REPAIR_MAX_CANDS * sizeof(uint32_t), "repair scratch");
    leann_cand *cands = leann_malloc(REPAIR_MAX_CANDS * sizeof(leann_cand), "repair scratch");
    leann_cand *kept = leann_malloc(REPAIR_MAX_CANDS * sizeof(leann_cand), "repair scratch");
    int st = cand_ids && frontier && buf && seen && cands && kept ? LEANN_OK : LEANN_ERR_NOMEM;
    while (st == LEANN_OK) {
        size_t v = atomic_fetch_add(&j->next, 64);
        if (v >= j->old->n) break;
        size_t end = v + 64 < j->old->n ? v + 64 : j->old->n;
        for (; v < end; v++) {
            if (leann_is_dead(j->tomb, (uint32_t)v)) continue;
            for (int l = 0; l <= j->old->levels[v]; l++)
                repair_list(j, (uint32_t)v, l, cand_ids, cands, kept, frontier, buf, seen);
        }
    }
    free(cand_ids);
    free(frontier);
    free(buf);
    free(seen);
    free(cands);
    free(kept);
    return st;
}

int leann_index_compact(const leann_index *src, const leann_update_params *p, int64_t *map, leann_index **out) {
    *out = NULL;
    int st = check_params(src, p);
    if (st != LEANN_OK) return st;
    if (!map) return leann_fail(LEANN_ERR_INVALID, "leann_index_compact: map is NULL");
    size_t n0 = src->g.n, live = n0 - src->ntomb;
    if (live == 0) return leann_fail(LEANN_ERR_INVALID, "every node is deleted: nothing to compact into");
    const uint64_t *tomb = src->tomb; /* NULL: none deleted (leann_is_dead) */
    leann_graph old, rep, g;
    memset(&rep, 0, sizeof rep);
    memset(&g, 0, sizeof g);
    uint8_t *codes = NULL;
    float *vecs = NULL;
    st = unpack(src, n0, p->seed, &old);
    if (st == LEANN_OK) {
        rep = old; /* same levels and caps, fresh lists */
        rep.levels = NULL;
        rep.ubase = NULL;
        rep.ids0 = NULL;
        rep.deg0 = NULL;
        rep.idsU = NULL;
        rep.degU = NULL;
        rep.levels = leann_malloc(n0, "node levels");
        if (!rep.levels) st = LEANN_ERR_NOMEM;
        else {
            memcpy(rep.levels, old.levels, n0);
            st = leann_graph_alloc_lists(&rep);
        }
    }
    if (st == LEANN_OK) {
        repair_job j;
        memset(&j, 0, sizeof j);
        j.old = &old;
        j.g = &rep;
        j.du.codec = src->codec;
        j.du.codes = src->codes;
        j.du.cb = src->code_bytes;
        j.du.vectors = src->vectors;
        j.du.dim = src->dim;
        j.du.l2 = leann_get_dist(LEANN_METRIC_L2, LEANN_KERNEL_AUTO);
        j.tomb = tomb;
        atomic_init(&j.next, 0);
        if (!src->vectors && src->codec->ksub == 256 && !(j.du.fsdt = leann_codec_sdt_float8(src->codec)))
            st = LEANN_ERR_NOMEM;
        if (st == LEANN_OK) st = leann_parallel(leann_resolve_threads(p->threads), repair_task, &j);
        free(j.du.fsdt);
    }
    /* renumber: the live nodes in order */
    if (st == LEANN_OK) {
        size_t k = 0;
        for (size_t v = 0; v < n0; v++) map[v] = leann_is_dead(tomb, (uint32_t)v) ? -1 : (int64_t)k++;
        g.n = live;
        g.M = old.M;
        g.cap0 = old.cap0;
        g.capU = old.capU;
        g.levels = leann_malloc(live, "node levels");
        codes = leann_malloc(live * (size_t)src->code_bytes, "search codes");
        if (src->vectors) vecs = leann_malloc(live * (size_t)src->dim * sizeof(float), "stored vectors");
        if (!g.levels || !codes || (src->vectors && !vecs)) st = LEANN_ERR_NOMEM;
    }
    if (st == LEANN_OK) {
        for (size_t v = 0; v < n0; v++)
            if (map[v] >= 0) {
                g.levels[map[v]] = old.levels[v];
                memcpy(codes + (size_t)map[v] * src->code_bytes, src->codes + v * (size_t)src->code_bytes,
                       (size_t)src->code_bytes);
                if (vecs)
                    memcpy(vecs + (size_t)map[v] * src->dim, src->vectors + v * (size_t)src->dim,
                           (size_t)src->dim * sizeof(float));
            }
        st = leann_graph_alloc_lists(&g);
    }
    if (st == LEANN_OK) {
        g.maxlevel = -1;
        for (size_t v = 0; v < n0; v++) {
            if (map[v] < 0) continue;
            uint32_t nv = (uint32_t)map[v];
            for (int l = 0; l <= old.levels[v]; l++) {
                int deg, unused;
                const uint32_t *ids = leann_graph_list(&rep, (uint32_t)v, l, &deg);
                uint32_t *dst = leann_graph_list(&g, nv, l, &unused);
                int k = 0;
                for (int i = 0; i < deg; i++)
                    if (map[ids[i]] >= 0) dst[k++] = (uint32_t)map[ids[i]];
                *leann_graph_degp(&g, nv, l) = (uint16_t)k;
            }
            if ((int)old.levels[v] > g.maxlevel) {
                g.maxlevel = old.levels[v];
                g.entry = nv;
            }
        }
        if (map[old.entry] >= 0 && old.levels[old.entry] == g.maxlevel) g.entry = (uint32_t)map[old.entry];
    }
    leann_graph_free(&old);
    leann_graph_free(&rep);
    if (st != LEANN_OK) {
        leann_graph_free(&g);
        free(codes);
        free(vecs);
        return st;
    }
    return finish(src, &g, codes, vecs, map, out);
}

/* graph.c - HNSW layers, beams, visited sets and the walks shared by
 * construction and search. */
#include "internal.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>

/* ---- levels ---- */
int leann_graph_alloc_levels(leann_graph *g, size_t n, int M, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->n = n;
    g->M = M;
    g->cap0 = 2 * M;
    g->capU = M;
    g->entry = LEANN_NONE;
    g->maxlevel = -1;
    g->levels = leann_malloc(n, "node levels");
    g->ubase = leann_malloc(n * sizeof(uint32_t), "upper-level index");
    if (!g->levels || !g->ubase) return LEANN_ERR_NOMEM;
    double mult = 1.0 / log((double)M);
    size_t slots = 0;
    for (size_t i = 0; i < n; i++) {
        /* uniform in (0, 1] from a hash of (seed, id): deterministic per node */
        double u = ((double)(leann_mix64(seed * 0x632BE59BD9B4E019ull + i) >> 11) + 1.0) * 0x1.0p-53;
        double lv = floor(-log(u) * mult);
        int l = lv > LEANN_MAX_LEVEL ? LEANN_MAX_LEVEL : (int)lv;
        g->levels[i] = (uint8_t)l;
        g->ubase[i] = (uint32_t)slots;
        slots += (size_t)l;
    }
    if (slots >= LEANN_NONE) return leann_fail(LEANN_ERR_INVALID, "too many upper-level nodes");
    g->nslots = slots;
    g->idsU = leann_calloc(slots ? slots : 1, (size_t)g->capU * sizeof(uint32_t), "upper-level links");
    g->degU = leann_calloc(slots ? slots : 1, sizeof(uint16_t), "upper-level degrees");
    if (!g->idsU || !g->degU) return LEANN_ERR_NOMEM;
    return LEANN_OK;
}

void leann_graph_free(leann_graph *g) {
    free(g->ids0);
    free(g->deg0);
    free(g->off0);
    free(g->levels);
    free(g->ubase);
    free(g->idsU);
    free(g->degU);
    memset(g, 0, sizeof *g);
}

int leann_graph_compact(leann_graph *g) {
    if (g->off0) return LEANN_OK;
    uint64_t *off = leann_malloc((g->n + 1) * sizeof(uint64_t), "graph offsets");
    if (!off) return LEANN_ERR_NOMEM;
    off[0] = 0;
    for (size_t v = 0; v < g->n; v++) off[v + 1] = off[v] + g->deg0[v];
    uint32_t *ids = leann_malloc((size_t)off[g->n] * sizeof(uint32_t), "graph links");
    if (!ids) {
        free(off);
        return LEANN_ERR_NOMEM;
    }
    for (size_t v = 0; v < g->n; v++)
        memcpy(ids + off[v], g->ids0 + v * (size_t)g->cap0, (size_t)g->deg0[v] * sizeof(uint32_t));
    free(g->ids0);
    free(g->deg0);
    g->ids0 = ids;
    g->deg0 = NULL;
    g->off0 = off;
    return LEANN_OK;
}

/* ---- sorting ---- */
static int cand_cmp(const void *a, const void *b) {
    leann_cand x = *(const leann_cand *)a, y = *(const leann_cand *)b;
    return leann_cand_less(x, y) ? -1 : leann_cand_less(y, x) ? 1 : 0;
}
void leann_cand_sort(leann_cand *a, size_t n) { qsort(a, n, sizeof *a, cand_cmp); }

/* ---- visited ---- */
int leann_visited_init(leann_visited *v, size_t n) {
    v->n = n;
    v->nwords = n / 64 + 1;
    v->ntouched = 0;
    v->bits = leann_calloc(v->nwords, sizeof(uint64_t), "visited set");
    v->touched = leann_calloc(v->nwords, sizeof(uint32_t), "visited set");
    if (!v->bits || !v->touched) {
        leann_visited_free(v);
        return LEANN_ERR_NOMEM;
    }
    return LEANN_OK;
}
void leann_visited_free(leann_visited *v) {
    free(v->bits);
    free(v->touched);
    v->bits = NULL;
    v->touched = NULL;
}

/* ---- locks ---- */
void leann_lock_slow(leann_lock *l) {
    for (unsigned spins = 0;; spins++) {
        if (!atomic_load_explicit(l, memory_order_relaxed) &&
            !atomic_exchange_explicit(l, 1, memory_order_acquire))
            return;
        if (spins > 64) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else __builtin_ia32_pause();
#endif
    }
}

/* ---- walks ---- */
static inline uint32_t code_dist_permuted(const uint8_t *t, const uint8_t *code, int cb) {
    uint32_t s = 0;
    for (int r = 0; r < cb; r++) {
        const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
        s += tg[code[r] & 15] + tg[64 + (code[r] >> 4)];
    }
    return s;
}

float leann_qdist(const leann_qctx *qc, uint32_t id, const uint8_t *codes_all) {
    if (qc->flash) {
        uint32_t s = code_dist_permuted(qc->table, codes_all + (size_t)id * qc->cb, qc->cb);
        return (float)s;
    }
    return qc->dist(qc->q, qc->vectors + (size_t)id * qc->dim, qc->dim);
}

int leann_expand(const leann_graph *g, leann_qctx *qc, uint32_t v, int l, leann_visited *vis,
                 uint32_t *ids, float *ds) {
    int deg, out = 0;
    leann_lock *lock = qc->locks ? &qc->locks[v & (LEANN_NLOCKS - 1)] : NULL;
    if (lock) leann_lock_acquire(lock);
    const uint32_t *list = leann_graph_list(g, v, l, &deg);
    if (qc->flash) {
        const uint8_t *blocks = l == 0 ? qc->codes0 + (size_t)v * qc->bb0
                                       : qc->codesU + ((size_t)g->ubase[v] + l - 1) * qc->bbU;
        qc->scan(blocks, (size_t)(deg + 15) / 16, qc->cb, qc->table, qc->d16_tmp);
        for (int i = 0; i < deg; i++) {
            uint32_t id = list[i];
            if (vis && leann_visit(vis, id)) continue;
            ids[out] = id;
            ds[out++] = (float)qc->d16_tmp[i];
        }
        if (lock) leann_lock_release(lock);
    } else {
        memcpy(qc->ids_tmp, list, (size_t)deg * sizeof(uint32_t));
        if (lock) leann_lock_release(lock);
        for (int i = 0; i < deg; i++) {
            uint32_t id = qc->ids_tmp[i];
            if (vis && leann_visit(vis, id)) continue;
            ids[out++] = id;
        }
        for (int i = 0; i < out; i++) {
            if (i + 1 < out) __builtin_prefetch(qc->vectors + (size_t)ids[i + 1] * qc->dim);
            ds[i] = qc->dist(qc->q, qc->vectors + (size_t)ids[i] * qc->dim, qc->dim);
        }
    }
    qc->evals += (uint64_t)out;
    qc->hops++;
    return out;
}

void leann_greedy(const leann_graph *g, leann_qctx *qc, int l, uint32_t *cur, float *curd) {
    int changed = 1;
    while (changed) {
        changed = 0;
        int cnt = leann_expand(g, qc, *cur, l, NULL, qc->nbr_ids, qc->nbr_ds);
        for (int i = 0; i < cnt; i++) {
            leann_cand c = {qc->nbr_ds[i], qc->nbr_ids[i]}, b = {*curd, *cur};
            if (leann_cand_less(c, b)) {
                *cur = c.id;
                *curd = c.d;
                changed = 1;
            }
        }
    }
}

/* Ask for the lines of v's list at level l (ids and, for flash, code blocks)
 * before they are needed: the next expansion's memory latency then overlaps
 * the current one's work. */
static inline void prefetch_list(const leann_graph *g, const leann_qctx *qc, uint32_t v, int l) {
    int deg;
    const uint32_t *ids = leann_graph_list(g, v, l, &deg);
    __builtin_prefetch(ids);
    if (qc->flash) {
        const char *p = (const char *)(l == 0 ? qc->codes0 + (size_t)v * qc->bb0
                                              : qc->codesU + ((size_t)g->ubase[v] + l - 1) * qc->bbU);
        size_t bytes = (size_t)((deg + 15) / 16) * 16 * (size_t)qc->cb;
        for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
    } else if (deg > 0) {
        __builtin_prefetch(ids + 16);
    }
}

static inline int beam_less(float d, uint32_t id, const leann_beam_entry *e) {
    return d < e->d || (d == e->d && id < e->id);
}

int leann_search_layer(const leann_graph *g, leann_qctx *qc, int l, leann_cand ep, int ef,
                       leann_visited *vis, leann_beam_entry *beam) {
    uint32_t *ids = qc->nbr_ids;
    float *ds = qc->nbr_ds;
    leann_visited_next(vis);
    leann_visit(vis, ep.id);
    int len = 1, cur = 0;
    beam[0] = (leann_beam_entry){ep.d, ep.id, 0};
    while (cur < len) {
        beam[cur].expanded = 1;
        for (int nx = cur + 1; nx < len; nx++) {
            if (!beam[nx].expanded) {
                prefetch_list(g, qc, beam[nx].id, l);
                break;
            }
        }
        int cnt = leann_expand(g, qc, beam[cur].id, l, vis, ids, ds);
        int lowest = len;
        for (int i = 0; i < cnt; i++) {
            float d = ds[i];
            uint32_t id = ids[i];
            if (len == ef && !beam_less(d, id, &beam[len - 1])) continue;
            int lo = 0, hi = len; /* first entry not less than (d, id) */
            while (lo < hi) {
                int mid = (lo + hi) >> 1;
                if (beam_less(d, id, &beam[mid])) hi = mid;
                else lo = mid + 1;
            }
            int keep = len < ef ? len : ef - 1;
            memmove(beam + lo + 1, beam + lo, (size_t)(keep - lo) * sizeof *beam);
            beam[lo] = (leann_beam_entry){d, id, 0};
            if (len < ef) len++;
            if (lo < lowest) lowest = lo;
        }
        cur = lowest <= cur ? lowest : cur + 1;
        while (cur < len && beam[cur].expanded) cur++;
    }
    return len;
}

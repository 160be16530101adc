/* graph.c - HNSW layers, beams, visited sets and the walks shared by
 * construction and search. */
#include "internal.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>

/* ---- levels ---- */
int leann_graph_random_level(uint64_t seed, size_t i, int M) {
    /* uniform in (0, 1] from a hash of (seed, id): deterministic per node */
    double u = ((double)(leann_mix64(seed * 0x632BE59BD9B4E019ull + i) >> 11) + 1.0) * 0x1.0p-53;
    double lv = floor(-log(u) * (1.0 / log((double)M)));
    return lv > LEANN_MAX_LEVEL ? LEANN_MAX_LEVEL : (int)lv;
}

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
    size_t slots = 0;
    for (size_t i = 0; i < n; i++) {
        int l = leann_graph_random_level(seed, i, M);
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

int leann_graph_alloc_lists(leann_graph *g) {
    size_t slots = 0;
    g->ubase = leann_malloc((g->n ? g->n : 1) * sizeof(uint32_t), "upper-level index");
    if (!g->ubase) return LEANN_ERR_NOMEM;
    for (size_t i = 0; i < g->n; i++) {
        g->ubase[i] = (uint32_t)slots;
        slots += g->levels[i];
    }
    if (slots >= LEANN_NONE) return leann_fail(LEANN_ERR_INVALID, "too many upper-level nodes");
    g->nslots = slots;
    g->ids0 = leann_calloc(g->n ? g->n : 1, (size_t)g->cap0 * sizeof(uint32_t), "level-0 links");
    g->deg0 = leann_calloc(g->n ? g->n : 1, sizeof(uint16_t), "level-0 degrees");
    g->idsU = leann_calloc(slots ? slots : 1, (size_t)g->capU * sizeof(uint32_t), "upper-level links");
    g->degU = leann_calloc(slots ? slots : 1, sizeof(uint16_t), "upper-level degrees");
    return g->ids0 && g->deg0 && g->idsU && g->degU ? LEANN_OK : LEANN_ERR_NOMEM;
}

void leann_graph_free(leann_graph *g) {
    if (g->packed)
        for (int l = 0; l <= g->maxlevel; l++) leann_packed_free(&g->packed[l]);
    free(g->packed);
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

/* Make every node reachable from the entry point at level 0.  HNSW's
 * re-pruning can drop the last link into a node (ties among duplicates, very
 * small M); a node nobody links to is never returned by a search.  Each round
 * finds the unreached nodes by BFS and links each from a reached node with
 * room: preferably one of its own neighbours, else any; only when every
 * reached list is full does it replace a link.  Degree bounds are kept. */
/* Link u from r at level 0 without exceeding the degree bound.  replace = 0:
 * only when r has room; replace = 1: else overwrite the link whose target has
 * the most in-links from reached nodes (so it stays reachable). */
static int link_into(leann_graph *g, uint32_t r, uint32_t u, uint32_t *indeg, int replace) {
    int rdeg;
    uint32_t *rids = leann_graph_list(g, r, 0, &rdeg);
    if (r == u) return 0;
    for (int i = 0; i < rdeg; i++)
        if (rids[i] == u) return 0;
    if (rdeg < g->cap0) {
        rids[rdeg] = u;
        g->deg0[r] = (uint16_t)(rdeg + 1);
    } else {
        if (!replace) return 0;
        int worst = -1;
        for (int i = 0; i < rdeg; i++)
            if (indeg[rids[i]] > 1 && (worst < 0 || indeg[rids[i]] > indeg[rids[worst]])) worst = i;
        if (worst < 0) return 0;
        indeg[rids[worst]]--;
        rids[worst] = u;
    }
    indeg[u]++;
    return 1;
}

int leann_graph_repair_reachability(leann_graph *g) {
    size_t n = g->n;
    uint8_t *seen = leann_calloc(n, 1, "reachability scratch");
    uint32_t *queue = leann_malloc(n * sizeof(uint32_t), "reachability scratch");
    uint32_t *indeg = leann_calloc(n, sizeof(uint32_t), "reachability scratch");
    int st = (!seen || !queue || !indeg) ? LEANN_ERR_NOMEM : LEANN_OK;
    for (int round = 0; st == LEANN_OK && round < 256; round++) {
        memset(seen, 0, n);
        memset(indeg, 0, n * sizeof(uint32_t));
        size_t head = 0, tail = 0;
        queue[tail++] = g->entry;
        seen[g->entry] = 1;
        while (head < tail) {
            int deg;
            const uint32_t *ids = leann_graph_list(g, queue[head++], 0, &deg);
            for (int i = 0; i < deg; i++)
                if (!seen[ids[i]]) {
                    seen[ids[i]] = 1;
                    queue[tail++] = ids[i];
                }
        }
        if (tail == n) break;
        for (size_t i = 0; i < tail; i++) { /* in-links from reached nodes only */
            int deg;
            const uint32_t *ids = leann_graph_list(g, queue[i], 0, &deg);
            for (int j = 0; j < deg; j++) indeg[ids[j]]++;
        }
        size_t linked = 0, cursor = 0;
        for (size_t u = 0; u < n; u++) {
            if (seen[u]) continue;
            int deg, done = 0;
            const uint32_t *ids = leann_graph_list(g, (uint32_t)u, 0, &deg);
            /* 1: a node of u's own list reached by this round's BFS, with room */
            for (int i = 0; i < deg && !done; i++)
                if (seen[ids[i]] == 1) done = link_into(g, ids[i], (uint32_t)u, indeg, 0);
            /* 2: any reached node with room (no link is lost) */
            for (; cursor < tail && !done; cursor++)
                done = link_into(g, queue[cursor], (uint32_t)u, indeg, 0);
            /* 3: last resort, every reached list is full: replace a link */
            for (int i = 0; i < deg && !done; i++)
                if (seen[ids[i]] == 1) done = link_into(g, ids[i], (uint32_t)u, indeg, 1);
            if (done) {
                seen[u] = 2; /* linked now; its own list is walked next round */
                linked++;
            }
        }
        if (linked == 0) break; /* nothing more can be done; never loop */
    }
    free(seen);
    free(queue);
    free(indeg);
    return st;
}


/* ---- packed levels ---- */
void leann_packed_free(leann_packed *p) {
    if (!p) return;
    free(p->nodes);
    free(p->deg);
    free(p->boff);
    free(p->bits);
    memset(p, 0, sizeof *p);
}

int leann_graph_level(const leann_graph *g, uint32_t v) {
    if (!g->packed) return g->levels[v];
    for (int l = g->maxlevel; l > 0; l--)
        if (leann_packed_find(&g->packed[l], v) >= 0) return l;
    return 0;
}

static int pack_level(const leann_graph *g, int l, int width, leann_packed *p) {
    size_t count = 0, edges = 0;
    for (size_t v = 0; v < g->n; v++)
        if (g->levels[v] >= l) {
            int deg;
            (void)leann_graph_list(g, (uint32_t)v, l, &deg);
            count++;
            edges += (size_t)deg;
        }
    p->count = count;
    p->width = width;
    p->nwords = (edges * (size_t)width + 63) / 64 + 1;
    p->deg = leann_malloc(count ? count : 1, "packed degrees");
    p->boff = leann_malloc((count / 64 + 1) * sizeof(uint64_t), "packed offsets");
    p->bits = leann_calloc(p->nwords, sizeof(uint64_t), "packed links");
    if (l > 0) p->nodes = leann_malloc((count ? count : 1) * sizeof(uint32_t), "level nodes");
    if (!p->deg || !p->boff || !p->bits || (l > 0 && !p->nodes)) return LEANN_ERR_NOMEM;
    uint64_t pos = 0;
    size_t i = 0;
    for (size_t v = 0; v < g->n; v++) {
        if (g->levels[v] < l) continue;
        int deg;
        const uint32_t *ids = leann_graph_list(g, (uint32_t)v, l, &deg);
        if (deg > 255) return leann_fail(LEANN_ERR_INVALID, "a list has %d links; packed lists hold at most 255", deg);
        if ((i & 63) == 0) p->boff[i >> 6] = pos;
        if (p->nodes) p->nodes[i] = (uint32_t)v;
        p->deg[i] = (uint8_t)deg;
        for (int k = 0; k < deg; k++, pos += (uint64_t)width) leann_bits_put(p->bits, pos, width, ids[k]);
        i++;
    }
    if ((count & 63) == 0) p->boff[count >> 6] = pos;
    return LEANN_OK;
}

int leann_graph_pack(leann_graph *g) {
    if (g->packed) return LEANN_OK;
    if (!g->off0) return leann_fail(LEANN_ERR_INTERNAL, "pack: level 0 is not compacted");
    int width = 1;
    while (width < 32 && ((uint64_t)1 << width) < (uint64_t)g->n) width++;
    int nl = g->maxlevel + 1;
    leann_packed *p = leann_calloc((size_t)nl, sizeof *p, "packed levels");
    if (!p) return LEANN_ERR_NOMEM;
    int st = LEANN_OK;
    for (int l = 0; l < nl && st == LEANN_OK; l++) st = pack_level(g, l, width, &p[l]);
    if (st != LEANN_OK) {
        for (int l = 0; l < nl; l++) leann_packed_free(&p[l]);
        free(p);
        return st;
    }
    /* keep the scalars, drop every array of the old layouts */
    leann_graph keep = {.n = g->n, .M = g->M, .cap0 = g->cap0, .capU = g->capU, .entry = g->entry,
                        .maxlevel = g->maxlevel};
    leann_graph_free(g);
    *g = keep;
    g->packed = p;
    return LEANN_OK;
}

/* ---- sorting ---- */
static int cand_cmp(const void *a, const void *b) {
    leann_cand x = *(const leann_cand *)a, y = *(const leann_cand *)b;
    return leann_cand_less(x, y) ? -1 : leann_cand_less(y, x) ? 1 : 0;
}
void leann_cand_sort(leann_cand *a, size_t n) {
    if (n > 1) qsort(a, n, sizeof *a, cand_cmp); /* a may be NULL when n == 0 */
}
int leann_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

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

int leann_qctx_alloc(leann_qctx *qc, int cap, int cb) {
    size_t c = (size_t)(cap + 15) / 16 * 16; /* kernels write whole blocks of 16 */
    qc->ids_tmp = leann_calloc(c, sizeof(uint32_t), "walk scratch");
    qc->d16_tmp = leann_calloc(c, sizeof(uint16_t), "walk scratch");
    qc->nbr_ids = leann_calloc(c, sizeof(uint32_t), "walk scratch");
    qc->nbr_ds = leann_calloc(c, sizeof(float), "walk scratch");
    qc->blk_tmp = cb > 0 ? leann_calloc(c, (size_t)cb, "walk scratch") : NULL;
    if (qc->ids_tmp && qc->d16_tmp && qc->nbr_ids && qc->nbr_ds && (cb <= 0 || qc->blk_tmp)) return LEANN_OK;
    leann_qctx_release(qc);
    return LEANN_ERR_NOMEM;
}

void leann_qctx_release(leann_qctx *qc) {
    free(qc->ids_tmp);
    free(qc->d16_tmp);
    free(qc->nbr_ids);
    free(qc->nbr_ds);
    free(qc->blk_tmp);
    qc->ids_tmp = qc->nbr_ids = NULL;
    qc->d16_tmp = NULL;
    qc->nbr_ds = NULL;
    qc->blk_tmp = NULL;
}

float leann_qdist(const leann_qctx *qc, uint32_t id) {
    switch (qc->src) {
    case LEANN_SRC_CODES_FLOAT:
        return leann_code_dist_ftable(qc->ftable, qc->codes + (size_t)id * qc->cb, qc->cb, qc->fk) + qc->foff;
    case LEANN_SRC_BLOCKS:
    case LEANN_SRC_CODES_INT:
        return (float)code_dist_permuted(qc->table, qc->codes + (size_t)id * qc->cb, qc->cb);
    case LEANN_SRC_VECTORS:
    default:
        return qc->dist(qc->q, qc->vectors + (size_t)id * qc->dim, qc->dim);
    }
}

/* Per-node sources: the distances of ids[0..out) into ds. */
static void score_nodes(leann_qctx *qc, const uint32_t *ids, int out, float *ds) {
    switch (qc->src) {
    case LEANN_SRC_CODES_FLOAT:
        for (int i = 0; i < out; i++) LEANN_PREFETCH(qc->codes + (size_t)ids[i] * qc->cb);
        for (int i = 0; i < out; i++)
            ds[i] = leann_code_dist_ftable(qc->ftable, qc->codes + (size_t)ids[i] * qc->cb, qc->cb, qc->fk) + qc->foff;
        break;
    case LEANN_SRC_CODES_INT:
        for (int i = 0; i < out; i++) LEANN_PREFETCH(qc->codes + (size_t)ids[i] * qc->cb);
        if (qc->blk_tmp && qc->scan) {
            /* the codes gathered into blocks of 16, scored by the lookup
             * kernel: the totals the build's scans give (saturating for an
             * 8-bit-accumulating codec, as SDT distances are) */
            for (int i = 0; i < out; i++)
                leann_block_put(qc->blk_tmp + (size_t)(i / 16) * 16 * qc->cb, qc->cb, i % 16,
                                qc->codes + (size_t)ids[i] * qc->cb);
            qc->scan(qc->blk_tmp, (size_t)(out + 15) / 16, qc->cb, qc->table, qc->d16_tmp);
            for (int i = 0; i < out; i++) ds[i] = (float)qc->d16_tmp[i];
        } else {
            for (int i = 0; i < out; i++)
                ds[i] = (float)code_dist_permuted(qc->table, qc->codes + (size_t)ids[i] * qc->cb, qc->cb);
        }
        break;
    case LEANN_SRC_VECTORS:
    case LEANN_SRC_BLOCKS: /* (leann_expand scores blocks itself) */
    default:
        for (int i = 0; i < out; i++) {
            if (i + 1 < out) LEANN_PREFETCH(qc->vectors + (size_t)ids[i + 1] * qc->dim);
            ds[i] = qc->dist(qc->q, qc->vectors + (size_t)ids[i] * qc->dim, qc->dim);
        }
        break;
    }
}

/* Flash: the neighbour code blocks of v's list at level l. */
static inline const uint8_t *list_blocks(const leann_graph *g, const leann_qctx *qc, uint32_t v, int l) {
    return l == 0 ? qc->codes0 + (size_t)v * qc->bb0 : qc->codesU + ((size_t)g->ubase[v] + l - 1) * qc->bbU;
}

/* Bytes of v's code blocks that hold its first deg neighbours. */
static inline size_t blocks_in_use(const leann_qctx *qc, size_t deg) {
    return (deg + 15) / 16 * 16 * (size_t)qc->cb;
}

/* Ask for every cache line of [p, p + bytes). */
static inline void prefetch_lines(const void *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) LEANN_PREFETCH((const char *)p + off);
}

/* The code lines a walk's step left for later (see prefetch_next_list). */
static inline void issue_deferred(const leann_qctx *qc) {
    if (!qc->defer || !qc->defer->bytes) return;
    prefetch_lines(qc->defer->p, qc->defer->bytes);
    qc->defer->bytes = 0;
}

int leann_expand(const leann_graph *g, leann_qctx *qc, uint32_t v, int l, leann_visited *vis,
                 float bound, uint32_t *ids, float *ds) {
    int deg, out = 0;
    leann_lock *lock = qc->locks ? &qc->locks[v & (LEANN_NLOCKS - 1)] : NULL;
    if (lock) leann_lock_acquire(lock);
    const uint32_t *list = leann_graph_nbrs(g, v, l, qc->ids_tmp, &deg);
    if (qc->src == LEANN_SRC_BLOCKS) {
        /* the ids are read after the scan: start their misses now, so that
         * they overlap the code blocks' */
        prefetch_lines(list, (size_t)deg * sizeof(uint32_t));
        const uint8_t *blocks = list_blocks(g, qc, v, l);
        qc->scan(blocks, (size_t)(deg + 15) / 16, qc->cb, qc->table, qc->d16_tmp);
        issue_deferred(qc); /* another walk's, now that the scan's loads are done */
        /* A whole list's code distances come at once, so the bound filters
         * before the visited set: a neighbour beyond it would be dropped
         * anyway, and as the bound only tightens it stays droppable, so it
         * need not be marked.  Code distances are integers, so d <= bound
         * iff d <= floor(bound): a branch-free mask per 64 entries, then
         * only its set bits reach the visited set. */
        for (int base = 0; bound >= 0.0f && base < deg; base += 64) {
            uint32_t lim = bound >= 65535.0f ? 65535u : (uint32_t)bound;
            int cnt = deg - base < 64 ? deg - base : 64;
            uint64_t m = qc->mask_le(qc->d16_tmp + base, cnt, (uint16_t)lim);
            while (m) {
                int i = base + __builtin_ctzll(m);
                m &= m - 1;
                uint32_t id = list[i];
                if (vis && leann_visit(vis, id)) continue;
                ids[out] = id;
                ds[out++] = (float)qc->d16_tmp[i];
            }
        }
        if (lock) leann_lock_release(lock);
    } else {
        const uint32_t *src = list;
        if (lock) {
            memcpy(qc->ids_tmp, list, (size_t)deg * sizeof(uint32_t));
            leann_lock_release(lock);
            src = qc->ids_tmp;
        }
        for (int i = 0; i < deg; i++) {
            uint32_t id = src[i];
            if (vis && leann_visit(vis, id)) continue;
            ids[out++] = id;
        }
        score_nodes(qc, ids, out, ds);
    }
    qc->evals += (uint64_t)(qc->src == LEANN_SRC_BLOCKS ? deg : out); /* blocks: the whole list is scored */
    qc->hops++;
    return out;
}

void leann_greedy(const leann_graph *g, leann_qctx *qc, int l, uint32_t *cur, float *curd) {
    int changed = 1;
    while (changed) {
        changed = 0;
        int cnt = leann_expand(g, qc, *cur, l, NULL, INFINITY, qc->nbr_ids, qc->nbr_ds);
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

/* Ask for the lines of v's list at level l (ids and, for BLOCKS, code blocks)
 * before they are needed: the next expansion's memory latency then overlaps
 * the current one's work. */
static inline void prefetch_list(const leann_graph *g, const leann_qctx *qc, uint32_t v, int l) {
    if (g->packed) return;
    int deg;
    const uint32_t *ids = leann_graph_list(g, v, l, &deg);
    prefetch_lines(ids, (size_t)deg * sizeof(uint32_t));
    if (qc->src == LEANN_SRC_BLOCKS) prefetch_lines(list_blocks(g, qc, v, l), blocks_in_use(qc, (size_t)deg));
}

/* What a walk's step asks for of the list it expands next, with no load
 * that would wait for a miss: the list's degree (a relaxed read of a small,
 * cached array: a hint, the expansion re-reads it under the lock), its
 * lock, the id slots in use and the first
 * WALK_PREFETCH_LINES lines of the code blocks in use.  More lines than
 * that in flight at once make the prefetches themselves wait for fill
 * buffers (50k MiniLM: 12-16 lines are best; 100k x 768 with 32 B codes:
 * 16).  With a builder's walks (qc->defer), only WALK_PREFETCH_NOW code
 * lines go now; the rest wait for the next expansion, of the thread's next
 * walk, to issue them once its scan is done: one burst per step filled the
 * fill buffers and stalled on them (100k x 768 graph phase 5.3 -> 4.85 s;
 * 50k MiniLM unchanged). */
#define WALK_PREFETCH_LINES 16
#define WALK_PREFETCH_NOW 8
static inline void prefetch_next_list(const leann_graph *g, const leann_qctx *qc, uint32_t v, int l) {
    if (g->packed || g->off0) return;
    if (qc->locks) LEANN_PREFETCHW(&qc->locks[v & (LEANN_NLOCKS - 1)]);
    const char *ids;
    size_t deg;
    if (l == 0) {
        deg = __atomic_load_n(g->deg0 + v, __ATOMIC_RELAXED);
        ids = (const char *)(g->ids0 + (size_t)v * g->cap0);
    } else {
        size_t slot = (size_t)g->ubase[v] + (size_t)l - 1;
        deg = __atomic_load_n(g->degU + slot, __ATOMIC_RELAXED);
        ids = (const char *)(g->idsU + slot * g->capU);
    }
    prefetch_lines(ids, deg * sizeof(uint32_t));
    if (qc->src == LEANN_SRC_BLOCKS) {
        const char *p = (const char *)list_blocks(g, qc, v, l);
        size_t bytes = blocks_in_use(qc, deg);
        if (bytes > WALK_PREFETCH_LINES * 64) bytes = WALK_PREFETCH_LINES * 64;
        size_t now = bytes;
        if (qc->defer) {
            if (now > WALK_PREFETCH_NOW * 64) now = WALK_PREFETCH_NOW * 64;
            issue_deferred(qc);
            qc->defer->p = p + now;
            qc->defer->bytes = bytes - now;
        }
        prefetch_lines(p, now);
    }
}

int leann_beam_init(leann_beam *b, size_t cap) {
    b->cap = cap ? cap : 1;
    b->keys = leann_calloc(b->cap, sizeof *b->keys, "search beam");
    b->done = leann_calloc(b->cap, 1, "search beam");
    if (b->keys && b->done) return LEANN_OK;
    leann_beam_free(b);
    return LEANN_ERR_NOMEM;
}

void leann_beam_free(leann_beam *b) {
    free(b->keys);
    free(b->done);
    b->keys = NULL;
    b->done = NULL;
}

void leann_walk_init(leann_walk *w, int l, int ef, int lookahead, leann_visited *vis, leann_beam beam,
                     const leann_returnable *ret) {
    w->beam = beam;
    w->lookahead = lookahead;
    w->vis = vis;
    w->ret = ret;
    w->l = l;
    w->ef = ef;
    w->len = w->cur = w->nok = 0;
    w->err = LEANN_OK;
}

void leann_walk_start(leann_walk *w, const leann_graph *g, const leann_qctx *qc, int l, leann_cand ep, int ef,
                      int lookahead, leann_visited *vis, leann_beam beam, const leann_returnable *ret) {
    leann_walk_init(w, l, ef, lookahead, vis, beam, ret);
    leann_visited_next(vis);
    leann_visit(vis, ep.id);
    leann_walk_offer(w, ep.d, ep.id);
    prefetch_list(g, qc, ep.id, l);
}

/* Where key goes among keys[0 .. len): the first key above it, branch-free
 * (a branchy search mispredicted half its steps: 17% of a 50k MiniLM
 * build); the answer stays in [k, k + n]. */
static inline int beam_pos(const uint64_t *keys, int len, uint64_t key) {
    const uint64_t *k = keys;
    int n = len;
    while (n > 1) {
        int half = n >> 1;
        k += key < k[half] ? 0 : half;
        n -= half;
    }
    return (int)(k - keys) + (n == 1 && key >= *k);
}

/* Every node returnable: the beam holds the ef best.  Returns the
 * position key took, or -1. */
static inline int offer_all(leann_walk *w, uint64_t key) {
    uint64_t *keys = w->beam.keys;
    uint8_t *done = w->beam.done;
    int len = w->len, ef = w->ef;
    if (len == ef && key >= keys[len - 1]) return -1;
    int lo = beam_pos(keys, len, key);
    int keep = len < ef ? len : ef - 1;
    memmove(keys + lo + 1, keys + lo, (size_t)(keep - lo) * sizeof *keys);
    memmove(done + lo + 1, done + lo, (size_t)(keep - lo));
    keys[lo] = key;
    done[lo] = 0;
    if (len < ef) w->len = len + 1;
    w->nok = w->len;
    return lo;
}

/* With a predicate: hidden entries do not count toward ef, so the beam
 * holds the ef best returnable nodes and the hidden ones closer than the
 * ef-th of them; it then always ends with a returnable entry. */
static int offer_ret(leann_walk *w, uint64_t key, int ok) {
    int len = w->len, ef = w->ef;
    if (w->nok >= ef && key >= w->beam.keys[len - 1]) return -1;
    if ((size_t)len == w->beam.cap) {
        size_t nc = 2 * w->beam.cap;
        uint64_t *k = realloc(w->beam.keys, nc * sizeof *k);
        if (k) w->beam.keys = k;
        uint8_t *d = k ? realloc(w->beam.done, nc) : NULL;
        if (d) w->beam.done = d;
        if (!k || !d) {
            w->err = leann_fail(LEANN_ERR_NOMEM, "out of memory growing a search beam");
            return -1;
        }
        w->beam.cap = nc;
    }
    uint64_t *keys = w->beam.keys;
    uint8_t *done = w->beam.done;
    int lo = beam_pos(keys, len, key);
    memmove(keys + lo + 1, keys + lo, (size_t)(len - lo) * sizeof *keys);
    memmove(done + lo + 1, done + lo, (size_t)(len - lo));
    keys[lo] = key;
    done[lo] = ok ? 0 : LEANN_BEAM_HIDDEN;
    len++;
    if (ok && ++w->nok > ef) { /* the old ef-th returnable entry is last: drop it */
        len--;
        w->nok--;
    }
    if (w->nok >= ef) /* nothing hidden beyond the ef-th returnable entry */
        while (done[len - 1] & LEANN_BEAM_HIDDEN) len--;
    w->len = len;
    return lo;
}

int leann_walk_offer(leann_walk *w, float d, uint32_t id) {
    uint64_t key = leann_beam_key(d, id);
    return w->ret ? offer_ret(w, key, leann_is_returnable(w->ret, id)) : offer_all(w, key);
}

int leann_walk_step(leann_walk *w, const leann_graph *g, leann_qctx *qc) {
    uint32_t *ids = qc->nbr_ids;
    float *ds = qc->nbr_ds;
    int cur = w->cur;
    if (cur >= w->len || w->err) return 0;
    uint32_t v = leann_beam_id(w->beam.keys[cur]);
    int next = cur + 1; /* where the search for the next entry to expand starts */
    if (w->beam.done[cur] & LEANN_BEAM_HIDDEN) {
        /* a hidden entry is no use once expanded (never returned, never
         * bounds the beam): it leaves, so that insertions move fewer
         * entries (a 50% filter otherwise doubles the beam) */
        memmove(w->beam.keys + cur, w->beam.keys + cur + 1, (size_t)(w->len - cur - 1) * sizeof *w->beam.keys);
        memmove(w->beam.done + cur, w->beam.done + cur + 1, (size_t)(w->len - cur - 1));
        w->len--;
        next = cur;
    } else {
        w->beam.done[cur] |= LEANN_BEAM_DONE;
    }
    for (int nx = next, got = 0; nx < w->len && got < w->lookahead; nx++) {
        if (!(w->beam.done[nx] & LEANN_BEAM_DONE)) {
            prefetch_list(g, qc, leann_beam_id(w->beam.keys[nx]), w->l);
            got++;
        }
    }
    int full = w->ret ? w->nok >= w->ef : w->len == w->ef;
    int cnt = leann_expand(g, qc, v, w->l, w->vis, full ? leann_beam_dist(w->beam.keys[w->len - 1]) : INFINITY,
                           ids, ds);
    int lowest = w->len;
    for (int i = 0; i < cnt; i++) {
        uint64_t key = leann_beam_key(ds[i], ids[i]);
        int lo = w->ret ? offer_ret(w, key, leann_is_returnable(w->ret, ids[i])) : offer_all(w, key);
        if (lo >= 0 && lo < lowest) lowest = lo;
    }
    if (w->err) return 0;
    int len = w->len;
    cur = lowest < next ? lowest : next;
    while (cur < len && (w->beam.done[cur] & LEANN_BEAM_DONE)) cur++;
    w->cur = cur;
    if (cur >= len) return 0;
    prefetch_next_list(g, qc, leann_beam_id(w->beam.keys[cur]), w->l);
    return 1;
}

size_t leann_walk_results(const leann_walk *w, leann_cand *out, size_t max) {
    size_t m = 0;
    for (int i = 0; i < w->len && m < max; i++)
        if (!(w->beam.done[i] & LEANN_BEAM_HIDDEN))
            out[m++] = (leann_cand){leann_beam_dist(w->beam.keys[i]), leann_beam_id(w->beam.keys[i])};
    return m;
}

int leann_search_layer(const leann_graph *g, leann_qctx *qc, int l, leann_cand ep, int ef,
                       leann_visited *vis, leann_beam beam) {
    leann_walk w;
    leann_walk_start(&w, g, qc, l, ep, ef, 2, vis, beam, NULL);
    while (leann_walk_step(&w, g, qc)) {
    }
    return w.len;
}

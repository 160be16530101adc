/* cache.c - the caches of exact rows that save re-embedding:
 *  - a cross-query LRU of recomputed rows with a byte budget (thread-safe);
 *  - the persistent hub cache (float16 rows of chosen nodes, saved with the
 *    index), looked up by binary search over its sorted ids.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

struct leann_lru {
    pthread_mutex_t mu;
    size_t cap, used, tmask;
    int dim;
    float *rows;           /* cap * dim */
    uint32_t *key;         /* slot -> id */
    uint32_t *prev, *next; /* recency list over slots */
    uint32_t head, tail;   /* most / least recently used */
    uint32_t *table;       /* open addressing: slot + 1, 0 = empty */
    int mutex_ok, failed;  /* failed: the slots could not be allocated */
};

static inline size_t lru_hash(const leann_lru *c, uint32_t id) { return (size_t)leann_mix64(id) & c->tmask; }

void leann_lru_free(leann_lru *c) {
    if (!c) return;
    if (c->mutex_ok) pthread_mutex_destroy(&c->mu);
    free(c->rows);
    free(c->key);
    free(c->prev);
    free(c->next);
    free(c->table);
    free(c);
}

static long lru_find(const leann_lru *c, uint32_t id, size_t *pos) {
    size_t i = lru_hash(c, id);
    while (c->table[i]) {
        uint32_t slot = c->table[i] - 1;
        if (c->key[slot] == id) {
            *pos = i;
            return slot;
        }
        i = (i + 1) & c->tmask;
    }
    *pos = i;
    return -1;
}

/* linear probing deletion by backward shift (no tombstones) */
static void lru_table_remove(leann_lru *c, size_t i) {
    size_t j = i;
    for (;;) {
        j = (j + 1) & c->tmask;
        if (!c->table[j]) break;
        size_t k = lru_hash(c, c->key[c->table[j] - 1]);
        int move = i <= j ? (k <= i || k > j) : (k <= i && k > j);
        if (move) {
            c->table[i] = c->table[j];
            i = j;
        }
    }
    c->table[i] = 0;
}

static void lru_unlink(leann_lru *c, uint32_t s) {
    if (c->prev[s] != LEANN_NONE) c->next[c->prev[s]] = c->next[s];
    else c->head = c->next[s];
    if (c->next[s] != LEANN_NONE) c->prev[c->next[s]] = c->prev[s];
    else c->tail = c->prev[s];
}

static void lru_push_front(leann_lru *c, uint32_t s) {
    c->prev[s] = LEANN_NONE;
    c->next[s] = c->head;
    if (c->head != LEANN_NONE) c->prev[c->head] = s;
    c->head = s;
    if (c->tail == LEANN_NONE) c->tail = s;
}

int leann_lru_get(leann_lru *c, uint32_t id, float *out) {
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    size_t pos;
    long s = lru_find(c, id, &pos);
    if (s >= 0) {
        memcpy(out, c->rows + (size_t)s * c->dim, (size_t)c->dim * sizeof(float));
        lru_unlink(c, (uint32_t)s);
        lru_push_front(c, (uint32_t)s);
    }
    pthread_mutex_unlock(&c->mu);
    return s >= 0;
}

/* Allocate the slots on first use (mutex held).  Out of memory leaves the
 * cache empty: rows are then simply not cached. */
static int lru_slots(leann_lru *c) {
    if (c->rows) return 1;
    if (c->failed) return 0;
    c->rows = malloc(c->cap * (size_t)c->dim * sizeof(float));
    c->key = malloc(c->cap * sizeof(uint32_t));
    c->prev = malloc(c->cap * sizeof(uint32_t));
    c->next = malloc(c->cap * sizeof(uint32_t));
    if (c->rows && c->key && c->prev && c->next) return 1;
    free(c->rows);
    free(c->key);
    free(c->prev);
    free(c->next);
    c->rows = NULL;
    c->key = c->prev = c->next = NULL;
    c->failed = 1;
    return 0;
}

void leann_lru_put(leann_lru *c, uint32_t id, const float *row) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    if (!lru_slots(c)) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    size_t pos;
    long s = lru_find(c, id, &pos);
    if (s < 0) {
        if (c->used < c->cap) {
            s = (long)c->used++;
        } else { /* evict the least recently used */
            s = (long)c->tail;
            size_t old;
            (void)lru_find(c, c->key[s], &old);
            lru_table_remove(c, old);
            lru_unlink(c, (uint32_t)s);
            (void)lru_find(c, id, &pos); /* the removal may have moved the free spot */
        }
        c->key[s] = id;
        c->table[pos] = (uint32_t)s + 1;
    } else {
        lru_unlink(c, (uint32_t)s);
    }
    memcpy(c->rows + (size_t)s * c->dim, row, (size_t)c->dim * sizeof(float));
    lru_push_front(c, (uint32_t)s);
    pthread_mutex_unlock(&c->mu);
}

int leann_index_set_cache(leann_index *idx, size_t bytes) {
    if (!idx) return leann_fail(LEANN_ERR_INVALID, "index is NULL");
    leann_lru_free(idx->lru);
    idx->lru = NULL;
    size_t row = (size_t)idx->dim * sizeof(float) + 24; /* row + key, links, hash slots */
    size_t cap = bytes / row;
    if (cap == 0) return LEANN_OK;
    if (cap > idx->g.n) cap = idx->g.n;
    leann_lru *c = leann_calloc(1, sizeof *c, "row cache");
    if (!c) return LEANN_ERR_NOMEM;
    size_t tsize = 2;
    while (tsize < 2 * cap) tsize <<= 1;
    c->cap = cap;
    c->dim = idx->dim;
    c->tmask = tsize - 1;
    c->head = c->tail = LEANN_NONE;
    /* the slots themselves come with the first row (lru_slots): an index
     * that never recomputes (stored vectors) never pays for them */
    c->table = leann_calloc(tsize, sizeof(uint32_t), "row cache");
    c->mutex_ok = c->table && !pthread_mutex_init(&c->mu, NULL);
    if (!c->mutex_ok) {
        leann_lru_free(c);
        return leann_fail(LEANN_ERR_NOMEM, "cannot allocate the row cache");
    }
    idx->lru = c;
    return LEANN_OK;
}

size_t leann_index_cache_entries(const leann_index *idx) {
    if (!idx || !idx->lru) return 0;
    pthread_mutex_lock(&idx->lru->mu);
    size_t u = idx->lru->used;
    pthread_mutex_unlock(&idx->lru->mu);
    return u;
}

/* ---- hub cache ---- */

int leann_index_hub_candidates(const leann_index *idx, uint32_t *out, size_t count) {
    if (!idx || (!out && count)) return leann_fail(LEANN_ERR_INVALID, "leann_index_hub_candidates: NULL argument");
    const leann_graph *g = &idx->g;
    if (count > g->n) return leann_fail(LEANN_ERR_INVALID, "asked for %zu hubs of %zu nodes", count, g->n);
    /* in-degree at level 0: the nodes searches pass through most */
    uint32_t *indeg = leann_calloc(g->n, sizeof(uint32_t), "hub ranking");
    uint64_t *order = leann_malloc((g->n ? g->n : 1) * sizeof(uint64_t), "hub ranking");
    uint32_t *buf = leann_malloc(((size_t)g->cap0 + 256) * sizeof(uint32_t), "hub ranking");
    if (!indeg || !order || !buf) {
        free(indeg);
        free(order);
        free(buf);
        return LEANN_ERR_NOMEM;
    }
    for (size_t v = 0; v < g->n; v++) {
        int deg;
        const uint32_t *ids = leann_graph_nbrs(g, (uint32_t)v, 0, buf, &deg);
        for (int i = 0; i < deg; i++) indeg[ids[i]]++;
    }
    for (size_t v = 0; v < g->n; v++) order[v] = ((uint64_t)(0xFFFFFFFFu - indeg[v]) << 32) | v;
    qsort(order, g->n, sizeof *order, leann_cmp_u64);
    for (size_t i = 0; i < count; i++) out[i] = (uint32_t)(order[i] & 0xFFFFFFFFu);
    free(indeg);
    free(order);
    free(buf);
    return LEANN_OK;
}

int leann_index_set_hub_cache(leann_index *idx, const uint32_t *ids, const float *rows, size_t count) {
    if (!idx || (count && (!ids || !rows))) return leann_fail(LEANN_ERR_INVALID, "leann_index_set_hub_cache: NULL argument");
    size_t dim = (size_t)idx->dim, total;
    if (!leann_mul_ok(count, dim, &total)) return LEANN_ERR_INVALID;
    for (size_t i = 0; i < count; i++)
        if (ids[i] >= idx->g.n) return leann_fail(LEANN_ERR_INVALID, "hub id %u is out of range", ids[i]);
    for (size_t i = 0; i < total; i++)
        if (!isfinite(rows[i])) return leann_fail(LEANN_ERR_INVALID, "hub row %zu has a non-finite value", i / dim);
    uint64_t *order = leann_malloc((count ? count : 1) * sizeof(uint64_t), "hub cache");
    uint32_t *hid = leann_malloc((count ? count : 1) * sizeof(uint32_t), "hub cache");
    uint16_t *hv = leann_malloc((total ? total : 1) * sizeof(uint16_t), "hub cache");
    if (!order || !hid || !hv) {
        free(order);
        free(hid);
        free(hv);
        return LEANN_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++) order[i] = ((uint64_t)ids[i] << 32) | i;
    qsort(order, count, sizeof *order, leann_cmp_u64);
    size_t m = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t id = (uint32_t)(order[i] >> 32);
        if (m && hid[m - 1] == id) continue; /* duplicates: first row wins */
        const float *r = rows + (order[i] & 0xFFFFFFFFu) * dim;
        hid[m] = id;
        for (size_t k = 0; k < dim; k++) hv[m * dim + k] = leann_f32_to_f16(r[k]);
        m++;
    }
    free(order);
    free(idx->hub_ids);
    free(idx->hub_vecs);
    idx->hub_ids = hid;
    idx->hub_vecs = hv;
    idx->nhub = m;
    return LEANN_OK;
}

size_t leann_index_hub_count(const leann_index *idx) { return idx ? idx->nhub : 0; }

int leann_hub_get(const leann_index *idx, uint32_t id, float *out) {
    size_t lo = 0, hi = idx->nhub;
    while (lo < hi) {
        size_t mid = (lo + hi) >> 1;
        if (idx->hub_ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo >= idx->nhub || idx->hub_ids[lo] != id) return 0;
    const uint16_t *h = idx->hub_vecs + lo * (size_t)idx->dim;
    for (int k = 0; k < idx->dim; k++) out[k] = leann_f16_to_f32(h[k]);
    return 1;
}

/* index_io.c - an index to and from its file (sections of format.c).
 *
 * Sections (arrays are little-endian native; format.c rejects files written
 * with the other byte order):
 *   META     u64[16]: layout version, n, dim, metric, M, cap0, capU, entry,
 *            maxlevel, code_bytes, has_vectors, has_tombstones, hubs,
 *            has_calibration, code bits (layout 3), distance estimator
 *            (layout 4: LEANN_EST_*)
 *   UMETA    the caller's metadata blob (JSON from the Python layer)
 *   CODEC    i32 dim, dp, msub, accumulate; f32 scale, bias, 0, 0;
 *            centroids (f32), mean (f32), components (f16: the Python layer
 *            rounds them to float16 before use, so this is lossless)
 *   CODES    n * code_bytes
 *   LVL00..  one per level: u64 count, width, nwords, has_nodes; nodes
 *            (u32, level >= 1), degrees (u8), block offsets (u64), bits (u64);
 *            each array padded to 8 bytes
 *   VECTORS  n * dim f32 (indexes that store vectors)
 *   TOMB     (n + 63) / 64 u64 tombstone words
 *   HUBS     u64 count; ids (u32, ascending); rows (f16)
 *   EST      f32 norm, u32 0: the normalised estimator's norm (layout 4,
 *            when META word 15 is LEANN_EST_NORMALISED)
 *   CALIB    LEANN_CALIB_LEVELS f32: estimate error quantiles (layout 2, when
 *            META word 13 is 1)
 * Loading checks every count, length, offset and id against the others
 * before anything uses it.
 */
#include "format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define META_WORDS 16
/* layout 2 (format version 2): META word 13 flags a CALIB section; code
 * sizes up to 64 bytes.  Layout 3 (format version 3): META word 14 is the
 * search codes' bits (4 or 8; 8-bit codes up to 128 bytes).  Layouts 1 and
 * 2 still load (4-bit codes; layout 1 without calibration).  Layout 4
 * (format version 4): META word 15 is the distance estimator, whose norm
 * the EST section holds; older layouts load with LEANN_EST_CODE, their
 * calibration being of code distances. */
#define META_LAYOUT 4

static size_t pad8(size_t x) { return (x + 7) & ~(size_t)7; }

typedef struct {
    leann_section_out s[10 + LEANN_MAX_LEVEL + 1];
    void *owned[10 + LEANN_MAX_LEVEL + 1];
    int n, nowned;
    uint64_t meta[META_WORDS];
} sections;

static void sections_free(sections *x) {
    for (int i = 0; i < x->nowned; i++) free(x->owned[i]);
}

static void add(sections *x, const char *tag, const void *data, uint64_t len) {
    leann_section_out *s = &x->s[x->n++];
    memset(s->tag, 0, sizeof s->tag);
    memcpy(s->tag, tag, strlen(tag) < 8 ? strlen(tag) : 8);
    s->data = data;
    s->len = len;
}

static void *own(sections *x, size_t bytes) {
    void *p = leann_calloc(bytes ? bytes : 1, 1, "index file buffer");
    if (p) x->owned[x->nowned++] = p;
    return p;
}

static int level_bytes(const leann_packed *p, int l, size_t *out) {
    *out = 32 + (l ? pad8(p->count * 4) : 0) + pad8(p->count) + (p->count / 64 + 1) * 8 + p->nwords * 8;
    return LEANN_OK;
}

static int collect(const leann_index *idx, sections *x, int with_data) {
    memset(x, 0, sizeof *x);
    const leann_graph *g = &idx->g;
    if (!g->packed) return leann_fail(LEANN_ERR_INVALID, "only a finished (packed) index can be saved");
    const leann_codec *c = idx->codec;
    uint64_t *m = x->meta;
    m[0] = META_LAYOUT;
    m[1] = g->n;
    m[2] = (uint64_t)idx->dim;
    m[3] = (uint64_t)idx->metric;
    m[4] = (uint64_t)g->M;
    m[5] = (uint64_t)g->cap0;
    m[6] = (uint64_t)g->capU;
    m[7] = g->entry;
    m[8] = (uint64_t)g->maxlevel;
    m[9] = idx->codes ? (uint64_t)idx->code_bytes : 0;
    m[10] = idx->vectors ? 1 : 0;
    m[11] = idx->tomb ? 1 : 0;
    m[12] = idx->nhub;
    m[13] = idx->has_calib ? 1 : 0;
    m[14] = c && idx->codes ? (uint64_t)leann_codec_bits(c) : 0;
    m[15] = (uint64_t)idx->est_kind;
    add(x, "META", m, sizeof x->meta);
    add(x, "UMETA", idx->umeta, idx->umeta_len);
    if (c && idx->codes) {
        size_t nc = (size_t)c->msub * c->ksub * (size_t)c->dsub, np = (size_t)c->dp * (size_t)c->dim;
        size_t bytes = 32 + 4 * (nc + (size_t)c->dim) + pad8(2 * np);
        uint8_t *b = with_data ? own(x, bytes) : NULL;
        if (with_data && !b) return LEANN_ERR_NOMEM;
        if (b) {
            int32_t h[4] = {c->dim, c->dp, c->msub, c->accumulate};
            float f[4] = {c->scale, c->bias, 0.0f, 0.0f};
            memcpy(b, h, 16);
            memcpy(b + 16, f, 16);
            memcpy(b + 32, c->centroids, nc * 4);
            memcpy(b + 32 + nc * 4, c->mean, (size_t)c->dim * 4);
            uint16_t *h16 = (uint16_t *)(b + 32 + (nc + (size_t)c->dim) * 4);
            for (size_t i = 0; i < np; i++) h16[i] = leann_f32_to_f16(c->components[i]);
        }
        add(x, "CODEC", b, bytes);
        add(x, "CODES", idx->codes, (uint64_t)g->n * (uint64_t)idx->code_bytes);
    }
    for (int l = 0; l <= g->maxlevel; l++) {
        const leann_packed *p = &g->packed[l];
        size_t bytes;
        level_bytes(p, l, &bytes);
        uint8_t *b = with_data ? own(x, bytes) : NULL;
        if (with_data && !b) return LEANN_ERR_NOMEM;
        if (b) {
            uint64_t h[4] = {p->count, (uint64_t)p->width, p->nwords, p->nodes ? 1 : 0};
            size_t off = 32;
            memcpy(b, h, 32);
            if (l) {
                memcpy(b + off, p->nodes, p->count * 4);
                off += pad8(p->count * 4);
            }
            memcpy(b + off, p->deg, p->count);
            off += pad8(p->count);
            memcpy(b + off, p->boff, (p->count / 64 + 1) * 8);
            off += (p->count / 64 + 1) * 8;
            memcpy(b + off, p->bits, p->nwords * 8);
        }
        char tag[9];
        snprintf(tag, sizeof tag, "LVL%02d", l);
        add(x, tag, b, bytes);
    }
    if (idx->vectors) add(x, "VECTORS", idx->vectors, (uint64_t)g->n * (uint64_t)idx->dim * 4);
    if (idx->tomb) add(x, "TOMB", idx->tomb, (g->n + 63) / 64 * 8);
    if (idx->nhub) {
        size_t bytes = 8 + pad8(idx->nhub * 4) + idx->nhub * (size_t)idx->dim * 2;
        uint8_t *b = with_data ? own(x, bytes) : NULL;
        if (with_data && !b) return LEANN_ERR_NOMEM;
        if (b) {
            uint64_t cnt = idx->nhub;
            memcpy(b, &cnt, 8);
            memcpy(b + 8, idx->hub_ids, idx->nhub * 4);
            memcpy(b + 8 + pad8(idx->nhub * 4), idx->hub_vecs, idx->nhub * (size_t)idx->dim * 2);
        }
        add(x, "HUBS", b, bytes);
    }
    if (idx->est_kind == LEANN_EST_NORMALISED) {
        float *e = with_data ? own(x, 8) : NULL;
        if (with_data && !e) return LEANN_ERR_NOMEM;
        if (e) e[0] = idx->est_norm; /* e[1]: 0 (own zeroes) */
        add(x, "EST", e, 8);
    }
    if (idx->has_calib) add(x, "CALIB", idx->calib, sizeof idx->calib);
    return LEANN_OK;
}

int leann_index_saved_size(const leann_index *idx, uint64_t *bytes) {
    if (!idx || !bytes) return leann_fail(LEANN_ERR_INVALID, "leann_index_saved_size: NULL argument");
    sections x;
    int st = collect(idx, &x, 0);
    if (st == LEANN_OK) {
        uint64_t total = LEANN_FILE_HEADER_BYTES;
        for (int i = 0; i < x.n; i++) total += pad8(x.s[i].len);
        *bytes = total + (uint64_t)x.n * LEANN_FILE_ENTRY_BYTES + 4;
    }
    sections_free(&x);
    return st;
}

int leann_index_save(const leann_index *idx, const char *path, uint64_t *written) {
    if (!idx || !path) return leann_fail(LEANN_ERR_INVALID, "leann_index_save: NULL argument");
    sections x;
    int st = collect(idx, &x, 1);
    if (st == LEANN_OK) st = leann_file_write(path, x.s, x.n, written);
    sections_free(&x);
    return st;
}

/* ---- loading ---- */
#define BAD(...) leann_fail(LEANN_ERR_CORRUPT, __VA_ARGS__)

static int get(const leann_file *f, const char *tag, const void **d, uint64_t *len, uint64_t want) {
    int st = leann_file_section(f, tag, d, len);
    if (st != LEANN_OK) return st;
    if (want != UINT64_MAX && *len != want)
        return BAD("index file '%s': section '%s' has %llu bytes, expected %llu", leann_file_name(f), tag,
                   (unsigned long long)*len, (unsigned long long)want);
    return LEANN_OK;
}

static int load_level(const leann_file *f, leann_graph *g, int l) {
    char tag[9];
    snprintf(tag, sizeof tag, "LVL%02d", l);
    const char *name = leann_file_name(f);
    const uint8_t *b;
    uint64_t len;
    int st = get(f, tag, (const void **)&b, &len, UINT64_MAX);
    if (st != LEANN_OK) return st;
    if (len < 32) return BAD("index file '%s': section '%s' is too short", name, tag);
    uint64_t h[4];
    memcpy(h, b, 32);
    uint64_t count = h[0], width = h[1], nwords = h[2];
    if (h[3] != (l ? 1u : 0u)) return BAD("index file '%s': section '%s' has a bad node-list flag", name, tag);
    if (l == 0 ? count != g->n : (count == 0 || count > g->packed[l - 1].count))
        return BAD("index file '%s': section '%s' holds %llu lists, which does not fit the graph", name, tag,
                   (unsigned long long)count);
    if (width < 1 || width > 32 || (g->n > 1 && ((uint64_t)1 << width) < g->n && width < 32))
        return BAD("index file '%s': section '%s' has id width %llu for %zu nodes", name, tag,
                   (unsigned long long)width, g->n);
    if (nwords == 0 || nwords > len / 8)
        return BAD("index file '%s': section '%s' has a bad word count", name, tag);
    size_t nblk = (size_t)count / 64 + 1;
    uint64_t need = 32 + (l ? pad8(count * 4) : 0) + pad8(count) + nblk * 8 + nwords * 8;
    if (need != len)
        return BAD("index file '%s': section '%s' has %llu bytes, its counts need %llu", name, tag,
                   (unsigned long long)len, (unsigned long long)need);
    leann_packed *p = &g->packed[l];
    p->count = count;
    p->width = (int)width;
    p->nwords = nwords;
    p->deg = leann_malloc(count, "packed degrees");
    p->boff = leann_malloc(nblk * 8, "packed offsets");
    p->bits = leann_malloc(nwords * 8, "packed links");
    if (l) p->nodes = leann_malloc(count * 4, "level nodes");
    if (!p->deg || !p->boff || !p->bits || (l && !p->nodes)) return LEANN_ERR_NOMEM;
    size_t off = 32;
    if (l) {
        memcpy(p->nodes, b + off, count * 4);
        off += pad8(count * 4);
        for (size_t i = 0; i < count; i++) {
            if (p->nodes[i] >= g->n || (i && p->nodes[i] <= p->nodes[i - 1]))
                return BAD("index file '%s': section '%s' has a bad node list", name, tag);
            if (leann_packed_find(&g->packed[l - 1], p->nodes[i]) < 0)
                return BAD("index file '%s': section '%s' lists node %u, absent from the level below", name, tag,
                           p->nodes[i]);
        }
    }
    memcpy(p->deg, b + off, count);
    off += pad8(count);
    memcpy(p->boff, b + off, nblk * 8);
    off += nblk * 8;
    memcpy(p->bits, b + off, nwords * 8);
    int cap = l ? g->capU : g->cap0;
    uint64_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        if ((i & 63) == 0 && p->boff[i >> 6] != pos)
            return BAD("index file '%s': section '%s' has a bad block offset", name, tag);
        if (p->deg[i] > cap) return BAD("index file '%s': section '%s' has a list longer than %d", name, tag, cap);
        pos += (uint64_t)p->deg[i] * width;
    }
    if ((count & 63) == 0 && p->boff[count >> 6] != pos)
        return BAD("index file '%s': section '%s' has a bad block offset", name, tag);
    if ((pos + 63) / 64 + 1 != nwords)
        return BAD("index file '%s': section '%s' holds %llu words for %llu bits", name, tag,
                   (unsigned long long)nwords, (unsigned long long)pos);
    for (uint64_t q = 0; q < pos; q += width) {
        uint32_t id = leann_bits_get(p->bits, q, (int)width);
        if (id >= g->n) return BAD("index file '%s': section '%s' links to id %u of %zu", name, tag, id, g->n);
    }
    return LEANN_OK;
}

static int load_file(const leann_file *f, leann_index *idx) {
    const char *name = leann_file_name(f);
    const void *d;
    uint64_t len;
    int st = get(f, "META", &d, &len, META_WORDS * 8);
    if (st != LEANN_OK) return st;
    uint64_t m[META_WORDS];
    memcpy(m, d, sizeof m);
    if (m[0] < 1 || m[0] > META_LAYOUT) return BAD("index file '%s': section 'META' has unknown layout %llu", name, (unsigned long long)m[0]);
    uint64_t n = m[1];
    if (n == 0 || n >= LEANN_NONE) return BAD("index file '%s': section 'META' has node count %llu", name, (unsigned long long)n);
    if (m[2] < 1 || m[2] > 65536) return BAD("index file '%s': section 'META' has dimension %llu", name, (unsigned long long)m[2]);
    if (m[3] != LEANN_METRIC_L2 && m[3] != LEANN_METRIC_IP) return BAD("index file '%s': section 'META' has an unknown metric", name);
    if (m[4] < 2 || m[4] > 256 || m[5] < 1 || m[5] > 255 || m[6] < 1 || m[6] > 255)
        return BAD("index file '%s': section 'META' has bad degrees", name);
    if (m[7] >= n) return BAD("index file '%s': section 'META' has entry point %llu of %llu", name, (unsigned long long)m[7], (unsigned long long)n);
    if (m[8] > LEANN_MAX_LEVEL) return BAD("index file '%s': section 'META' has %llu levels", name, (unsigned long long)m[8]);
    uint64_t bits = m[0] >= 3 ? m[14] : m[9] ? 4 : 0;
    if ((m[9] != 0) != (bits != 0) || (bits && bits != 4 && bits != 8))
        return BAD("index file '%s': section 'META' has code bits %llu", name, (unsigned long long)bits);
    uint64_t msub = bits == 8 ? m[9] : 2 * m[9];
    if (m[9] != 0 && (msub > 128 || !leann_codec_valid_subspaces((int)msub) || (bits == 4 && m[9] > 64) ||
                      (m[0] < 2 && m[9] > 32)))
        return BAD("index file '%s': section 'META' has code size %llu", name, (unsigned long long)m[9]);
    if (m[10] > 1 || m[11] > 1 || m[12] > n || m[13] > (m[0] >= 2 ? 1u : 0u) || (m[13] && !m[9]))
        return BAD("index file '%s': section 'META' has bad flags", name);
    if (m[0] >= 4 && m[15] != LEANN_EST_CODE && (m[15] != LEANN_EST_NORMALISED || !m[9]))
        return BAD("index file '%s': section 'META' has distance estimator %llu", name, (unsigned long long)m[15]);
    for (int i = m[0] >= 4 ? 16 : m[0] >= 3 ? 15 : 14; i < META_WORDS; i++)
        if (m[i]) return BAD("index file '%s': section 'META' has bad flags", name);
    if (!m[10] && !m[9]) return BAD("index file '%s': section 'META': the index has neither vectors nor codes", name);
    idx->dim = (int)m[2];
    idx->metric = (int)m[3];
    leann_graph *g = &idx->g;
    g->n = (size_t)n;
    g->M = (int)m[4];
    g->cap0 = (int)m[5];
    g->capU = (int)m[6];
    g->entry = (uint32_t)m[7];
    g->maxlevel = (int)m[8];
    g->packed = leann_calloc((size_t)g->maxlevel + 1, sizeof(leann_packed), "packed levels");
    if (!g->packed) return LEANN_ERR_NOMEM;
    for (int l = 0; l <= g->maxlevel; l++)
        if ((st = load_level(f, g, l)) != LEANN_OK) return st;
    if (leann_packed_find(&g->packed[g->maxlevel], g->entry) < 0)
        return BAD("index file '%s': the entry point is not on the top level", name);
    char extra[16];  /* "LVL" and any int: no truncation, whatever maxlevel holds */
    snprintf(extra, sizeof extra, "LVL%02d", g->maxlevel + 1);
    if (leann_file_has(f, extra)) return BAD("index file '%s': section '%s' is beyond the top level", name, extra);
    if ((st = get(f, "UMETA", &d, &len, UINT64_MAX)) != LEANN_OK) return st;
    if ((st = leann_index_set_meta(idx, d, (size_t)len)) != LEANN_OK) return st;
    if (m[9]) {
        const uint8_t *b;
        if ((st = get(f, "CODEC", (const void **)&b, &len, UINT64_MAX)) != LEANN_OK) return st;
        if (len < 32) return BAD("index file '%s': section 'CODEC' is too short", name);
        int32_t h[4];
        float fl[4];
        memcpy(h, b, 16);
        memcpy(fl, b + 16, 16);
        if (h[0] != idx->dim || h[2] != (int32_t)msub || h[1] <= 0 || h[1] > 65536 || h[1] % h[2])
            return BAD("index file '%s': section 'CODEC' does not match the index", name);
        size_t nc = (size_t)h[2] * ((size_t)1 << bits) * (size_t)(h[1] / h[2]), np = (size_t)h[1] * (size_t)h[0];
        size_t want = 32 + 4 * (nc + (size_t)h[0]) + pad8(2 * np);
        if (len != want)
            return BAD("index file '%s': section 'CODEC' has %llu bytes, its sizes need %zu", name,
                       (unsigned long long)len, want);
        float *arr = leann_malloc((nc + (size_t)h[0] + np) * 4, "codec");
        if (!arr) return LEANN_ERR_NOMEM;
        memcpy(arr, b + 32, (nc + (size_t)h[0]) * 4);
        const uint8_t *h16 = b + 32 + 4 * (nc + (size_t)h[0]);
        for (size_t i = 0; i < np; i++) {
            uint16_t v;
            memcpy(&v, h16 + 2 * i, 2);
            arr[nc + (size_t)h[0] + i] = leann_f16_to_f32(v);
        }
        st = leann_codec_new(h[1], h[2], (int)bits, arr, fl[0], h[3], &idx->codec);
        if (st == LEANN_OK) st = leann_codec_set_pca(idx->codec, h[0], arr + nc, arr + nc + h[0], fl[1]);
        free(arr);
        if (st != LEANN_OK) return BAD("index file '%s': section 'CODEC' is invalid: %s", name, leann_last_error());
        if ((st = get(f, "CODES", &d, &len, n * m[9])) != LEANN_OK) return st;
        idx->code_bytes = (int)m[9];
        idx->codes = leann_malloc((size_t)len, "codes");
        if (!idx->codes) return LEANN_ERR_NOMEM;
        memcpy(idx->codes, d, (size_t)len);
    }
    if (m[10]) {
        if ((st = get(f, "VECTORS", &d, &len, n * m[2] * 4)) != LEANN_OK) return st;
        idx->vectors = leann_calloc_big((size_t)len, 1, "stored vectors", 0);
        if (!idx->vectors) return LEANN_ERR_NOMEM;
        memcpy(idx->vectors, d, (size_t)len);
        for (size_t i = 0; i < n * m[2]; i++)
            if (!isfinite(idx->vectors[i])) return BAD("index file '%s': section 'VECTORS' has a non-finite value", name);
    }
    if (m[11]) {
        size_t words = ((size_t)n + 63) / 64;
        if ((st = get(f, "TOMB", &d, &len, words * 8)) != LEANN_OK) return st;
        idx->tomb = leann_malloc(words * 8, "tombstones");
        if (!idx->tomb) return LEANN_ERR_NOMEM;
        memcpy(idx->tomb, d, words * 8);
        if ((n & 63) && (idx->tomb[words - 1] >> (n & 63)))
            return BAD("index file '%s': section 'TOMB' marks ids beyond the index", name);
        for (size_t w = 0; w < words; w++) idx->ntomb += (size_t)__builtin_popcountll(idx->tomb[w]);
    }
    if (m[12]) {
        const uint8_t *b;
        size_t cnt = (size_t)m[12], dim = (size_t)m[2];
        if ((st = get(f, "HUBS", (const void **)&b, &len, 8 + pad8(cnt * 4) + cnt * dim * 2)) != LEANN_OK) return st;
        uint64_t c0;
        memcpy(&c0, b, 8);
        if (c0 != cnt) return BAD("index file '%s': section 'HUBS' disagrees with 'META'", name);
        idx->hub_ids = leann_malloc(cnt * 4, "hub cache");
        idx->hub_vecs = leann_malloc(cnt * dim * 2, "hub cache");
        if (!idx->hub_ids || !idx->hub_vecs) return LEANN_ERR_NOMEM;
        memcpy(idx->hub_ids, b + 8, cnt * 4);
        memcpy(idx->hub_vecs, b + 8 + pad8(cnt * 4), cnt * dim * 2);
        idx->nhub = cnt;
        for (size_t i = 0; i < cnt; i++)
            if (idx->hub_ids[i] >= n || (i && idx->hub_ids[i] <= idx->hub_ids[i - 1]))
                return BAD("index file '%s': section 'HUBS' has a bad id list", name);
        for (size_t i = 0; i < cnt * dim; i++)
            if ((idx->hub_vecs[i] & 0x7C00u) == 0x7C00u)
                return BAD("index file '%s': section 'HUBS' has a non-finite value", name);
    }
    if (m[0] >= 4 && m[15] == LEANN_EST_NORMALISED) {
        if ((st = get(f, "EST", &d, &len, 8)) != LEANN_OK) return st;
        float e[2];
        memcpy(e, d, sizeof e);
        if (e[1] != 0.0f || leann_index_set_estimator(idx, LEANN_EST_NORMALISED, e[0]) != LEANN_OK)
            return BAD("index file '%s': section 'EST' is invalid: %s", name, leann_last_error());
    } else if (leann_file_has(f, "EST")) {
        return BAD("index file '%s': section 'EST' is not announced by 'META'", name);
    }
    if (m[13]) {
        if ((st = get(f, "CALIB", &d, &len, sizeof idx->calib)) != LEANN_OK) return st;
        float q[LEANN_CALIB_LEVELS];
        memcpy(q, d, sizeof q);
        if (leann_index_set_calibration(idx, q, LEANN_CALIB_LEVELS) != LEANN_OK)
            return BAD("index file '%s': section 'CALIB' is invalid: %s", name, leann_last_error());
    } else if (leann_file_has(f, "CALIB")) {
        return BAD("index file '%s': section 'CALIB' is not announced by 'META'", name);
    }
    return LEANN_OK;
}

int leann_index_load(const char *path, leann_index **out) {
    if (!path || !out) return leann_fail(LEANN_ERR_INVALID, "leann_index_load: NULL argument");
    *out = NULL;
    leann_file *f;
    int st = leann_file_read(path, &f);
    if (st != LEANN_OK) return st;
    leann_index *idx;
    st = leann_index_new(NULL, NULL, 0, NULL, 0, 0, &idx);
    if (st != LEANN_OK) {
        leann_file_close(f);
        return st;
    }
    st = load_file(f, idx);
    leann_file_close(f);
    if (st != LEANN_OK) {
        leann_index_free(idx);
        return st;
    }
    *out = idx;
    return LEANN_OK;
}

/* flash.c - 4-bit PQ codec on PCA projections, distance tables and the
 * block-of-16 lookup kernels (scalar, SSSE3, AVX2, AVX-512BW, NEON).
 *
 * Block layout: a block holds 16 codes transposed: row r (16 bytes) is byte r
 * of the 16 codes.  Permuted table layout: for each group of 4 code bytes
 * (8 subspaces), the 4 low-nibble tables (subspaces 2r) then the 4 high-nibble
 * tables (subspaces 2r+1), 16 bytes each.  One SSSE3 load of 16, AVX2 load of
 * 32 or AVX-512 load of 64 table bytes then matches one load of code rows.
 * Codes on disk and in memory stay canonical; only the table is permuted.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef LEANN_X86
#include <immintrin.h>
#endif
#ifdef LEANN_NEON
#include <arm_neon.h>
#endif

/* ---- table permutation ---- */
void leann_permute_table(const uint8_t *canonical, int msub, uint8_t *permuted) {
    int code_bytes = msub / 2;
    for (int r = 0; r < code_bytes; r++) {
        int g = r / 4, j = r % 4;
        memcpy(permuted + g * 128 + j * 16, canonical + (2 * r) * 16, 16);
        memcpy(permuted + g * 128 + 64 + j * 16, canonical + (2 * r + 1) * 16, 16);
    }
}

/* ---- scalar reference kernel ---- */
static void scan_scalar(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t,
                        uint16_t *out, int acc8) {
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        for (int c = 0; c < 16; c++) {
            uint32_t s = 0;
            for (int r = 0; r < cb; r++) {
                uint8_t byte = blk[r * 16 + c];
                const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
                s += tg[byte & 15] + tg[64 + (byte >> 4)];
            }
            out[b * 16 + c] = (uint16_t)(acc8 && s > 255 ? 255 : s);
        }
    }
}
static void scan_scalar8(const uint8_t *b, size_t n, int cb, const uint8_t *t, uint16_t *o) {
    scan_scalar(b, n, cb, t, o, 1);
}
static void scan_scalar16(const uint8_t *b, size_t n, int cb, const uint8_t *t, uint16_t *o) {
    scan_scalar(b, n, cb, t, o, 0);
}

#ifdef LEANN_X86
/* ---- SSSE3 ---- */
__attribute__((target("ssse3"))) static inline void
store16_from_eo(__m128i e, __m128i o, uint16_t *out) {
    _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi16(e, o));
    _mm_storeu_si128((__m128i *)(out + 8), _mm_unpackhi_epi16(e, o));
}

__attribute__((target("ssse3"))) static void
scan_ssse3_16(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t, uint16_t *out) {
    const __m128i nib = _mm_set1_epi8(0x0F), low = _mm_set1_epi16(0x00FF);
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        __m128i e = _mm_setzero_si128(), o = _mm_setzero_si128();
        for (int r = 0; r < cb; r++) {
            const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
            __m128i c = _mm_loadu_si128((const __m128i *)(blk + r * 16));
            __m128i lo = _mm_and_si128(c, nib);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(c, 4), nib);
            __m128i vl = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)tg), lo);
            __m128i vh = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(tg + 64)), hi);
            e = _mm_add_epi16(e, _mm_add_epi16(_mm_and_si128(vl, low), _mm_and_si128(vh, low)));
            o = _mm_add_epi16(o, _mm_add_epi16(_mm_srli_epi16(vl, 8), _mm_srli_epi16(vh, 8)));
        }
        store16_from_eo(e, o, out + b * 16);
    }
}

__attribute__((target("ssse3"))) static void
scan_ssse3_8(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t, uint16_t *out) {
    const __m128i nib = _mm_set1_epi8(0x0F), zero = _mm_setzero_si128();
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        __m128i acc = zero;
        for (int r = 0; r < cb; r++) {
            const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
            __m128i c = _mm_loadu_si128((const __m128i *)(blk + r * 16));
            __m128i lo = _mm_and_si128(c, nib);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(c, 4), nib);
            __m128i vl = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)tg), lo);
            __m128i vh = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(tg + 64)), hi);
            acc = _mm_adds_epu8(acc, _mm_adds_epu8(vl, vh)); /* unsigned saturation */
        }
        _mm_storeu_si128((__m128i *)(out + b * 16), _mm_unpacklo_epi8(acc, zero));
        _mm_storeu_si128((__m128i *)(out + b * 16 + 8), _mm_unpackhi_epi8(acc, zero));
    }
}

/* ---- AVX2: two code rows per instruction (one per 128-bit lane) ---- */
__attribute__((target("avx2"))) static void
scan_avx2_16(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t, uint16_t *out) {
    const __m256i nib = _mm256_set1_epi8(0x0F), low = _mm256_set1_epi16(0x00FF);
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        __m256i e = _mm256_setzero_si256(), o = _mm256_setzero_si256();
        for (int r = 0; r < cb; r += 2) {
            const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
            __m256i c = _mm256_loadu_si256((const __m256i *)(blk + r * 16));
            __m256i lo = _mm256_and_si256(c, nib);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
            __m256i vl = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)tg), lo);
            __m256i vh = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(tg + 64)), hi);
            e = _mm256_add_epi16(e, _mm256_add_epi16(_mm256_and_si256(vl, low),
                                                      _mm256_and_si256(vh, low)));
            o = _mm256_add_epi16(o, _mm256_add_epi16(_mm256_srli_epi16(vl, 8),
                                                      _mm256_srli_epi16(vh, 8)));
        }
        __m128i e1 = _mm_add_epi16(_mm256_castsi256_si128(e), _mm256_extracti128_si256(e, 1));
        __m128i o1 = _mm_add_epi16(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1));
        _mm_storeu_si128((__m128i *)(out + b * 16), _mm_unpacklo_epi16(e1, o1));
        _mm_storeu_si128((__m128i *)(out + b * 16 + 8), _mm_unpackhi_epi16(e1, o1));
    }
}

__attribute__((target("avx2"))) static void
scan_avx2_8(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t, uint16_t *out) {
    const __m256i nib = _mm256_set1_epi8(0x0F);
    const __m128i zero = _mm_setzero_si128();
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        __m256i acc = _mm256_setzero_si256();
        for (int r = 0; r < cb; r += 2) {
            const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
            __m256i c = _mm256_loadu_si256((const __m256i *)(blk + r * 16));
            __m256i lo = _mm256_and_si256(c, nib);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
            __m256i vl = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)tg), lo);
            __m256i vh = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(tg + 64)), hi);
            acc = _mm256_adds_epu8(acc, _mm256_adds_epu8(vl, vh));
        }
        __m128i a = _mm_adds_epu8(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        _mm_storeu_si128((__m128i *)(out + b * 16), _mm_unpacklo_epi8(a, zero));
        _mm_storeu_si128((__m128i *)(out + b * 16 + 8), _mm_unpackhi_epi8(a, zero));
    }
}

/* ---- AVX-512BW: four code rows per instruction ---- */
__attribute__((target("avx512f,avx512bw"))) static inline __m128i fold512_16(__m512i v) {
    __m256i h = _mm256_add_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
__attribute__((target("avx512f,avx512bw"))) static inline __m128i fold512_8(__m512i v) {
    __m256i h = _mm256_adds_epu8(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_adds_epu8(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

__attribute__((target("avx512f,avx512bw"))) static void
scan_avx512_16(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t, uint16_t *out) {
    const __m512i nib = _mm512_set1_epi8(0x0F), low = _mm512_set1_epi16(0x00FF);
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        __m512i e = _mm512_setzero_si512(), o = _mm512_setzero_si512();
        for (int r = 0; r < cb; r += 4) {
            const uint8_t *tg = t + (r / 4) * 128;
            __m512i c = _mm512_loadu_si512((const void *)(blk + r * 16));
            __m512i lo = _mm512_and_si512(c, nib);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
            __m512i vl = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)tg), lo);
            __m512i vh = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(tg + 64)), hi);
            e = _mm512_add_epi16(e, _mm512_add_epi16(_mm512_and_si512(vl, low),
                                                      _mm512_and_si512(vh, low)));
            o = _mm512_add_epi16(o, _mm512_add_epi16(_mm512_srli_epi16(vl, 8),
                                                      _mm512_srli_epi16(vh, 8)));
        }
        __m128i e1 = fold512_16(e), o1 = fold512_16(o);
        _mm_storeu_si128((__m128i *)(out + b * 16), _mm_unpacklo_epi16(e1, o1));
        _mm_storeu_si128((__m128i *)(out + b * 16 + 8), _mm_unpackhi_epi16(e1, o1));
    }
}

__attribute__((target("avx512f,avx512bw"))) static void
scan_avx512_8(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t, uint16_t *out) {
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const __m128i zero = _mm_setzero_si128();
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        __m512i acc = _mm512_setzero_si512();
        for (int r = 0; r < cb; r += 4) {
            const uint8_t *tg = t + (r / 4) * 128;
            __m512i c = _mm512_loadu_si512((const void *)(blk + r * 16));
            __m512i lo = _mm512_and_si512(c, nib);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
            __m512i vl = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)tg), lo);
            __m512i vh = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(tg + 64)), hi);
            acc = _mm512_adds_epu8(acc, _mm512_adds_epu8(vl, vh));
        }
        __m128i a = fold512_8(acc);
        _mm_storeu_si128((__m128i *)(out + b * 16), _mm_unpacklo_epi8(a, zero));
        _mm_storeu_si128((__m128i *)(out + b * 16 + 8), _mm_unpackhi_epi8(a, zero));
    }
}
#endif /* LEANN_X86 */

#ifdef LEANN_NEON
static void scan_neon(const uint8_t *blocks, size_t nblocks, int cb, const uint8_t *t,
                      uint16_t *out, int acc8) {
    const uint8x16_t nib = vdupq_n_u8(0x0F);
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * (size_t)cb * 16;
        uint16x8_t l = vdupq_n_u16(0), h = vdupq_n_u16(0);
        uint8x16_t acc = vdupq_n_u8(0);
        for (int r = 0; r < cb; r++) {
            const uint8_t *tg = t + (r / 4) * 128 + (r % 4) * 16;
            uint8x16_t c = vld1q_u8(blk + r * 16);
            uint8x16_t vl = vqtbl1q_u8(vld1q_u8(tg), vandq_u8(c, nib));
            uint8x16_t vh = vqtbl1q_u8(vld1q_u8(tg + 64), vshrq_n_u8(c, 4));
            if (acc8) {
                acc = vqaddq_u8(acc, vqaddq_u8(vl, vh));
            } else {
                l = vaddw_u8(vaddw_u8(l, vget_low_u8(vl)), vget_low_u8(vh));
                h = vaddw_high_u8(vaddw_high_u8(h, vl), vh);
            }
        }
        if (acc8) {
            l = vmovl_u8(vget_low_u8(acc));
            h = vmovl_high_u8(acc);
        }
        vst1q_u16(out + b * 16, l);
        vst1q_u16(out + b * 16 + 8, h);
    }
}
static void scan_neon8(const uint8_t *b, size_t n, int cb, const uint8_t *t, uint16_t *o) {
    scan_neon(b, n, cb, t, o, 1);
}
static void scan_neon16(const uint8_t *b, size_t n, int cb, const uint8_t *t, uint16_t *o) {
    scan_neon(b, n, cb, t, o, 0);
}
#endif

leann_scan_fn leann_get_scan(int kernel, int accumulate) {
    if (kernel == LEANN_KERNEL_AUTO) kernel = leann_kernel_best();
    if (!leann_kernel_available(kernel)) return NULL;
    int a8 = accumulate == LEANN_ACC8;
    switch (kernel) {
    case LEANN_KERNEL_SCALAR:
        return a8 ? scan_scalar8 : scan_scalar16;
#ifdef LEANN_X86
    case LEANN_KERNEL_SSSE3:
        return a8 ? scan_ssse3_8 : scan_ssse3_16;
    case LEANN_KERNEL_AVX2:
        return a8 ? scan_avx2_8 : scan_avx2_16;
    case LEANN_KERNEL_AVX512:
        return a8 ? scan_avx512_8 : scan_avx512_16;
#endif
#ifdef LEANN_NEON
    case LEANN_KERNEL_NEON:
        return a8 ? scan_neon8 : scan_neon16;
#endif
    default:
        return NULL;
    }
}

/* ---- codec ---- */
static inline uint8_t quantize(const leann_codec *c, float d) {
    float q = d / c->scale + 0.5f;
    q = q < 255.0f ? q : 255.0f; /* also NaN */
    q = q < 0.0f ? 0.0f : q;     /* branch-free: a table's 16 vectorise */
    return (uint8_t)q;
}

/* Squared distances of sub-vector i of a projection y to the K centroids
 * of subspace i (K = c->ksub: 16, or 256 for an 8-bit codec; callers pass
 * it as a constant, so each inlined copy has fixed trip counts).  They are
 * summed dimension by dimension over the transposed centroids, so the inner
 * loop runs across the centroids and vectorises; each distance still adds
 * its terms in dimension order, as a one-centroid-at-a-time loop would. */
static inline void centroid_dists(const leann_codec *c, const float *y, int i, float *d, const int K) {
    const float *ys = y + (size_t)i * c->dsub;
    const float *ct = c->cent_t + (size_t)i * c->dsub * K;
    for (int j = 0; j < K; j++) d[j] = 0.0f;
    for (int k = 0; k < c->dsub; k++) {
        float yk = ys[k];
        for (int j = 0; j < K; j++) {
            float t = yk - ct[k * K + j];
            d[j] += t * t;
        }
    }
}
static inline void subspace_dists(const leann_codec *c, const float *y, int i, float d[16]) {
    centroid_dists(c, y, i, d, 16);
}

int leann_codec_valid_subspaces(int msub) {
    switch (msub) {
    case 8: case 16: case 32: case 64: /* build and search codes */
    case 80: case 88: case 96: case 112: case 128: /* search codes (groups of 8 for the kernels) */
        return 1;
    default:
        return 0;
    }
}

int leann_codec_new(int dp, int msub, int bits, const float *centroids, float scale, int accumulate,
                    leann_codec **out) {
    *out = NULL;
    if (!leann_codec_valid_subspaces(msub))
        return leann_fail(LEANN_ERR_INVALID, "number of subspaces must be 8, 16, 32, 64, 80, 88, 96, 112 or 128, got %d", msub);
    if (bits != 4 && bits != 8) return leann_fail(LEANN_ERR_INVALID, "code bits must be 4 or 8, got %d", bits);
    if (dp <= 0 || dp % msub != 0 || dp > LEANN_MAX_DIM)
        return leann_fail(LEANN_ERR_INVALID,
                          "projected dimension %d must be a positive multiple of %d subspaces", dp, msub);
    if (!(scale > 0.0f) || !isfinite(scale))
        return leann_fail(LEANN_ERR_INVALID, "table scale must be a positive finite number");
    if (accumulate != LEANN_ACC8 && accumulate != LEANN_ACC16)
        return leann_fail(LEANN_ERR_INVALID, "accumulate must be 8 or 16, got %d", accumulate);
    if (!centroids) return leann_fail(LEANN_ERR_INVALID, "centroids are NULL");
    int dsub = dp / msub, K = 1 << bits;
    size_t nc = (size_t)msub * K * dsub;
    for (size_t i = 0; i < nc; i++)
        if (!isfinite(centroids[i]))
            return leann_fail(LEANN_ERR_INVALID, "centroid %zu is not finite", i);
    leann_codec *c = leann_calloc(1, sizeof *c, "codec");
    if (!c) return LEANN_ERR_NOMEM;
    c->dp = dp;
    c->msub = msub;
    c->dsub = dsub;
    c->code_bytes = bits == 8 ? msub : msub / 2;
    c->ksub = K;
    c->accumulate = accumulate;
    c->scale = scale;
    c->centroids = leann_malloc(nc * sizeof(float), "codec centroids");
    c->cent_t = leann_malloc(nc * sizeof(float), "codec centroids");
    c->sdt = bits == 4 ? leann_malloc((size_t)msub * 256, "symmetric distance table") : NULL;
    if (!c->centroids || !c->cent_t || (bits == 4 && !c->sdt)) {
        leann_codec_free(c);
        return LEANN_ERR_NOMEM;
    }
    memcpy(c->centroids, centroids, nc * sizeof(float));
    for (int i = 0; i < msub; i++)
        for (int j = 0; j < K; j++)
            for (int k = 0; k < dsub; k++)
                c->cent_t[((size_t)i * dsub + k) * K + j] = c->centroids[((size_t)i * K + j) * dsub + k];
    for (int i = 0; i < msub && bits == 4; i++)
        for (int a = 0; a < 16; a++)
            for (int b = 0; b < 16; b++) {
                const float *ca = c->centroids + ((size_t)i * 16 + a) * dsub;
                const float *cb = c->centroids + ((size_t)i * 16 + b) * dsub;
                float d = 0;
                for (int k = 0; k < dsub; k++) d += (ca[k] - cb[k]) * (ca[k] - cb[k]);
                c->sdt[(i * 16 + a) * 16 + b] = quantize(c, d);
            }
    *out = c;
    return LEANN_OK;
}

void leann_codec_free(leann_codec *c) {
    if (!c) return;
    free(c->centroids);
    free(c->cent_t);
    free(c->sdt);
    free(c->mean);
    free(c->components);
    free(c);
}

int leann_codec_set_pca(leann_codec *c, int dim, const float *mean, const float *components, float bias) {
    if (!c || !mean || !components) return leann_fail(LEANN_ERR_INVALID, "leann_codec_set_pca: NULL argument");
    if (dim <= 0 || dim > LEANN_MAX_DIM) return leann_fail(LEANN_ERR_INVALID, "PCA input dimension %d is out of range", dim);
    if (!isfinite(bias)) return leann_fail(LEANN_ERR_INVALID, "codec bias is not finite");
    size_t nm = (size_t)c->dp * (size_t)dim;
    for (int i = 0; i < dim; i++)
        if (!isfinite(mean[i])) return leann_fail(LEANN_ERR_INVALID, "PCA mean %d is not finite", i);
    for (size_t i = 0; i < nm; i++)
        if (!isfinite(components[i])) return leann_fail(LEANN_ERR_INVALID, "PCA component value %zu is not finite", i);
    float *m = leann_malloc((size_t)dim * sizeof(float), "PCA mean");
    float *comp = leann_malloc(nm * sizeof(float), "PCA components");
    if (!m || !comp) {
        free(m);
        free(comp);
        return LEANN_ERR_NOMEM;
    }
    memcpy(m, mean, (size_t)dim * sizeof(float));
    memcpy(comp, components, nm * sizeof(float));
    free(c->mean);
    free(c->components);
    c->mean = m;
    c->components = comp;
    c->dim = dim;
    c->bias = bias;
    return LEANN_OK;
}

int leann_codec_info(const leann_codec *c, int *dim, int *dp, int *msub, int *accumulate, float *scale,
                     float *bias) {
    if (!c) return leann_fail(LEANN_ERR_INVALID, "codec is NULL");
    *dim = c->dim;
    *dp = c->dp;
    *msub = c->msub;
    *accumulate = c->accumulate;
    *scale = c->scale;
    *bias = c->bias;
    return LEANN_OK;
}

int leann_codec_bits(const leann_codec *c) { return !c ? 0 : c->ksub == 256 ? 8 : 4; }

int leann_codec_export(const leann_codec *c, float *centroids, float *mean, float *components) {
    if (!c || !centroids) return leann_fail(LEANN_ERR_INVALID, "leann_codec_export: NULL argument");
    memcpy(centroids, c->centroids, (size_t)c->msub * c->ksub * (size_t)c->dsub * sizeof(float));
    if (c->dim) {
        if (!mean || !components) return leann_fail(LEANN_ERR_INVALID, "leann_codec_export: NULL argument");
        memcpy(mean, c->mean, (size_t)c->dim * sizeof(float));
        memcpy(components, c->components, (size_t)c->dp * (size_t)c->dim * sizeof(float));
    }
    return LEANN_OK;
}

int leann_codec_clone(const leann_codec *c, leann_codec **out) {
    int st = leann_codec_new(c->dp, c->msub, leann_codec_bits(c), c->centroids, c->scale, c->accumulate, out);
    if (st == LEANN_OK && c->dim) {
        st = leann_codec_set_pca(*out, c->dim, c->mean, c->components, c->bias);
        if (st != LEANN_OK) {
            leann_codec_free(*out);
            *out = NULL;
        }
    }
    return st;
}

void leann_codec_project1(const leann_codec *c, const float *x, float *proj, float *residual) {
    double total = 0.0, kept = 0.0;
    for (int k = 0; k < c->dim; k++) {
        double t = (double)x[k] - c->mean[k];
        total += t * t;
    }
    for (int i = 0; i < c->dp; i++) {
        const float *row = c->components + (size_t)i * c->dim;
        double s = 0.0;
        for (int k = 0; k < c->dim; k++) s += ((double)x[k] - c->mean[k]) * row[k];
        proj[i] = (float)s;
        kept += s * s;
    }
    *residual = total > kept ? (float)(total - kept) : 0.0f;
}

/* subspace_dists for an 8-bit codec: the 256 centroids of subspace i. */
static inline void subspace_dists256(const leann_codec *c, const float *y, int i, float d[256]) {
    centroid_dists(c, y, i, d, 256);
}

void leann_codec_adt_float(const leann_codec *c, const float *y, float *table) {
    if (c->ksub == 256)
        for (int i = 0; i < c->msub; i++) subspace_dists256(c, y, i, table + (size_t)i * 256);
    else
        for (int i = 0; i < c->msub; i++) subspace_dists(c, y, i, table + i * 16);
}

int leann_codec_adt_f32(const leann_codec *c, const float *y, float *table) {
    if (!c || !y || !table) return leann_fail(LEANN_ERR_INVALID, "leann_codec_adt_f32: NULL argument");
    for (int k = 0; k < c->dp; k++)
        if (!isfinite(y[k])) return leann_fail(LEANN_ERR_INVALID, "vector has a non-finite value");
    leann_codec_adt_float(c, y, table);
    return LEANN_OK;
}

float *leann_codec_sdt_float8(const leann_codec *c) {
    float *t = leann_malloc((size_t)c->msub * 256 * 256 * sizeof(float), "symmetric distance table");
    if (!t) return NULL;
    for (int i = 0; i < c->msub; i++)
        for (int a = 0; a < 256; a++) /* centroid a of subspace i, placed where subspace i's sub-vector is read */
            subspace_dists256(c, c->centroids + ((size_t)i * 255 + a) * c->dsub, i, t + ((size_t)i * 256 + a) * 256);
    return t;
}

/* Position of the smallest of d[0 .. K), branch-free (the winner's
 * position is unpredictable); strict: ties go to the lowest position. */
static inline int argmin_first(const float *d, int K) {
    int best = 0;
    float bd = d[0];
    for (int j = 1; j < K; j++) {
        int lt = d[j] < bd;
        bd = lt ? d[j] : bd;
        best = lt ? j : best;
    }
    return best;
}

/* Nearest of 256 centroids per subspace: a byte each. */
static void encode8_one(const leann_codec *c, const float *y, uint8_t *code) {
    float d[256];
    for (int i = 0; i < c->msub; i++) {
        subspace_dists256(c, y, i, d);
        code[i] = (uint8_t)argmin_first(d, 256);
    }
}

int leann_codec_code_bytes(const leann_codec *c) { return c ? c->code_bytes : 0; }

/* Nearest centroid per subspace. */
static void encode_one(const leann_codec *c, const float *y, uint8_t *code) {
    memset(code, 0, (size_t)c->code_bytes);
    for (int i = 0; i < c->msub; i++) {
        float d[16];
        subspace_dists(c, y, i, d);
        code[i / 2] |= (uint8_t)(argmin_first(d, 16) << (4 * (i & 1)));
    }
}

#ifdef LEANN_X86
/* The same sums as encode_one (a multiply, then an add: no fused
 * multiply-add, so every distance rounds exactly as the scalar one), all 16
 * centroids in one register; the argmin is the first lane equal to the
 * minimum, which is the scalar loop's strict-less winner. */
__attribute__((target("avx512f"))) static void encode_avx512(const leann_codec *c, const float *y,
                                                             uint8_t *code) {
    memset(code, 0, (size_t)c->code_bytes);
    for (int i = 0; i < c->msub; i++) {
        const float *ys = y + (size_t)i * c->dsub;
        const float *ct = c->cent_t + (size_t)i * c->dsub * 16;
        __m512 d = _mm512_setzero_ps();
        for (int k = 0; k < c->dsub; k++) {
            __m512 t = _mm512_sub_ps(_mm512_set1_ps(ys[k]), _mm512_loadu_ps(ct + k * 16));
            d = _mm512_add_ps(d, _mm512_mul_ps(t, t));
        }
        float m = _mm512_reduce_min_ps(d);
        unsigned eq = (unsigned)_mm512_cmp_ps_mask(d, _mm512_set1_ps(m), _CMP_EQ_OQ);
        code[i / 2] |= (uint8_t)(__builtin_ctz(eq) << (4 * (i & 1)));
    }
}

__attribute__((target("avx2"))) static void encode_avx2(const leann_codec *c, const float *y, uint8_t *code) {
    memset(code, 0, (size_t)c->code_bytes);
    for (int i = 0; i < c->msub; i++) {
        const float *ys = y + (size_t)i * c->dsub;
        const float *ct = c->cent_t + (size_t)i * c->dsub * 16;
        __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
        for (int k = 0; k < c->dsub; k++) {
            __m256 yk = _mm256_set1_ps(ys[k]);
            __m256 t0 = _mm256_sub_ps(yk, _mm256_loadu_ps(ct + k * 16));
            __m256 t1 = _mm256_sub_ps(yk, _mm256_loadu_ps(ct + k * 16 + 8));
            d0 = _mm256_add_ps(d0, _mm256_mul_ps(t0, t0));
            d1 = _mm256_add_ps(d1, _mm256_mul_ps(t1, t1));
        }
        __m256 mn = _mm256_min_ps(d0, d1);
        mn = _mm256_min_ps(mn, _mm256_permute2f128_ps(mn, mn, 1));
        mn = _mm256_min_ps(mn, _mm256_shuffle_ps(mn, mn, 0x4E));
        mn = _mm256_min_ps(mn, _mm256_shuffle_ps(mn, mn, 0xB1)); /* every lane: the minimum */
        unsigned eq = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d0, mn, _CMP_EQ_OQ)) |
                      (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d1, mn, _CMP_EQ_OQ)) << 8;
        code[i / 2] |= (uint8_t)(__builtin_ctz(eq) << (4 * (i & 1)));
    }
}
#endif

typedef void (*encode_fn)(const leann_codec *c, const float *y, uint8_t *code);

static encode_fn get_encode(int kernel) {
#ifdef LEANN_X86
    if (kernel == LEANN_KERNEL_AVX512) return encode_avx512;
    if (kernel == LEANN_KERNEL_AVX2) return encode_avx2;
#endif
    (void)kernel;
    return encode_one; /* scalar; SSSE3 and NEON use the compiler-vectorised loop */
}

typedef struct {
    const leann_codec *c;
    const float *proj;
    size_t n;
    uint8_t *codes;
    encode_fn fn;
} encode_ctx;

static int encode_task(void *p, int tid, int nt) {
    encode_ctx *e = p;
    size_t lo = e->n * (size_t)tid / (size_t)nt, hi = e->n * (size_t)(tid + 1) / (size_t)nt;
    for (size_t i = lo; i < hi; i++)
        e->fn(e->c, e->proj + i * (size_t)e->c->dp, e->codes + i * (size_t)e->c->code_bytes);
    return LEANN_OK;
}

int leann_codec_encode(const leann_codec *c, const float *proj, size_t n, uint8_t *codes,
                       int threads) {
    return leann_codec_encode_kernel(c, proj, n, codes, threads, LEANN_KERNEL_AUTO);
}

int leann_codec_encode_kernel(const leann_codec *c, const float *proj, size_t n, uint8_t *codes,
                              int threads, int kernel) {
    if (!c || (!proj && n) || (!codes && n))
        return leann_fail(LEANN_ERR_INVALID, "leann_codec_encode: NULL argument");
    if (kernel == LEANN_KERNEL_AUTO) kernel = leann_kernel_best();
    if (!leann_kernel_available(kernel))
        return leann_fail(LEANN_ERR_INVALID, "kernel %d is not available on this CPU/build", kernel);
    size_t total;
    if (!leann_mul_ok(n, (size_t)c->dp, &total)) return LEANN_ERR_INVALID;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(proj[i]))
            return leann_fail(LEANN_ERR_INVALID, "projected vector %zu has a non-finite value",
                              i / (size_t)c->dp);
    encode_ctx e = {c, proj, n, codes, c->ksub == 256 ? encode8_one : get_encode(kernel)};
    int nt = leann_resolve_threads(threads);
    if ((size_t)nt > n / 256 + 1) nt = (int)(n / 256 + 1);
    return leann_parallel(nt, encode_task, &e);
}

int leann_codec_centroid_sums(const leann_codec *c, const float *proj, size_t n, const uint8_t *codes,
                              double *sums, int64_t *counts) {
    if (!c || (!proj && n) || (!codes && n) || !sums || !counts)
        return leann_fail(LEANN_ERR_INVALID, "leann_codec_centroid_sums: NULL argument");
    size_t total;
    if (!leann_mul_ok(n, (size_t)c->dp, &total)) return LEANN_ERR_INVALID;
    const int msub = c->msub, dsub = c->dsub, cb = c->code_bytes, K = c->ksub;
    memset(sums, 0, (size_t)msub * K * (size_t)dsub * sizeof *sums);
    memset(counts, 0, (size_t)msub * K * sizeof *counts);
    /* point by point, so that each centroid's sum adds its points in the
     * order numpy's bincount does: the same float64 totals */
    for (size_t i = 0; i < n; i++) {
        const float *row = proj + i * (size_t)c->dp;
        const uint8_t *code = codes + i * (size_t)cb;
        for (int m = 0; m < msub; m++) {
            int k = K == 256 ? code[m] : (m & 1) ? code[m >> 1] >> 4 : code[m >> 1] & 15;
            double *acc = sums + ((size_t)m * K + (size_t)k) * (size_t)dsub;
            const float *x = row + (size_t)m * (size_t)dsub;
            for (int d = 0; d < dsub; d++) acc[d] += (double)x[d];
            counts[(size_t)m * K + k]++;
        }
    }
    return LEANN_OK;
}

void leann_codec_adt_raw(const leann_codec *c, const float *y, uint8_t *table) {
    float d[16];
    for (int i = 0; i < c->msub; i++) {
        subspace_dists(c, y, i, d);
        for (int j = 0; j < 16; j++) table[i * 16 + j] = quantize(c, d[j]);
    }
}

int leann_codec_adt(const leann_codec *c, const float *y, uint8_t *table) {
    if (!c || !y || !table) return leann_fail(LEANN_ERR_INVALID, "leann_codec_adt: NULL argument");
    if (c->ksub != 16) return leann_fail(LEANN_ERR_INVALID, "quantised tables are for 4-bit codecs");
    for (int k = 0; k < c->dp; k++)
        if (!isfinite(y[k])) return leann_fail(LEANN_ERR_INVALID, "vector has a non-finite value");
    leann_codec_adt_raw(c, y, table);
    return LEANN_OK;
}

/* ---- virtual ADT (an encoded vector's SDT rows), permuted ----
 * Built just before a scan reads it, so each variant writes the table in
 * stores as wide as its scan kernel's table loads: a load that spans
 * several narrower pending stores cannot be forwarded from them and waits
 * for them to reach the cache (16-byte stores read back by AVX-512: 100k x
 * 768 build 10.2 -> 9.4 s).  SSSE3 and NEON load 16 bytes: the scalar
 * variant's 16-byte copies suit them. */
static void vadt_scalar(const leann_codec *c, const uint8_t *code, uint8_t *p) {
    for (int r = 0; r < c->code_bytes; r++) {
        uint8_t *tg = p + (r / 4) * 128 + (r % 4) * 16;
        memcpy(tg, c->sdt + ((2 * r) * 16 + (code[r] & 15)) * 16, 16);
        memcpy(tg + 64, c->sdt + ((2 * r + 1) * 16 + (code[r] >> 4)) * 16, 16);
    }
}

#ifdef LEANN_X86
/* SDT row of subspace 2j + odd of group base for code byte cb_j */
#define VADT_ROW(base, cg, j, odd) \
    _mm_loadu_si128((const __m128i *)((base) + (2 * (j) + (odd)) * 256 + ((odd) ? (cg)[j] >> 4 : (cg)[j] & 15) * 16))

__attribute__((target("avx2"))) static void vadt_avx2(const leann_codec *c, const uint8_t *code, uint8_t *p) {
    for (int g = 0; g < c->code_bytes / 4; g++) {
        const uint8_t *cg = code + 4 * g, *base = c->sdt + (size_t)(8 * g) * 256;
        for (int odd = 0; odd < 2; odd++)
            for (int j = 0; j < 4; j += 2) {
                __m256i v = _mm256_castsi128_si256(VADT_ROW(base, cg, j, odd));
                v = _mm256_inserti128_si256(v, VADT_ROW(base, cg, j + 1, odd), 1);
                _mm256_storeu_si256((__m256i *)(p + g * 128 + odd * 64 + j * 16), v);
            }
    }
}

__attribute__((target("avx512f"))) static void vadt_avx512(const leann_codec *c, const uint8_t *code, uint8_t *p) {
    for (int g = 0; g < c->code_bytes / 4; g++) {
        const uint8_t *cg = code + 4 * g, *base = c->sdt + (size_t)(8 * g) * 256;
        for (int odd = 0; odd < 2; odd++) {
            __m512i v = _mm512_castsi128_si512(VADT_ROW(base, cg, 0, odd));
            v = _mm512_inserti32x4(v, VADT_ROW(base, cg, 1, odd), 1);
            v = _mm512_inserti32x4(v, VADT_ROW(base, cg, 2, odd), 2);
            v = _mm512_inserti32x4(v, VADT_ROW(base, cg, 3, odd), 3);
            _mm512_storeu_si512((void *)(p + g * 128 + odd * 64), v);
        }
    }
}
#undef VADT_ROW
#endif

leann_vadt_fn leann_get_vadt(int kernel) {
    if (kernel == LEANN_KERNEL_AUTO) kernel = leann_kernel_best();
    if (!leann_kernel_available(kernel)) return NULL;
    switch (kernel) {
#ifdef LEANN_X86
    case LEANN_KERNEL_AVX2:
        return vadt_avx2;
    case LEANN_KERNEL_AVX512:
        return vadt_avx512;
#endif
    default:
        return vadt_scalar;
    }
}

/* ---- bound masks over code totals ---- */
static uint64_t mask_le_scalar(const uint16_t *d, int n, uint16_t lim) {
    uint64_t m = 0;
    for (int i = 0; i < n; i++) m |= (uint64_t)(d[i] <= lim) << i;
    return m;
}

#ifdef LEANN_X86
static inline uint64_t mask_low(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

/* SSE2 (every x86-64): d <= lim iff the saturating d - lim is 0; the two
 * halves' 16-bit compares pack into one byte mask of 16 entries. */
static uint64_t mask_le_sse2(const uint16_t *d, int n, uint16_t lim) {
    const __m128i l = _mm_set1_epi16((short)lim), z = _mm_setzero_si128();
    uint64_t m = 0;
    for (int i = 0; i < n; i += 16) {
        __m128i a = _mm_cmpeq_epi16(_mm_subs_epu16(_mm_loadu_si128((const __m128i *)(d + i)), l), z);
        __m128i b = _mm_cmpeq_epi16(_mm_subs_epu16(_mm_loadu_si128((const __m128i *)(d + i + 8)), l), z);
        m |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_packs_epi16(a, b)) << i;
    }
    return m & mask_low(n);
}

/* AVX-512BW: one compare per 32 entries; masked loads read only d[0, n). */
__attribute__((target("avx512f,avx512bw"))) static uint64_t mask_le_avx512(const uint16_t *d, int n, uint16_t lim) {
    const __m512i l = _mm512_set1_epi16((short)lim);
    __mmask32 k0 = (__mmask32)mask_low(n < 32 ? n : 32);
    uint64_t m = _mm512_mask_cmple_epu16_mask(k0, _mm512_maskz_loadu_epi16(k0, d), l);
    if (n > 32) {
        __mmask32 k1 = (__mmask32)mask_low(n - 32);
        m |= (uint64_t)_mm512_mask_cmple_epu16_mask(k1, _mm512_maskz_loadu_epi16(k1, d + 32), l) << 32;
    }
    return m;
}
#endif

leann_mask_le_fn leann_get_mask_le(int kernel) {
    if (kernel == LEANN_KERNEL_AUTO) kernel = leann_kernel_best();
    if (!leann_kernel_available(kernel)) return NULL;
    switch (kernel) {
#ifdef LEANN_X86
    case LEANN_KERNEL_SSSE3:
    case LEANN_KERNEL_AVX2:
        return mask_le_sse2;
    case LEANN_KERNEL_AVX512:
        return mask_le_avx512;
#endif
    default: /* scalar; NEON: the compiler's loop */
        return mask_le_scalar;
    }
}

int leann_mask_le_kernel(const uint16_t *d, int n, uint16_t lim, int kernel, uint64_t *mask) {
    if (!d || !mask) return leann_fail(LEANN_ERR_INVALID, "leann_mask_le_kernel: NULL argument");
    if (n < 0 || n > 64) return leann_fail(LEANN_ERR_INVALID, "n must be in [0, 64], got %d", n);
    leann_mask_le_fn fn = leann_get_mask_le(kernel);
    if (!fn) return leann_fail(LEANN_ERR_INVALID, "kernel %d is not available on this CPU/build", kernel);
    *mask = fn(d, n, lim);
    return LEANN_OK;
}

int leann_codec_vadt_kernel(const leann_codec *c, const uint8_t *code, int kernel, uint8_t *permuted) {
    if (!c || !code || !permuted) return leann_fail(LEANN_ERR_INVALID, "leann_codec_vadt_kernel: NULL argument");
    if (c->ksub != 16) return leann_fail(LEANN_ERR_INVALID, "quantised tables are for 4-bit codecs");
    leann_vadt_fn fn = leann_get_vadt(kernel);
    if (!fn) return leann_fail(LEANN_ERR_INVALID, "kernel %d is not available on this CPU/build", kernel);
    fn(c, code, permuted);
    return LEANN_OK;
}

int leann_codec_sdt(const leann_codec *c, uint8_t *sdt) {
    if (!c || !sdt) return leann_fail(LEANN_ERR_INVALID, "leann_codec_sdt: NULL argument");
    if (c->ksub != 16) return leann_fail(LEANN_ERR_INVALID, "quantised tables are for 4-bit codecs");
    memcpy(sdt, c->sdt, (size_t)c->msub * 256);
    return LEANN_OK;
}

int leann_scan_codes(const uint8_t *codes, size_t n, int code_bytes, const uint8_t *table,
                     int accumulate, int kernel, uint16_t *out) {
    if ((!codes && n) || !table || (!out && n))
        return leann_fail(LEANN_ERR_INVALID, "leann_scan_codes: NULL argument");
    if (code_bytes != 4 && code_bytes != 8 && code_bytes != 16 && code_bytes != 32)
        return leann_fail(LEANN_ERR_INVALID, "code_bytes must be 4, 8, 16 or 32, got %d", code_bytes);
    if (accumulate != LEANN_ACC8 && accumulate != LEANN_ACC16)
        return leann_fail(LEANN_ERR_INVALID, "accumulate must be 8 or 16, got %d", accumulate);
    leann_scan_fn fn = leann_get_scan(kernel, accumulate);
    if (!fn) return leann_fail(LEANN_ERR_INVALID, "kernel %d is not available on this CPU/build", kernel);
    size_t nblocks = (n + 15) / 16;
    uint8_t *blocks = leann_calloc(nblocks ? nblocks : 1, (size_t)code_bytes * 16, "code blocks");
    uint16_t *tmp = leann_calloc(nblocks ? nblocks * 16 : 1, sizeof(uint16_t), "scan output");
    uint8_t *perm = leann_malloc((size_t)code_bytes * 32, "permuted table");
    if (!blocks || !tmp || !perm) {
        free(blocks);
        free(tmp);
        free(perm);
        return LEANN_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        leann_block_put(blocks + (i / 16) * (size_t)code_bytes * 16, code_bytes, (int)(i % 16),
                        codes + i * (size_t)code_bytes);
    leann_permute_table(table, code_bytes * 2, perm);
    fn(blocks, nblocks, code_bytes, perm, tmp);
    memcpy(out, tmp, n * sizeof(uint16_t));
    free(blocks);
    free(tmp);
    free(perm);
    return LEANN_OK;
}

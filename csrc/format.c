/* format.c - the generic index-file container: atomic writes, whole-file
 * validated reads, CRC-32C.  The layout is described in format.h. */
#ifndef _WIN32
#define _GNU_SOURCE
#endif
#include "format.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef _WIN32
#include <io.h>
#include <process.h>
#include <windows.h>
#define LF_OPEN _open
#define LF_CLOSE _close
#define LF_READ(fd, p, n) _read((fd), (p), (unsigned)(n))
#define LF_FSTAT _fstat64
#define LF_STAT_T struct __stat64
#define LF_FDOPEN _fdopen
#define LF_FILENO _fileno
#define LF_FSYNC _commit
#define LF_GETPID _getpid
#define LF_WFLAGS (_O_WRONLY | _O_CREAT | _O_EXCL | _O_BINARY)
#define LF_RFLAGS (_O_RDONLY | _O_BINARY)
#define LF_MODE (_S_IREAD | _S_IWRITE)
#define LF_READ_CHUNK ((size_t)1 << 30)
#else
#include <unistd.h>
#define LF_OPEN open
#define LF_CLOSE close
#define LF_READ(fd, p, n) read((fd), (p), (n))
#define LF_FSTAT fstat
#define LF_STAT_T struct stat
#define LF_FDOPEN fdopen
#define LF_FILENO fileno
#define LF_FSYNC fsync
#define LF_GETPID getpid
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#define LF_WFLAGS (O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC)
#define LF_RFLAGS (O_RDONLY | O_CLOEXEC)
#define LF_MODE 0666
#define LF_READ_CHUNK ((size_t)1 << 30)
#endif

#define HDR LEANN_FILE_HEADER_BYTES
#define ENT LEANN_FILE_ENTRY_BYTES
#define ENDIAN_MARK 0x01020304u
static const char MAGIC[8] = {'L', 'E', 'A', 'N', 'N', 'I', 'D', 'X'};

/* ---- CRC-32C, slice-by-8 ---- */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xFF];
}

static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static inline void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

uint32_t leann_crc32c(const void *data, size_t len, uint32_t crc) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xFF];
        len--;
    }
    while (len >= 8) {
        uint32_t lo = c ^ rd32(p), hi = rd32(p + 4);
        c = crc_tab[7][lo & 0xFF] ^ crc_tab[6][(lo >> 8) & 0xFF] ^ crc_tab[5][(lo >> 16) & 0xFF] ^
            crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xFF] ^ crc_tab[2][(hi >> 8) & 0xFF] ^
            crc_tab[1][(hi >> 16) & 0xFF] ^ crc_tab[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xFF];
    return ~c;
}

/* ---- tags ---- */
/* 1 if t is 1..8 printable ASCII characters (no space) then NULs. */
static int tag_valid(const char t[8]) {
    int i = 0;
    while (i < 8 && t[i] != '\0') {
        unsigned char ch = (unsigned char)t[i];
        if (ch < 0x21 || ch > 0x7E) return 0;
        i++;
    }
    if (i == 0) return 0;
    for (; i < 8; i++)
        if (t[i] != '\0') return 0;
    return 1;
}
static void tag_str(const char t[8], char out[9]) {
    memcpy(out, t, 8);
    out[8] = '\0';
}
/* C string -> NUL-padded tag; 0 (and an error) if it is not a valid tag */
static int tag_from_str(const char *s, char t[8]) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 8) {
        leann_fail(LEANN_ERR_INVALID, "invalid section tag '%s' (1 to 8 ASCII characters)",
                   s ? s : "(null)");
        return 0;
    }
    memset(t, 0, 8);
    memcpy(t, s, n);
    if (!tag_valid(t)) {
        leann_fail(LEANN_ERR_INVALID, "invalid section tag '%s' (1 to 8 ASCII characters)", s);
        return 0;
    }
    return 1;
}

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

/* ---- writing ---- */
static int put(FILE *fp, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, fp) == n; }

static int sync_dir(const char *path) {
#ifdef _WIN32
    (void)path;
    return LEANN_OK;
#else
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = leann_malloc(2, "directory name");
        if (!dir) return LEANN_ERR_NOMEM;
        strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = leann_malloc(n + 1, "directory name");
        if (!dir) return LEANN_ERR_NOMEM;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int status = LEANN_OK;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) { /* a directory we cannot open cannot be synced: skip it */
        if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP && errno != EBADF &&
            errno != EROFS)
            status = leann_fail_io(errno,
                                "index file '%s' was written but syncing its directory '%s' "
                                "failed: %s",
                                path, dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return status;
#endif
}

static int replace_file(const char *tmp, const char *path) {
#ifdef _WIN32
    if (!MoveFileExA(tmp, path, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
        errno = EACCES;
        return -1;
    }
    return 0;
#else
    return rename(tmp, path);
#endif
}

int leann_file_write(const char *path, const leann_section_out *secs, int nsecs,
                     uint64_t *written) {
    static atomic_uint counter;
    if (written) *written = 0;
    if (!path || !*path) return leann_fail(LEANN_ERR_INVALID, "index file path is empty");
    if (nsecs < 0 || nsecs > LEANN_FILE_MAX_SECTIONS || (nsecs > 0 && !secs))
        return leann_fail(LEANN_ERR_INVALID, "index file '%s': bad section count %d (0..%d)", path,
                          nsecs, LEANN_FILE_MAX_SECTIONS);
    /* validate and lay out */
    uint64_t pos = HDR;
    for (int i = 0; i < nsecs; i++) {
        char t[9];
        tag_str(secs[i].tag, t);
        if (!tag_valid(secs[i].tag))
            return leann_fail(LEANN_ERR_INVALID,
                              "index file '%s': section %d has an invalid tag '%s' (1 to 8 "
                              "printable ASCII characters, NUL-padded)",
                              path, i, t);
        if (secs[i].len > 0 && !secs[i].data)
            return leann_fail(LEANN_ERR_INVALID, "index file '%s': section '%s' has no data", path,
                              t);
        if (secs[i].len > (uint64_t)SIZE_MAX || secs[i].len > (UINT64_MAX >> 2) ||
            pos > (UINT64_MAX >> 2))
            return leann_fail(LEANN_ERR_INVALID, "index file '%s': section '%s' is too large",
                              path, t);
        for (int j = 0; j < i; j++)
            if (memcmp(secs[i].tag, secs[j].tag, 8) == 0)
                return leann_fail(LEANN_ERR_INVALID, "index file '%s': two sections named '%s'",
                                  path, t);
        pos = align8(pos) + secs[i].len;
    }
    uint64_t table_off = align8(pos);
    size_t table_bytes = (size_t)nsecs * ENT + 4;
    uint64_t size = table_off + table_bytes;

    uint8_t *table = leann_calloc(table_bytes, 1, "index file section table");
    if (!table) return LEANN_ERR_NOMEM;
    pos = HDR;
    for (int i = 0; i < nsecs; i++) {
        uint8_t *e = table + (size_t)i * ENT;
        pos = align8(pos);
        memcpy(e, secs[i].tag, 8);
        wr64(e + 8, pos);
        wr64(e + 16, secs[i].len);
        wr32(e + 24, leann_crc32c(secs[i].data, (size_t)secs[i].len, 0));
        wr32(e + 28, 0);
        pos += secs[i].len;
    }
    wr32(table + (size_t)nsecs * ENT, leann_crc32c(table, (size_t)nsecs * ENT, 0));

    uint8_t hdr[HDR];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, MAGIC, 8);
    wr32(hdr + 8, LEANN_FORMAT_VERSION);
    uint32_t mark = ENDIAN_MARK; /* native order on purpose: see format.h */
    memcpy(hdr + 12, &mark, 4);
    wr32(hdr + 16, (uint32_t)nsecs);
    wr32(hdr + 20, 0);
    wr64(hdr + 24, table_off);
    wr64(hdr + 32, size);
    wr32(hdr + 40, leann_crc32c(hdr, 40, 0));
    wr32(hdr + 44, 0);

    /* unique temp file beside path */
    size_t plen = strlen(path);
    char *tmp = leann_malloc(plen + 64, "temporary file name");
    if (!tmp) {
        free(table);
        return LEANN_ERR_NOMEM;
    }
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        unsigned k = atomic_fetch_add(&counter, 1u);
        snprintf(tmp, plen + 64, "%s.tmp-%ld-%u-%d", path, (long)LF_GETPID(), k, attempt);
        fd = LF_OPEN(tmp, LF_WFLAGS, LF_MODE);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        free(table);
        free(tmp);
        return leann_fail_io(e, "cannot create index file '%s': %s", path, strerror(e));
    }
    FILE *fp = LF_FDOPEN(fd, "wb");
    if (!fp) {
        int e = errno;
        LF_CLOSE(fd);
        remove(tmp);
        free(table);
        free(tmp);
        return leann_fail_io(e, "cannot write index file '%s': %s", path, strerror(e));
    }
    static const uint8_t zeros[8] = {0};
    int ok = put(fp, hdr, HDR);
    pos = HDR;
    for (int i = 0; ok && i < nsecs; i++) {
        uint64_t a = align8(pos);
        ok = put(fp, zeros, (size_t)(a - pos)) && put(fp, secs[i].data, (size_t)secs[i].len);
        pos = a + secs[i].len;
    }
    ok = ok && put(fp, zeros, (size_t)(table_off - pos)) && put(fp, table, table_bytes);
    ok = ok && fflush(fp) == 0 && LF_FSYNC(LF_FILENO(fp)) == 0;
    int e = errno;
    if (fclose(fp) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    free(table);
    if (!ok) {
        remove(tmp);
        free(tmp);
        return leann_fail_io(e ? e : EIO, "cannot write index file '%s': %s", path,
                          strerror(e ? e : EIO));
    }
    if (replace_file(tmp, path) != 0) {
        e = errno;
        remove(tmp);
        free(tmp);
        return leann_fail_io(e, "cannot replace index file '%s': %s", path, strerror(e));
    }
    free(tmp);
    int status = sync_dir(path);
    if (status != LEANN_OK) return status;
    if (written) *written = size;
    return LEANN_OK;
}

/* ---- reading ---- */
typedef struct {
    char tag[8];
    uint64_t off, len;
} sec_entry;

struct leann_file {
    uint8_t *buf; /* malloc'ed: aligned to >= 8 */
    size_t size;
    char *name;
    uint32_t nsec;
    sec_entry *secs;
};

void leann_file_close(leann_file *f) {
    if (!f) return;
    free(f->buf);
    free(f->name);
    free(f->secs);
    free(f);
}

const char *leann_file_name(const leann_file *f) { return f ? f->name : ""; }

static int cmp_tag(const void *a, const void *b) {
    return memcmp(((const sec_entry *)a)->tag, ((const sec_entry *)b)->tag, 8);
}
static int cmp_off(const void *a, const void *b) {
    const sec_entry *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->len < y->len ? -1 : x->len > y->len;
}

#define CORRUPT(...) leann_fail(LEANN_ERR_CORRUPT, __VA_ARGS__)
typedef unsigned long long ull;

/* Validates f->buf/f->size and fills f->secs. */
static int parse(leann_file *f) {
    const uint8_t *b = f->buf;
    const char *nm = f->name;
    size_t len = f->size;
    if (len < HDR)
        return CORRUPT("index file '%s' is truncated or not an index file: it has %zu bytes, "
                       "fewer than the %d-byte header",
                       nm, len, HDR);
    if (memcmp(b, MAGIC, 8) != 0)
        return CORRUPT("index file '%s' is not a leann index file (bad magic bytes)", nm);
    uint32_t ver = rd32(b + 8);
    if (ver > LEANN_FORMAT_VERSION)
        return CORRUPT("index file '%s' was written by a newer leann-store (format version %u, "
                       "this build reads up to version %d): upgrade leann-store",
                       nm, ver, LEANN_FORMAT_VERSION);
    if (ver == 0)
        return CORRUPT("index file '%s' has an invalid format version 0: the file is corrupted",
                       nm);
    if (leann_crc32c(b, 40, 0) != rd32(b + 40))
        return CORRUPT("index file '%s': the header failed its checksum: the file is corrupted",
                       nm);
    uint32_t mark = rd32(b + 12);
    if (mark == 0x04030201u)
        return CORRUPT("index file '%s' was written on a big-endian machine, which this version "
                       "of leann-store cannot read",
                       nm);
    if (mark != ENDIAN_MARK)
        return CORRUPT("index file '%s' has a bad endianness marker 0x%08x: the file is corrupted",
                       nm, mark);
    if (rd32(b + 20) != 0 || rd32(b + 44) != 0)
        return CORRUPT("index file '%s': reserved header fields are not zero: the file is "
                       "corrupted",
                       nm);
    uint64_t fsize = rd64(b + 32);
    if (fsize > (uint64_t)len)
        return CORRUPT("index file '%s' is truncated (its header says %llu bytes, the file has "
                       "%zu)",
                       nm, (ull)fsize, len);
    if (fsize < (uint64_t)len)
        return CORRUPT("index file '%s' has %zu bytes but its header says %llu: data was "
                       "appended or the file is corrupted",
                       nm, len, (ull)fsize);
    uint32_t n = rd32(b + 16);
    if (n > LEANN_FILE_MAX_SECTIONS)
        return CORRUPT("index file '%s' claims %u sections (at most %d): the file is corrupted",
                       nm, n, LEANN_FILE_MAX_SECTIONS);
    uint64_t toff = rd64(b + 24);
    uint64_t tbytes = (uint64_t)n * ENT + 4;
    if (toff < HDR || (toff & 7) || toff > fsize || fsize - toff != tbytes)
        return CORRUPT("index file '%s': the section table (at byte %llu, %u entries) does not "
                       "fit the file (%llu bytes): the file is corrupted",
                       nm, (ull)toff, n, (ull)fsize);
    const uint8_t *tab = b + toff;
    if (leann_crc32c(tab, (size_t)n * ENT, 0) != rd32(tab + (size_t)n * ENT))
        return CORRUPT("index file '%s': the section table failed its checksum: the file is "
                       "corrupted",
                       nm);

    f->secs = leann_calloc(n, sizeof(sec_entry), "index file section table");
    sec_entry *tmp = leann_calloc(n, sizeof(sec_entry), "index file section table");
    if (!f->secs || !tmp) {
        free(tmp);
        return LEANN_ERR_NOMEM;
    }
    f->nsec = n;
    int status = LEANN_OK;
    char t[9], t2[9];
    for (uint32_t i = 0; i < n && status == LEANN_OK; i++) {
        const uint8_t *e = tab + (size_t)i * ENT;
        sec_entry *s = &f->secs[i];
        memcpy(s->tag, e, 8);
        s->off = rd64(e + 8);
        s->len = rd64(e + 16);
        tag_str(s->tag, t);
        if (!tag_valid(s->tag))
            status = CORRUPT("index file '%s': section %u has an invalid tag: the file is "
                             "corrupted",
                             nm, i);
        else if (rd32(e + 28) != 0)
            status = CORRUPT("index file '%s': section '%s' has a nonzero reserved field: the "
                             "file is corrupted",
                             nm, t);
        else if (s->off < HDR || (s->off & 7))
            status = CORRUPT("index file '%s': section '%s' has an invalid offset %llu (must be "
                             "8-byte aligned, after the header): the file is corrupted",
                             nm, t, (ull)s->off);
        else if (s->off > fsize || s->len > fsize - s->off) {
            if (s->len <= UINT64_MAX - s->off)
                status = CORRUPT("index file '%s': section '%s' is truncated (needs bytes "
                                 "%llu..%llu, the file has %llu)",
                                 nm, t, (ull)s->off, (ull)(s->off + s->len), (ull)fsize);
            else
                status = CORRUPT("index file '%s': section '%s' is truncated (needs %llu bytes "
                                 "from byte %llu, the file has %llu)",
                                 nm, t, (ull)s->len, (ull)s->off, (ull)fsize);
        } else if (s->off > toff || s->len > toff - s->off)
            status = CORRUPT("index file '%s': section '%s' (bytes %llu..%llu) runs into the "
                             "section table at byte %llu: the file is corrupted",
                             nm, t, (ull)s->off, (ull)(s->off + s->len), (ull)toff);
    }
    if (status == LEANN_OK && n > 1) { /* duplicate tags */
        memcpy(tmp, f->secs, (size_t)n * sizeof *tmp);
        qsort(tmp, n, sizeof *tmp, cmp_tag);
        for (uint32_t i = 1; i < n; i++)
            if (memcmp(tmp[i - 1].tag, tmp[i].tag, 8) == 0) {
                tag_str(tmp[i].tag, t);
                status = CORRUPT("index file '%s' has two sections named '%s': the file is "
                                 "corrupted",
                                 nm, t);
                break;
            }
    }
    if (status == LEANN_OK) { /* overlaps; padding between sections must be zero */
        memcpy(tmp, f->secs, (size_t)n * sizeof *tmp);
        qsort(tmp, n, sizeof *tmp, cmp_off);
        uint64_t cur = HDR;
        const sec_entry *prev = NULL;
        for (uint32_t i = 0; i <= n && status == LEANN_OK; i++) {
            if (i < n && tmp[i].len == 0) continue;
            uint64_t next = i < n ? tmp[i].off : toff;
            if (next < cur) {
                tag_str(prev->tag, t);
                tag_str(tmp[i].tag, t2);
                status = CORRUPT("index file '%s': sections '%s' (bytes %llu..%llu) and '%s' "
                                 "(bytes %llu..%llu) overlap: the file is corrupted",
                                 nm, t, (ull)prev->off, (ull)(prev->off + prev->len), t2,
                                 (ull)tmp[i].off, (ull)(tmp[i].off + tmp[i].len));
                break;
            }
            for (uint64_t p = cur; p < next; p++)
                if (b[p] != 0) {
                    status = CORRUPT("index file '%s': nonzero padding byte at offset %llu: the "
                                     "file is corrupted",
                                     nm, (ull)p);
                    break;
                }
            if (i < n) {
                cur = tmp[i].off + tmp[i].len;
                prev = &tmp[i];
            }
        }
    }
    free(tmp);
    for (uint32_t i = 0; i < n && status == LEANN_OK; i++) {
        const sec_entry *s = &f->secs[i];
        const uint8_t *e = tab + (size_t)i * ENT;
        if (leann_crc32c(b + s->off, (size_t)s->len, 0) != rd32(e + 24)) {
            tag_str(s->tag, t);
            status = CORRUPT("index file '%s': section '%s' failed its checksum: the file is "
                             "corrupted",
                             nm, t);
        }
    }
    return status;
}

/* Takes ownership of buf (freed on failure too). */
static int finish_open(uint8_t *buf, size_t len, const char *name, leann_file **out) {
    if (!name) name = "<memory>";
    leann_file *f = leann_calloc(1, sizeof *f, "index file");
    size_t nlen = strlen(name);
    char *nm = leann_malloc(nlen + 1, "index file name");
    if (!f || !nm) {
        free(f);
        free(nm);
        free(buf);
        return LEANN_ERR_NOMEM;
    }
    memcpy(nm, name, nlen + 1);
    f->buf = buf;
    f->size = len;
    f->name = nm;
    int status = parse(f);
    if (status != LEANN_OK) {
        leann_file_close(f);
        return status;
    }
    *out = f;
    return LEANN_OK;
}

int leann_file_from_buffer(const void *buf, size_t len, const char *name, leann_file **out) {
    if (!out) return leann_fail(LEANN_ERR_INVALID, "leann_file_from_buffer: out is NULL");
    *out = NULL;
    if (!buf && len)
        return leann_fail(LEANN_ERR_INVALID, "leann_file_from_buffer: buffer is NULL");
    uint8_t *copy = leann_malloc(len, "index file contents");
    if (!copy) return LEANN_ERR_NOMEM;
    if (len) memcpy(copy, buf, len);
    return finish_open(copy, len, name, out);
}

int leann_file_read(const char *path, leann_file **out) {
    if (!out) return leann_fail(LEANN_ERR_INVALID, "leann_file_read: out is NULL");
    *out = NULL;
    if (!path || !*path) return leann_fail(LEANN_ERR_INVALID, "index file path is empty");
    int fd = LF_OPEN(path, LF_RFLAGS);
    if (fd < 0)
        return leann_fail_io(errno, "cannot open index file '%s': %s", path,
                          strerror(errno));
    LF_STAT_T st;
    if (LF_FSTAT(fd, &st) != 0) {
        int e = errno;
        LF_CLOSE(fd);
        return leann_fail_io(e, "cannot stat index file '%s': %s", path, strerror(e));
    }
    if ((st.st_mode & S_IFMT) == S_IFDIR) {
        LF_CLOSE(fd);
        return leann_fail_io(EISDIR, "cannot read index file '%s': it is a directory", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)(SIZE_MAX / 2)) {
        LF_CLOSE(fd);
        return leann_fail_io(EFBIG, "index file '%s' is too large to load (%lld bytes)",
                          path, (long long)st.st_size);
    }
    size_t want = (size_t)st.st_size, got = 0;
    uint8_t *buf = leann_malloc(want, "index file contents");
    if (!buf) {
        LF_CLOSE(fd);
        return LEANN_ERR_NOMEM;
    }
    while (got < want) {
        size_t chunk = want - got < LF_READ_CHUNK ? want - got : LF_READ_CHUNK;
        long r = (long)LF_READ(fd, buf + got, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            LF_CLOSE(fd);
            free(buf);
            return leann_fail_io(e, "cannot read index file '%s': %s", path,
                              strerror(e));
        }
        if (r == 0) break; /* shrank while reading: validation reports the truncation */
        got += (size_t)r;
    }
    LF_CLOSE(fd);
    return finish_open(buf, got, path, out);
}

int leann_file_has(const leann_file *f, const char *tag) {
    if (!f || !tag) return 0;
    size_t n = strlen(tag);
    if (n == 0 || n > 8) return 0;
    char t[8] = {0};
    memcpy(t, tag, n);
    for (uint32_t i = 0; i < f->nsec; i++)
        if (memcmp(f->secs[i].tag, t, 8) == 0) return 1;
    return 0;
}

int leann_file_section(const leann_file *f, const char *tag, const void **data, uint64_t *len) {
    if (!f) return leann_fail(LEANN_ERR_INVALID, "leann_file_section: file is NULL");
    char t[8];
    if (!tag_from_str(tag, t)) return LEANN_ERR_INVALID;
    for (uint32_t i = 0; i < f->nsec; i++)
        if (memcmp(f->secs[i].tag, t, 8) == 0) {
            if (data) *data = f->buf + f->secs[i].off;
            if (len) *len = f->secs[i].len;
            return LEANN_OK;
        }
    return CORRUPT("index file '%s' has no section '%s'", f->name, tag);
}

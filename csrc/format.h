/* format.h - the generic index-file container (internal; not part of the API).
 *
 * A file is a header, the sections' bytes (each starting on an 8-byte
 * boundary, zero padding between them) and a table of sections at the end.
 * Every integer is little-endian, written and read byte by byte, so files
 * move between machines; every byte is covered by a CRC-32C or must be zero.
 *
 *   header (48 bytes)
 *     0  char[8] magic "LEANNIDX"
 *     8  u32     format version (LEANN_FORMAT_VERSION)
 *    12  u32     endianness marker 0x01020304, stored in the writer's native order
 *    16  u32     number of sections
 *    20  u32     reserved, 0
 *    24  u64     offset of the section table (8-byte aligned)
 *    32  u64     size of the whole file
 *    40  u32     CRC-32C of bytes 0..39
 *    44  u32     pad, 0
 *   sections' data, from byte 48, each at an 8-byte aligned offset
 *   table: per section (32 bytes)
 *     char[8] tag (ASCII, NUL-padded), u64 offset, u64 length,
 *     u32 CRC-32C of the data, u32 reserved (0)
 *   u32 CRC-32C of the table entries; the file ends there.
 */
#ifndef LEANN_FORMAT_H
#define LEANN_FORMAT_H

#include "internal.h"

#ifndef LEANN_FORMAT_VERSION
#define LEANN_FORMAT_VERSION 4 /* 2: calibration (CALIB), codes up to 64 bytes; 3: 8-bit search codes;
                                  4: the distance estimator (META word 15, EST) */
#endif
#define LEANN_FILE_HEADER_BYTES 48
#define LEANN_FILE_ENTRY_BYTES 32
#define LEANN_FILE_MAX_SECTIONS 4096

typedef struct {
    char tag[8];      /* 1..8 printable ASCII characters, NUL-padded */
    const void *data; /* may be NULL when len == 0 */
    uint64_t len;
} leann_section_out;

/* Writes the sections atomically: a uniquely named temp file beside `path`
 * is written, flushed, fsync'ed and renamed over `path`, then the directory
 * is fsync'ed.  On failure the temp file is removed, `path` is untouched and
 * LEANN_ERR_IO (LEANN_ERR_INVALID for bad arguments) is returned.  *written
 * receives the final file size (written may be NULL). */
int leann_file_write(const char *path, const leann_section_out *secs, int nsecs,
                     uint64_t *written);

/* The whole file in memory (8-byte aligned) plus its parsed table. */
typedef struct leann_file leann_file;

/* Reads and validates a whole file (structure and every checksum).
 * LEANN_ERR_IO if it cannot be opened or read, LEANN_ERR_CORRUPT if it is
 * not a valid index file; the message names the file and the section. */
int leann_file_read(const char *path, leann_file **out);
/* Same from memory (the buffer is copied); name is used in messages
 * (NULL: "<memory>"). */
int leann_file_from_buffer(const void *buf, size_t len, const char *name, leann_file **out);
/* Finds a section; *data is 8-byte aligned and lives as long as f.
 * Missing: LEANN_ERR_CORRUPT "index file 'x' has no section 'TAG'". */
int leann_file_section(const leann_file *f, const char *tag, const void **data, uint64_t *len);
/* 1 if the section exists, else 0 (no error is set). */
int leann_file_has(const leann_file *f, const char *tag);
const char *leann_file_name(const leann_file *f);
void leann_file_close(leann_file *f);

/* CRC-32C (Castagnoli), software slice-by-8.  crc is the CRC of the data
 * before (0 to start), so leann_crc32c("123456789", 9, 0) == 0xE3069283 and
 * crc(a+b) == leann_crc32c(b, lb, leann_crc32c(a, la, 0)). */
uint32_t leann_crc32c(const void *data, size_t len, uint32_t crc);

#endif /* LEANN_FORMAT_H */

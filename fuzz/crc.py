"""Checksums of the index file, recomputed after a mutation so that a
mutated file reaches the section decoders instead of stopping at the first
CRC-32C (see csrc/format.h for the layout).  The CRC is the library's own
``leann_crc32c``, reached through ctypes from the loaded extension."""

from __future__ import annotations

import ctypes
import struct

_crc = None


def crc32c(data: bytes) -> int:
    global _crc
    if _crc is None:
        from leann_store import _native

        fn = ctypes.CDLL(_native.__file__).leann_crc32c
        fn.restype = ctypes.c_uint32
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32]
        _crc = fn
    return int(_crc(data, len(data), 0))


def fix_checksums(blob: bytes) -> bytes:
    """``blob`` with every checksum that can be located made right: each
    table entry's (for sections inside the file), the table's, the header's.
    Bytes it cannot place are left as they are."""
    if len(blob) < 48:
        return blob
    b = bytearray(blob)
    struct.pack_into("<Q", b, 32, len(b))  # the size, after insertions and erasures
    count, = struct.unpack_from("<I", b, 16)
    table, = struct.unpack_from("<Q", b, 24)
    end = table + 32 * count
    if count <= 4096 and table >= 48 and end + 4 <= len(b):
        for i in range(count):
            e = table + 32 * i
            off, length = struct.unpack_from("<QQ", b, e + 8)
            if off <= len(b) and length <= len(b) - off:
                struct.pack_into("<I", b, e + 24, crc32c(bytes(b[off:off + length])))
        struct.pack_into("<I", b, end, crc32c(bytes(b[table:end])))
    struct.pack_into("<I", b, 40, crc32c(bytes(b[:40])))
    return bytes(b)

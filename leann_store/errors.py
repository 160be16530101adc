"""Exceptions raised by leann-store.

Every failure reaches Python as a subclass of :class:`LeannError`; those that
describe bad input also derive from :class:`ValueError`, so generic handlers
keep working.
"""

from __future__ import annotations

import sqlite3


class LeannError(Exception):
    """Base class of every leann-store error."""


class InvalidInputError(LeannError, ValueError):
    """An argument is of the wrong type, shape, dtype or value."""


class DimensionMismatchError(InvalidInputError):
    """Vectors do not have the dimension the index was built with."""


class OutOfMemoryError(LeannError, MemoryError):
    """The native library could not allocate memory."""


class CorruptIndexError(LeannError):
    """An index file or buffer failed validation."""


class IndexFileError(LeannError, OSError):
    """An index file cannot be read or written (``errno`` says why)."""


class IndexFileNotFoundError(IndexFileError, FileNotFoundError):
    """The index file does not exist."""


class IndexFilePermissionError(IndexFileError, PermissionError):
    """The index file (or its directory) may not be read or written."""


class DocstoreError(LeannError, sqlite3.DatabaseError):
    """The store's SQLite docstore failed: a full disk, an I/O error, a
    database that is locked too long (also a ``sqlite3.DatabaseError``, the
    original chained)."""


class CorruptDocstoreError(DocstoreError, CorruptIndexError):
    """The docstore is damaged or was not written by leann-store: a
    malformed file, a missing table or column, values of the wrong type,
    triggers or views of its own."""


class CallbackError(LeannError):
    """A user callback failed; the original exception is chained."""


class NativeError(LeannError):
    """An unexpected failure inside the native library (a bug: please report)."""


class FilterError(InvalidInputError):
    """A metadata filter is malformed: unknown operator, wrong value type, bad key."""


class ModelMismatchError(LeannError):
    """A store is opened with an embedding model other than the one that built it."""


class StoreLockedError(LeannError):
    """Another process (or another open store) holds the store's write lock."""


class UnknownIdError(LeannError, KeyError):
    """An id that the store does not hold."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class CodecDriftWarning(UserWarning):
    """Rows added to a store code much worse than the rows its codec was
    trained on (a shift in what is being added): recall may drop until
    ``LeannStore.refresh_codec()`` retrains the codec."""


class MaintenanceWarning(UserWarning):
    """A merge or compaction that follows a committed write failed (a full
    disk, say).  The write itself happened; the work is retried after the
    next write, and ``LeannStore.stats()["maintenance_deferred"]`` says why
    it waits."""


class StoreExistsError(InvalidInputError, FileExistsError):
    """A store would be written where a store, or other files, already are
    (``LeannStore.snapshot`` without ``replace=True``, or a non-empty
    directory that holds no store)."""

"""leann-store: a tiny-index vector store for RAG.

The core is framework-free::

    from leann_store import LeannIndex, IndexConfig
    index = LeannIndex.build(vectors, config=IndexConfig(metric="cosine"))
    result = index.search(query, k=10)
"""

from . import errors
from .codec import Codec, train_codec
from .errors import (
    CallbackError,
    CorruptIndexError,
    DimensionMismatchError,
    InvalidInputError,
    LeannError,
    NativeError,
    OutOfMemoryError,
)
from .errors import FilterError, ModelMismatchError, StoreLockedError, UnknownIdError
from .index import IndexConfig, LeannIndex, SearchResult
from .store import Hit, Hits, LeannStore, Record, StoreConfig

__version__ = "0.1.0"

__all__ = [
    "Codec",
    "FilterError",
    "Hit",
    "Hits",
    "LeannStore",
    "ModelMismatchError",
    "Record",
    "StoreConfig",
    "StoreLockedError",
    "UnknownIdError",
    "CallbackError",
    "CorruptIndexError",
    "DimensionMismatchError",
    "IndexConfig",
    "InvalidInputError",
    "LeannError",
    "LeannIndex",
    "NativeError",
    "OutOfMemoryError",
    "SearchResult",
    "errors",
    "train_codec",
    "__version__",
]

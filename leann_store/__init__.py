"""leann-store: a tiny-index vector store for RAG.

The core is framework-free.  The index keeps no embeddings: a search
re-embeds the few passages it needs through ``embed`` (here a lookup in the
vectors; in real use, your embedding model on the passages' text):

>>> import numpy as np
>>> from leann_store import LeannIndex, IndexConfig
>>> vectors = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
>>> index = LeannIndex.build(vectors, IndexConfig(metric="cosine"))
>>> def embed(ids):
...     return vectors[ids]
>>> result = index.search(vectors[7], k=3, embed=embed)
>>> int(result.ids[0]), result.ids.shape
(7, (3,))
>>> int(result.stats["recomputed"]) <= 154
True
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
from .errors import CodecDriftWarning, FilterError, ModelMismatchError, StoreLockedError, UnknownIdError
from .index import IndexConfig, LeannIndex, SearchResult
from .config import StoreConfig
from .store import Hit, Hits, LeannStore, Record

__version__ = "0.1.0"

__all__ = [
    "Codec",
    "CodecDriftWarning",
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

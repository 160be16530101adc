"""LlamaIndex vector store on leann-store: ``from llama_index.vector_stores.leann import LeannVectorStore``.

Part of the ``leann-store`` distribution (extra ``llama-index``); a PEP 420
namespace package beside llama-index-core and the other integrations.
"""

from llama_index.vector_stores.leann.base import LeannVectorStore
from llama_index.vector_stores.leann.filters import to_store_filter

__all__ = ["LeannVectorStore", "to_store_filter"]

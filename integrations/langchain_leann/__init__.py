"""LangChain integration of leann-store: ``from langchain_leann import LeannVectorStore``.

A drop-in replacement for FAISS, Chroma or ``InMemoryVectorStore`` in a chain. The index
keeps tens of bytes per passage; the few passages a query visits are re-embedded with the
chain's own ``Embeddings`` object.
"""

from langchain_leann.vectorstores import LeannVectorStore, model_identity

__all__ = ["LeannVectorStore", "model_identity"]

"""LangChain's standard vector-store suite (langchain-tests), sync and async, on LeannVectorStore."""

from __future__ import annotations

from collections.abc import Generator

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from langchain_leann import LeannVectorStore  # noqa: E402


class TestLeannVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> Generator[LeannVectorStore, None, None]:  # type: ignore[override]
        store = LeannVectorStore(self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


class TestLeannVectorStoreStandardOnDisk(VectorStoreIntegrationTests):
    """The same suite on a store with a path, reopened between the fixture and the test."""

    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Generator[LeannVectorStore, None, None]:  # type: ignore[override]
        LeannVectorStore(self.get_embeddings(), tmp_path / "kb", metric="cosine").close()
        store = LeannVectorStore(self.get_embeddings(), tmp_path / "kb")
        try:
            yield store
        finally:
            store.close()

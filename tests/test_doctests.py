"""Every docstring example runs: the modules listed here are run through
doctest.  A module with examples joins the list (each must have at least
one, so a module cannot silently drop out)."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: modules whose docstring examples must run; add yours here
MODULES = [
    "leann_store",
    "leann_store.index",
    "leann_store.build",
    "leann_store._rows",
    "leann_store.codec",
    "leann_store.store",
    "leann_store.config",
    "leann_store.filters",
    "leann_store.recompute",
    "leann_store.tokens",
    "leann_store.options",
    "leann_store.scores",
    "leann_store._checks",
    "leann_store.command.sources",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             raise_on_error=False, report=True, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see the output above)"

"""The import contract: the arrows between the package's layers point down.

    command side   leann_store.command (cli, sources, models, ...)   may import anything below
    adapters       langchain_leann, llama_index.vector_stores.leann  leann_store's public names only
    store          leann_store.store and what serves it (generations, docstore, embedding, ...)
    index          leann_store.index, build, codec, config, _rows, _checks, errors
    native         leann_store.native, the only module that touches cffi

Read from the source with ``ast`` (imports inside functions count too), so a
lazy import cannot slip past it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "leann_store"

#: modules of the index layer and below: they never reach up to the store
INDEX_LAYER = {"index", "build", "codec", "config", "options", "_rows", "_checks", "errors", "native",
               "_build_native"}
#: modules of the command side that live at the top of the package (public names)
COMMAND_SIDE = {"distributed"}
#: third-party packages that only the command side and the adapters may import
FRAMEWORKS = {"torch", "sentence_transformers", "transformers", "onnxruntime", "onnx", "langchain_core",
              "langchain", "llama_index", "mcp", "ray", "langchain_leann", "hnswlib", "faiss"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return out


def _core_modules() -> list[Path]:
    return sorted(p for p in PKG.glob("*.py") if p.stem not in COMMAND_SIDE)


def test_command_side_is_not_imported_by_the_core() -> None:
    for path in _core_modules():
        bad = sorted(m for m in _imports(path) if m in {f"leann_store.{c}" for c in COMMAND_SIDE})
        assert not bad, f"{path.name} imports {bad}"


def test_the_contract_sees_imports() -> None:
    """The parser itself: a known import of each kind is found."""
    assert "leann_store.store" in _imports(PKG / "__init__.py")
    assert "leann_store.errors" in _imports(PKG / "command" / "cli.py")
    assert "leann_store.command.sources" in _imports(PKG / "command" / "cli.py")


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.name)
def test_core_never_imports_the_command_side_or_a_framework(path: Path) -> None:
    bad = sorted(m for m in _imports(path)
                 if m.startswith("leann_store.command") or m.split(".")[0] in FRAMEWORKS)
    assert not bad, f"{path.name} imports {bad}: the core stays framework-free and below the command"


@pytest.mark.parametrize("path", [p for p in _core_modules() if p.stem in INDEX_LAYER], ids=lambda p: p.name)
def test_index_layer_never_reaches_up(path: Path) -> None:
    above = {f"leann_store.{m.stem}" for m in _core_modules() if m.stem not in INDEX_LAYER | {"__init__"}}
    bad = sorted(m for m in _imports(path) if m in above or any(m.startswith(a + ".") for a in above))
    assert not bad, f"{path.name} (index layer) imports {bad} from the store layer"


def test_only_native_touches_cffi() -> None:
    users = sorted(p.name for p in [*PKG.rglob("*.py"), *(ROOT / "integrations").rglob("*.py")]
                   if p.name != "_build_native.py"
                   and any(m.split(".")[0] == "cffi" or m.endswith("._native") or m == "_native"
                           for m in _imports(p)))
    assert users == ["native.py"], users


def test_adapters_use_public_names_only() -> None:
    public = {"leann_store", "leann_store.errors", "leann_store.filters", "leann_store.config",
              "leann_store.options", "leann_store.scores"}
    for path in (ROOT / "integrations").rglob("*.py"):
        used = {m for m in _imports(path) if m.startswith("leann_store")}
        private = sorted(m for m in used if m not in public and m.rpartition(".")[0] not in public)
        assert not private, f"{path.relative_to(ROOT)} imports {private}: adapters map onto the public API"

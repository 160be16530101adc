"""The command side: the ``leann-store`` command (:mod:`.cli`), its document
readers and chunker (:mod:`.sources`) and its default model (:mod:`.models`).

These modules sit on top of :class:`leann_store.LeannStore` like the
framework adapters do: they may import a model runtime, the store never
imports them (``tests/test_layers.py`` holds the arrows to that).
"""

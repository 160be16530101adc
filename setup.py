"""Build hook: compiles csrc/ into the cffi extension leann_store._native.

All metadata lives in pyproject.toml; setup.py exists only because cffi's
out-of-line API mode plugs into setuptools through ``cffi_modules``.
"""

from setuptools import setup

# cffi compiles against the limited API (the module is _native.abi3.so):
# tag the wheel so that one wheel serves every CPython >= 3.10
setup(cffi_modules=["leann_store/_build_native.py:ffibuilder"],
      options={"bdist_wheel": {"py_limited_api": "cp310"}})

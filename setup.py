"""Build hook: compiles csrc/ into the cffi extension leann_store._native.

All metadata lives in pyproject.toml; setup.py exists only because cffi's
out-of-line API mode plugs into setuptools through ``cffi_modules``.
"""

from setuptools import setup

setup(cffi_modules=["leann_store/_build_native.py:ffibuilder"])

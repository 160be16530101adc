#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer + UBSan build of the C library.
# Builds a throwaway clone of the committed tree (HEAD) in its own virtual
# environment (the normal install is left alone); extra arguments go to
# pytest.  About 2 minutes on 2 cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/src"
python3 -m venv --system-site-packages "$work/venv"
# the venv's bundled setuptools shadows the system's; the build (without
# isolation, for the CFLAGS) needs what pyproject.toml requires
"$work/venv/bin/pip" install -q "setuptools>=77" wheel
cd "$work/src"
CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -O1" \
LDFLAGS="-fsanitize=address,undefined" \
    "$work/venv/bin/pip" install --no-deps --no-build-isolation -e . -q
# the Python interpreter is not built with ASan: preload its runtime; -s so
# that a sanitizer report is not swallowed by pytest's output capture
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$work/venv/bin/python" -m pytest tests -q -s -p no:cacheprovider "$@"

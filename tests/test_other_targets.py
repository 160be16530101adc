"""The C library on targets this machine is not: every source compiles
warning-free for Linux and macOS on x86-64 and aarch64 (zig's clang), and the
NEON code-lookup kernel, built for aarch64, runs in the unicorn emulator
(tools/neon_check.py).  On aarch64 the kernel tests in test_kernels.py run it
natively instead."""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "neon_check.py"
ON_ARM = platform.machine().lower() in ("aarch64", "arm64")


@pytest.mark.parametrize("target", ["x86_64-linux-gnu", "aarch64-linux-gnu", "x86_64-macos", "aarch64-macos"])
def test_sources_compile_warning_free(target, tmp_path):
    pytest.importorskip("ziglang", reason="the test extra installs ziglang on x86-64")
    sys.path.insert(0, str(ROOT / "leann_store"))
    try:
        from _build_native import SOURCES  # the list pip compiles
    finally:
        sys.path.pop(0)
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", target, "-std=c11", "-pthread",
           "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", "-O2", "-c",
           *(str(ROOT / "csrc" / s) for s in SOURCES)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)  # objects land there
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def neon_check(tmp_path_factory):
    if ON_ARM:
        pytest.skip("aarch64 runs the NEON kernel natively in test_kernels.py")
    pytest.importorskip("unicorn", reason="the test extra installs unicorn on x86-64")
    pytest.importorskip("ziglang", reason="the test extra installs ziglang on x86-64")
    spec = importlib.util.spec_from_file_location("neon_check", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exe = tmp_path_factory.mktemp("aarch64") / "neon_check"
    module.build(exe)
    return module, exe


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_neon_scan_matches_reference(neon_check, seed):
    module, exe = neon_check
    assert module.run(exe, seed, 1500) == 0


def test_emulated_check_catches_a_wrong_total(neon_check, tmp_path):
    """The harness is not vacuous: a kernel that drops the high nibbles' sums fails."""
    module, _ = neon_check
    src = (module.CSRC / "flash.c").read_text()
    bad = src.replace("h = vaddw_high_u8(vaddw_high_u8(h, vl), vh);", "h = vaddw_high_u8(h, vl);")
    assert bad != src, "the NEON kernel's accumulation line moved: update this test"
    (tmp_path / "flash.c").write_text(bad)
    exe = tmp_path / "neon_check_bad"
    module.build(exe, sources=[module.SOURCES[0], tmp_path / "flash.c", module.CSRC / "common.c"])
    assert module.run(exe, 1, 300) > 0

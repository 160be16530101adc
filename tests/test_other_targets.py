"""The C library on targets this machine is not: every source compiles
warning-free for Linux and macOS on x86-64 and aarch64 (zig's clang), and the
NEON code-lookup kernel, built for aarch64, runs in the unicorn emulator
(tools/neon_check.py).  On aarch64 the kernel tests in test_kernels.py run it
natively instead."""

from __future__ import annotations

import importlib.util
import platform
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "neon_check.py"
ON_ARM = platform.machine().lower() in ("aarch64", "arm64")


def _tool():
    spec = importlib.util.spec_from_file_location("neon_check", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["x86_64-linux-gnu", "aarch64-linux-gnu", "x86_64-macos", "aarch64-macos"])
def test_sources_compile_warning_free(target, tmp_path):
    pytest.importorskip("ziglang", reason="the test extra installs ziglang on x86-64")
    tool = _tool()
    _, sources = tool.library_build()  # the flags and files pip compiles
    cmd = [*tool.zig_cc(target), "-c", *(str(ROOT / "csrc" / s) for s in sources)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)  # objects land there
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def neon_check(tmp_path_factory):
    if ON_ARM:
        pytest.skip("aarch64 runs the NEON kernel natively in test_kernels.py")
    pytest.importorskip("unicorn", reason="the test extra installs unicorn on x86-64")
    pytest.importorskip("ziglang", reason="the test extra installs ziglang on x86-64")
    module = _tool()
    exe = tmp_path_factory.mktemp("aarch64") / "neon_check"
    module.build(exe)
    return module, exe


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_neon_scan_matches_reference(neon_check, seed):
    module, exe = neon_check
    assert module.run(exe, seed, 1500) == 0


MUTANTS = {
    "scan drops the high nibbles": ("flash.c", "h = vaddw_high_u8(vaddw_high_u8(h, vl), vh);",
                                    "h = vaddw_high_u8(h, vl);"),
    "l2 squares the wrong difference": ("distance.c", "s3 = vfmaq_f32(s3, t3, t3);", "s3 = vfmaq_f32(s3, t3, t2);"),
    "ip pairs the wrong lanes": ("distance.c", "s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));",
                                 "s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 4));"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_emulated_check_catches_a_wrong_kernel(neon_check, tmp_path, mutant):
    """The harness is not vacuous: each deliberately broken NEON kernel fails it."""
    module, _ = neon_check
    name, old, new = MUTANTS[mutant]
    src = (module.CSRC / name).read_text()
    assert src.count(old) == 1, f"the NEON kernel's line moved: update MUTANTS[{mutant!r}]"
    (tmp_path / name).write_text(src.replace(old, new))
    sources = [tmp_path / name if p.name == name else p for p in module.SOURCES]
    exe = tmp_path / "neon_check_bad"
    module.build(exe, sources=sources)
    assert module.run(exe, 1, 300) > 0

#!/usr/bin/env python3
"""Check the NEON kernels (code lookup, float distances) without aarch64 hardware.

Builds ``tools/neon_check.c`` with the library's codec sources into a static
aarch64 executable (zig's clang, from the ``ziglang`` package) and runs its
``neon_check`` function in an aarch64 emulator (``unicorn``).  The function
scores random codes with the NEON and scalar kernels, and random float
vectors with the NEON L2 and inner-product kernels, and counts the results
that differ from plain references.  Both packages come with the ``test``
extra on x86-64; on aarch64 the ordinary kernel tests run NEON natively.

    python tools/neon_check.py [--seed S] [--cases N]

exits 0 when every total matches.
"""

from __future__ import annotations

import argparse
import importlib.util
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
# the scan and float kernels, the table permutation and the kernel dispatch
SOURCES = [ROOT / "tools" / "neon_check.c", CSRC / "flash.c", CSRC / "distance.c", CSRC / "common.c"]
PAGE = 4096
STACK_TOP, STACK_SIZE = 0x7F00_0000_0000, 1 << 20
RETURN_TRAP = 0x7E00_0000_0000  # a mapped page the function returns into
TIMEOUT_S = 120  # emulated run; a few thousand cases take about a second


def library_build() -> tuple[list[str], list[str]]:
    """The compiler flags and the source files pip builds the library with
    (leann_store/_build_native.py, read without importing the package)."""
    spec = importlib.util.spec_from_file_location("_leann_build_native", ROOT / "leann_store" / "_build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.BASE_ARGS), list(module.SOURCES)


def zig_cc(target: str) -> list[str]:
    """zig's clang for a target triple, with the library's flags and -Werror."""
    flags, _ = library_build()
    return [sys.executable, "-m", "ziglang", "cc", "-target", target, *flags, "-Werror"]


def build(out: Path, sources: list[Path] | None = None) -> None:
    """Compile the harness and the library's sources (default SOURCES) for
    aarch64: a static executable, not PIE, entry point neon_check."""
    cmd = [*zig_cc("aarch64-linux-musl"), "-static", "-no-pie", "-Wl,-e,neon_check", f"-I{CSRC}",
           *map(str, sources or SOURCES), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"aarch64 build failed:\n{res.stderr}")


def _load_segments(image: bytes) -> tuple[int, list[tuple[int, int, bytes]]]:
    """Entry point and (address, memory size, file bytes) of each PT_LOAD."""
    if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    e_type, e_machine = struct.unpack_from("<HH", image, 16)
    if e_type != 2 or e_machine != 183:  # ET_EXEC, EM_AARCH64
        raise ValueError(f"expected a static aarch64 executable, got type {e_type} machine {e_machine}")
    entry, phoff = struct.unpack_from("<QQ", image, 24)
    phentsize, phnum = struct.unpack_from("<HH", image, 54)
    segments = []
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, p_memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", image, phoff + i * phentsize)
        if p_type == 1:  # PT_LOAD
            segments.append((p_vaddr, p_memsz, image[p_offset:p_offset + p_filesz]))
    return entry, segments


def run(executable: Path, seed: int, cases: int) -> int:
    """Emulate neon_check(seed, cases); returns its count of wrong results (-1: no NEON kernel)."""
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
    from unicorn.arm64_const import (UC_ARM64_REG_CPACR_EL1, UC_ARM64_REG_LR, UC_ARM64_REG_PC,
                                     UC_ARM64_REG_SP, UC_ARM64_REG_X0, UC_ARM64_REG_X1)

    entry, segments = _load_segments(executable.read_bytes())
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    mapped: set[int] = set()
    for vaddr, memsz, data in segments:
        for page in range(vaddr // PAGE * PAGE, vaddr + memsz, PAGE):
            if page not in mapped:
                uc.mem_map(page, PAGE)
                mapped.add(page)
        uc.mem_write(vaddr, data)  # the rest of memsz (.bss) stays zero
    uc.mem_map(STACK_TOP - STACK_SIZE, STACK_SIZE)
    uc.mem_map(RETURN_TRAP, PAGE)
    uc.reg_write(UC_ARM64_REG_CPACR_EL1, uc.reg_read(UC_ARM64_REG_CPACR_EL1) | (3 << 20))  # FP/SIMD on
    uc.reg_write(UC_ARM64_REG_SP, STACK_TOP - 64)
    uc.reg_write(UC_ARM64_REG_LR, RETURN_TRAP)
    uc.reg_write(UC_ARM64_REG_X0, seed)
    uc.reg_write(UC_ARM64_REG_X1, cases)
    uc.emu_start(entry, RETURN_TRAP, timeout=TIMEOUT_S * 1_000_000)
    if uc.reg_read(UC_ARM64_REG_PC) != RETURN_TRAP:  # the timeout stops it silently
        raise RuntimeError(f"neon_check did not return within {TIMEOUT_S} s (pc {uc.reg_read(UC_ARM64_REG_PC):#x})")
    return struct.unpack("<q", struct.pack("<Q", uc.reg_read(UC_ARM64_REG_X0)))[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "neon_check"
        build(exe)
        bad = run(exe, args.seed, args.cases)
    if bad < 0:
        print("the aarch64 build has no NEON kernel")
        return 1
    print(f"{args.cases} cases (NEON code and float kernels, scalar code kernel): {bad} wrong results")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

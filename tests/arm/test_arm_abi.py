"""ELF portability of libdc_huffdecode.so for x86_64, aarch64 and armv7 (tools/arm/check_abi.py):
only libc/libm, no glibc symbol version newer than 2.17, only C functions Android's bionic has
(API 21), only the public symbols exported.  The checker itself is shown to reject a library
that breaks each rule."""
import subprocess
import sys

import pytest

from arm_helpers import ROOT, built

CHECK_ABI = ROOT / "tools" / "arm" / "check_abi.py"
COMPILERS = {"host": "gcc", "aarch64": "aarch64-linux-gnu-gcc", "armv7": "arm-linux-gnueabihf-gcc"}


def _check(path):
    return subprocess.run([sys.executable, str(CHECK_ABI), str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("arch", list(COMPILERS))
def test_library_is_portable(arm_env, arch):
    proc = _check(built(arch, "libdc_huffdecode.so"))
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("arch", list(COMPILERS))
def test_checker_rejects_non_portable_library(arm_env, arch, tmp_path):
    src = tmp_path / "bad.c"
    src.write_text(
        "#define _DEFAULT_SOURCE\n#include <stdlib.h>\n"
        "void* leaked_helper(size_t n) { return aligned_alloc(16, n); }\n"   # C11, bionic API 28
        "unsigned dc_random(void) { return arc4random(); }\n")              # GLIBC_2.36
    (tmp_path / "extra.c").write_text("int extra_fn(void) { return 1; }\n")
    subprocess.run([COMPILERS[arch], "-fPIC", "-shared", "-o", str(tmp_path / "libextra.so"),
                    str(tmp_path / "extra.c")], check=True, capture_output=True)
    lib = tmp_path / "libbad.so"
    subprocess.run([COMPILERS[arch], "-std=c11", "-O2", "-fPIC", "-shared", "-o", str(lib),
                    str(src), f"-L{tmp_path}", "-Wl,--no-as-needed", "-lextra"],
                   check=True, capture_output=True)
    proc = _check(lib)
    assert proc.returncode == 1
    out = proc.stdout
    assert "needs libextra.so (only libc/libm allowed)" in out
    assert "'aligned_alloc' is not a C library function" in out
    assert "arc4random@GLIBC_2.36" in out
    assert "exports 'leaked_helper'" in out

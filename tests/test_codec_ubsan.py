"""dc_decode of an empty tensor (0 elements) packed at format version 1 into no output buffer (NULL,
0 bytes): the version 1 checksum (over the decoded bytes) computed NULL + 0, undefined in C (clang's
UBSan stopped fuzz/fuzz_tflm.c on it, 2026-12-05; the TFLM kernel works round it since 8e2dfeb, and
dc_codec.c itself no longer forms the pointer). Built with clang -fsanitize=undefined: gcc's UBSan
does not report NULL + 0."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from dc_keras import codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "dc_codec.h"
int main(int argc, char** argv) {
  unsigned char buf[4096];
  FILE* f = fopen(argv[1], "rb");
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  (void)argc;
  printf("%d\n", (int)dc_decode(buf, n, NULL, 0));
  return 0;
}
"""


@pytest.fixture(scope="module")
def decode_ubsan(tmp_path_factory, codec_ubsan_obj):
    """The program above linked with dc_codec.c's UBSan object (codec_ubsan_obj, tests/conftest.py:
    built once for the session, -Wall -Wextra -Werror as well), once for every dtype."""
    k = os.path.join(ROOT, "tflite_kernels")
    d = tmp_path_factory.mktemp("ubsan")
    (d / "main.c").write_text(PROGRAM)
    exe = d / "decode_ubsan"
    r = subprocess.run([shutil.which("clang"), "-std=c99", "-O1", "-g", "-fsanitize=undefined",
                        "-fno-sanitize-recover=all", f"-I{k}/include", "-o", str(exe), str(d / "main.c"),
                        codec_ubsan_obj, "-lm"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return exe


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.int8])
def test_empty_version1_tensor_into_no_buffer_is_defined_behaviour(tmp_path, dtype, decode_ubsan):
    packed = codec.encode(np.zeros((0, 4), dtype), version=1)
    assert codec.info(packed)["version"] == 1
    (tmp_path / "p.bin").write_bytes(packed)
    r = subprocess.run([str(decode_ubsan), str(tmp_path / "p.bin")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
    assert r.stdout.strip() == "0"  # DC_OK: decoded (nothing), checksum right

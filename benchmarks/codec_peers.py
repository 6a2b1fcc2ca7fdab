"""Context-mixing and PPM compressors on byte strings: the strongest general-purpose modelling at hand,
an upper bound on what a generic model finds in a pruned + clustered tensor (issue 19's codec goal).

Runs in its own venv (codec_bound.py --peers makes ~/.cache/dc_keras/venvs/codec_peers with
``pyppmd``, ``brotli`` and ``zpaq`` from PyPI); it imports no dc_keras. Command-line coders that are
on PATH are run too (Debian: ``apt-get install zpaq lrzip 7zip``); those missing are listed, not
silent. Every in-memory coder's output is decoded back and compared (lossless check).

    python codec_peers.py IN.npz OUT.json      # IN.npz: named uint8 arrays (the byte strings)

Output: {"sizes": {name: {coder: bytes}}, "overhead": {coder: bytes of a 1-byte input},
"seconds" / "decode_seconds": {name: {coder: encode / decode CPU s}}, "missing": [coders not installed]}. Container overhead
(archive headers, the coder's model description) is in every size; "overhead" shows how much.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from _venv import cached_venv

PPMD_ORDERS = (2, 4, 8, 16)
PACKAGES = ("pyppmd==1.3.1", "brotli==1.2.1", "zpaq==0.3.7", "numpy")


def venv_python():
    """The peers venv's python, created once under a lock (pip from PyPI, ~20 s; reused afterwards)."""
    return cached_venv("codec_peers", PACKAGES, "codec peers")


def run_peers(blobs):
    """measure(blobs) in the peers venv (``blobs``: {name: bytes}); the dict measure returns."""
    py = venv_python()
    with tempfile.TemporaryDirectory(prefix="dc_keras-peers-") as d:
        np.savez(os.path.join(d, "in.npz"), **{k: np.frombuffer(v, np.uint8) for k, v in blobs.items()})
        r = subprocess.run([py, os.path.abspath(__file__), os.path.join(d, "in.npz"), os.path.join(d, "out.json")],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"codec_peers.py failed:\n{r.stderr[-3000:]}")
        with open(os.path.join(d, "out.json")) as f:
            return json.load(f)


def _in_memory():
    """{coder: (compress, decompress)} of the Python coders that import."""
    out, missing = {}, []
    try:
        import zpaq
        for level in (4, 5):  # threads=1: one block, the best ratio
            out[f"zpaq -m{level}"] = (lambda b, lv=level: zpaq.compress(b, level=lv, threads=1, hints=True),
                                      zpaq.decompress)
    except ImportError:
        missing.append("zpaq (PyPI)")
    try:
        import pyppmd
        for o in PPMD_ORDERS:
            out[f"PPMd var.H order {o}"] = (lambda b, o=o: pyppmd.compress(b, max_order=o, mem_size=64 << 20),
                                            lambda c, o=o: pyppmd.decompress(c, max_order=o, mem_size=64 << 20))
    except ImportError:
        missing.append("pyppmd (PyPI)")
    try:
        import brotli
        out["brotli -q 11 -w 24"] = (lambda b: brotli.compress(b, quality=11, lgwin=24), brotli.decompress)
    except ImportError:
        missing.append("brotli (PyPI)")
    return out, missing


def _cli_size(argv, raw, out_name):
    """Bytes of the archive a command-line coder writes for ``raw`` (``{f}`` = input, ``{o}`` = archive)."""
    with tempfile.TemporaryDirectory() as d:
        f, o = os.path.join(d, "t"), os.path.join(d, out_name)
        with open(f, "wb") as fh:
            fh.write(raw)
        subprocess.run([a.format(f=f, o=o) for a in argv], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600)
        return os.path.getsize(o)


CLI = {"zpaq 7.15 CLI -m5 (archive)": (["zpaq", "a", "{o}", "{f}", "-m5"], "a.zpaq"),
       "lrzip -z (ZPAQ back end)": (["lrzip", "-z", "-q", "-f", "-o", "{o}", "{f}"], "t.lrz"),
       "7-Zip PPMd order 6 (7z archive)": (["7zz", "a", "-t7z", "-m0=PPMd:o=6:mem=64m", "{o}", "{f}"], "a.7z")}


def measure(blobs):
    coders, missing = _in_memory()
    cli = {k: v for k, v in CLI.items() if shutil.which(v[0][0])}
    missing += [f"{k} ({v[0][0]} not on PATH)" for k, v in CLI.items() if k not in cli]
    sizes, secs, dsecs = {}, {}, {}
    for name, raw in blobs.items():
        sizes[name], secs[name], dsecs[name] = {}, {}, {}
        for k, (enc, dec) in coders.items():
            t = time.process_time()
            c = enc(raw)
            secs[name][k] = time.process_time() - t
            t = time.process_time()
            back = dec(c)
            dsecs[name][k] = time.process_time() - t
            if back != raw:
                raise SystemExit(f"{k} did not round-trip {name}")
            sizes[name][k] = len(c)
        for k, (argv, out_name) in cli.items():
            sizes[name][k] = _cli_size(argv, raw, out_name)
    overhead = {k: len(enc(b"\0")) for k, (enc, _) in coders.items()}
    overhead.update({k: _cli_size(argv, b"\0", o) for k, (argv, o) in cli.items()})
    return {"sizes": sizes, "seconds": secs, "decode_seconds": dsecs, "overhead": overhead, "missing": missing}


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: codec_peers.py IN.npz OUT.json")
    with np.load(argv[0]) as z:
        blobs = {k: z[k].tobytes() for k in z.files}
    with open(argv[1], "w") as f:
        json.dump(measure(blobs), f)


if __name__ == "__main__":
    main(sys.argv[1:])

"""README's and docs/migrating_from_tfmot.md's tfmot file sizes -> docs/results/tfmot_files.json.

    python benchmarks/tfmot_files.py [--json docs/results/tfmot_files.json]

Makes the files of tests/test_tfmot_tflite.py with its child (tests/_tfmot_child.py: tfmot 0.8.1 on
tf_keras, seeded, in a process with TF_USE_LEGACY_KERAS=1) and packs each with
``dc_keras.export.pack``'s defaults: bytes before and after, and the ratio. Bytes only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_JSON = os.path.join(ROOT, "docs", "results", "tfmot_files.json")
FILES = ("pruned_clustered", "pcqat_int8", "cqat_int8", "pruned_dynamic", "pruned_float", "qat_int8")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=OUT_JSON)
    a = ap.parse_args(argv)
    from dc_keras import export

    res = {"benchmark": "tfmot_files", "machine": _common.machine_info(frameworks=False),
           "command": _common.command_line(__file__, argv, prefix="python "), "files": {}}
    with tempfile.TemporaryDirectory(prefix="tfmot_files") as d:
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "_tfmot_child.py"), d], env=env,
                           capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            raise SystemExit(f"tests/_tfmot_child.py failed:\n{r.stderr[-4000:]}")
        with open(os.path.join(d, "versions.json")) as f:
            res["versions"] = json.load(f)
        for name in FILES:
            with open(os.path.join(d, f"{name}.tflite"), "rb") as f:
                plain = f.read()
            packed = export.pack(plain)
            res["files"][name] = {"bytes": len(plain), "packed_bytes": len(packed),
                                  "ratio": round(len(plain) / len(packed), 4)}
    _common.record(a.json, res)
    for name, row in res["files"].items():
        print(name, row)


if __name__ == "__main__":
    main()

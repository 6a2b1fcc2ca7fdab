"""docs/quantization.md's table "Files from PyTorch's converter (litert-torch)": .tflite files that
litert-torch 0.10.0 writes from PyTorch models, packed by dc_keras, checked bit-exact.

    .venv/bin/python benchmarks/litert_torch_files.py --json docs/results/litert_torch.json [--big]

1. litert-torch's venv (benchmarks/_venv.py's ``litert_torch_venv``, as ``pytest -m long
   tests/test_litert_torch_files.py`` makes it: created once, reused) and torchvision's files
   beside it (``pip install --no-deps --target``; imported with its C extension stubbed out, see
   benchmarks/_litert_torch_models.py) convert the models of _litert_torch_models.py in a child.
2. Here, each file is packed by ``export.pack`` and by ``dc-keras pack`` (a child: its time and
   peak memory); on 3 random inputs per signature (seeds 0-2; floats standard normal, integers
   0-59, bools p = 0.5) the outputs must be the same bits on every route: ``runtime.Interpreter`` on
   the packed file against ``runtime.Interpreter`` on the original (``bit_exact``), and, against
   LiteRT's own Interpreter on the original: LiteRT + the library's delegate on the packed file,
   ``export.unpack`` and the C ``runtime.unpack`` run by LiteRT, and TF's interpreter with
   ``decode="op"`` against TF's on the original (both without default delegates).

Files with blockwise INT4 weights run without default delegates everywhere (XNNPACK refuses their
zero-scale blocks). ``--big`` adds the 2.2 GB Embedding(135000, 4096) model (~3 min to convert,
~3 min to pack, ~6 GB of memory): packed by the CLI only, checked on the ``runtime.Interpreter``,
delegate and ``unpack`` routes.
"""
import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from _common import command_line, log, machine_info, record
from _venv import ROOT as VENVS, litert_torch_venv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = os.path.join(REPO, "benchmarks", "_litert_torch_models.py")
FIXTURES = os.path.join(REPO, "tests", "data", "litert_torch")  # make_files.py: MLP, pruned_clustered
TORCHVISION = "torchvision==0.28.0"  # the release of torch 2.13


def torchvision_dir(py):
    """torchvision's files, without dependencies, in a folder beside litert-torch's venv (once)."""
    target = os.path.join(VENVS, "litert-torch-0.10.0-" + TORCHVISION.replace("==", "-"))
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(target, ".complete")):
            cmd = [py, "-m", "pip", "install", "-q", "--no-deps", "--target", target, TORCHVISION]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
            open(os.path.join(target, ".complete"), "w").close()
    return target


def convert(out, names):
    py = litert_torch_venv()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FIXTURES, torchvision_dir(py)]))
    subprocess.run([py, CHILD, out, *names], env=env, check=True, timeout=3600)
    with open(os.path.join(out, "convert.json")) as f:
        return json.load(f)


def _inputs(details, seed):
    rng, xs = np.random.default_rng(seed), {}
    for name, d in details.items():
        shape, dt = [max(1, s) for s in d["shape_signature"]], d["dtype"]
        if np.issubdtype(dt, np.floating):
            xs[name] = rng.standard_normal(shape).astype(dt)
        elif np.issubdtype(dt, np.integer):
            xs[name] = rng.integers(0, 60, shape).astype(dt)
        elif dt == np.bool_:
            xs[name] = rng.random(shape) < 0.5
        else:
            raise TypeError(f"input {name}: {dt}")
    return xs


def outputs(it):
    """{(signature, seed, output): array} on 3 random inputs per signature."""
    res = {}
    for key in it.get_signature_list():
        runner = it.get_signature_runner(key)
        for seed in range(3):
            for name, y in runner(**_inputs(runner.get_input_details(), seed)).items():
                res[(key, seed, name)] = np.array(y).copy()
    return res


def same(a, b):
    """True, or what differs."""
    if a.keys() != b.keys():
        return f"outputs differ: {sorted(map(str, a))[:3]} vs {sorted(map(str, b))[:3]}"
    for k, x in a.items():
        y = b[k]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return f"{k} differs" + (f" by up to {np.abs(x.astype(float) - y.astype(float)).max():.3g}"
                                     if x.shape == y.shape else "")
    return True


def _route(fn):
    try:
        return fn()
    except Exception as exc:  # recorded: e.g. decode="op" refusing INT4 hybrids
        return f"{type(exc).__name__}: {str(exc)[:300]}"


def cli_pack(src, dst):
    """dc-keras pack in a child: (seconds, peak RSS in MB or None, its output). The peak is GNU
    time's (/usr/bin/time, if there): a child's own ru_maxrss from os.wait4 would count this
    process's peak too (Linux keeps it across the exec of a vforked child)."""
    cmd = [sys.executable, "-m", "dc_keras.cli", "pack", src, dst]
    timed = os.path.exists("/usr/bin/time")
    t = time.time()
    r = subprocess.run(["/usr/bin/time", "-f", "dc_keras_maxrss_kb=%M", *cmd] if timed else cmd,
                       capture_output=True, text=True, timeout=3600)
    seconds = round(time.time() - t, 1)
    if r.returncode:
        raise RuntimeError(f"dc-keras pack {src}: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    said, rss = (r.stdout + r.stderr).strip(), None
    if timed:
        said, _, last = said.rpartition("\n")
        rss = round(int(last.split("=")[1]) / 1024)
    return seconds, rss, said.strip()


def _structure(data):
    """Subgraphs, signatures, operators (all, STABLEHLO_COMPOSITE), buffers after the flatbuffer, blockwise INT4."""
    from dc_keras import _flatbuffer as fb

    root = fb.schema.Model.GetRootAs(data, 0)
    out = {"subgraphs": root.SubgraphsLength(),
           "signatures": [root.SignatureDefs(i).SignatureKey().decode() for i in range(root.SignatureDefsLength())],
           "buffers_after_flatbuffer": sum(root.Buffers(i).Offset() > 1 for i in range(root.BuffersLength()))}
    codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
    composite = {i for i, c in enumerate(codes)
                 if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == fb.schema.BuiltinOperator.STABLEHLO_COMPOSITE}
    blockwise = fb.schema.QuantizationDetails.BlockwiseQuantization
    sgs = [root.Subgraphs(i) for i in range(root.SubgraphsLength())]
    ops = [sg.Operators(j).OpcodeIndex() for sg in sgs for j in range(sg.OperatorsLength())]
    out["composites"] = sum(i in composite for i in ops)
    names = {v: k for k, v in vars(fb.schema.BuiltinOperator).items() if not k.startswith("_")}
    counts = {}
    for i in ops:
        c = codes[i]
        name = names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "?")
        name += f"({c.CustomCode().decode()})" if c.CustomCode() else ""
        counts[name] = counts.get(name, 0) + 1
    out["ops"] = dict(sorted(counts.items()))
    out["blockwise_int4"] = any(sg.Tensors(j).Quantization() is not None
                                and sg.Tensors(j).Quantization().DetailsType() == blockwise
                                for sg in sgs for j in range(sg.TensorsLength()))
    return out


def measure(path, big=False):
    """The packed file's size and every route's check (big: the CLI's pack, three routes)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

    from dc_keras import _flatbuffer as fb
    from dc_keras import export, runtime

    dst = path[:-len(".tflite")] + ".packed.tflite"
    row = {"bytes": os.path.getsize(path)}
    row["cli_seconds"], row["cli_max_rss_mb"], said = cli_pack(path, dst)
    row["cli_said"] = said.replace(os.path.dirname(path) + os.sep, "")
    with open(path, "rb") as f:
        data = f.read()
    with open(dst, "rb") as f:
        packed = f.read()
    row.update(_structure(data))
    row["packed_bytes"], row["ratio"] = len(packed), round(len(data) / len(packed), 3)
    row["packed_buffers_after_flatbuffer"] = _structure(packed)["buffers_after_flatbuffer"]
    if not big:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row["api_same_as_cli"] = export.pack(data) == packed
        row["pack_warnings"] = [str(w.message)[:300] for w in caught if issubclass(w.category, UserWarning)]
        row["packed_tensors"] = len(export._pack.packed_tensors(fb.read_model(packed)))
    nod = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if row["blockwise_int4"] else {}
    row["no_default_delegates"] = bool(nod)
    ref = outputs(runtime.Interpreter(model_path=path, **nod))
    routes = {"runtime": _route(lambda: same(ref, outputs(runtime.Interpreter(model_path=dst, **nod))))}
    lite = outputs(Interpreter(model_path=path, **nod))
    routes["runtime_unpacked_vs_litert"] = same(lite, ref)
    routes["litert_delegate"] = _route(lambda: same(lite, outputs(Interpreter(
        model_path=dst, experimental_delegates=[load_delegate(runtime.library_path())], **nod))))
    del data
    routes["unpack"] = _route(lambda: same(lite, outputs(Interpreter(model_content=export.unpack(packed), **nod))))
    if not big:
        routes["c_unpack"] = _route(lambda: same(lite, outputs(Interpreter(model_content=runtime.unpack(packed), **nod))))
        routes["tensorflow_decode_op"] = _route(lambda: _tf_op(path, dst))
    row["routes"] = routes
    row["bit_exact"] = routes["runtime"] is True
    return row


def _tf_op(path, dst):
    """TF's interpreter on the original against decode="op" on the packed file, no default delegates."""
    import tensorflow as tf

    from dc_keras import runtime

    nod = {"experimental_op_resolver_type": tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return same(outputs(tf.lite.Interpreter(model_path=path, **nod)),
                outputs(runtime.Interpreter(model_path=dst, backend="tensorflow", decode="op", **nod)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--big", action="store_true", help="also the 2.2 GB model (~6 min, ~6 GB of memory)")
    p.add_argument("--only", nargs="+", default=None, help="these models of _litert_torch_models.py only")
    p.add_argument("--work", default=None, help="the temporary folder goes in this one (--big needs ~3 GB)")
    args = p.parse_args(argv)
    t0, info = time.time(), machine_info()
    names = list(args.only or [])
    with tempfile.TemporaryDirectory(prefix="dc_keras-litert-torch-", dir=args.work) as work:
        log("converting in litert-torch's venv")
        small = [n for n in names if n != "big"]
        conv = convert(work, small) if small or not names else None  # no name: all but big
        if args.big or "big" in names:
            b = convert(work, ["big"])
            conv = b if conv is None else {**conv, "models": {**conv["models"], **b["models"]}}
        rows = []
        for name, c in conv["models"].items():
            row = {"model": name, **c}
            if "error" not in c:
                log(f"packing and checking {name}")
                row.update(measure(os.path.join(work, name + ".tflite"), big=name == "big"))
                for suffix in (".tflite", ".packed.tflite"):
                    if name == "big":  # 2.2 GB + 0.5 GB: not kept until the end
                        os.remove(os.path.join(work, name + suffix))
            rows.append(row)
            log(json.dumps({k: row.get(k) for k in ("model", "bytes", "packed_bytes", "ratio", "bit_exact")}))
    info["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    result = {"benchmark": "litert_torch_files", "date": info["date"], "minutes": round((time.time() - t0) / 60, 1),
              "versions": conv["versions"], "rows": rows,
              "command": command_line(__file__, argv, prefix=".venv/bin/python "), "machine": info}
    return record(args.json, result, say=log)


if __name__ == "__main__":
    main()

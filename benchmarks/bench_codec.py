"""Benchmark of the packed tensor codec (docs/FORMAT.md) against general-purpose compressors.

For each tensor, side by side in one run:
  (a) packed size vs gzip -9, bz2 -9, xz -9e and zstd -19 of the same tensor's raw float32 bytes
      (goal: <= 0.75x of the best of them);
  (b) decode throughput of our C decoder in Huffman symbols/s and elements/s on one core, and
      vs zstd's decompression of the same tensor (goal: >= 500 M symbols/s on x86, faster than zstd);
  (c) bits per non-zero weight vs the Deep Compression paper.

Timings use the calling thread's CPU time (the decoder and zstd both run on it), best of several
runs, so that other processes on a shared machine distort them less; wall times are shown too.

Tensors (stated in the output): LeNet-300-100's first layer (784 x 300) trained for one epoch on
Fashion-MNIST (the data set Debian ships; MNIST itself is not available offline), magnitude-
pruned to 8 % density in one shot and clustered to 32 shared values (5 bits) by 1-D k-means with
linear initialisation, as in the paper (the project's own prune/cluster training is not used
here); a synthetic Laplace-distributed matrix of the same shape made the same way; and two
synthetic 10 M-element tensors (pruned to 8 % and unpruned).

Usage: python benchmarks/bench_codec.py [--quick] [--no-train] [--json out.json]
The full run takes ~15 minutes on 2 busy cores (xz -9e and zstd -19 of 40 MB dominate);
--quick (the two 784 x 300 layers only) takes ~30 s.
"""
import argparse
import bz2
import ctypes
import gzip
import lzma
import os
import platform
import shlex
import sys
import time

import numpy as np

from _common import machine_info, write_json
from dc_keras import codec
from dc_keras.codec._decode import _library

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

# Paper (Han et al. 2016), LeNet-300-100: 1070 KB -> 27 KB for 266,610 weights with 8 % kept.
PAPER_LENET300_BITS_PER_NZ = 27 * 1024 * 8 / (0.08 * 266_610)
# Before Huffman the paper stores each non-zero as a 5-bit gap plus a 6-bit cluster index.
PAPER_FIXED_BITS_PER_NZ = 5 + 6


def kmeans_linear_1d(values, k, iters=15, centroids=False):
    """1-D k-means with linear initialisation (centroids evenly spaced between min and max); with
    ``centroids``, (values, all k centroids) - empty clusters keep their place."""
    cent = np.linspace(values.min(), values.max(), k)
    for _ in range(iters):
        assign = np.searchsorted((cent[1:] + cent[:-1]) / 2, values)
        sums = np.bincount(assign, weights=values, minlength=k)
        cnt = np.bincount(assign, minlength=k)
        cent = np.where(cnt > 0, sums / np.maximum(cnt, 1), cent)
    assign = np.searchsorted((cent[1:] + cent[:-1]) / 2, values)
    return (cent.astype(np.float32)[assign], cent) if centroids else cent.astype(np.float32)[assign]


def pruned_clustered(shape, density, bits, seed):
    rng = np.random.default_rng(seed)
    w = rng.laplace(scale=0.05, size=shape).astype(np.float32)
    if density < 1.0:
        thr = np.quantile(np.abs(w), 1 - density)
        keep = np.abs(w) > thr
    else:
        keep = np.ones(shape, bool)
    out = np.zeros(shape, np.float32)
    out[keep] = kmeans_linear_1d(w[keep].astype(np.float64), 2**bits)
    return out


FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FASHION_LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"


def fashion_lenet300(seed=0):
    """Fashion-MNIST's training set (x: (60000, 784) float32 in [0, 1], y: uint8 labels) and an untrained
    LeNet-300-100 whose initial weights ``keras.utils.set_random_seed(seed)`` fixes: (x, y, model), or
    None if the data set is missing. trained_lenet300_ip1 and codec_bound.gradual_pruning_tensor start here."""
    if not (os.path.exists(FASHION_MNIST) and os.path.exists(FASHION_LABELS)):
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    with gzip.open(FASHION_MNIST) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    with gzip.open(FASHION_LABELS) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                              keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])
    return x, y, model


def trained_lenet300_ip1(epochs=1, density=0.08, bits=5, seed=0, details=False):
    """LeNet-300-100 trained on Fashion-MNIST for `epochs`, first kernel magnitude-pruned (one
    shot, no retraining) and clustered like the paper. None if the data set is missing. With
    ``details``: (tensor, {"init", "trained", "threshold", "centroids", "init_limit"}), the kernel before
    and after training (float64), the pruning threshold, all k-means centroids, Glorot's limit."""
    got = fashion_lenet300(seed)
    if got is None:
        return None
    import keras

    x, y, model = got
    w0 = np.asarray(model.layers[0].kernel.numpy(), np.float64)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    w = np.asarray(model.layers[0].kernel.numpy(), np.float32)
    thr = np.quantile(np.abs(w), 1 - density)
    keep = np.abs(w) > thr
    out = np.zeros_like(w)
    out[keep], cent = kmeans_linear_1d(w[keep].astype(np.float64), 2**bits, centroids=True)
    if not details:
        return out
    return out, {"init": w0, "trained": w.astype(np.float64), "threshold": float(thr), "centroids": cent,
                 "init_limit": float(np.sqrt(6 / sum(w.shape)))}


def best_time(fn, reps, min_total=0.2):
    """(best CPU seconds, best wall seconds) of fn() over >= reps runs."""
    cpu, wall, n, t_start = [], [], 0, time.perf_counter()
    while n < reps or (time.perf_counter() - t_start < min_total and n < 5000):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
        n += 1
    return min(cpu), min(wall)


def interleaved_best(fns, reps, min_total=0.3):
    """[best CPU seconds of each of fns], the calls alternating (f0, f1, ..., f0, f1, ...) so that
    each sees the same load; >= reps rounds (more while under min_total seconds, up to 5000)."""
    best, n, t_start = [float("inf")] * len(fns), 0, time.perf_counter()
    while n < reps or (time.perf_counter() - t_start < min_total and n < 5000):
        for i, fn in enumerate(fns):
            c0 = time.thread_time()
            fn()
            best[i] = min(best[i], time.thread_time() - c0)
        n += 1
    return best


def baseline_library(rev, work_dir):
    """The C decoder as it was at git revision ``rev`` (dc_codec.c and the headers it includes, from
    this checkout's history, built with today's flags of tflite_kernels/flags.mk) loaded with ctypes:
    to time today's decoders against the one of an earlier day side by side in one process."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = ["git", "-C", root]
    r = subprocess.run(git + ["ls-tree", "--name-only", rev, "tflite_kernels/src/", "tflite_kernels/include/"],
                       capture_output=True, text=True)
    if r.returncode or "tflite_kernels/src/dc_codec.c" not in r.stdout.split():
        raise ValueError(f"--baseline-rev {rev}: no tflite_kernels/src/dc_codec.c at that revision of {root} "
                         f"({' '.join(r.stderr.split()) or 'not in its tree'}): give a commit of this checkout's "
                         "history (a shallow clone has none: git fetch --unshallow)")
    names = r.stdout.split()
    os.makedirs(os.path.join(work_dir, "include"), exist_ok=True)
    for name in names:
        base = os.path.basename(name)
        if base.startswith("dc_codec") or base == "dc_codec.h":
            sub = "include" if "/include/" in name else ""
            with open(os.path.join(work_dir, sub, base), "wb") as f:
                f.write(subprocess.run(git + ["show", f"{rev}:{name}"], check=True, capture_output=True).stdout)
    flags = {}
    with open(os.path.join(root, "tflite_kernels", "flags.mk")) as f:
        for line in f:
            if ":=" in line:
                k, v = line.split(":=", 1)
                flags[k.strip()] = v.split()
    lib = os.path.join(work_dir, "libdc_codec_baseline.so")
    subprocess.run([os.environ.get("CC", "cc"), *flags["DC_CFLAGS"], "-shared", "-I", os.path.join(work_dir, "include"),
                    os.path.join(work_dir, "dc_codec.c"), "-o", lib, "-lm"], check=True)
    out = ctypes.CDLL(lib)
    out.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    out.dc_decode.restype = ctypes.c_int
    return out


def bench_tensor(name, w, reps, skip=(), context_model=False, baseline=None):
    raw = w.tobytes()
    nnz = int(np.count_nonzero(w))
    row = {"tensor": name, "shape": list(w.shape), "elements": int(w.size), "nonzero": nnz,
           "distinct": int(len(np.unique(w))), "raw_bytes": len(raw)}
    t0 = time.perf_counter()
    packed = codec.encode(w, context_model=context_model)
    row["encode_s"] = time.perf_counter() - t0
    info = codec.info(packed)
    row.update(layout=info["layout"], packed_bytes=len(packed),
               dense_bytes=len(codec.encode(w, layout="dense")))
    if info["layout"] in ("sparse", "context_sparse"):
        row["gap_alphabet"] = info["gap_alphabet"]
        row["entries"] = info["entries"]
        symbols = 2 * info["entries"]
    else:
        symbols = w.size
    row["symbols"] = int(symbols)
    assert np.array_equal(codec.decode(packed).view(np.uint32), w.view(np.uint32))

    sizes = {}
    t = {}
    c0 = time.perf_counter()
    sizes["gzip-9"] = len(gzip.compress(raw, compresslevel=9, mtime=0))
    t["gzip-9"] = time.perf_counter() - c0
    c0 = time.perf_counter()
    sizes["bz2-9"] = len(bz2.compress(raw, 9))
    t["bz2-9"] = time.perf_counter() - c0
    if "xz-9e" not in skip:
        c0 = time.perf_counter()
        sizes["xz-9e"] = len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
        t["xz-9e"] = time.perf_counter() - c0
    zst = None
    if zstandard is not None:
        c0 = time.perf_counter()
        zst = zstandard.ZstdCompressor(level=19).compress(raw)
        sizes["zstd-19"] = len(zst)
        t["zstd-19"] = time.perf_counter() - c0
    row["compressor_bytes"] = sizes
    row["compressor_s"] = t
    best_name = min(sizes, key=sizes.get)
    row["best_compressor"] = best_name
    row["ratio_vs_best"] = len(packed) / sizes[best_name]
    row["bits_per_nonzero"] = 8 * len(packed) / max(nnz, 1)
    # order-0 (memoryless) entropy: the floor for any coder that codes symbols independently
    flat = w.reshape(-1)
    if info["layout"] in ("sparse", "context_sparse"):
        pos = np.flatnonzero(flat)
        syms = [np.diff(pos, prepend=-1) - 1, flat[pos].view(np.uint32)]
    else:
        syms = [flat.view(np.uint32)]
    h0 = 0.0
    for x in syms:
        _, cnt = np.unique(x, return_counts=True)
        h0 += float(-(cnt * np.log2(cnt / cnt.sum())).sum())
    row["order0_entropy_bytes"] = h0 / 8
    row["compression_x"] = len(raw) / len(packed)

    lib = _library()
    out = np.empty(w.size, np.float32)
    ptr = out.ctypes.data_as(ctypes.c_void_p)

    def ours():
        st = lib.dc_decode(packed, len(packed), ptr, out.nbytes)
        if st:
            raise RuntimeError(lib.dc_strerror(st))

    cpu, wall = best_time(ours, reps)
    row.update(decode_cpu_s=cpu, decode_wall_s=wall, msym_per_s=symbols / cpu / 1e6,
               melem_per_s=w.size / cpu / 1e6, decode_gb_per_s=len(raw) / cpu / 1e9)
    if info["layout"] == "context_sparse":  # FORMAT.md §14 vs §6 on the same tensor, side by side
        plain = codec.encode(w, layout="sparse")

        def sparse6():
            st = lib.dc_decode(plain, len(plain), ptr, out.nbytes)
            if st:
                raise RuntimeError(lib.dc_strerror(st))

        c6, w6 = best_time(sparse6, reps)
        cpu, wall = best_time(ours, reps)  # again, right after: both under the same load
        row.update(decode_cpu_s=min(cpu, row["decode_cpu_s"]), sparse6_bytes=len(plain),
                   sparse6_decode_cpu_s=c6, sparse6_decode_wall_s=w6,
                   sparse6_bits_per_nonzero=8 * len(plain) / max(nnz, 1))
        if baseline is not None:  # §14 and §6 today against §6 decoded by an earlier day's decoder
            rev, old = baseline

            def sparse6_then():
                st = old.dc_decode(plain, len(plain), ptr, out.nbytes)
                if st:
                    raise RuntimeError(f"the decoder of {rev}: status {st}")

            t14, t6, t6_then = interleaved_best([ours, sparse6, sparse6_then], 4 * reps)
            row.update(baseline_rev=rev, interleaved_decode_cpu_s={"context14": t14, "sparse6": t6,
                                                                   f"sparse6_at_{rev}": t6_then})
    if zst is not None:
        d = zstandard.ZstdDecompressor()
        assert d.decompress(zst) == raw
        zcpu, zwall = best_time(lambda: d.decompress(zst), max(3, reps // 2))
        row.update(zstd_decode_cpu_s=zcpu, zstd_decode_wall_s=zwall, speedup_vs_zstd=zcpu / cpu)
    return row


def print_row(r):
    print(f"\n## {r['tensor']}  shape {tuple(r['shape'])}, {r['elements']:,} elements, "
          f"{r['nonzero']:,} non-zero ({100 * r['nonzero'] / r['elements']:.1f} %), "
          f"{r['distinct']} distinct values")
    extra = f", G = {r['gap_alphabet']}, {r['entries']:,} entries" if "gap_alphabet" in r else ""
    print(f"ours: {r['packed_bytes']:,} B ({r['layout']}{extra}); dense layout would be "
          f"{r['dense_bytes']:,} B; raw {r['raw_bytes']:,} B -> {r['compression_x']:.1f}x; "
          f"encode {r['encode_s']:.2f} s")
    print("  (a) size           bytes      ours/this")
    for k, v in r["compressor_bytes"].items():
        print(f"      {k:<10} {v:>12,}      {r['packed_bytes'] / v:6.3f}x   ({r['compressor_s'][k]:.1f} s)")
    goal = "MET" if r["ratio_vs_best"] <= 0.75 else "NOT met"
    print(f"      ours vs best ({r['best_compressor']}): {r['ratio_vs_best']:.3f}x  [goal <= 0.75x: {goal}]")
    goal = "MET" if r["msym_per_s"] >= 500 else "NOT met"
    print(f"  (b) decode: {r['decode_cpu_s'] * 1e3:.2f} ms CPU ({r['decode_wall_s'] * 1e3:.2f} ms wall) = "
          f"{r['msym_per_s']:.0f} M symbols/s [goal >= 500: {goal}], {r['melem_per_s']:.0f} M elements/s, "
          f"{r['decode_gb_per_s']:.2f} GB/s output")
    if "sparse6_bytes" in r:
        print(f"      vs the order-0 sparse layout (§6) of the same tensor: {r['sparse6_bytes']:,} B "
              f"({r['sparse6_bits_per_nonzero']:.2f} bits/non-zero), decode {r['sparse6_decode_cpu_s'] * 1e3:.3f} ms CPU "
              f"-> §14 is {r['packed_bytes'] / r['sparse6_bytes']:.3f}x the size at "
              f"{r['sparse6_decode_cpu_s'] / r['decode_cpu_s']:.2f}x the speed")
    if "baseline_rev" in r:
        t = r["interleaved_decode_cpu_s"]
        then = t[f"sparse6_at_{r['baseline_rev']}"]
        print(f"      interleaved: §14 {t['context14'] * 1e6:.1f} us, §6 {t['sparse6'] * 1e6:.1f} us, §6 by the decoder "
              f"of {r['baseline_rev']} {then * 1e6:.1f} us -> §14 at {t['sparse6'] / t['context14']:.2f}x today's "
              f"§6 speed, {then / t['context14']:.2f}x that decoder's")
    if "speedup_vs_zstd" in r:
        goal = "MET" if r["speedup_vs_zstd"] > 1 else "NOT met"
        print(f"      zstd-19 decompression: {r['zstd_decode_cpu_s'] * 1e3:.2f} ms CPU "
              f"({r['zstd_decode_wall_s'] * 1e3:.2f} ms wall) -> ours is {r['speedup_vs_zstd']:.2f}x "
              f"faster [goal > 1x: {goal}]")
    print(f"  order-0 entropy of {'gaps + indices' if r['layout'] == 'sparse' else 'indices'}: "
          f"{r['order0_entropy_bytes']:,.0f} B; ours is {100 * (r['packed_bytes'] / r['order0_entropy_bytes'] - 1):.1f} % "
          f"above it (header, codebook, Huffman rounding, fillers)")
    if r["nonzero"] < r["elements"]:
        print(f"  (c) {r['bits_per_nonzero']:.2f} bits per non-zero weight (incl. header+codebook); paper: "
              f"{PAPER_LENET300_BITS_PER_NZ:.1f} for LeNet-300-100 as a whole (27 KB / 8 % of 266,610), "
              f"{PAPER_FIXED_BITS_PER_NZ} before Huffman (5-bit gap + 6-bit index)")


def tflite_weights(path, min_elements=1000):
    """(name, array) of every constant tensor of a .tflite with at least ``min_elements``
    elements, as the packer sees them (fully-connected kernels are [out, in])."""
    from dc_keras.runtime import Interpreter

    it = Interpreter(model_path=path)
    out = []
    for d in it.get_tensor_details():
        try:
            a = it.get_tensor(d["index"])
        except ValueError:  # not a constant
            continue
        if a.size >= min_elements and a.dtype == np.float32:
            out.append((d["name"], np.ascontiguousarray(a)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the LeNet-300-100 layer")
    ap.add_argument("--no-train", action="store_true",
                    help="skip training LeNet-300-100 on Fashion-MNIST (needs keras + the data set)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", help="run only the tensors whose name contains this text")
    ap.add_argument("--skip-xz", action="store_true", help="skip xz -9e (minutes per 40 MB)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--context-model", action="store_true",
                    help="pack with context_model=True (FORMAT.md §14 where smaller); a tensor packed so is "
                         "also decoded as §6, side by side")
    ap.add_argument("--baseline-rev", metavar="REV",
                    help="with --context-model: also decode each §14 tensor's §6 form with the C decoder of this "
                         "git revision (built from this checkout's history), interleaved with today's §14 and §6 "
                         "(e.g. e617840, the decoder of the day issue 19 asked for a §14 decode speed >= today's)")
    ap.add_argument("--tflite", action="append", default=[],
                    help="also bench the float weights (>= 1000 elements) of this pruned+clustered .tflite")
    args = ap.parse_args(argv)
    print(f"# bench_codec  ({platform.machine()}, {platform.processor() or 'cpu'}, numpy {np.__version__}, "
          f"zstandard {getattr(zstandard, '__version__', 'missing')})")
    print("Tensors: LeNet-300-100's first layer trained 1 epoch on Fashion-MNIST, and synthetic "
          "Laplace(0, 0.05) weights; magnitude-pruned, clustered by 1-D k-means with linear init "
          "(the paper's recipe), float32.")
    tensors = [("LeNet-300-100 ip1 (784x300), 8 % kept, 5-bit", (784, 300), 0.08, 5)]
    if not args.quick:
        tensors += [("10M, 8 % kept, 5-bit", (10_000_000,), 0.08, 5),
                    ("10M, unpruned, 5-bit", (10_000_000,), 1.0, 5)]
    rows = []
    skip = ("xz-9e",) if args.skip_xz else ()
    # compressors this run does not measure: "best of the four" is then best of fewer, said in the JSON
    not_measured = (["xz-9e (--skip-xz)"] if args.skip_xz else []) + (
        [] if zstandard is not None else ["zstd-19 (zstandard not installed: pip install -e '.[bench]')"])
    if not_measured:
        print("not measured: " + "; ".join(not_measured), flush=True)
    baseline = None
    if args.baseline_rev:
        if not args.context_model:
            ap.error("--baseline-rev times §14 tensors: give --context-model too")
        import tempfile

        work = tempfile.mkdtemp(prefix="dc_baseline_")
        baseline = (args.baseline_rev, baseline_library(args.baseline_rev, work))
    if args.only:
        tensors = [t for t in tensors if args.only in t[0]]
    if not args.no_train and not args.only:
        w = trained_lenet300_ip1()
        if w is None:
            print("(Fashion-MNIST not found: skipping the trained LeNet-300-100 layer)")
        else:
            rows.append(bench_tensor("LeNet-300-100 ip1 TRAINED 1 epoch on Fashion-MNIST, "
                                     "8 % kept (one-shot magnitude pruning), 5-bit k-means", w, args.reps, skip, args.context_model, baseline))
            print_row(rows[-1])
            rows.append(bench_tensor("the same, transposed to TFLite's fully-connected layout [out, in] "
                                     "(what pack() sees)", np.ascontiguousarray(w.T), args.reps, skip, args.context_model, baseline))
            print_row(rows[-1])
    for path in args.tflite:
        for name, w in tflite_weights(path):
            rows.append(bench_tensor(f"{os.path.basename(path)}: {name}", w, args.reps, skip, args.context_model, baseline))
            print_row(rows[-1])
    for i, (name, shape, density, bits) in enumerate(tensors):
        w = pruned_clustered(shape, density, bits, seed=i)
        rows.append(bench_tensor("synthetic " + name, w, args.reps, skip, args.context_model, baseline))
        print_row(rows[-1])
        sys.stdout.flush()
    if args.json:
        # machine: the date and CPU of the run (older JSONs have only load_average and cpus); inputs: each
        # --tflite file's size and sha256, so a re-run can tell whether it benched the same file
        write_json(args.json, {"load_average": list(os.getloadavg()), "cpus": os.cpu_count(),
                               "machine": machine_info(frameworks=False), "command": shlex.join(sys.argv),
                               "inputs": [_file_record(path) for path in args.tflite],
                               "compressors_not_measured": not_measured, "rows": rows})


def _file_record(path):
    """{"file", "bytes", "sha256"} of an input file."""
    import hashlib

    with open(path, "rb") as f:
        data = f.read()
    return {"file": os.path.basename(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    main()

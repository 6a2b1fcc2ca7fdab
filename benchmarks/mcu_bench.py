"""Microcontroller figures for docs/microcontrollers.md -> docs/results/mcu_lenet_300_100.json.

    python benchmarks/mcu_bench.py [--models DIR] [--skip-m4]

On the trained, pruned (7 % kept) and clustered (5 bits) LeNet-300-100 of
benchmarks/mcu_models.py (trained once, cached in DIR), in one run:
  1. flash bytes: float32 and full-int8 .tflite, unpacked / packed by dc_keras (current format) /
     compressed by TFLM's own tool (tflite_micro.compression, LUT, smallest index width per
     tensor): the pinned runtime wheel's tool ("lut", quantized tensors only) and the newer
     nightly's (tools/mcu/tflm_lut.py, "lut_new", float too, per tensor or per channel);
  2. TFLM (PyPI wheel, x86) runs 200 MNIST test images through each model: packed outputs must
     equal the unpacked model's bit for bit (decode once and decode every invoke), arena bytes of
     each (TFLM's recording allocator);
  3. Cortex-M4 (qemu mps2-an386, -icount): decode instructions per output element, stack and
     workspace for every weight tensor of the two unpacked models, via tools/mcu/test_mcu.sh
     (BENCH_TFLITE), plus code size of decoder and kernel.
Machine load (os.getloadavg) and the command line are recorded.

    python benchmarks/mcu_bench.py --test-models [JSON]

instead writes docs/results/micro_test_models.json (or JSON): the models of tests/test_micro.py (the
196-96-48-10 MLP, float32 and int8) and tests/test_micro_cnn.py (DS-CNN, autoencoder; the
DS-CNN also packed with min_bytes=1024), built by those files' own builders (fixed seeds), packed,
and run in the TFLM wheel unpacked / decode once / decode every invoke: file bytes, arena bytes
(TFLM's recording allocator: planned head + persistent tail), HuffDecode op count, and each packed
tensor's decoded and workspace bytes (the sizing figures of docs/microcontrollers.md and, for the test MLP,
docs/microcontrollers_design_notes.md); also what
pack(decoder="minimal") / pack(layouts=...) cost on tests/test_pack_layouts.py's two models (bytes
unpacked, packed by default, minimal, dense + sparse + float_planes). Sizes only.

    python benchmarks/mcu_bench.py --trim-sizes [JSON]

instead runs tools/mcu/trim_sizes.sh with an empty build cache (Cortex-M4 code bytes of dc_codec.c
per build option, object and linked, -Os and -O2; test_codec of the DC_CODEC_MINIMAL build under
qemu; decode instructions per element of the trimmed builds, qemu -icount: deterministic) and
writes its table to docs/results/micro_trim_sizes.json (or JSON), with the release build's sizes:
huffdecode_tflm.c's object (.text+.rodata+.data) with and without TF_LITE_STRIP_ERROR_STRINGS at -O2
and -Os, and the `text` of a Cortex-M4 image that registers the op (tests/test_micro.py's app:
kernel, decoder, tools/mcu/startup.c, mps2.ld, --gc-sections) built both ways; the object also for
Cortex-M0 at -Os, both ways; the same object sizes of the optional model-array check
huffdecode_tflm_check.c (check_object_bytes).

    python benchmarks/mcu_bench.py --tflm-m4 TFLM_TREE [--m4-work DIR] [JSON]

instead runs the development check of docs/microcontrollers.md's "TFLM on Cortex-M4":
tools/mcu/tflm_m4/run.sh (the LeNet of benchmarks/mcu_models.py) and run_cnn.sh (the DS-CNN and
autoencoder of tests/test_micro_cnn.py) against TFLM_TREE (TFLM 90b983c with its downloads;
never committed or downloaded here), under qemu -icount: each run's arena_used_bytes, instruction
counts and mismatches, and each firmware's `text` bytes, to docs/results/micro_tflm_m4.json (or
JSON); run.sh again with KFLAGS=-DTF_LITE_STRIP_ERROR_STRINGS (the kernel of a release build) as
"lenet_strip". DIR keeps the work directories (TFLM's objects are reused from there; default: a temporary one).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_JSON = os.path.join(ROOT, "docs", "results", "mcu_lenet_300_100.json")


def _run_tflm(tflm_env, jobs, work, lib_dir):
    """Runs ``jobs`` (tools/mcu/tflm_run.py's job dicts) in the TFLM wheel's venv with the host build of
    the TFLM kernel in ``lib_dir``; its results, one per job, in order (its stderr's end on failure)."""
    _write(os.path.join(work, "jobs.json"), json.dumps(jobs).encode())
    r = subprocess.run([tflm_env.ensure(), os.path.join(ROOT, "tools", "mcu", "tflm_run.py"), "--lib",
                        os.path.join(lib_dir, "libdc_huffdecode_tflm.so"), "--jobs", os.path.join(work, "jobs.json")],
                       capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def _write(path, data):
    _common.atomic_write(path, data)


def _tflm_env():
    """tools/mcu/tflm_env.py, loaded from its path (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tflm_env", os.path.join(ROOT, "tools", "mcu", "tflm_env.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tflm_section(models_dir, work):
    from dc_keras import export

    tflm_env = _tflm_env()

    lib_dir = os.path.join(work, "lib")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels", "micro"), f"BUILD={lib_dir}"],
                   check=True)
    x = np.load(os.path.join(models_dir, "x_test.npy"))
    xp = os.path.join(work, "x.npy")
    np.save(xp, x)
    files, sizes = {}, {}
    for kind in ("float", "int8"):
        with open(os.path.join(models_dir, f"{kind}.tflite"), "rb") as f:
            raw = f.read()
        packed = export.pack(raw)
        for name, data in ((kind, raw), (f"{kind}.packed", packed)):
            files[name] = os.path.join(work, f"{name}.tflite")
            _write(files[name], data)
            sizes[name] = len(data)
    once, each = "DcKerasRegisterHuffDecodeTflm", "DcKerasRegisterHuffDecodeTflmEachInvoke"
    plan = {}
    for kind in ("float", "int8"):
        plan[kind] = dict(model=files[kind], registerers=[])
        plan[f"{kind}.packed.once"] = dict(model=files[f"{kind}.packed"], registerers=[once])
        plan[f"{kind}.packed.each"] = dict(model=files[f"{kind}.packed"], registerers=[each])
        plan[f"{kind}.lut"] = dict(model=files[kind], registerers=[],
                                   lut_out=os.path.join(work, f"{kind}.lut.tflite"))
    jobs = [dict(j, input=xp, out=os.path.join(work, f"{n}.out.npy"), arena_usage=True) for n, j in plan.items()]
    results = dict(zip(plan, _run_tflm(tflm_env, jobs, work, lib_dir)))
    out = {"images": int(len(x)), "runs": {}}
    y = np.load(os.path.join(models_dir, "y_test.npy"))
    for name, res in results.items():
        row = {k: v for k, v in res.items() if k not in ("log",)}
        if res.get("lut_out") or name.endswith(".lut"):
            if os.path.exists(plan[name]["lut_out"]):
                sizes[name] = os.path.getsize(plan[name]["lut_out"])
            if not res["ok"]:
                row["log_tail"] = res["log"][-600:]
        if res["ok"] and os.path.exists(os.path.join(work, f"{name}.out.npy")):
            pred = np.load(os.path.join(work, f"{name}.out.npy"))
            ref = np.load(os.path.join(work, f"{name.split('.')[0]}.out.npy"))
            row["bit_exact_vs_unpacked"] = bool(pred.tobytes() == ref.tobytes())
            row["test_error"] = float((pred.argmax(1) != y[:len(pred)]).mean())
        out["runs"][name] = row
    # TFLM's LUT compression with the newer nightly's tool (float + int8; tools/mcu/tflm_lut.py)
    lut_dir = tflm_env.ensure_lut_tool()
    out["lut_tool"] = {}
    for kind in ("float", "int8"):
        dst = os.path.join(work, f"{kind}.lut_new.tflite")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "mcu", "tflm_lut.py"), files[kind], dst],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=lut_dir,
                                                                    TF_CPP_MIN_LOG_LEVEL="3"))
        if r.returncode != 0:
            raise SystemExit(f"tflm_lut.py failed:\n{r.stderr[-3000:]}")
        info = json.loads(r.stdout.strip().splitlines()[-1])
        out["lut_tool"][kind] = info
        sizes[f"{kind}.lut_new"] = info["bytes"]
    out["flash_bytes"] = sizes
    return out


M4_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
M4_FIX = (f"Install the tools (apt-get install {M4_PACKAGES}, or run `make test-mcu` as root once), or pass "
          "--skip-m4 to record the TFLM part alone.")


def m4_tools_missing():
    """Why the Cortex-M4 part cannot run here (None when it can): tools/mcu/test_mcu.sh installs the
    cross tools itself only as root with apt-get; otherwise it runs nothing. Checked before the
    minutes of TFLM runs, so a missing tool stops the run at once with the fix."""
    import shutil

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if not shutil.which(t)]
    if not missing or (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return None
    return f"{', '.join(missing)} not on PATH and not root (test_mcu.sh installs them only as root)"


def m4_section(models_dir, work):
    env = dict(os.environ, BENCH_TFLITE=" ".join(os.path.join(models_dir, f"{k}.tflite") for k in ("float", "int8")),
               DC_MCU_OUT=os.path.join(work, "m4.txt"), PY=sys.executable)
    r = subprocess.run([os.path.join(ROOT, "tools", "mcu", "test_mcu.sh")], env=env, capture_output=True, text=True)
    print(r.stdout[-2500:])
    if r.returncode != 0:
        raise SystemExit(f"test_mcu.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
    if not os.path.exists(os.path.join(work, "m4.json")):  # it exits 0 with "NOT RUN" when the tools are missing
        said = next((line for line in r.stdout.splitlines() if "NOT RUN" in line), r.stdout.strip()[-500:])
        raise SystemExit(f"mcu_bench.py: the Cortex-M4 part did not run ({said}). {M4_FIX}")
    with open(os.path.join(work, "m4.json")) as f:
        return json.load(f)


def _test_models_child(out_path):
    """Runs with tests/ on PYTHONPATH (_common.child_json): builds the test files' models, runs TFLM."""
    import keras
    import test_micro
    import test_micro_cnn as cnn

    from dc_keras import export

    def fresh(build, *args):
        # each model named as in a process of its own: Keras numbers the names of models and
        # layers built before it (here the DS-CNN built after the MLP: "functional_1_1/..." for
        # "functional_1/..." in 34 tensor names, 152 B more unpacked and 160 B packed)
        keras.backend.clear_session()
        return build(*args)

    tflm_env = _tflm_env()
    files = {}
    model, x = fresh(test_micro._small_model)
    files["mlp_float"] = (export.to_tflite(model, pack=False), x)
    files["mlp_int8"] = (export.to_tflite(model, pack=False, quantize="int8", representative_data=x), x)
    for name in cnn.MODELS:
        plain, _packed, xc = fresh(cnn._compressed_int8, name)
        files[name] = (plain, xc)
    packs = {k: (data, export.pack(data), x) for k, (data, x) in files.items()}
    packs["ds_cnn_min_bytes_1024"] = (files["ds_cnn"][0], export.pack(files["ds_cnn"][0], min_bytes=1024),
                                      files["ds_cnn"][1])
    out = {"models": {}}
    with tempfile.TemporaryDirectory(prefix="mcu_test_models") as work:
        lib_dir = os.path.join(work, "lib")
        subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels", "micro"), f"BUILD={lib_dir}"],
                       check=True)
        jobs, names = [], []
        for name, (plain, packed, x) in packs.items():
            xp = os.path.join(work, f"{name}.x.npy")
            np.save(xp, x)
            for tag, data in (("plain", plain), ("packed", packed)):
                _write(os.path.join(work, f"{name}.{tag}.tflite"), data)
            for mode, tag, regs in (("unpacked", "plain", []), ("once", "packed", ["DcKerasRegisterHuffDecodeTflm"]),
                                    ("each", "packed", ["DcKerasRegisterHuffDecodeTflmEachInvoke"])):
                jobs.append({"model": os.path.join(work, f"{name}.{tag}.tflite"), "registerers": regs,
                             "arena_usage": True, "input": xp, "out": os.path.join(work, f"{name}.{mode}.npy")})
                names.append((name, mode))
        results = _run_tflm(tflm_env, jobs, work, lib_dir)
        for name, (plain, packed, x) in packs.items():
            mem = test_micro._decode_memory(packed)
            row = {"bytes": len(plain), "packed_bytes": len(packed), "inputs": int(len(x)),
                   "huffdecode_ops": len(mem), "packed_tensors": [{"decoded_bytes": d, "workspace_bytes": w}
                                                                  for d, w in mem], "arena": {}}
            ref = np.load(os.path.join(work, f"{name}.unpacked.npy"))
            for (n, mode), res in zip(names, results):
                if n != name:
                    continue
                if not res["ok"]:
                    raise SystemExit(f"{name} {mode}: {res['error']}\n{res['log'][-2000:]}")
                row["arena"][mode] = {k: res[f"arena_{k}_bytes"] for k in ("total", "head", "tail")}
                if mode != "unpacked":
                    row[f"bit_exact_{mode}"] = bool(np.load(os.path.join(work, f"{name}.{mode}.npy")).tobytes()
                                                    == ref.tobytes())
            out["models"][name] = row
    import test_pack_layouts

    out["pack_layouts"] = {}
    for kind in ("int8", "float"):
        plain, _x = fresh(test_pack_layouts._model, kind)
        out["pack_layouts"][kind] = {"bytes": len(plain), "packed_default": len(export.pack(plain)),
                                     "packed_minimal": len(export.pack(plain, decoder="minimal")),
                                     "packed_dense_sparse_float_planes": len(export.pack(
                                         plain, layouts=("dense", "sparse", "float_planes")))}
    _common.write_json(out_path, out)


def _section_bytes(obj):
    """.text + .rodata + .data of an object (arm-none-eabi-size -A), as test_mcu.sh's SIZE."""
    sa = subprocess.run(["arm-none-eabi-size", "-A", obj], capture_output=True, text=True, check=True).stdout
    return sum(int(f[1]) for f in (ln.split() for ln in sa.splitlines())
               if len(f) >= 2 and f[0].startswith((".text", ".rodata", ".data")) and f[1].isdigit())


def _release_build_sizes():
    """huffdecode_tflm.c with / without TF_LITE_STRIP_ERROR_STRINGS on Cortex-M4: object bytes and the
    `text` of an image registering the op (as tests/test_micro.py's stripped-kernel test builds it)."""
    k, mcu = os.path.join(ROOT, "tflite_kernels"), os.path.join(ROOT, "tools", "mcu")
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c99", "-Wall", "-Wextra",
             "-Werror", "-ffunction-sections", "-fdata-sections", f"-I{k}/include", f"-I{k}/src", f"-I{k}/micro"]
    out = {}
    with tempfile.TemporaryDirectory(prefix="mcu_release") as d:

        def check_bytes(cpu_flags, opt, extra, name):  # the optional model-array check, huffdecode_tflm_check.c
            obj = os.path.join(d, name)
            subprocess.run(["arm-none-eabi-gcc", *cpu_flags, opt, *extra, "-c",
                            os.path.join(k, "micro", "huffdecode_tflm_check.c"), "-o", obj], check=True)
            return _section_bytes(obj)

        app = os.path.join(d, "app.c")
        _write(app, b'#include "huffdecode_tflm.h"\nconst DcTflmRegistration* volatile app_reg;\n'
                    b"volatile int app_mode;\nint main(void) {\n"
                    b"  app_reg = DcTflmHuffDecodeRegistration((DcTflmDecodeMode)app_mode);\n  return app_reg == 0;\n}\n")
        for opt in ("-O2", "-Os"):
            for name, extra in (("default", []), ("strip", ["-DTF_LITE_STRIP_ERROR_STRINGS"])):
                obj, elf = os.path.join(d, f"k{opt}{name}.o"), os.path.join(d, f"app{opt}{name}.elf")
                subprocess.run(["arm-none-eabi-gcc", *flags, opt, *extra, "-c",
                                os.path.join(k, "micro", "huffdecode_tflm.c"), "-o", obj], check=True)
                subprocess.run(["arm-none-eabi-gcc", *flags, opt, f"-I{mcu}", *extra, "--specs=rdimon.specs",
                                "-nostartfiles", "-T", os.path.join(mcu, "mps2.ld"), "-Wl,--gc-sections", "-o", elf,
                                app, os.path.join(k, "micro", "huffdecode_tflm.c"), os.path.join(k, "src", "dc_codec.c"),
                                os.path.join(mcu, "startup.c")], check=True)
                code = _section_bytes(obj)
                text = int(subprocess.run(["arm-none-eabi-size", elf], capture_output=True, text=True,
                                          check=True).stdout.splitlines()[1].split()[0])
                out[f"{name}{opt}"] = {"kernel_object_bytes": code, "image_text_bytes": text,
                                       "check_object_bytes": check_bytes(flags, opt, extra, f"c{opt}{name}.o")}
        m0 = ["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft", *flags[4:]]  # test_mcu.sh's Cortex-M0 object
        for name, extra in (("default", []), ("strip", ["-DTF_LITE_STRIP_ERROR_STRINGS"])):
            obj = os.path.join(d, f"m0{name}.o")
            subprocess.run(["arm-none-eabi-gcc", *m0, "-Os", *extra, "-c", os.path.join(k, "micro", "huffdecode_tflm.c"),
                            "-o", obj], check=True)
            out[f"{name}-Os-m0"] = {"kernel_object_bytes": _section_bytes(obj),
                                    "check_object_bytes": check_bytes(m0, "-Os", extra, f"cm0{name}.o")}
    return out


def trim_sizes(path, argv):
    res = {"benchmark": "micro_trim_sizes", "machine": _common.machine_info(frameworks=False),
           "command": _common.command_line(__file__, argv, prefix="python ")}
    with tempfile.TemporaryDirectory(prefix="mcu_trim") as work:
        env = dict(os.environ, DC_MCU_CACHE=os.path.join(work, "cache"), DC_MCU_OUT=os.path.join(work, "results.txt"),
                   PY=sys.executable)
        r = subprocess.run([os.path.join(ROOT, "tools", "mcu", "trim_sizes.sh")], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0 or "NOT RUN" in r.stdout:
            raise SystemExit(f"trim_sizes.sh failed or did not run:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
        with open(os.path.join(work, "trim_sizes.txt")) as f:
            lines = f.read().splitlines()
    res["compiler"] = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                                     text=True).stdout.splitlines()[0]
    sizes, insns, table = {}, {}, None
    for line in lines:
        if line.startswith("Cortex-M4 bytes"):
            table, cols = sizes, ["object_Os", "object_O2", "linked_Os", "linked_O2"]
        elif line.startswith("Cortex-M4 -O2 instructions"):
            table, cols = insns, line.split()[5:]
        elif line.strip().startswith("test_codec:"):
            res["test_codec_minimal"] = line.strip()
        elif table is not None and line.strip():
            words = line.split()
            name = " ".join(words[:-len(cols)])
            table[name] = dict(zip(cols, (float(w) if table is insns else int(w) for w in words[-len(cols):])))
    res["code_bytes"], res["insns_per_element_O2"] = sizes, insns
    res["release_build"] = _release_build_sizes()
    if len(sizes) != 11 or len(insns) != 3 or " 0 failed" not in res.get("test_codec_minimal", ""):
        raise SystemExit("trim_sizes.txt not as expected:\n" + "\n".join(lines))
    _common.write_json(path, res)
    print("\n".join(lines))
    print(f"wrote {path}")


def _tflm_m4_script(script, tree, work, kflags=""):
    r = subprocess.run([os.path.join(ROOT, "tools", "mcu", "tflm_m4", script), tree, work], capture_output=True,
                       text=True, env=dict(os.environ, PY=sys.executable, KFLAGS=kflags))
    runs, text = {}, None
    for line in r.stdout.splitlines():
        w = line.split()
        if w[:1] == ["TFLM_M4"]:
            runs[w[1]] = {k: int(v) for k, v in zip(w[2::2], w[3::2])}
        elif len(w) == 6 and w[0].isdigit() and w[5].endswith(".elf"):  # arm-none-eabi-size's line
            text = int(w[0])
    if r.returncode != 0 or "TFLM_M4_DONE 0" not in r.stdout or text is None:
        raise SystemExit(f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return {"image_text_bytes": text, "runs": runs}


def tflm_m4(tree, work, path, argv):
    tree = os.path.abspath(tree)
    res = {"benchmark": "micro_tflm_m4", "machine": _common.machine_info(frameworks=False),
           "command": _common.command_line(__file__, argv, prefix="python "),
           "tflm_commit": subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True).stdout.strip() or "(not a git tree)",
           "compiler": subprocess.run(["arm-none-eabi-g++", "--version"], capture_output=True,
                                      text=True).stdout.splitlines()[0]}
    with tempfile.TemporaryDirectory(prefix="mcu_m4") as tmp:
        base = work or tmp
        res["lenet"] = _tflm_m4_script("run.sh", tree, os.path.join(base, "lenet"))
        res["cnn"] = _tflm_m4_script("run_cnn.sh", tree, os.path.join(base, "cnn"))
        # the kernel as TFLM's release build compiles it (TFLM itself keeps its messages)
        res["lenet_strip"] = _tflm_m4_script("run.sh", tree, os.path.join(base, "lenet"),
                                             kflags="-DTF_LITE_STRIP_ERROR_STRINGS")
    _common.write_json(path, res)
    for part in ("lenet", "cnn", "lenet_strip"):
        print(part, res[part]["image_text_bytes"], json.dumps(res[part]["runs"]))
    print(f"wrote {path}")


def test_models(path, argv):
    t0 = time.time()
    res = {"benchmark": "micro_test_models", "machine": _common.machine_info(frameworks=False),
           "command": _common.command_line(__file__, argv, prefix="python ")}
    res.update(_common.child_json(__file__, "--test-models-child", pythonpath=(os.path.join(ROOT, "tests"),)))
    res["seconds"] = round(time.time() - t0, 1)
    _common.write_json(path, res)
    for name, row in res["models"].items():
        print(name, row["bytes"], row["packed_bytes"], {m: a["total"] for m, a in row["arena"].items()})
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.path.join(os.path.expanduser("~"), ".cache", "dc_keras", "mcu", "lenet"))
    ap.add_argument("--skip-m4", action="store_true")
    ap.add_argument("--test-models", nargs="?", const=os.path.join(ROOT, "docs", "results", "micro_test_models.json"),
                    help="write the test files' model figures to this JSON instead (see the docstring)")
    ap.add_argument("--trim-sizes", nargs="?", const=os.path.join(ROOT, "docs", "results", "micro_trim_sizes.json"),
                    help="write tools/mcu/trim_sizes.sh's table to this JSON instead (see the docstring)")
    ap.add_argument("--tflm-m4", metavar="TFLM_TREE", help="run the Cortex-M4 TFLM check instead (see the docstring)")
    ap.add_argument("--m4-work", help="work directory for --tflm-m4 (kept; TFLM objects reused)")
    ap.add_argument("json", nargs="?", default=os.path.join(ROOT, "docs", "results", "micro_tflm_m4.json"),
                    help="--tflm-m4's output")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--test-models-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return _test_models_child(a.child)
    if a.test_models:
        return test_models(a.test_models, argv)
    if a.trim_sizes:
        return trim_sizes(a.trim_sizes, argv)
    if a.tflm_m4:
        return tflm_m4(a.tflm_m4, a.m4_work, a.json, argv)
    if not a.skip_m4 and m4_tools_missing():
        raise SystemExit(f"mcu_bench.py: the Cortex-M4 part cannot run: {m4_tools_missing()}. {M4_FIX}")
    tflm_env = _tflm_env()
    try:  # the TFLM wheel's venv and the newer LUT tool (pip, once): now, not after the models are trained
        tflm_env.ensure()
        tflm_env.ensure_lut_tool()
    except RuntimeError as e:
        raise SystemExit(f"mcu_bench.py: {e}\nThey need PyPI access once (reused afterwards).") from None
    if not os.path.exists(os.path.join(a.models, "meta.json")):  # mcu_models.py writes it last
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "mcu_models.py"), "--out", a.models],
                       check=True)
    t0 = time.time()
    res = {"benchmark": "mcu_lenet_300_100", "machine": _common.machine_info(frameworks=False),
           "command": shlex.join(["python", "benchmarks/mcu_bench.py", *(sys.argv[1:] if argv is None else argv)]),
           "loadavg_start": os.getloadavg()}
    with open(os.path.join(a.models, "meta.json")) as f:
        res["model"] = json.load(f)
    with tempfile.TemporaryDirectory(prefix="mcu_bench") as work:
        res["tflm_x86"] = tflm_section(a.models, work)
        if not a.skip_m4:
            res["cortex_m4"] = m4_section(a.models, work)
    sz = res["tflm_x86"]["flash_bytes"]
    res["ratios_packed_vs_lut"] = {f"{k} ({lut})": round(sz[f"{k}.packed"] / sz[f"{k}.{lut}"], 3)
                                   for k in ("float", "int8") for lut in ("lut", "lut_new")
                                   if f"{k}.{lut}" in sz and sz[f"{k}.{lut}"] != sz[k]}
    res["loadavg_end"] = os.getloadavg()
    res["seconds"] = round(time.time() - t0, 1)
    os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
    _common.write_json(OUT_JSON, res)
    print(json.dumps(res["ratios_packed_vs_lut"]), json.dumps(sz))
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    main()

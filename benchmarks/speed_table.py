"""One run of the speed benchmarks (decode throughput, load/invoke ratios, fit-step overhead), collected
into one JSON for benchmarks/results_doc.py.

The benchmarks themselves belong to their owners (bench_codec.py: codec throughput;
bench_load_invoke.py: packed vs unpacked interpreter creation and invoke; bench_fit_step.py: training
step time of dc_keras's wrappers vs plain Keras and vs tfmot); this script runs each one that exists,
one after the other, and records its command, exit status, wall time and printed output verbatim
(and its JSON when the script accepts ``--json``).

    .venv/bin/python benchmarks/speed_table.py --json speed.json [--args bench_load_invoke.py="--quick"]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from _common import machine_info, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ("bench_codec.py", "bench_load_invoke.py", "bench_fit_step.py")


def _accepts_json(path):
    try:
        out = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return "--json" in out.stdout


def run_one(script, extra, timeout):
    path = os.path.join(HERE, script)
    cmd = [sys.executable, path] + extra
    json_path = None
    if _accepts_json(path):
        fd, json_path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        cmd += ["--json", json_path]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = -1, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), \
            f"timed out after {timeout} s"
    run = {"script": script, "args": extra, "returncode": rc, "seconds": time.time() - t0, "stdout": stdout,
           "stderr_tail": stderr[-2000:] if rc else ""}
    if json_path:
        try:
            with open(json_path) as f:
                run["json"] = json.load(f)
        except (OSError, ValueError):
            pass
        os.unlink(json_path)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--args", action="append", default=[], metavar="SCRIPT=ARGS",
                   help='extra arguments for one script, e.g. bench_load_invoke.py="--quick"')
    p.add_argument("--timeout", type=int, default=3600, help="per script, seconds")
    args = p.parse_args(argv)
    extra = {}
    for item in args.args:
        name, _, text = item.partition("=")
        if name not in SCRIPTS:
            p.error(f"--args: unknown script {name!r}; one of {SCRIPTS}")
        extra[name] = shlex.split(text)

    result = {"machine": machine_info(), "command": shlex.join(["python", "benchmarks/speed_table.py"] + (argv or sys.argv[1:])),
              "runs": [], "missing": []}
    for script in SCRIPTS:
        if not os.path.exists(os.path.join(HERE, script)):
            result["missing"].append(script)
            print(f"{script}: not present, skipped", flush=True)
            continue
        print(f"running {script} {' '.join(extra.get(script, []))}", flush=True)
        run = run_one(script, extra.get(script, []), args.timeout)
        print(run["stdout"], flush=True)
        if run["returncode"]:
            print(f"{script} failed (exit {run['returncode']}):\n{run['stderr_tail']}", flush=True)
        result["runs"].append(run)
    write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""README's `dc-keras demo` table as a recorded run: ``dc_keras.demo.run_demo`` quick and ``--full``,
each in a fresh process (as the command runs it: Keras' layer-name counters reach the file's tensor
names), seed 0; per stage the file size and the test error measured on the ``.tflite``.

    .venv/bin/python benchmarks/demo_table.py --json docs/results/demo.json

``seconds``: the child process's wall time, import to exit (``time dc-keras demo`` also counts the
CLI's start-up); a record of the run's load, not a speed figure (README's times are re-measured by
``time .venv/bin/dc-keras demo [--full]`` at low load).
"""
import argparse
import json
import time

from _common import child_json, command_line, machine_info, record

VARIANTS = {"quick": False, "full": True}


def measure(out, variant):
    import tempfile

    from dc_keras import demo

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="dc_keras-demo-table-") as d:
        rows = demo.run_demo(full=VARIANTS[variant], out_dir=d, seed=0)
    epochs = demo.FULL_EPOCHS if VARIANTS[variant] else demo.QUICK_EPOCHS
    stages = [{"stage": r.stage, "file_bytes": r.file_bytes, "test_error": r.test_error} for r in rows]
    result = {"variant": variant, "epochs": list(epochs), "stages": stages,
              "ratio": rows[0].file_bytes / rows[-1].file_bytes, "seconds": round(time.time() - t0, 1)}
    with open(out, "w") as f:
        json.dump(result, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.child:
        return measure(args.child, rest[0])
    info = machine_info()
    runs = [child_json(__file__, v, prefix="dc_keras-demo-table-") for v in args.variants]
    result = {"benchmark": "demo_table", "runs": runs, "command": command_line(__file__, argv), "machine": info,
              "loadavg_after": machine_info(frameworks=False)["loadavg"]}
    return record(args.json, result)


if __name__ == "__main__":
    main()

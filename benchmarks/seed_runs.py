"""Adds the same recipe's runs at other seeds to a paper_table1.py record (issue 19).

A record (``--json`` of ``paper_table1.py``) is one run, seed 0 by default. How far its error sits
from the goal depends on the seed (baseline, batch streams), so the same command is run at other
seeds (``--seed S --no-tfmot``, each on its own ``baselines.py --seed S`` baseline, each once) and
their figures are stored under the record's ``other_seeds``; ``results_doc.py`` shows them as a
table under the record's row, and README's sentence about them is checked against it.

    .venv/bin/python benchmarks/seed_runs.py --record docs/results/lenet_300_100.json \\
        seed1.json seed2.json seed3.json seed4.json

Only records of the same model and recipe are taken (sparsity, bits, epochs, lr, biases, layout,
validation size); anything else is refused with the setting that differs.
"""
import argparse
import json
import os
import sys

from _common import write_json

RECIPE = ("sparsity", "bits", "prune_epochs", "prune_lr", "cluster_epochs", "cluster_biases", "context_model",
          "val_images", "train_subset", "test_subset")


def summary(run):
    """The figures of one seed's run that the record keeps."""
    return {"seed": run["config"]["seed"], "command": run["command"], "date": run["machine"]["date"],
            "loadavg": run["machine"].get("loadavg"), "packed_bytes": run["packed_bytes"], "ratio": run["ratio"],
            "weights_ratio": run["weights_ratio"], "test_error": run["test_error"], "val_error": run.get("val_error"),
            "baseline_error": run["baseline_error"], "packed_outputs_identical": run["packed_outputs_identical"]}


def merge(record, runs):
    """``record`` with ``other_seeds`` set from ``runs`` (sorted by seed); refuses a run of another
    model or recipe, an incomplete run, a seed twice, or the record's own seed."""
    seeds = {record["config"]["seed"]}
    out = []
    for name, run in runs:
        if run.get("model") != record["model"]:
            raise SystemExit(f"{name}: model {run.get('model')!r}, the record is {record['model']!r}")
        diff = [k for k in RECIPE if run["config"].get(k) != record["config"].get(k)]
        if diff:
            raise SystemExit(f"{name}: not the record's recipe ({', '.join(diff)} differ): run it with the "
                             "record's settings and --seed S")
        if not run.get("complete"):
            raise SystemExit(f"{name}: the run did not finish (complete is false); run it again")
        if run["config"]["seed"] in seeds:
            raise SystemExit(f"{name}: seed {run['config']['seed']} is already in the record")
        seeds.add(run["config"]["seed"])
        out.append(summary(run))
    return dict(record, other_seeds=sorted(out, key=lambda s: s["seed"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", required=True, help="paper_table1.py JSON to add the other seeds to (rewritten)")
    p.add_argument("runs", nargs="+", help="paper_table1.py JSONs of the same recipe at other seeds")
    args = p.parse_args(argv)
    loaded = []
    for path in [args.record] + args.runs:
        if not os.path.isfile(path):
            p.error(f"{path}: no such file")
        with open(path) as f:
            loaded.append((path, json.load(f)))
    write_json(args.record, merge(loaded[0][1], loaded[1:]))
    print(f"{args.record}: other_seeds {sorted(r['config']['seed'] for _, r in loaded[1:])}", file=sys.stderr)


if __name__ == "__main__":
    main()

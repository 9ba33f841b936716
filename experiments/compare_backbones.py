"""Backbones side by side: test MAE, epochs, wall time and parameters of finished runs trained by
the same recipe and budget (e.g. MACE and NequIP on mlearn Si and rMD17 aspirin).

    python experiments/compare_backbones.py --out experiments/results/backbones.json \\
        --run "mlearn Si|MACE|runs/compare_si/scalarjax" --run "mlearn Si|NequIP|runs/nequip_si" ...

Each ``--run`` is ``DATASET|LABEL|RUN_DIR``; ``--include FILE`` adds the rows of an earlier results
JSON (runs trained by an earlier command, e.g. MACE and NequIP next to a new backbone); the run's own ``final_metrics.json`` (best EMA
parameters, selected on validation) gives the errors, its ``metrics.jsonl`` the epochs and the
summed epoch wall time. Writes the JSON and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys

import numpy as np

KEYS = (("E", "energy_meV_per_atom"), ("F", "forces_meV_per_A"), ("S", "stress_meV_per_A3"))


def summarise(dataset: str, label: str, run_dir: str) -> dict:
    import jax

    from scalarjax.training.evaluate import load_run

    run = pathlib.Path(run_dir)
    final = json.loads((run / "final_metrics.json").read_text())
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    n_params = int(sum(np.size(x) for x in jax.tree.leaves(load_run(run).params)))
    test = final.get("test", {}).get("all", {})
    return {
        "dataset": dataset,
        "label": label,
        "run_dir": run_dir,
        "epochs": len(rows),
        "train_wall_min": round(sum(r["seconds"] for r in rows) / 60, 1),
        "params": n_params,
        "test": {s: (test.get(k) or {}).get("mae") for s, k in KEYS},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="DATASET|LABEL|RUN_DIR")
    ap.add_argument("--include", action="append", default=[], help="rows of an earlier results JSON (runs trained before)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = [{**r, "from": path} for path in args.include for r in json.loads(pathlib.Path(path).read_text())["runs"]]
    rows += [summarise(*spec.split("|")) for spec in args.run]
    rows.sort(key=lambda r: r["dataset"])
    out = pathlib.Path(args.out)
    out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "machine": platform.platform(), "runs": rows}, indent=1))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    lines = [
        "| data set | backbone | test E MAE (meV/atom) | F (meV/Å) | S (meV/Å³) | epochs | train wall (min) | params |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['dataset']} | {r['label']} | {fmt(r['test']['E'])} | {fmt(r['test']['F'])} | {fmt(r['test']['S'])} | "
        f"{r['epochs']} | {r['train_wall_min']} | {r['params'] if r['params'] is not None else '-'} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

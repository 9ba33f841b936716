"""Collect a run's learning curve (validation and logged test MAE per epoch, cumulative wall time)
and its final test metrics into one results JSON and a markdown table.

    python experiments/learning_curve.py RUN_DIR --out experiments/results/NAME.json [--command "..."]
"""

import argparse
import json
import pathlib
import platform

import yaml


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="", help="the command that produced the run (recorded verbatim)")
    args = ap.parse_args()
    run = pathlib.Path(args.run_dir)
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    mae = lambda r, split, key: (r.get(split) or {}).get(key, {}).get("mae")
    curve, elapsed = [], 0.0
    for r in rows:
        elapsed += r["seconds"]
        curve.append(
            {
                "epoch": r["epoch"],
                "elapsed_s": round(elapsed, 1),
                "lr": r["lr"],
                "train_loss": r["train_loss"],
                **{
                    f"{split}_{short}_mae": mae(r, split, key)
                    for split in ("valid", "test")
                    for short, key in (("E", "energy_meV_per_atom"), ("F", "forces_meV_per_A"), ("S", "stress_meV_per_A3"))
                },
            }
        )
    final = json.loads((run / "final_metrics.json").read_text()) if (run / "final_metrics.json").exists() else {}
    out = {
        "command": args.command,
        "run_dir": str(run),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "config": yaml.safe_load(open(run / "config.yaml")),
        "statistics": json.loads((run / "statistics.json").read_text()),
        "curve": curve,
        "final_test_all": (final.get("test") or {}).get("all"),
        "final_valid_all": (final.get("valid") or {}).get("all"),
    }
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    lines = ["| epoch | elapsed (min) | valid F MAE (meV/Å) | test E MAE (meV/atom) | test F MAE (meV/Å) |", "|---|---|---|---|---|"]
    lines += [
        f"| {c['epoch']} | {c['elapsed_s'] / 60:.1f} | {fmt(c['valid_F_mae'])} | {fmt(c['test_E_mae'])} | {fmt(c['test_F_mae'])} |"
        for c in curve
        if c["test_F_mae"] is not None
    ]
    md = f"Command: `{args.command}`\n\n" + "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

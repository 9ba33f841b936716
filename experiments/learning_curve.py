"""Collect a run's learning curve (validation and logged test MAE per epoch, cumulative wall time)
and its final test metrics into one results JSON and a markdown table, with the campaign's budget
criterion (issue 13): the relative change of the validation force MAE over the last quarter of the
epochs, (F[n] − F[n − n/4]) / F[n − n/4]; the curve has converged for the budget when |change| < 3%.

    python experiments/learning_curve.py RUN_DIR --out experiments/results/NAME.json [--command "..."]
"""

import argparse
import json
import pathlib
import platform

import yaml

CONVERGED_BELOW = 0.03


def last_quarter_change(valid_f: list[float]) -> float | None:
    """``(F[-1] − F[-1 − n//4]) / F[-1 − n//4]`` of a validation force-MAE curve of ``n`` epochs
    (negative: still falling); None for fewer than 4 epochs."""
    n = len(valid_f)
    if n < 4:
        return None
    ref = valid_f[n - 1 - n // 4]
    return (valid_f[-1] - ref) / ref


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
    change = last_quarter_change([c["valid_F_mae"] for c in curve if c["valid_F_mae"] is not None])
    criterion = {
        "valid_F_change_last_quarter": None if change is None else round(change, 4),
        "converged": None if change is None else abs(change) < CONVERGED_BELOW,
        "rule": f"|relative change of the validation force MAE over the last quarter of the epochs| < {CONVERGED_BELOW:.0%}",
    }
    final = json.loads((run / "final_metrics.json").read_text()) if (run / "final_metrics.json").exists() else {}
    out = {
        "command": args.command,
        "run_dir": str(run),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "config": yaml.safe_load(open(run / "config.yaml")),
        "statistics": json.loads((run / "statistics.json").read_text()),
        "curve": curve,
        "final_test_all": (final.get("test") or {}).get("all"),
        "budget_criterion": criterion,
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
    verdict = (
        "too short to judge"
        if change is None
        else f"validation force MAE changed by {100 * change:+.1f}% over the last quarter of the epochs: "
        + (
            f"converged (|change| < {CONVERGED_BELOW:.0%})"
            if criterion["converged"]
            else f"still changing (|change| ≥ {CONVERGED_BELOW:.0%}), not converged"
        )
    )
    md = f"Command: `{args.command}`\n\n" + "\n".join(lines) + f"\n\nBudget criterion (issue 13): {verdict}.\n"
    path.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

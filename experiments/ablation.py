"""Scalar-pathway ablation: train base / +PAN / +PGS / +PAN+PGS with an identical budget and seeds.

    python experiments/ablation.py experiments/configs/mlearn_si.yaml --seeds 0,1 \\
        --out experiments/results/ablation_mace_mlearn_si.json [--variants base,pan,pgs,pan+pgs] [--set training.max_epochs=20 ...]

Every run uses the recipe's split (``data.split_seed``) and budget; only ``training.seed`` (weights
and shuffling) changes between seeds. Models are selected on the validation set by the trainer
(best EMA parameters); the test set is only scored. Transforms take their default settings
unless the recipe's ``model.scalar_transforms`` sets a kind. A finished run (final_metrics.json
present) is reused, so an interrupted ablation resumes. Writes the results JSON and a markdown
table next to it: mean ± std over seeds of the test MAE of E, F, S, the change vs base and the
FLOPs / parameter overhead (``scalarjax.flops`` on the first test structure).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import numpy as np

KEYS = (("E", "energy_meV_per_atom", "meV/atom"), ("F", "forces_meV_per_A", "meV/Å"), ("S", "stress_meV_per_A3", "meV/Å³"))


def run_variant(config_path, overrides, variant, seed, root) -> dict:
    import yaml

    from scalarjax.flops import VARIANTS
    from scalarjax.training.config import load_run_config
    from scalarjax.training.trainer import train

    base = load_run_config(config_path, overrides)
    given = {t["kind"]: t for t in base.model.to_dict()["scalar_transforms"]}
    transforms = [given.get(k, {"kind": k}) for k in VARIANTS[variant]]
    run_dir = root / f"{variant}_seed{seed}"
    extra = [
        f"training.seed={seed}",
        f"output.run_dir={run_dir}",
        f"model.scalar_transforms={yaml.safe_dump(transforms, default_flow_style=True).strip()}",
    ]
    cfg = load_run_config(config_path, list(overrides) + extra)
    if not (run_dir / "final_metrics.json").exists():
        t0 = time.perf_counter()
        train(cfg, progress=False)
        (run_dir / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    final = json.loads((run_dir / "final_metrics.json").read_text())
    from scalarjax.config import load_model_config

    model = load_model_config(run_dir / "config.yaml")  # with the run's statistics (elements, E0s, scale)
    epochs = sum(1 for _ in open(run_dir / "metrics.jsonl"))
    wall = float((run_dir / "wall_s.txt").read_text()) if (run_dir / "wall_s.txt").exists() else None
    return {
        "variant": variant,
        "seed": seed,
        "run_dir": str(run_dir),
        "epochs": epochs,
        "wall_s": wall,
        "test": final.get("test", {}).get("all"),
        "valid": final.get("valid", {}).get("all"),
        "model": model,
    }


def summarise(runs: list[dict], variants, split: str = "test") -> dict:
    out = {}
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        out[v] = {}
        for short, key, _ in KEYS:
            vals = [r[split][key]["mae"] for r in rs if r[split] and r[split][key]["mae"] is not None]
            if vals:
                out[v][short] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "n": len(vals)}
    for v in variants:
        for short in list(out[v]):
            b = out.get("base", {}).get(short)
            if b and b["mean"] > 0:
                out[v][short]["change_vs_base"] = out[v][short]["mean"] / b["mean"] - 1.0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--variants", default="base,pan,pgs,pan+pgs")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--runs", default="runs/ablation", help="directory for the individual runs")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    variants = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    root = pathlib.Path(args.runs) / pathlib.Path(args.out).stem
    runs = [run_variant(args.config, args.set, v, s, root) for s in seeds for v in variants]

    from scalarjax.data.io import read_configurations
    from scalarjax.flops import cost
    from scalarjax.training.config import load_run_config

    cfg = load_run_config(args.config, args.set)
    test = read_configurations(cfg.data.test) if cfg.data.test else []
    flops = {}
    if test:
        atoms = test[0].to_atoms()
        for v in variants:
            model = next(r["model"] for r in runs if r["variant"] == v)
            flops[v] = cost(model, atoms)
        for v in variants:
            flops[v]["flops_overhead_vs_base"] = flops[v]["flops"] / flops["base"]["flops"] - 1.0 if "base" in flops else None
            flops[v]["params_overhead_vs_base"] = flops[v]["params"] / flops["base"]["params"] - 1.0 if "base" in flops else None
    summary = summarise(runs, variants)
    summary_valid = summarise(runs, variants, "valid")
    for r in runs:
        r["model"] = r["model"].to_dict()
    report = {
        "command": " ".join([pathlib.Path(sys.executable).name] + sys.argv),
        "machine": platform.platform(),
        "config": args.config,
        "overrides": args.set,
        "seeds": seeds,
        "summary": summary,
        "summary_valid": summary_valid,
        "flops": flops,
        "runs": runs,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))

    lines = [f"Command: `{report['command']}`", ""]
    for split, table in (("test", summary), ("valid", summary_valid)):
        lines += [
            "| variant | " + " | ".join(f"{split} {s} MAE ({u})" for s, _, u in KEYS) + " | FLOPs vs base | params vs base |",
            "|---|" + "---|" * (len(KEYS) + 2),
        ]
        for v in variants:
            cells = []
            for short, _, _ in KEYS:
                m = table[v].get(short)
                cells.append(
                    "-"
                    if m is None
                    else f"{m['mean']:.2f} ± {m['std']:.2f}"
                    + (f" ({100 * m['change_vs_base']:+.1f}%)" if v != "base" and "change_vs_base" in m else "")
                )
            f = flops.get(v, {})
            fo = f"{100 * f['flops_overhead_vs_base']:+.2f}%" if f.get("flops_overhead_vs_base") is not None else "-"
            po = f"{100 * f['params_overhead_vs_base']:+.2f}%" if f.get("params_overhead_vs_base") is not None else "-"
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {fo} | {po} |")
        lines.append("")
    lines.append(f"mean ± std over seeds {seeds}; the trainer selects on validation (best EMA parameters), the test set is only scored.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

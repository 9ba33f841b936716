"""Score the imported mace-torch model and its fine-tunings (experiments/finetune_mace_torch_si.sh).

Every model is evaluated on mlearn Si's test set by the same code (``scalarjax.training.evaluate``);
the validation score that selected each fine-tuned model's parameters is reported beside it.

    python experiments/finetune_report.py runs/finetune_si --out experiments/results/finetune_mace_torch_si
"""

import argparse
import json
import pathlib
import platform
import subprocess

from scalarjax.data.io import data_dir
from scalarjax.fileio import write_json, write_text
from scalarjax.training.evaluate import evaluate_run

RUNS = {
    "imported": "imported mace-torch model (step 0 of every fine-tuning)",
    "base_all": "fine-tuned, no transforms, every parameter trains",
    "base_new": "fine-tuned, no transforms, only the readouts train",
    "panpgs_all": "fine-tuned +PAN+PGS (identity init), every parameter trains",
    "panpgs_new": "fine-tuned +PAN+PGS (identity init), only PAN, PGS and the readouts train",
}
KEYS = (("energy_meV_per_atom", "E meV/atom"), ("forces_meV_per_A", "F meV/Å"), ("stress_meV_per_A3", "S meV/Å³"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work")
    ap.add_argument("--out", required=True, help="OUT.json and OUT.md are written")
    ap.add_argument("--mace-epochs", type=int)
    ap.add_argument("--ft-epochs", type=int)
    ap.add_argument("--command", default="")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    test = data_dir() / "mlearn" / "Si" / "test.json"
    result = {
        "command": args.command,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": platform.processor() or platform.machine(),
        "test_file": "mlearn/Si/test.json",
        "mace_epochs": args.mace_epochs,
        "finetune_epochs": args.ft_epochs,
        "runs": {},
    }
    for name, what in RUNS.items():
        run = work / name
        if not (run / "best").is_dir() or (name != "imported" and not (run / "final_metrics.json").is_file()):
            print(f"{run}: not there (or not finished); left out")
            continue
        entry = {"what": what, "test": evaluate_run(run, test)}
        final = run / "final_metrics.json"
        if final.is_file():
            entry["valid"] = json.loads(final.read_text()).get("valid")
        result["runs"][name] = entry
    write_json(pathlib.Path(args.out).with_suffix(".json"), result)
    ref = result["runs"]["imported"]["test"]["all"]
    lines = [
        f"# Fine-tuning an imported mace-torch model on mlearn Si ({args.ft_epochs} epochs)",
        "",
        f"`{args.command}` at commit {result['commit'][:10]}; test MAE on mlearn Si's test set (Δ: change against the imported model).",
        "",
        "| model | " + " | ".join(h for _, h in KEYS) + " |",
        "|---|" + "---|" * len(KEYS),
    ]
    for name, entry in result["runs"].items():
        row = entry["test"]["all"]
        cells = []
        for k, _ in KEYS:
            v, v0 = row[k]["mae"], ref[k]["mae"]
            cells.append(f"{v:.2f}" if name == "imported" else f"{v:.2f} ({100 * (v / v0 - 1):+.1f}%)")
        lines.append(f"| {entry['what']} | " + " | ".join(cells) + " |")
    write_text(pathlib.Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

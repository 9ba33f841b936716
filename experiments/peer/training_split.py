"""Share one data split with mace-torch's CLI and score both models with the same metric code.

    write RUN_CONFIG OUT_DIR    write train/valid/test.xyz from scalarjax's own split of RUN_CONFIG
                                (labels as REF_energy / REF_forces / REF_stress, eV, eV/Å, eV/Å³)
    score OUT_DIR PRED_XYZ RUN_DIR --out JSON
                                metrics of mace's predictions (MACE_* keys, from mace_eval_configs)
                                and of the scalarjax run on the same test.xyz, side by side

Runs in scalarjax's venv (it uses scalarjax's reader, split and metrics).
"""

import argparse
import json
import pathlib

import ase.io
import numpy as np
from ase import Atoms

from scalarjax.data.configuration import full_to_voigt
from scalarjax.data.io import LabelKeys, read_configurations
from scalarjax.training.config import load_run_config
from scalarjax.training.evaluate import evaluate_run
from scalarjax.training.metrics import error_metrics

REF = LabelKeys(energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress", required=())


def to_atoms(c) -> Atoms:
    atoms = Atoms(numbers=c.species, positions=c.positions, cell=c.cell, pbc=c.pbc)
    atoms.info["config_type"] = c.config_type
    if c.energy is not None:
        atoms.info["REF_energy"] = float(c.energy)
    if c.forces is not None:
        atoms.arrays["REF_forces"] = np.asarray(c.forces)
    if c.stress is not None:
        atoms.info["REF_stress"] = np.asarray(c.stress)  # Voigt [xx yy zz yz xz xy]
    return atoms


def write(args):
    from scalarjax.training.trainer import read_split

    train, valid, test = read_split(load_run_config(args.config))
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, configs in (("train", train), ("valid", valid), ("test", test)):
        ase.io.write(out / f"{name}.xyz", [to_atoms(c) for c in configs], format="extxyz")
        print(f"{name}: {len(configs)} configurations -> {out / f'{name}.xyz'}")


def score(args):
    test = read_configurations(pathlib.Path(args.out_dir) / "test.xyz", keys=REF)
    preds = []
    for atoms in ase.io.read(args.pred_xyz, ":"):
        p = {"energy": float(atoms.info["MACE_energy"]), "forces": atoms.arrays["MACE_forces"]}
        if "MACE_stress" in atoms.info:
            s = np.asarray(atoms.info["MACE_stress"]).reshape(-1)
            p["stress"] = full_to_voigt(s.reshape(3, 3)) if s.size == 9 else s
        preds.append(p)
    result = {
        "command": args.command,
        "test_file": str(pathlib.Path(args.out_dir) / "test.xyz"),
        "n_test": len(test),
        "mace_torch": error_metrics(test, preds),
    }
    if args.run_dir:
        result["scalarjax"] = evaluate_run(args.run_dir, str(pathlib.Path(args.out_dir) / "test.xyz"), keys=REF)
    for name, path in (("scalarjax", args.scalarjax_time), ("mace_torch", args.mace_time)):
        if path and pathlib.Path(path).exists():
            result.setdefault("wall_clock", {})[name] = _wall_and_cpu(path)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    rows = [
        "| model | E MAE (meV/atom) | E RMSE | F MAE (meV/Å) | F RMSE | S MAE (meV/Å³) | S RMSE | wall (min) | CPU (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("scalarjax", "mace_torch"):
        if name not in result:
            continue
        m = result[name]["all"]
        t = result.get("wall_clock", {}).get(name, {})
        cells = [f"{m[k][s]:.2f}" for k in ("energy_meV_per_atom", "forces_meV_per_A", "stress_meV_per_A3") for s in ("mae", "rmse")]
        rows.append(
            f"| {name} | " + " | ".join(cells) + f" | {t.get('wall_min', float('nan')):.1f} | {t.get('cpu_min', float('nan')):.1f} |"
        )
    if "scalarjax" in result:
        ratio = {
            k: result["scalarjax"]["all"][k]["mae"] / result["mace_torch"]["all"][k]["mae"]
            for k in ("energy_meV_per_atom", "forces_meV_per_A", "stress_meV_per_A3")
        }
        result["mae_ratio_scalarjax_over_mace_torch"] = ratio
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
        rows.append("\nMAE ratio scalarjax / mace-torch: " + ", ".join(f"{k.split('_')[0]} {v:.2f}" for k, v in ratio.items()))
    md = "\n".join(rows) + "\n"
    pathlib.Path(args.out).with_suffix(".md").write_text(md)
    print(md)


def _wall_and_cpu(path) -> dict:
    """Wall and user+system CPU minutes from a GNU ``/usr/bin/time -v`` report."""
    text = pathlib.Path(path).read_text()
    val = lambda key: next(line.split(": ", 1)[1] for line in text.splitlines() if key in line)
    parts = [float(x) for x in val("Elapsed (wall clock)").split(":")]
    wall = sum(x * 60**i for i, x in enumerate(reversed(parts)))
    cpu = float(val("User time")) + float(val("System time"))
    return {"wall_min": wall / 60, "cpu_min": cpu / 60}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("config")
    w.add_argument("out_dir")
    s = sub.add_parser("score")
    s.add_argument("out_dir")
    s.add_argument("pred_xyz")
    s.add_argument("--run-dir")
    s.add_argument("--out", required=True)
    s.add_argument("--scalarjax-time", help="/usr/bin/time -v report of the scalarjax training")
    s.add_argument("--mace-time", help="/usr/bin/time -v report of mace_run_train")
    s.add_argument("--command", default="", help="the command that produced both runs (recorded verbatim)")
    args = p.parse_args()
    {"write": write, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()

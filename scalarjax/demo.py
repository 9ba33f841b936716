"""``make demo``: the main job on the embedded default data set (EMT-labelled fcc Ag).

1. generate the data set (rattled/strained bulk, vacancies, a slab; EMT energy, forces, stress),
   hold out a test split;
2. train the default MACE with ``scalarjax train`` machinery for a few minutes on the CPU;
3. evaluate it on the held-out split and print the metrics table;
4. run a short NVE MD with the trained calculator and print the energy drift.

    python -m scalarjax.demo [--n 240] [--epochs 8] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np


def write_extxyz(path, configs):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for c in configs:
        atoms = c.to_atoms()
        atoms.calc = SinglePointCalculator(atoms, energy=c.energy, forces=c.forces, stress=c.stress)
        atoms.info["config_type"] = c.config_type
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=240, help="configurations to generate")
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--md-steps", type=int, default=200)
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="run config overrides")
    args = ap.parse_args(argv)

    import scalarjax
    from scalarjax.data.synthetic import ag_emt_dataset
    from scalarjax.training.config import load_run_config
    from scalarjax.training.evaluate import evaluate_run
    from scalarjax.training.metrics import format_table
    from scalarjax.training.trainer import train

    out = pathlib.Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = ag_emt_dataset(args.n, args.seed)
    order = np.random.default_rng(args.seed).permutation(len(data))
    test = [data[i] for i in order[: args.n_test]]
    train_set = [data[i] for i in order[args.n_test :]]
    write_extxyz(out / "data" / "train.xyz", train_set)
    write_extxyz(out / "data" / "test.xyz", test)
    print(f"generated {len(data)} EMT-labelled Ag configurations ({len(train_set)} train+valid, {len(test)} test) "
          f"in {time.perf_counter() - t:.1f} s")

    raw = {
        "model": {},
        "data": {"train": str(out / "data" / "train.xyz"), "test": str(out / "data" / "test.xyz"), "valid_fraction": 0.1, "batch_size": 4},
        "training": {"max_epochs": args.epochs, "lr": 0.01, "seed": args.seed, "forces_weight": 10.0, "stress_weight": 100.0},
        "output": {"run_dir": str(out / "run"), "keep_checkpoints": 1},
    }
    import shutil

    shutil.rmtree(out / "run", ignore_errors=True)
    cfg = load_run_config(raw=raw, overrides=args.set)
    t = time.perf_counter()
    run_dir = train(cfg)
    print(f"trained in {time.perf_counter() - t:.0f} s")

    metrics = evaluate_run(run_dir, out / "data" / "test.xyz")
    print(f"\nheld-out test set ({len(test)} configurations):\n{format_table(metrics)}")
    calc = scalarjax.Calculator.from_run(run_dir)
    from ase.build import bulk

    from scalarjax.simulation import nve_drift

    md = nve_drift(calc, bulk("Ag", "fcc", a=4.09, cubic=True).repeat(2), args.md_steps, 2.0, 300.0, args.seed)
    print(f"\nNVE MD, {md['n_atoms']} Ag atoms, {md['steps']} steps of {md['timestep_fs']} fs from {md['temperature_K']:.0f} K: "
          f"energy drift {md['drift_meV_per_atom_per_ps']:+.3f} meV/atom/ps, fluctuation {md['fluctuation_meV_per_atom']:.3f} meV/atom, "
          f"{md['steps_per_s']:.1f} steps/s after the first, {md['compiles_during_run']} compilation(s) during the run")
    with open(out / "demo_results.json", "w") as f:
        json.dump({"test": metrics, "nve": md}, f, indent=1)
    print(f"results in {out / 'demo_results.json'}")


if __name__ == "__main__":
    main()

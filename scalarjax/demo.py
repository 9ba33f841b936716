"""``make demo``: the main job on the embedded default data set (EMT-labelled fcc Ag).

1. generate the data set (rattled/strained bulk, vacancies, (111) and (100) slabs; EMT energy,
   forces, stress) and hold out a test split with every kind of configuration in it;
2. train a small MACE with the ``scalarjax train`` machinery for a few minutes on the CPU: a linear
   warm-up over the first epoch, then a cosine decay, an energy weight that makes per-atom energies
   a target of their own (not a by-product of the forces), and the EMA of the parameters;
3. print the held-out test errors per kind of configuration once, and where the learning curve
   and the parity plots are;
4. run a short NVE MD with the trained calculator and print the energy drift.

    python -m scalarjax.demo [--n 300] [--epochs 32] [--out runs/demo] [--set training.lr=0.005 ...]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

# The demo's model and schedule (``--set`` overrides any of them), chosen on the validation set within
# the 10-minute budget on 2 cores (runs under runs/demo_*, 300 configurations, seed 0):
# - r_max 5.5 Å: EMT's Ag interactions reach ~5.9 Å and the third neighbour shell sits at 5.0 Å, right at
#   a 5 Å cutoff; with r_max 5.0 every vacancy cell's energy was off by the same ~6 meV/atom (valid MAE
#   5.7, RMSE 5.7), with 5.5 by 1.9;
# - batch size 1 at lr 0.005 (cosine, one warm-up epoch): the epoch costs about what batch 4 costs
#   (the cells are small) with 4x the updates; valid force MAE after 20 epochs: batch 1 27, batch 2 37
#   (r_max 5.0), batch 4 45 meV/Å (r_max 6.0);
# - a 32-channel, ℓ ≤ 2 MACE: the default medium model (64 channels, ℓ ≤ 3) is ~7x slower per epoch.
# Energy weight 100 vs forces 10: per-atom energies (surface vs bulk) are a target of their own.
DEMO_MODEL = {
    "hidden_irreps": "32x0e+32x1o",
    "max_ell": 2,
    "correlation": 3,
    "num_interactions": 2,
    "radial_mlp": [32, 32, 32],
    "r_max": 5.5,
}
DEMO_TRAINING = {
    "lr": 0.005,
    "warmup_epochs": 1.0,
    "scheduler": "cosine",
    "energy_weight": 100.0,
    "forces_weight": 10.0,
    "stress_weight": 100.0,
    "ema_decay": 0.99,
}
DEMO_BATCH_SIZE = 1
FRACTIONS = (0.5, 0.2, 0.3)  # bulk, vacancy, surface


def write_extxyz(path, configs):
    """Write ``configs`` (Configurations) to the extxyz file ``path`` with their energy, forces, stress
    (eV, eV/Å, eV/Å³) and ``config_type``, as ``scalarjax train`` reads them back."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for c in configs:
        atoms = c.to_atoms()
        atoms.calc = SinglePointCalculator(atoms, energy=c.energy, forces=c.forces, stress=c.stress)
        atoms.info["config_type"] = c.config_type
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def stratified_split(configs, n_test: int, seed: int):
    """Hold out ``n_test`` configurations with every config_type in proportion (at least one each)."""
    rng = np.random.default_rng(seed)
    by_type: dict = {}
    for i, c in enumerate(configs):
        by_type.setdefault(c.config_type, []).append(i)
    test = []
    for idx in by_type.values():
        k = max(1, round(n_test * len(idx) / len(configs)))
        test += list(rng.permutation(idx)[:k])
    chosen = set(test)
    return [configs[i] for i in range(len(configs)) if i not in chosen], [configs[i] for i in sorted(chosen)]


def _parse_args(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="configurations to generate")
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--md-steps", type=int, default=200)
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="run config overrides")
    return ap.parse_args(argv)


def _split_and_write(data, out: pathlib.Path, args, t_start: float) -> None:
    """Hold out the test split, write both splits to ``out/data/{train,test}.xyz`` and say what was
    generated (``t_start``: when the generation began)."""
    train_set, test = stratified_split(data, args.n_test, args.seed)
    write_extxyz(out / "data" / "train.xyz", train_set)
    write_extxyz(out / "data" / "test.xyz", test)
    kinds = {k: sum(c.config_type == k for c in data) for k in ("bulk", "vacancy", "surface")}
    print(
        f"generated {len(data)} EMT-labelled Ag configurations ({', '.join(f'{v} {k}' for k, v in kinds.items())}; "
        f"{len(train_set)} train+valid, {len(test)} test) in {time.perf_counter() - t_start:.1f} s"
    )


def _raw_run_config(out: pathlib.Path, args) -> dict:
    """The demo's run configuration (before ``--set`` overrides), as a YAML run config would hold it."""
    return {
        "model": dict(DEMO_MODEL),
        "data": {
            "train": str(out / "data" / "train.xyz"),
            "test": str(out / "data" / "test.xyz"),
            "valid_fraction": 0.1,
            "batch_size": DEMO_BATCH_SIZE,
        },
        "training": {"max_epochs": args.epochs, "seed": args.seed, **DEMO_TRAINING},
        "output": {"run_dir": str(out / "run"), "keep_checkpoints": 1},
    }


def _nve(calc, args) -> dict:
    """A short NVE run of a 32-atom Ag supercell with the trained calculator; prints its drift."""
    from ase.build import bulk

    from scalarjax.simulation import nve_drift

    md = nve_drift(calc, bulk("Ag", "fcc", a=4.09, cubic=True).repeat(2), args.md_steps, 2.0, 300.0, args.seed)
    print(
        f"\nNVE MD, {md['n_atoms']} Ag atoms, {md['steps']} steps of {md['timestep_fs']} fs from {md['temperature_K']:.0f} K: "
        f"energy drift {md['drift_meV_per_atom_per_ps']:+.3f} meV/atom/ps, fluctuation {md['fluctuation_meV_per_atom']:.3f} meV/atom, "
        f"{md['steps_per_s']:.1f} steps/s after the first, {md['compiles_during_run']} compilation(s) during the run"
    )
    return md


def _print_test_errors(run_dir: pathlib.Path, metrics: dict) -> float:
    """Print the held-out test MAE per kind of configuration and the largest epoch-to-epoch rise of
    the training loss; returns that rise."""
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    losses = [r["train_loss"] for r in rows]
    spike = max((b / a for a, b in zip(losses, losses[1:])), default=0.0)
    summary = {
        k: {"E_meV_per_atom": v["energy_meV_per_atom"]["mae"], "F_meV_per_A": v["forces_meV_per_A"]["mae"]} for k, v in metrics.items()
    }
    print(
        "\nheld-out test MAE by kind: "
        + ", ".join(f"{k} E {v['E_meV_per_atom']:.2f} meV/atom F {v['F_meV_per_A']:.1f} meV/Å" for k, v in summary.items())
    )
    print(f"largest epoch-to-epoch rise of the training loss: {spike:.2f}x")
    return spike


def main(argv=None):
    """``python -m scalarjax.demo``: generate the data set, train, run NVE MD and print the results
    (the steps of the module docstring); everything is written under ``--out``."""
    args = _parse_args(argv)

    import shutil

    import scalarjax
    from scalarjax.data.synthetic import ag_emt_dataset
    from scalarjax.training.config import load_run_config
    from scalarjax.training.trainer import train

    t_demo = time.perf_counter()
    out = pathlib.Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = ag_emt_dataset(args.n, args.seed, FRACTIONS)
    _split_and_write(data, out, args, t)

    raw = _raw_run_config(out, args)
    cfg = load_run_config(raw=raw, overrides=args.set)
    if (out / "run").exists():
        print(f"removing the previous demo run in {out / 'run'}")
        shutil.rmtree(out / "run")
    t = time.perf_counter()
    run_dir = train(cfg)  # prints one line per epoch, then the valid and test tables (once)
    t_train = time.perf_counter() - t
    print(f"trained in {t_train:.0f} s")

    with open(run_dir / "final_metrics.json") as f:
        metrics = json.load(f)["test"]
    md = _nve(scalarjax.Calculator.from_run(run_dir), args)
    spike = _print_test_errors(run_dir, metrics)
    total = time.perf_counter() - t_demo
    with open(out / "demo_results.json", "w") as f:
        json.dump(
            {"test": metrics, "nve": md, "train_seconds": t_train, "demo_seconds": total, "max_loss_ratio": spike, "config": raw},
            f,
            indent=1,
        )
    print(
        f"\nlearning curve: {run_dir / 'learning_curve.png'}\nparity plots:   {run_dir / 'parity_test.png'}, "
        f"{run_dir / 'parity_valid.png'}\nall numbers:    {out / 'demo_results.json'}  (demo took {total / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()

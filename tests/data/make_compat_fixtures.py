"""Regenerate the compatibility fixtures that pin scalarjax's behaviour across refactors.

    python tests/data/make_compat_fixtures.py            # writes tests/data/compat/

1. ``golden.npz`` + ``golden.json``: for every tiny test model (MACE and NequIP, with and without
   PAN+PGS; float64), its parameters and its energies, forces and stresses on a periodic triclinic
   cell and a molecule. ``tests/test_compat.py`` reloads the parameters by name and requires the
   same E, F, σ to 1e-12 (relative): a refactor may move code, not change what it computes.
2. ``runs/{mace_panpgs,nequip}/``: tiny run directories trained by this commit's ``scalarjax train``
   (checkpoints dropped, ``best/`` kept) and the data file they were trained on. Later code must
   load them and evaluate them on ``ag.xyz`` to the metrics in each ``expected_evaluation.json``.

The generating commit is written to ``golden.json``. Re-running overwrites the fixtures: do that
only on purpose (a deliberate change of behaviour or of the run-directory format).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "compat"
sys.path.insert(0, str(ROOT / "tests"))
jax.config.update("jax_enable_x64", True)


def flat_params(params) -> dict:
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def golden() -> None:
    from conftest import TINY_VARIANTS
    from physics_utils import evaluate, molecule, triclinic_cell

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    arrays, meta = {}, {"variants": {}}
    structures = [triclinic_cell(0), molecule(0)]
    for name, cfg in TINY_VARIANTS.items():
        pot = Potential(load_model_config(cfg), seed=1)
        energies, forces, stresses = evaluate(pot, structures)
        for key, value in flat_params(pot.params).items():
            arrays[f"{name}/params/{key}"] = value
        arrays[f"{name}/energy"] = np.asarray(energies)
        for i, (f, s) in enumerate(zip(forces, stresses)):
            arrays[f"{name}/forces_{i}"] = f
            if s is not None:
                arrays[f"{name}/stress_{i}"] = s
        meta["variants"][name] = cfg
    for i, atoms in enumerate(structures):
        arrays[f"structure_{i}/numbers"] = atoms.numbers
        arrays[f"structure_{i}/positions"] = atoms.positions
        arrays[f"structure_{i}/cell"] = np.asarray(atoms.cell)
        arrays[f"structure_{i}/pbc"] = atoms.pbc
    np.savez_compressed(OUT / "golden.npz", **arrays)
    meta["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (OUT / "golden.json").write_text(json.dumps(meta, indent=1, default=list) + "\n")


def tiny_run(name: str, model: dict, data_file: pathlib.Path) -> None:
    from scalarjax.training.config import load_run_config
    from scalarjax.training.trainer import train

    run_dir = OUT / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    raw = {
        "model": model,
        "data": {"train": str(data_file), "batch_size": 4, "valid_fraction": 0.25},
        "training": {"max_epochs": 2, "lr": 0.005, "seed": 3},
        "output": {"run_dir": str(run_dir)},
    }
    train(load_run_config(raw=raw), progress=False)
    shutil.rmtree(run_dir / "checkpoints")
    for png in run_dir.glob("*.png"):
        png.unlink()
    from scalarjax.training.evaluate import evaluate_run

    metrics = evaluate_run(run_dir, data_file, batch_size=4)
    (run_dir / "expected_evaluation.json").write_text(json.dumps(metrics, indent=1) + "\n")


def runs() -> None:
    from test_training import TINY_MODEL, small_ag

    from scalarjax.demo import write_extxyz

    data_file = OUT / "runs" / "ag.xyz"
    data_file.parent.mkdir(parents=True, exist_ok=True)
    write_extxyz(data_file, small_ag())
    pan_pgs = [{"kind": "pan", "neighbor_weights": True}, {"kind": "pgs", "edge_modes": 4, "readout_modes": 3}]
    tiny_run("mace_panpgs", {**TINY_MODEL, "scalar_transforms": pan_pgs}, data_file)
    nequip = {k: v for k, v in TINY_MODEL.items() if k not in ("max_ell", "hidden_irreps", "correlation", "mlp_irreps")}
    tiny_run("nequip", {**nequip, "backbone": "nequip", "num_layers": 2, "l_max": 1, "num_features": 8}, data_file)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    golden()
    runs()
    print(f"wrote {OUT}")

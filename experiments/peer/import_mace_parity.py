"""Parity floors of `scalarjax import-mace` at production sizes (not in CI; peer venv + scalarjax venv).

Models (random weights: every parameter redrawn, see make_mace_fixtures.build; no trained
MACE-MP-0 file is available offline, so these have MP-0's *architecture*, not its weights):

- ``mp0_small``:  ScaleShiftMACE, 89 elements (Z 1..89), 128x0e, max_ell 3, correlation 3,
  r_max 6 Å, 10 Bessel, p 5, radial MLP 64x64x64, 2 interactions, MLP 16x0e, avg 61.96.
- ``mp0_medium``: as small with 128x0e+128x1o.
- ``default_medium``: mace_run_train's default medium (64x0e+64x1o, r_max 5, 8 Bessel, p 5,
  max_ell 3, correlation 3, 2 interactions) on H, C, O, Si.

Structures: rMD17 aspirin (first test frame), a rattled 64-atom Si cell, a periodic triclinic
4-element (H, C, O, Si) 24-atom cell.

Step 1 (peer venv): build, torch.save, dump, mace-torch E/F/S in float64 and float32 (MACECalculator).
Step 2 (scalarjax venv, ``--scalarjax DIR``, started by step 1): import the dumps (float64 and
float32 runs), evaluate with ``Calculator.from_run``, relative errors max|Δ|/max|ref|.
Optionally (``--time``) steady-state E+F(+S) per call of mace-torch and the imported model.

    ../peer/venv/bin/python experiments/peer/import_mace_parity.py \\
        --out experiments/results/import_mace_parity.json [--time]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCALARJAX_PYTHON = str(ROOT / ".venv/bin/python")
ASPIRIN = os.path.join(os.environ.get("SCALARJAX_DATA", str(ROOT.parent / "shared/data")), "rmd17/aspirin_test.xyz")

MP0 = dict(
    zs=list(range(1, 90)),
    model_class="ScaleShiftMACE",
    first="RealAgnosticInteractionBlock",
    r_max=6.0,
    num_bessel=10,
    p=5,
    max_ell=3,
    correlation=3,
    num_interactions=2,
    mlp="16x0e",
    radial_mlp=(64, 64, 64),
    avg=(61.96,),
    scale=0.8,
    shift=0.1,
)
MODELS = {
    "mp0_small": dict(MP0, hidden="128x0e", seed=11),
    "mp0_medium": dict(MP0, hidden="128x0e+128x1o", seed=12),
    "default_medium": dict(
        zs=[1, 6, 8, 14],
        model_class="ScaleShiftMACE",
        first="RealAgnosticInteractionBlock",
        r_max=5.0,
        num_bessel=8,
        p=5,
        max_ell=3,
        hidden="64x0e+64x1o",
        correlation=3,
        num_interactions=2,
        mlp="16x0e",
        radial_mlp=(64, 64, 64),
        avg=(20.0,),
        scale=1.0,
        shift=0.0,
        seed=13,
    ),
}


def structures():
    import ase.io
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(3)
    asp = ase.io.read(ASPIRIN, 0)
    asp.calc = None
    si = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    si.positions += rng.normal(0, 0.05, si.positions.shape)
    cell = np.array([[7.1, 0.0, 0.0], [0.6, 6.8, 0.0], [-0.5, 0.4, 7.3]])
    grid = np.array([[i, j, k] for i in range(2) for j in range(3) for k in range(4)], float) / [2, 3, 4]
    frac = grid + rng.normal(0, 0.02, grid.shape)
    mixed = Atoms(numbers=[1, 6, 8, 14] * 6, scaled_positions=frac, cell=cell, pbc=True)
    return {"aspirin": asp, "si_64": si, "mixed_4el_24": mixed}


def _time(fn, n_warm=2, n=10, budget_s=60.0):
    for _ in range(n_warm):
        fn()
    ts = []
    t_end = time.perf_counter() + budget_s
    while len(ts) < n and (len(ts) < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * float(np.median(ts)), "calls": len(ts)}


def peer(args):
    import torch

    sys.path.insert(0, str(ROOT / "experiments/peer"))
    import make_mace_fixtures as fx
    from mace.calculators import MACECalculator

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    dumper = fx.load_dumper()
    structs = structures()
    work = Path(tempfile.mkdtemp(prefix="import_mace_parity-"))
    ref = {"structures": {k: fx.atoms_to_json(v) for k, v in structs.items()}, "models": {}}
    for name, spec in MODELS.items():
        if args.models and name not in args.models.split(","):
            continue
        t0 = time.perf_counter()
        model = fx.build(**spec)
        path = work / f"{name}.model"
        torch.save(model, path)
        dumper.dump_file(str(path), str(work / f"{name}.npz"))
        outs, timing = {}, {}
        for dtype in ("float64", "float32"):
            m = dumper.load_model(str(path))
            calc = MACECalculator(models=m, device="cpu", default_dtype=dtype)
            for sname, atoms in structs.items():
                a = atoms.copy()
                a.calc = calc
                r = {"energy": float(a.get_potential_energy()), "forces": a.get_forces().tolist()}
                if a.pbc.any():
                    r["stress"] = a.get_stress().tolist()
                outs.setdefault(dtype, {})[sname] = r
                if args.time and dtype == "float32" and name == "mp0_medium":

                    def call(a=a, calc=calc):
                        calc.calculate(a, ["energy", "forces"] + (["stress"] if a.pbc.any() else []), ["positions"])

                    timing[sname] = _time(call)
        ref["models"][name] = {
            "spec": spec,
            "outputs": outs,
            "timing_mace_torch_float32": timing,
            "peer_seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, "peer done", round(time.perf_counter() - t0, 1), "s", flush=True)
    from importlib import metadata

    ref["versions"] = {p: metadata.version(p) for p in ("mace-torch", "e3nn", "torch", "ase")}
    with open(work / "reference.json", "w") as f:
        json.dump(ref, f)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [args.scalarjax_python, __file__, "--scalarjax", str(work), "--out", args.out] + (["--time"] if args.time else [])
    print("scalarjax side:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env)


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def scalarjax_side(args):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp  # noqa: F401

    from scalarjax.calculator import Calculator
    from scalarjax.interop.mace_torch import import_mace

    sys.path.insert(0, str(ROOT / "experiments/peer"))
    work = Path(args.scalarjax)
    ref = json.loads((work / "reference.json").read_text())
    from ase import Atoms

    structs = {k: Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"]) for k, s in ref["structures"].items()}
    result = {
        "command": "../peer/venv/bin/python experiments/peer/import_mace_parity.py --out " + args.out + (" --time" if args.time else ""),
        "relative_error": "max|scalarjax - mace_torch| / max|mace_torch| per quantity (energy: also of E - sum(E0))",
        "weights": "random (every parameter redrawn, make_mace_fixtures.build); MP-0 *architecture*, not MP-0's trained weights",
        "versions_peer": ref["versions"],
        "jax": jax.__version__,
        "models": {},
    }
    for name, m in ref["models"].items():
        t0 = time.perf_counter()
        entry = {"spec": {k: (v if k != "zs" else f"{len(v)} elements (Z {min(v)}..{max(v)})") for k, v in m["spec"].items()}, "errors": {}}
        for dtype in ("float64", "float32"):
            run = import_mace(work / f"{name}.npz", Path(tempfile.mkdtemp(dir=work)) / f"{name}_{dtype}", dtype)
            rep = json.loads((run / "import_report.json").read_text())
            entry["max_product_projection_residual"] = rep["max_product_projection_residual"]
            calc = Calculator.from_run(run)
            e0 = dict(zip(calc.config.atomic_numbers, calc.config.atomic_energies))
            for sname, atoms in structs.items():
                a = atoms.copy()
                a.calc = calc
                props = ["energy", "forces"] + (["stress"] if a.pbc.any() else [])
                e, f = a.get_potential_energy(), a.get_forces()
                s = a.get_stress() if a.pbc.any() else None
                se0 = sum(e0[z] for z in a.numbers)
                for against in ("float64", "float32") if dtype == "float32" else ("float64",):
                    r = m["outputs"][against][sname]
                    err = {
                        "energy": rel(e, r["energy"]),
                        "interaction_energy": rel(e - se0, r["energy"] - se0),
                        "forces": rel(f, r["forces"]),
                    }
                    if s is not None:
                        err["stress"] = rel(s, r["stress"])
                    entry["errors"].setdefault(f"scalarjax_{dtype}_vs_mace_torch_{against}", {})[sname] = err
                if args.time and dtype == "float32" and name == "mp0_medium":

                    def call(a=a):
                        calc.calculate(a, props, ["positions"])

                    entry.setdefault("timing_scalarjax_float32", {})[sname] = _time(call)
        # Baseline: how far mace-torch's own float32 is from its float64 (float32 rounding, no conversion).
        for sname in structs:
            r32, r64 = m["outputs"]["float32"][sname], m["outputs"]["float64"][sname]
            entry["errors"].setdefault("mace_torch_float32_vs_mace_torch_float64", {})[sname] = {
                k: rel(r32[k], r64[k]) for k in ("energy", "forces", "stress") if k in r64
            }
        if m.get("timing_mace_torch_float32"):
            entry["timing_mace_torch_float32"] = m["timing_mace_torch_float32"]
        # The floors are on E, F, S (E - sum(E0) is reported too, but in float32 it loses the digits of sum(E0)).
        worst = {k: max(x for e in v.values() for q, x in e.items() if q != "interaction_energy") for k, v in entry["errors"].items()}
        entry["worst"] = worst
        entry["scalarjax_seconds"] = round(time.perf_counter() - t0, 1)
        result["models"][name] = entry
        print(name, json.dumps(worst), flush=True)
    floors = {
        "scalarjax_float64_vs_mace_torch_float64": 1e-8,
        "scalarjax_float32_vs_mace_torch_float32": 1e-5,
        "scalarjax_float32_vs_mace_torch_float64": 1e-5,
    }
    result["floors"] = floors
    result["floors_met"] = {k: all(e["worst"][k] <= v for e in result["models"].values()) for k, v in floors.items()}
    # float32: scalarjax's error against mace-torch float64 relative to mace-torch float32's own error (<= ~1: as accurate).
    result["float32_error_ratio_vs_mace_torch_float32"] = {
        name: {
            s: {
                q: e["errors"]["scalarjax_float32_vs_mace_torch_float64"][s][q] / max(v, 1e-300)
                for q, v in e["errors"]["mace_torch_float32_vs_mace_torch_float64"][s].items()
            }
            for s in structs
        }
        for name, e in result["models"].items()
    }
    if args.time:
        result["timing_note"] = (
            "steady-state median ms per ASE calculate() (E+F, +S for periodic), float32, mp0_medium, "
            "both measured in this run, mace-torch first (torch threads = OMP_NUM_THREADS, default 2), on this machine"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("floors met:", result["floors_met"], "->", args.out)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "experiments/results/import_mace_parity.json"))
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--models", default="", help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--scalarjax", help=argparse.SUPPRESS)
    ap.add_argument("--scalarjax-python", default=SCALARJAX_PYTHON)
    args = ap.parse_args(argv)
    return scalarjax_side(args) if args.scalarjax else peer(args)


if __name__ == "__main__":
    sys.exit(main())

"""MD throughput of a trained model's ASE calculator: NVE steps/s on diamond Si cells and the number
of recompilations over the run (target: 0 after the first step).

Each cell (2×2×2 and 4×4×4 conventional cells: 64 and 512 atoms, a = 5.468 Å) gets Maxwell–Boltzmann
velocities at ``--temperature`` and runs ``--steps`` velocity-Verlet steps of 1 fs with the
calculator computing energy, forces and stress at every step (what NPT needs; NVE would not need
the stress). The first force call (compile) happens before the clock starts and is reported apart.

    python experiments/bench_md.py RUN_DIR [--sizes 2,4] [--steps 1000] [--out experiments/results/bench_md_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_inference import machine  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--sizes", default="2,4", help="supercell repeats of the 8-atom cubic cell")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import jax
    from ase.build import bulk

    from scalarjax.calculator import Calculator
    from scalarjax.simulation.md import run_md

    report = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": machine(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "run_dir": args.run_dir,
        "cells": {},
    }
    for rep in (int(s) for s in args.sizes.split(",")):
        atoms = bulk("Si", "diamond", a=5.468, cubic=True).repeat(rep)
        calc = Calculator.from_run(args.run_dir)
        t0 = time.perf_counter()
        atoms.calc = calc
        atoms.get_forces()
        first = time.perf_counter() - t0
        s = run_md(atoms, calc, "nve", args.temperature, 1.0, args.steps, log_interval=100, progress=False)
        row = {
            "n_atoms": len(atoms),
            "steps": args.steps,
            "first_call_s": round(first, 2),
            "steps_per_s": round(s["steps_per_s"], 3),
            "ms_per_step": round(1e3 / s["steps_per_s"], 2),
            "compiles_during_run": s["compiles_during_run"],
            "compiles_total": calc.potential.compile_count,
            "drift_meV_per_atom_per_ps": s.get("drift_meV_per_atom_per_ps"),
        }
        report["cells"][f"si_{len(atoms)}"] = row
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()

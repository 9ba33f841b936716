"""10,000 steps on the in-XLA MD engine: recompilations, traces, neighbour-list rebuilds and
reallocations, and the NVE energy drift (issue 18's floor: 0 recompilations over 10,000 steps).

The recompilation behaviour does not depend on the model's size, so the run can use a small model
to fit in minutes on 2 cores: ``--run RUN_DIR`` a trained one (e.g. the Allegro trained on mlearn
Si by experiments/compare_allegro.sh), else an untrained small MACE (32x0e+32x1o, max_ell 2,
correlation 2, seed 0), whose random forces heat and restructure the cell, so its pair count can
outgrow the list (one reallocation, one recompilation, by design). The 64-atom mlearn Si cell
(first AIMD-NVT frame of test.json), NVE from 300 K, 1 fs, 100 steps per device call.

    python -m scalarjax.launch experiments/md_engine_long_run.py [--run RUN_DIR] [--steps 10000] [--out FILE]
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
from bench_md_engine import TraceCounter, si_cells  # noqa: E402

SMALL = {
    "atomic_numbers": (14,),
    "dtype": "float32",
    "avg_num_neighbors": 20.0,
    "hidden_irreps": "32x0e+32x1o",
    "max_ell": 2,
    "correlation": 2,
    "radial_mlp": [32, 32],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SCALARJAX_DATA", os.path.join(HERE, "..", "..", "shared", "data")))
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--run", help="a trained run directory (default: an untrained small MACE)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "md_engine_long_run_cpu.json"))
    args = ap.parse_args()
    import jax

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential
    from scalarjax.simulation.md import run_md_engine

    atoms = si_cells(args.data)["si_64"]
    if args.run:
        from scalarjax.run import load_run

        pot = load_run(args.run)
    else:
        pot = Potential(load_model_config(SMALL), seed=0)
    traces = TraceCounter()
    t = time.perf_counter()
    kw = dict(log_interval=1000, traj_interval=args.steps, progress=False, seed=0, chunk_steps=100)
    summary, n_traces = traces.run(lambda: run_md_engine(atoms, pot, "nve", 300.0, 1.0, args.steps, **kw))
    report = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": machine(),
        "jax": jax.__version__,
        "model": args.run or SMALL,
        "steps": args.steps,
        "wall_s": round(time.perf_counter() - t, 1),
        "traces_total": n_traces,  # the start state and the loop, compiled before the clock
        **{
            k: summary.get(k)
            for k in (
                "steps_per_s",
                "compiles_during_run",
                "compile_seconds",
                "neighbor_capacity",
                "neighbor_builds",
                "reallocations",
                "drift_meV_per_atom_per_ps",
            )
        },
    }
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

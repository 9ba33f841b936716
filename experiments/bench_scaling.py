"""Time per atom of E+F+S against system size: diamond Si supercells from 64 atoms up.

    python experiments/bench_scaling.py --backbone mace [--sizes 64,512,4096,32768] [--dtype float32]
                                        [--out experiments/results/scaling_mace_float32_cpu.json]

Each size runs in its own process (its peak resident memory is then that size's). Cells: the
8-atom conventional diamond cell (a = 5.431 Å) repeated n×n×n, rattled by 0.05 Å (seed 0), so
every size has the same neighbour density. Children run with the library's allocator preloaded, as
the ``scalarjax`` command runs. Default model of the backbone, random parameters
(timing does not depend on their values), avg_num_neighbors 20. Steady state: median of ≥5 calls
after 2 warm-up calls; the first call (trace + compile) is reported apart. A strictly local model
(Allegro) should cost the same per atom at every size; the ratio to the smallest size ≥ 512 atoms
is reported per size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def run_size(backbone: str, n_atoms: int, dtype: str) -> dict:
    import jax
    import numpy as np
    from ase.build import bulk

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from scalarjax.config import load_model_config
    from scalarjax.data.configuration import Configuration
    from scalarjax.graph.batch import batch_graphs
    from scalarjax.potential import Potential

    reps = round((n_atoms / 8) ** (1 / 3))
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=0)
    pot = Potential(load_model_config({"backbone": backbone, "atomic_numbers": [14], "avg_num_neighbors": 20.0, "dtype": dtype}), seed=0)
    batch = jax.device_put(batch_graphs(pot.graphs([Configuration.from_atoms(atoms)])))
    fn = pot.function(compute_stress=True)
    t = time.perf_counter()
    jax.block_until_ready(fn(pot.params, batch))
    compile_s = time.perf_counter() - t
    for _ in range(2):
        jax.block_until_ready(fn(pot.params, batch))
    times, t_end = [], time.perf_counter() + 20.0
    while len(times) < 5 or (time.perf_counter() < t_end and len(times) < 50):
        t = time.perf_counter()
        jax.block_until_ready(fn(pot.params, batch))
        times.append(time.perf_counter() - t)
    median = float(np.median(times))
    return {
        "n_atoms": len(atoms),
        "n_edges_padded": int(batch.senders.shape[0]),
        "compile_s": round(compile_s, 2),
        "median_ms": round(1e3 * median, 3),
        "us_per_atom": round(1e6 * median / len(atoms), 3),
        "n_calls": len(times),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "params": pot.num_params(),
    }


def scaling_fit(rows: list) -> dict:
    """Least-squares fits over the sizes: time and peak memory = a + b·n (b: µs and KiB per atom), and
    the exponent k of time ∝ n^k and of the memory above the smallest size's (the runtime's baseline)
    ∝ n^k, both over the sizes ≥ 512 atoms (k ≤ 1: no faster than linear)."""
    import numpy as np

    n = np.array([r["n_atoms"] for r in rows], float)
    t = np.array([r["median_ms"] for r in rows], float)
    m = np.array([r["peak_rss_mib"] for r in rows], float)
    big = n >= 512
    out = {}
    if len(n) >= 2:
        bt, at = np.polyfit(n, t, 1)
        bm, am = np.polyfit(n, m, 1)
        out.update(
            {
                "time_ms": {"intercept": round(at, 2), "us_per_atom": round(1e3 * bt, 2)},
                "peak_rss_mib": {"intercept": round(am, 1), "kib_per_atom": round(1024 * bm, 2)},
            }
        )
    if big.sum() >= 2:
        out["time_exponent_ge512"] = round(float(np.polyfit(np.log(n[big]), np.log(t[big]), 1)[0]), 3)
        extra = m[big] - m.min()
        if np.all(extra > 0):
            out["memory_exponent_ge512"] = round(float(np.polyfit(np.log(n[big]), np.log(extra), 1)[0]), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="allegro")
    ap.add_argument("--sizes", default="64,512,4096")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_size(args.backbone, args.child, args.dtype)))
        return
    import jax
    from bench_inference import machine

    from scalarjax import _runtime

    env = _runtime.allocator_env()  # children run as the scalarjax command runs
    report = {"command": " ".join(sys.argv), "machine": machine(), "jax": jax.__version__, "backbone": args.backbone, "dtype": args.dtype}
    report["allocator"] = env.get("LD_PRELOAD", "")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(n), "--backbone", args.backbone, "--dtype", args.dtype]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{args.backbone} {args.dtype} {row['n_atoms']:6d} atoms: {row['median_ms']:10.2f} ms  {row['us_per_atom']:8.2f} µs/atom  "
            f"compile {row['compile_s']:6.2f} s  peak RSS {row['peak_rss_mib']:8.1f} MiB",
            flush=True,
        )
    ref = next((r for r in rows if r["n_atoms"] >= 512), rows[0])
    for r in rows:
        r["per_atom_vs_512"] = round(r["us_per_atom"] / ref["us_per_atom"], 3)
    report["sizes"] = rows
    report["fit"] = scaling_fit(rows)
    print(json.dumps(report["fit"]))
    out = args.out or os.path.join(HERE, "results", f"scaling_{args.backbone}_{args.dtype}_cpu.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

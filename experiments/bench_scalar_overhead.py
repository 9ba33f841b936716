"""Wall-time overhead of the scalar-pathway variants, measured interleaved in one process.

For each backbone and case, the jitted E+F(+S) of base, +PAN, +PGS and +PAN+PGS (default transform
settings, default models, float32) are compiled, then timed in rounds: every round runs each
variant ``calls`` times in a shuffled order, so slow drifts of the machine hit all variants
alike. Reported: the median per call of each variant, its ratio to base, and XLA's FLOPs ratio.

    python experiments/bench_scalar_overhead.py [--rounds 15] [--calls 5] [--out experiments/results/bench_scalar_overhead_cpu.json]
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inference import HERE, machine, structures  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SCALARJAX_DATA", os.path.join(HERE, "..", "..", "shared", "data")))
    ap.add_argument("--backbones", default="mace,nequip")
    ap.add_argument("--cases", default="aspirin_x1,si_64")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_scalar_overhead_cpu.json"))
    args = ap.parse_args()
    report = {"command": " ".join(sys.argv), "machine": machine(), "rounds": args.rounds, "calls": args.calls, "results": {}}
    import jax

    import scalarjax  # noqa: F401
    from scalarjax.config import load_model_config
    from scalarjax.data.configuration import Configuration
    from scalarjax.flops import VARIANTS
    from scalarjax.graph.batch import batch_graphs
    from scalarjax.potential import Potential

    cases = structures(args.data)
    rng = np.random.default_rng(0)
    for backbone in args.backbones.split(","):
        for case in args.cases.split(","):
            atoms_list, stress = cases[case]
            zs = (1, 6, 8) if case.startswith("aspirin") else (14,)
            fns = {}
            for name, kinds in VARIANTS.items():
                cfg = load_model_config(
                    {
                        "backbone": backbone,
                        "atomic_numbers": zs,
                        "avg_num_neighbors": 20.0,
                        "scalar_transforms": [{"kind": k} for k in kinds],
                    }
                )
                pot = Potential(cfg, seed=0)
                graphs = pot.graphs(Configuration.from_atoms(a) for a in atoms_list)
                batch = jax.device_put(batch_graphs(graphs))
                fn = pot.function(compute_stress=stress)
                jax.block_until_ready(fn(pot.params, batch))
                cost = fn.lower(pot.params, batch).compile().cost_analysis()
                cost = cost[0] if isinstance(cost, list) else cost
                fns[name] = (fn, pot.params, batch, float(cost.get("flops", 0.0)))
                for _ in range(3):
                    jax.block_until_ready(fn(pot.params, batch))
            times = {name: [] for name in fns}
            for _ in range(args.rounds):
                for name in rng.permutation(list(fns)):
                    fn, params, batch, _ = fns[name]
                    for _ in range(args.calls):
                        t = time.perf_counter()
                        jax.block_until_ready(fn(params, batch))
                        times[name].append(time.perf_counter() - t)
            med = {k: float(np.median(v)) for k, v in times.items()}
            res = {
                name: {
                    "median_ms": 1e3 * med[name],
                    "wall_vs_base": med[name] / med["base"] - 1.0,
                    "flops_vs_base": fns[name][3] / fns["base"][3] - 1.0,
                }
                for name in fns
            }
            report["results"][f"{backbone}/{case}"] = res
            print(
                f"{backbone:6s} {case:11s} "
                + "  ".join(
                    f"{n}: {r['median_ms']:.2f} ms ({100 * r['wall_vs_base']:+.1f}%, FLOPs {100 * r['flops_vs_base']:+.2f}%)"
                    for n, r in res.items()
                ),
                flush=True,
            )
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

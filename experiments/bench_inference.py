"""Steady-state inference benchmark: E+F (molecules) and E+F+S (periodic) for the default models
of every backbone (medium MACE; NequIP with 4 layers, l_max 2, 32 features; Allegro with its
reference's builder defaults), timed in one run.

Cases: one rMD17 aspirin (21 atoms), a batch of 10 aspirins, the 64-atom mlearn Si cell (first
AIMD-NVT frame of test.json) and its 2×2×2 supercell (512 atoms). Each dtype runs in its own
process (float64 needs JAX's x64 mode, which a float32 run must not have). The first call is
reported apart from the steady state (median of ≥20 calls after 3 warm-up calls), split into trace
+ XLA compile and the first execution (which pays the first touch of XLA's scratch memory).

    python experiments/bench_inference.py [--data DIR] [--backbones mace,nequip] [--cases si_64,aspirin_x1]
                                          [--variants base,pan,pgs,pan+pgs] [--out experiments/results/bench_inference_cpu.json]

Each child process runs the way the ``scalarjax`` command runs, with the library's allocator
preloaded (``scalarjax._runtime.allocator_env``; ``--allocator glibc`` for glibc with the
library's in-process tuning only, which is what ``import scalarjax`` in a running interpreter gets).

``--variants`` adds the scalar-pathway transforms with their default settings (``scalarjax flops``'
variants) and reports each variant's wall time relative to ``base`` of the same backbone and dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "nproc": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info["cpu"] = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    info["loadavg_before"] = os.getloadavg()
    info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    info["LD_PRELOAD"] = os.environ.get("LD_PRELOAD", "")
    return info


def structures(data_dir: str):
    import ase.io

    from scalarjax.data.io import read_mlearn_json

    aspirin = ase.io.read(os.path.join(data_dir, "rmd17", "aspirin_test.xyz"), ":10")
    si = next(c for c in read_mlearn_json(os.path.join(data_dir, "mlearn", "Si", "test.json")) if c.config_type == "AIMD-NVT")
    si64 = si.to_atoms()
    return {
        "aspirin_x1": ([aspirin[0]], False),
        "aspirin_x10": (aspirin, False),
        "si_64": ([si64], True),
        "si_512": ([si64.repeat(2)], True),
    }


def time_calls(fn, n_min: int = 20, budget_s: float = 20.0) -> list[float]:
    for _ in range(3):
        fn()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < n_min or (time.perf_counter() < t_end and len(times) < 200):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 5 and time.perf_counter() > t_end + budget_s:
            break
    return times


def run_one(dtype: str, data_dir: str, backbone: str, case_names, variant: str = "base") -> dict:
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import scalarjax  # noqa: F401  (applies its runtime flags before the backend starts)
    from scalarjax.config import load_model_config
    from scalarjax.data.configuration import Configuration
    from scalarjax.flops import VARIANTS
    from scalarjax.graph.batch import batch_graphs
    from scalarjax.potential import Potential

    results = {}
    cases = {k: v for k, v in structures(data_dir).items() if not case_names or k in case_names}
    zs = {"aspirin": (1, 6, 8), "si": (14,)}
    pots = {}
    t0 = time.perf_counter()
    for key, z in zs.items():
        cfg = load_model_config(
            {
                "backbone": backbone,
                "atomic_numbers": z,
                "dtype": dtype,
                "avg_num_neighbors": 20.0,
                "scalar_transforms": [{"kind": k} for k in VARIANTS[variant]],
            }
        )
        pots[key] = Potential(cfg, seed=0)
    init_s = (time.perf_counter() - t0) / 2
    for name, (atoms_list, stress) in cases.items():
        pot = pots[name.split("_")[0]]
        graphs = pot.graphs(Configuration.from_atoms(a) for a in atoms_list)
        batch = jax.device_put(batch_graphs(graphs))
        fn = pot.function(compute_stress=stress)
        # The first call is trace + XLA compile + a first execution; the last costs more than later
        # ones because the kernel zero-fills the fresh pages of XLA's scratch memory on first touch
        # (perf, Si 512 float64: 71% of the first execution in clear_page_erms). Timed apart.
        t = time.perf_counter()
        compiled = fn.lower(pot.params, batch).compile()
        trace_compile_s = time.perf_counter() - t
        t = time.perf_counter()
        jax.block_until_ready(compiled(pot.params, batch))
        first_exec_s = time.perf_counter() - t
        compile_s = trace_compile_s + first_exec_s
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        temp_mb = compiled.memory_analysis().temp_size_in_bytes / 1e6
        times = time_calls(lambda: jax.block_until_ready(compiled(pot.params, batch)))
        results[name] = {
            "n_atoms": int(sum(len(a) for a in atoms_list)),
            "n_edges": int(sum(int(g.n_edge[0]) for g in graphs)),
            "padded": [int(batch.nodes["species"].shape[0]), int(batch.senders.shape[0])],
            "stress": stress,
            "compile_s": round(compile_s, 3),  # the whole first call
            "trace_compile_s": round(trace_compile_s, 3),
            "first_exec_s": round(first_exec_s, 3),
            "xla_temp_mb": round(temp_mb, 1),
            "median_ms": round(1e3 * float(np.median(times)), 3),
            "min_ms": round(1e3 * float(np.min(times)), 3),
            "n_calls": len(times),
            "gflop": round(float(cost.get("flops", 0.0)) / 1e9, 6),
            "params": pot.num_params(),
        }
        print(
            f"  {backbone:6s} {variant:8s} {dtype} {name:12s} first call {compile_s:6.2f} s (trace+compile {trace_compile_s:5.2f}, first run {first_exec_s:5.2f})   median {results[name]['median_ms']:8.2f} ms",
            flush=True,
        )
    return {"init_s": round(init_s, 2), "cases": results}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SCALARJAX_DATA", os.path.join(HERE, "..", "..", "shared", "data")))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_inference_cpu.json"))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--backbones", default="mace,nequip")
    ap.add_argument("--cases", default="", help="comma-separated subset of aspirin_x1,aspirin_x10,si_64,si_512")
    ap.add_argument("--variants", default="base", help="comma-separated subset of base,pan,pgs,pan+pgs")
    ap.add_argument("--allocator", choices=("launcher", "glibc"), default="launcher")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        dtype, backbone, variant = args.child.split(":")
        print(json.dumps(run_one(dtype, args.data, backbone, [c for c in args.cases.split(",") if c], variant)))
        return
    report = {
        "command": " ".join(sys.argv),
        "machine": machine(),
        "models": {
            "mace": "MACE medium (r_max 5, 8 Bessel, p=5, max_ell 3, 64x0e+64x1o, correlation 3, 2 interactions, MLP 16x0e)",
            "nequip": "NequIP (r_max 5, 8 Bessel, p=6, 4 layers, l_max 2, 32 features, parity, 2x64 radial MLP, resnet)",
            "allegro": "Allegro (r_max 5, 8 Bessel, p=6, 2 layers, l_max 2, 64 scalar / 16 tensor features, MLPs 64/64/32)",
        },
    }
    import e3nn_jax
    import flax
    import jax

    from scalarjax import _runtime

    env = _runtime.allocator_env() if args.allocator == "launcher" else {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    report["allocator"] = {"mode": args.allocator, "LD_PRELOAD": env.get("LD_PRELOAD", "")}

    report["versions"] = {"jax": jax.__version__, "flax": flax.__version__, "e3nn_jax": e3nn_jax.__version__}
    for dtype in args.dtypes.split(","):
        report[dtype] = {}
        for backbone in args.backbones.split(","):
            for variant in args.variants.split(","):
                cmd = [sys.executable, __file__, "--child", f"{dtype}:{backbone}:{variant}", "--data", args.data, "--cases", args.cases]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    sys.exit(proc.stderr)
                lines = proc.stdout.strip().splitlines()
                print("\n".join(lines[:-1]))
                key = backbone if variant == "base" else f"{backbone}+{variant}"
                report[dtype][key] = json.loads(lines[-1])
                base = report[dtype].get(backbone)
                if variant != "base" and base:
                    for case, v in report[dtype][key]["cases"].items():
                        ref = base["cases"][case]
                        v["wall_overhead_vs_base"] = round(v["median_ms"] / ref["median_ms"] - 1.0, 4)
                        v["flops_overhead_vs_base"] = round(v["gflop"] / ref["gflop"] - 1.0, 4)
                        print(
                            f"    {key} {case}: wall {100 * v['wall_overhead_vs_base']:+.1f}%  flops {100 * v['flops_overhead_vs_base']:+.2f}%"
                        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

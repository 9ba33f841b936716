"""Data-parallel training throughput: 1 device against 2 simulated CPU devices (configurations/s).

mlearn Si, batch 4 (global), E/F/S loss, float32, a small MACE (max_ell 2, 16x0e+16x1o,
correlation 2, 2 interactions). Each device count runs in its own process with
``--xla_force_host_platform_device_count=2`` (so both see the same XLA set-up) through the
trainer's own pieces (``scalarjax.training.parallel``: sharded step, per-device padded batches).
One warm-up pass compiles; then ``--steps`` steps are timed. On one CPU the "devices" share the
same cores, so this measures the overhead of the sharded step, not a speed-up.

    python experiments/bench_parallel.py [--data DIR] [--steps 24] [--out experiments/results/bench_parallel_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = {"max_ell": 2, "hidden_irreps": "16x0e+16x1o", "correlation": 2, "num_interactions": 2, "dtype": "float32"}


def child(devices: int, data: str, steps: int, batch_size: int) -> dict:
    import jax

    import scalarjax  # noqa: F401
    from scalarjax.data.io import read_mlearn_json
    from scalarjax.potential import Potential, make_potential
    from scalarjax.training import parallel
    from scalarjax.training.config import load_run_config
    from scalarjax.training.loss import LossWeights
    from scalarjax.training.optim import init_state, make_optimizer
    from scalarjax.training.trainer import model_with_statistics

    cfg = load_run_config(raw={"model": MODEL, "training": {"optimizer": "amsgrad", "lr": 0.01}})
    train = read_mlearn_json(os.path.join(data, "mlearn", "Si", "training.json"))
    model_cfg, graphs, _ = model_with_statistics(cfg, train)
    pot = Potential(model_cfg)
    par = parallel.setup(devices, batch_size)
    opt = make_optimizer(cfg.training)
    step = par.train_step(make_potential(pot.model.apply, model_cfg.r_max, pot.dtype, True), LossWeights(1.0, 100.0, 100.0), opt, 0.99, 0)
    state = par.replicate(init_state(pot.params, opt))
    size = par.pad_size(graphs, batch_size)
    ew = np.asarray(1.0, pot.dtype)
    t = time.perf_counter()
    for i, b in enumerate(par.batches(graphs, batch_size, shuffle=True, seed=0, size=size)):  # compiles
        state, m = step(state, b, ew)
        if i == 1:
            break
    jax.block_until_ready(state)
    warm_s = time.perf_counter() - t
    batches = list(par.batches(graphs, batch_size, shuffle=True, seed=1, size=size))[:steps]
    times = []
    for b in batches:
        t = time.perf_counter()
        state, m = step(state, b, ew)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    n_configs = min(len(graphs), steps * batch_size)
    return {
        "devices": devices,
        "device_list": [str(d) for d in par.devices],
        "steps": len(times),
        "configs_per_s": round(n_configs / sum(times), 3),
        "median_ms_per_step": round(1e3 * float(np.median(times)), 1),
        "warmup_s": round(warm_s, 1),
        "padded_per_device": [size.n_node, size.n_edge, size.n_graph],
        "compiled_shapes": step._cache_size(),
        "loadavg": os.getloadavg(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SCALARJAX_DATA", os.path.join(HERE, "..", "..", "shared", "data")))
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_parallel_cpu.json"))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT" + json.dumps(child(args.child, args.data, args.steps, args.batch_size)))
        return
    report = {
        "command": "python experiments/bench_parallel.py " + " ".join(sys.argv[1:]),
        "model": MODEL,
        "batch_size": args.batch_size,
        "data": "mlearn Si training.json",
        "note": "2 simulated devices (--xla_force_host_platform_device_count=2) share this "
        "machine's cores, so no speed-up is expected: the ratio shows the overhead of the sharded step. The machine "
        "was shared with other work during the run (see loadavg).",
        "runs": [],
    }
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()}
    for devices in (1, 2):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(devices),
                "--data",
                args.data,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0 or "RESULT" not in proc.stdout:
            sys.exit(proc.stderr[-3000:])
        run = json.loads(proc.stdout.split("RESULT", 1)[1])
        print(json.dumps(run))
        report["runs"].append(run)
    report["ratio_2_over_1"] = round(report["runs"][1]["configs_per_s"] / report["runs"][0]["configs_per_s"], 3)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

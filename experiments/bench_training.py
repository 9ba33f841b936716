"""Training throughput (configurations/s) of the default medium MACE on mlearn Si, batch size 4.

The same loss weights as the peer measurement (energy 1, forces 100, stress 100), Adam/AMSGrad,
float32 by default. Times one epoch of jitted steps after a warm-up epoch (compiles excluded), and
reports the share of padded atoms and edges in the trainer's fixed padded shape and the host time
spent shuffling and padding an epoch's batches. Run it through the launcher, as the ``scalarjax``
command runs training (``python -m scalarjax.launch experiments/bench_training.py``).

    python experiments/bench_training.py [--data DIR] [--dtype float32] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inference import machine  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--data", default=os.environ.get("SCALARJAX_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    )
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_training_cpu.json"))
    args = ap.parse_args()
    import jax
    import jraph

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import scalarjax  # noqa: F401
    from scalarjax.data.io import read_mlearn_json
    from scalarjax.graph.batch import batches, fixed_pad_sizes
    from scalarjax.potential import Potential, make_potential
    from scalarjax.training.config import load_run_config
    from scalarjax.training.loss import LossWeights
    from scalarjax.training.optim import init_state, make_optimizer, make_train_step
    from scalarjax.training.trainer import model_with_statistics

    cfg = load_run_config(raw={"model": {"dtype": args.dtype}, "training": {"optimizer": "amsgrad", "lr": 0.01}})
    train = read_mlearn_json(os.path.join(args.data, "mlearn", "Si", "training.json"))
    model_cfg, graphs, stats = model_with_statistics(cfg, train)
    pot = Potential(model_cfg)
    opt = make_optimizer(cfg.training)
    step = make_train_step(make_potential(pot.model.apply, model_cfg.r_max, pot.dtype, True), LossWeights(1.0, 100.0, 100.0), opt, 0.99, 0)
    state = init_state(pot.params, opt)
    ew = np.asarray(1.0, pot.dtype)
    t = time.perf_counter()
    size = fixed_pad_sizes(graphs, args.batch_size, cfg.data.padding_shapes)  # as the trainer does (data.fixed_padding)
    for b in batches(graphs, args.batch_size, shuffle=True, seed=0, size=size):  # warm-up epoch: compiles every bucket
        state, m = step(state, b, ew)
    jax.block_until_ready(state)
    warm_s = time.perf_counter() - t
    compiles = step._cache_size()
    t = time.perf_counter()
    epoch = list(batches(graphs, args.batch_size, shuffle=True, seed=1, size=size))
    batching_s = time.perf_counter() - t  # host-side shuffling + padding of one epoch (numpy)
    real_nodes = sum(int(b.nodes["species"].shape[0]) - jraph.get_number_of_padding_with_graphs_nodes(b) for b in epoch)
    real_edges = sum(int(b.senders.shape[0]) - jraph.get_number_of_padding_with_graphs_edges(b) for b in epoch)
    slots_nodes = sum(int(b.nodes["species"].shape[0]) for b in epoch)
    slots_edges = sum(int(b.senders.shape[0]) for b in epoch)
    times = []
    for b in epoch:
        t = time.perf_counter()
        state, m = step(state, b, ew)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    total = sum(times)
    new_compiles = step._cache_size() - compiles
    out = {
        "command": "python experiments/bench_training.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": machine(),
        "allocator": os.environ.get("LD_PRELOAD", ""),
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "configs": len(graphs),
        "steps": len(times),
        "seconds_epoch": round(total, 2),
        "configs_per_s": round(len(graphs) / total, 2),
        "median_ms_per_step": round(1e3 * float(np.median(times)), 1),
        "warmup_epoch_s": round(warm_s, 1),
        "padded_shapes": [[z.n_node, z.n_edge, z.n_graph] for z in size],
        "padded_share_atoms": round(1.0 - real_nodes / slots_nodes, 4),
        "padded_share_edges": round(1.0 - real_edges / slots_edges, 4),
        "host_batching_s_per_epoch": round(batching_s, 3),
        "host_batching_share_of_epoch": round(batching_s / total, 4),
        "compiled_shapes": compiles,
        "compiles_in_timed_epoch": new_compiles,
        "avg_num_neighbors": stats["avg_num_neighbors"],
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(out, indent=1))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

"""``make demo``: the main job on the embedded default data set (EMT-labelled fcc Ag).

Until the training loop lands this evaluates an untrained default MACE on the generated
structures: energies, forces and stress for every configuration in padded buckets, and reports
the number of compilations and the throughput.

    python -m scalarjax.demo [--n 240] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import jax
import jraph
import numpy as np

import scalarjax
from scalarjax.data.synthetic import ag_emt_dataset
from scalarjax.graph.batch import batches, configuration_to_graph


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    data = ag_emt_dataset(args.n, args.seed)
    print(f"generated {len(data)} EMT-labelled Ag configurations in {time.perf_counter() - t:.1f} s "
          f"({', '.join(f'{k}: {sum(c.config_type == k for c in data)}' for k in ('bulk', 'vacancy', 'surface'))})")
    pot = scalarjax.Potential(scalarjax.load_model_config({"atomic_numbers": (47,), "avg_num_neighbors": 40.0}), seed=args.seed)
    print(f"default MACE: {pot.num_params():,} parameters, dtype {pot.config.dtype}")
    graphs = [configuration_to_graph(c, pot.elements, pot.config.r_max) for c in data]
    t = time.perf_counter()
    n_conf, energies = 0, []
    for batch in batches(graphs, args.batch_size):
        out = jax.device_get(pot(batch))
        real = int(np.sum(np.asarray(jraph.get_graph_padding_mask(batch))))
        energies.extend(out["energy"][:real])
        n_conf += real
    dt = time.perf_counter() - t
    e_ref = np.array([c.energy for c in data])
    print(f"evaluated E, F, stress on {n_conf} configurations in {dt:.1f} s with {pot.compile_count} compilations")
    print(f"untrained model: energy MAE vs EMT {np.mean(np.abs(np.array(energies) - e_ref)):.3f} eV (training comes with the training issue)")


if __name__ == "__main__":
    main()

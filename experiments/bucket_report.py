"""How many distinct padded shapes (= compilations) a data set needs with scalarjax's buckets.

For each data set: graphs built with r_max = 5 Å, shuffled batches of ``--batch-size`` over
``--epochs`` epochs (different shuffles), and the number of distinct (nodes, edges, graphs)
shapes that ``scalarjax.graph.batch.batches`` produces, next to the number of distinct raw sizes.

    python experiments/bucket_report.py [--data DIR] [--out experiments/results/buckets.json]
"""

from __future__ import annotations

import argparse
import json
import os

from scalarjax.data.io import data_dir, read_configurations
from scalarjax.data.synthetic import ag_emt_dataset
from scalarjax.graph.batch import ElementTable, batches, configuration_to_graph


def report(name, configs, batch_size, epochs, r_max=5.0):
    elements = ElementTable(tuple({int(z) for c in configs for z in c.species}))
    graphs = [configuration_to_graph(c, elements, r_max) for c in configs]
    shapes, raw = set(), set()
    for epoch in range(epochs):
        for b in batches(graphs, batch_size, shuffle=True, seed=epoch):
            shapes.add((b.nodes["species"].shape[0], b.senders.shape[0], b.n_node.shape[0]))
            raw.add((int(b.n_node[:-1].sum()), int(b.n_edge[:-1].sum())))
    row = {
        "data": name,
        "configs": len(configs),
        "batch_size": batch_size,
        "epochs": epochs,
        "distinct_raw_sizes": len(raw),
        "compiled_shapes": len(shapes),
        "shapes": sorted(shapes),
    }
    print(f"{name:28s} {len(configs):5d} configs, batch {batch_size}: {len(raw):4d} raw sizes -> {len(shapes):2d} compiled shapes")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(data_dir()))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "buckets.json"))
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    rows = [report("ag_emt (embedded demo)", ag_emt_dataset(240, 0), 4, args.epochs)]
    sets = [
        ("rmd17 aspirin train", "rmd17/aspirin_train.xyz", 5),
        ("mlearn Si train", "mlearn/Si/training.json", 4),
        ("mlearn Li train", "mlearn/Li/training.json", 4),
    ]
    for name, rel, bs in sets:
        path = os.path.join(args.data, rel)
        if os.path.exists(path):
            rows.append(report(name, read_configurations(path), bs, args.epochs))
    with open(args.out, "w") as f:
        json.dump({"command": "python experiments/bucket_report.py", "r_max": 5.0, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

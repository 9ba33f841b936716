"""Campaign phase 0 (issue 13): what the scalar transforms see, over a training set, at init.

    python experiments/campaign_phase0.py [--cells si/small_mace,aspirin250/small_mace] [--max-structures 200]

For each cell of the plan (data set × size), the +PAN+PGS model with the data's statistics
(E0s, avg_num_neighbors, scale) is initialised with seed 0, and over the training structures:

- the readout scalars each PGS readout sees, per layer (a probe transform placed just before PGS
  records its input): percentiles, SD, and the frequency ω = π / q99(|x|) that makes PGS's
  fundamental mode span half a period over 99% of the scalars (the "scaled" alternative);
- PAN's amplitudes α_ic per layer (percentiles over atoms × channels) and the log-coordination
  ℓ_i it is driven by, for the default (r_max) and a first-shell coordination cutoff;
- PAN's amplitude for a dimer and for an atom with a single far neighbour (the cases where the
  default initialisation is furthest from the base model).

Writes ``experiments/results/campaign/phase0/phase0.json`` and one histogram PNG per cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import sys
from typing import ClassVar

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
OUT = ROOT / "experiments" / "results" / "campaign" / "phase0"
QS = (1, 5, 25, 50, 75, 95, 99)


def _register_probe():
    import flax.linen as nn

    from scalarjax.scalar import ScalarTransform, register_transform

    class ProbeModule(nn.Module):
        @nn.compact
        def __call__(self, x, ctx, layer):
            self.sow("intermediates", "readout_scalars", x)
            return x

    @register_transform
    @dataclasses.dataclass(frozen=True)
    class Probe(ScalarTransform):
        kind: ClassVar[str] = "phase0_probe"

        def readout(self, layer):
            return functools.partial(ProbeModule)

    return Probe


def percentiles(x: np.ndarray) -> dict:
    return {f"p{q}": float(v) for q, v in zip(QS, np.percentile(x, QS))} | {"mean": float(np.mean(x)), "sd": float(np.std(x))}


def collect(pot, graphs, batch_size=4):
    """Masked intermediates over all graphs: {layer: readout scalars [n, C]}, {layer: amplitudes [n, C]}."""
    import jax
    import jax.numpy as jnp
    import jraph

    from scalarjax.graph.batch import batches
    from scalarjax.potential import make_energy_fn

    captured = []

    def apply(params, *inputs):
        out, state = pot.model.apply(
            params, *inputs, capture_intermediates=lambda m, name: type(m).__name__ == "PANAmplitude", mutable=["intermediates"]
        )
        captured.append(state["intermediates"])
        return out

    energy = jax.jit(
        lambda p, b: (
            make_energy_fn(apply, pot.config.r_max, pot.dtype)(
                p, b, b.nodes["positions"].astype(pot.dtype), jnp.zeros((b.n_node.shape[0], 3, 3), pot.dtype)
            ),
            captured[-1],
        )
    )
    scalars, amps = {}, {}
    for b in batches(graphs, batch_size):
        _, inter = energy(pot.params, b)
        mask = np.asarray(jraph.get_node_padding_mask(b))
        flat = _flatten(jax.device_get(inter))
        for path, v in flat.items():
            arr = np.asarray(v[0] if isinstance(v, tuple) else v)
            if "readout_scalars" in path:
                scalars.setdefault(path_layer(path), []).append(arr[mask])
            elif "__call__" in path and any("pan" in p for p in path):
                amps.setdefault(path_layer(path), []).append(arr[mask])
    return {k: np.concatenate(v) for k, v in scalars.items()}, {k: np.concatenate(v) for k, v in amps.items()}


def path_layer(path) -> str:
    for p in path:
        if p.startswith(("phase0_probe", "pan")) and p[-1].isdigit():
            return "layer " + p.rsplit("_", 1)[-1]
    return "/".join(path)


def _flatten(tree, prefix=()):
    out = {}
    if isinstance(tree, dict) or hasattr(tree, "items"):
        for k, v in tree.items():
            out.update(_flatten(v, prefix + (str(k),)))
    else:
        out[prefix] = tree
    return out


def small_systems(pot, r_dimer=2.3, r_far=4.8):
    """PAN amplitudes (layer 0) for a dimer at r_dimer and an atom whose only neighbour sits at r_far."""
    from ase import Atoms

    from scalarjax.data.configuration import Configuration

    z = pot.config.atomic_numbers[0]
    out = {}
    for name, r in (("dimer", r_dimer), ("far_neighbour", r_far)):
        atoms = Atoms(numbers=[z, z], positions=[[0, 0, 0], [r, 0, 0]])
        g = pot.graph(Configuration.from_atoms(atoms))
        _, amps = collect(pot, [g], 1)
        first = sorted(amps)[0] if amps else None
        out[name] = {"r_A": r, **(percentiles(amps[first]) if first else {})}
    return out


def analyse_cell(plan, dataset, size, max_structures, seed=0):
    import campaign

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential
    from scalarjax.training.config import load_run_config
    from scalarjax.training.trainer import model_with_statistics, read_split

    spec = campaign.RunSpec("phase0", dataset, size, "pan+pgs", seed, 1)
    cfg = load_run_config(*campaign.overrides(plan, spec))
    train, _, _ = read_split(cfg)
    rng = np.random.default_rng(0)
    train = [train[i] for i in sorted(rng.permutation(len(train))[:max_structures])]
    model, graphs, stats = model_with_statistics(cfg, train)
    result = {"dataset": dataset, "size": size, "n_structures": len(train), "avg_num_neighbors": stats["avg_num_neighbors"], "variants": {}}
    for name, transforms in (
        ("pan+pgs (default)", [{"kind": "pan"}, {"kind": "phase0_probe"}, {"kind": "pgs"}]),
        ("pan first shell 3.0 Å", [{"kind": "pan", "coordination_r_max": 3.0}, {"kind": "phase0_probe"}]),
    ):
        pot = Potential(load_model_config(model, scalar_transforms=transforms), seed=seed)
        scalars, amps = collect(pot, graphs)
        entry = {
            "readout_scalars": {
                k: percentiles(v) | {"omega_scaled": float(np.pi / np.percentile(np.abs(v), 99))} for k, v in scalars.items()
            },
            "pan_amplitude": {k: percentiles(v) for k, v in amps.items()},
            "small_systems": small_systems(pot),
        }
        result["variants"][name] = entry
        result.setdefault("_hist", {})[name] = (scalars, amps)
    return result


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = result.pop("_hist")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, (scalars, amps) in hist.items():
        for k, v in sorted(scalars.items()):
            if "default" in name:
                axes[0].hist(v.ravel(), bins=120, histtype="step", density=True, label=k)
        for k, v in sorted(amps.items()):
            axes[1].hist(v.ravel(), bins=120, histtype="step", density=True, label=f"{name}, {k}")
    axes[0].set_xlabel("readout scalars seen by PGS (init)")
    axes[1].set_xlabel("PAN amplitude α (init; 1 = base model)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"{result['dataset']} / {result['size']}: {result['n_structures']} training structures, seed 0")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="si/small_mace,aspirin250/small_mace")
    ap.add_argument("--max-structures", type=int, default=200)
    args = ap.parse_args(argv)
    os.environ.setdefault("SCALARJAX_DATA", str(ROOT.parent / "shared" / "data"))
    import campaign

    _register_probe()
    plan = campaign.load_plan()
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for cell in args.cells.split(","):
        dataset, size = cell.split("/")
        r = analyse_cell(plan, dataset, size, args.max_structures)
        plot(r, OUT / f"{dataset}_{size}.png")
        results.append(r)
    report = {"command": " ".join(["python"] + sys.argv), "cells": results}
    (OUT / "phase0.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

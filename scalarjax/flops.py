"""Inference cost of a model and of its scalar-pathway variants, from XLA's cost analysis.

For one structure, the jitted E+F function (E+F+S when periodic) of ``base`` (the config without
transforms), ``pan``, ``pgs`` and ``pan+pgs`` is lowered and compiled on the current backend and
XLA's ``cost_analysis()["flops"]`` read off (the count of the optimised HLO, forward and backward
pass; transcendentals such as exp/sin are counted apart by XLA and reported as such). Parameters
are counted from the initialised pytree.

    scalarjax flops CONFIG [--structure PATH] [--json] [--set KEY=VALUE ...]

A transform of a kind given in the config's ``scalar_transforms`` keeps its settings there; a kind
not given uses its defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

VARIANTS = {"base": (), "pan": ("pan",), "pgs": ("pgs",), "pan+pgs": ("pan", "pgs")}


def default_structure(atomic_numbers):
    """A ~64-atom bulk cell of the model's first element (diamond Si if the model names none)."""
    from ase.build import bulk
    from ase.data import chemical_symbols, reference_states

    z = atomic_numbers[0] if atomic_numbers else 14
    symbol = chemical_symbols[z]
    state = reference_states[z] or {}
    atoms = bulk(symbol, cubic=True) if state.get("symmetry") in ("fcc", "bcc", "diamond", "sc") else bulk(symbol)
    reps = max(1, int(np.ceil((64 / len(atoms)) ** (1 / 3))))
    atoms = atoms.repeat(reps)
    atoms.rattle(0.05, seed=0)
    return atoms


def variant_configs(config):
    """``{name: ModelConfig}`` for the four variants of ``config``."""
    from scalarjax.config import load_model_config
    from scalarjax.scalar import transform_from_dict

    given = {t.kind: t for t in config.scalar_transforms}
    out = {}
    for name, kinds in VARIANTS.items():
        transforms = tuple(given.get(k) or transform_from_dict({"kind": k}, f"variant {name}") for k in kinds)
        out[name] = load_model_config(config, scalar_transforms=transforms)
    return out


def cost(config, atoms, seed: int = 0) -> dict:
    """XLA cost of the jitted E+F(+S) of ``config`` on ``atoms``: flops, transcendentals, params."""

    from scalarjax.data.configuration import Configuration
    from scalarjax.graph.batch import batch_graphs, pad_size_for
    from scalarjax.potential import Potential

    pot = Potential(config, seed=seed)
    graph = pot.graph(Configuration.from_atoms(atoms))
    batch = batch_graphs([graph], pad_size_for([graph]))
    fn = pot.function(compute_stress=bool(any(atoms.pbc)))
    analysis = fn.lower(pot.params, batch).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    n = len(atoms)
    flops = float(analysis.get("flops", 0.0))
    return {
        "flops": flops,
        "flops_per_atom": flops / n,
        "transcendentals": float(analysis.get("transcendentals", 0.0)),
        "params": pot.num_params(),
        "n_atoms": n,
        "n_edges": int(graph.n_edge[0]),
        "padded_edges": int(batch.senders.shape[0]),
    }


def flops_report(config, atoms=None, structure_name: Optional[str] = None) -> dict:
    """:func:`cost` of the four :data:`VARIANTS` of ``config`` on ``atoms`` (default: :func:`default_structure`),
    each with its flops and parameter overhead relative to ``base`` (a fraction). Elements of ``atoms``
    missing from the config are added; ``ValueError`` if its ``atomic_energies`` then do not cover them."""
    from scalarjax.config import load_model_config

    if atoms is None:
        atoms = default_structure(config.atomic_numbers)
        structure_name = f"default bulk {atoms.get_chemical_formula()}"
    zs = tuple(sorted(set(config.atomic_numbers) | set(int(z) for z in atoms.numbers)))
    if zs != config.atomic_numbers:
        if config.atomic_energies:
            raise ValueError("the structure has elements the config's atomic_energies do not cover")
        config = load_model_config(config, atomic_numbers=zs)
    variants = {name: cost(cfg, atoms) for name, cfg in variant_configs(config).items()}
    base = variants["base"]
    for v in variants.values():
        v["flops_overhead_vs_base"] = v["flops"] / base["flops"] - 1.0
        v["params_overhead_vs_base"] = v["params"] / base["params"] - 1.0
    return {
        "structure": structure_name,
        "n_atoms": len(atoms),
        "periodic": bool(any(atoms.pbc)),
        "backbone": config.backbone.kind,
        "dtype": config.dtype,
        "transforms": {
            name: [dataclasses.asdict(t) | {"kind": t.kind} for t in cfg.scalar_transforms] for name, cfg in variant_configs(config).items()
        },
        "variants": variants,
    }


def format_report(report: dict) -> str:
    """A :func:`flops_report` as a text table: MFLOP, kFLOP/atom and params per variant, with % vs ``base``."""
    lines = [
        f"{report['backbone']} ({report['dtype']}), {report['structure']}: {report['n_atoms']} atoms, "
        f"E+F{'+S' if report['periodic'] else ''}",
        f"{'variant':10s} {'MFLOP':>12s} {'kFLOP/atom':>12s} {'vs base':>9s} {'params':>10s} {'vs base':>9s}",
    ]
    for name, v in report["variants"].items():
        lines.append(
            f"{name:10s} {v['flops'] / 1e6:12.2f} {v['flops_per_atom'] / 1e3:12.1f} {100 * v['flops_overhead_vs_base']:+8.2f}% "
            f"{v['params']:10d} {100 * v['params_overhead_vs_base']:+8.2f}%"
        )
    return "\n".join(lines)

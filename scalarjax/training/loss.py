"""Weighted loss over a padded batch, with masks for missing labels.

    L = w_E · ⟨c_g w_Eg (ΔE_g / N_g)²⟩_g + w_F · ⟨c_g w_Fg |ΔF_i|²/3⟩_i + w_S · ⟨c_g w_Sg |Δσ_g|²/9⟩_g

``c_g`` is the configuration weight (× per-config_type weight), ``w_*g`` its per-property weights;
averages run over the labelled entries only (a configuration without stress adds nothing to the
stress term, and a term with no labelled entry in the batch is exactly 0 rather than NaN). Units:
eV²/atom², eV²/Å², (eV/Å³)². ``huber_delta`` > 0 replaces each square by a Huber loss.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import jraph


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """``w_E``, ``w_F``, ``w_S`` of the module docstring's loss and the Huber ``δ`` (0: plain squares;
    in the units of each error: eV/atom, eV/Å, eV/Å³)."""

    energy: float = 1.0
    forces: float = 100.0
    stress: float = 1.0
    huber_delta: float = 0.0


def _sq(x, delta):
    if delta <= 0:
        return x**2
    a = jnp.abs(x)
    return jnp.where(a <= delta, 0.5 * x**2, delta * (a - 0.5 * delta)) * 2.0


def _mean(values, weights):
    total = jnp.sum(weights)
    return jnp.sum(values * weights) / jnp.where(total > 0, total, 1.0), total


def voigt(s):
    """``[G, 3, 3] → [G, 6]`` in Voigt order (xx, yy, zz, yz, xz, xy); traceable (``full_to_voigt`` is numpy)."""
    return jnp.stack([s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 1, 2], s[:, 0, 2], s[:, 0, 1]], axis=-1)


def loss_terms(pred: dict, graph: jraph.GraphsTuple, w: LossWeights) -> dict:
    """The loss of the module docstring on one padded batch. ``pred``: ``energy [G]`` eV, ``forces [N, 3]``
    eV/Å and optionally ``stress [G, 3, 3]`` eV/Å³ (ASE's sign, as the labels). Returns scalars:
    ``energy``, ``forces`` (and ``stress``) the weighted means L_E, L_F (L_S) of squares (or Huber),
    ``n_*`` the weight sums of their labelled entries, and ``total = w_E L_E + w_F L_F (+ w_S L_S)``."""
    g = graph.globals
    dtype = pred["energy"].dtype
    graph_mask = jraph.get_graph_padding_mask(graph).astype(dtype)
    cw = g["weight"].astype(dtype) * graph_mask
    n_atoms = jnp.maximum(g["n_atoms"].astype(dtype), 1.0)

    e_err = (pred["energy"] - g["energy"].astype(dtype)) / n_atoms
    le, ne = _mean(_sq(e_err, w.huber_delta), cw * g["energy_weight"] * g["has_energy"])

    node_graph = jnp.repeat(jnp.arange(graph.n_node.shape[0]), graph.n_node, total_repeat_length=graph.nodes["species"].shape[0])
    node_w = (cw * g["forces_weight"] * g["has_forces"])[node_graph]
    f_err = pred["forces"] - graph.nodes["forces"].astype(dtype)
    lf, nf = _mean(jnp.mean(_sq(f_err, w.huber_delta), axis=-1), node_w)

    terms = {"energy": le, "forces": lf, "n_energy": ne, "n_forces": nf}
    total = w.energy * le + w.forces * lf
    if "stress" in pred:
        s_err = voigt(pred["stress"]) - g["stress"].astype(dtype)
        s_sq = (jnp.sum(_sq(s_err[:, :3], w.huber_delta), -1) + 2 * jnp.sum(_sq(s_err[:, 3:], w.huber_delta), -1)) / 9.0
        ls, ns = _mean(s_sq, cw * g["stress_weight"] * g["has_stress"])
        terms.update(stress=ls, n_stress=ns)
        total = total + w.stress * ls
    terms["total"] = total
    return terms

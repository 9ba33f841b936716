"""The scalar pathway's three hook points, shared by every backbone.

A backbone reaches its invariant (ℓ=0) channels in exactly three places, and calls exactly one
function here for each, so that scalar-pathway transforms (PAN, PGS, ...) plug in without editing
any backbone:

1. :func:`edge_scalars` — the edge scalar features (radial basis × envelope, ``[E, F]``) that feed
   the radial MLP producing the tensor-product weights;
2. :func:`aggregate` — the neighbour aggregation of the tensor-product messages; transforms may
   re-weight its ℓ=0 paths (per neighbour before the sum, per atom after it); ℓ>0 paths are
   always aggregated as ``(1/avg_num_neighbors) Σ_j``;
3. :func:`readout_scalars` — the node scalars ``[N, C]`` that enter each readout.

Each transform is a Flax module factory; the backbone passes the transforms of its config.
With no transform every hook is the plain MACE / NequIP operation.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np


class HookContext(NamedTuple):
    """What a transform may look at (all invariant). Shapes: E edges, N nodes, S species."""

    lengths: jnp.ndarray  # [E] Å (padded edges: > r_max)
    senders: jnp.ndarray  # [E]
    receivers: jnp.ndarray  # [E]
    edge_mask: jnp.ndarray  # [E] 1.0 for real edges
    node_mask: jnp.ndarray  # [N] 1.0 for real nodes
    onehot: jnp.ndarray  # [N, S] species one-hot
    r_max: float
    avg_num_neighbors: float


def edge_scalars(transforms: Sequence, x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
    for t in transforms:
        x = t.edge(x, ctx, layer) if hasattr(t, "edge") else x
    return x


def aggregate(transforms: Sequence, plan, h_edge: dict, sh: jnp.ndarray, weights: jnp.ndarray, ctx: HookContext, layer: int) -> dict:
    """The neighbour aggregation of the channelwise-TP messages, ``{ir3: [N, P, 2l3+1, C]}``.

    Default: ``(1/avg_num_neighbors) Σ_{j∈N(i)} m_ij`` for every irrep. A message is linear in its
    radial weights, so the ℓ=0 part is re-weighted in two places a transform may act on:
    ``t.scalar_edge_weights(w0 [E, P0, C], ctx, layer)`` (per-neighbour weights on the ℓ=0 paths,
    before the sum) and ``t.scalar_aggregate(agg0 [N, P0, 1, C], ctx, layer)`` (per-atom amplitude
    after the sum, replacing 1/avg_num_neighbors). ℓ>0 paths are never touched.
    """
    from scalarjax.nn.tensor_product import channelwise_tp_aggregate

    scalar_paths = np.array([p.ir3 == "0e" for p in plan.paths])
    edge_hooks = [t for t in transforms if hasattr(t, "scalar_edge_weights")]
    if edge_hooks and scalar_paths.any():
        n0 = int(scalar_paths.sum())  # ℓ=0 paths come first in plan order
        w0, rest = weights[:, :n0], weights[:, n0:]
        for t in edge_hooks:
            w0 = t.scalar_edge_weights(w0, ctx, layer)
        weights = jnp.concatenate([w0, rest], axis=1)
    agg = channelwise_tp_aggregate(plan, h_edge, sh, weights, ctx.receivers, ctx.node_mask.shape[0])
    norm = 1.0 / ctx.avg_num_neighbors
    agg = {ir: a * norm if ir != "0e" else a for ir, a in agg.items()}
    if "0e" in agg:
        node_hooks = [t for t in transforms if hasattr(t, "scalar_aggregate")]
        a0 = agg["0e"]
        agg["0e"] = a0 * norm if not node_hooks else a0
        for t in node_hooks:
            agg["0e"] = t.scalar_aggregate(agg["0e"], ctx, layer)
    return agg


def readout_scalars(transforms: Sequence, x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
    for t in transforms:
        x = t.readout(x, ctx, layer) if hasattr(t, "readout") else x
    return x

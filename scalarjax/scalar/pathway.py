"""The scalar pathway's three hook points, shared by every backbone.

A backbone reaches its invariant (ℓ=0) channels in exactly three places, and calls exactly one
function here for each, so that scalar-pathway transforms (PAN, PGS, ...) plug in without editing
any backbone:

1. :func:`edge_scalars` — the edge scalar features (radial basis × envelope, ``[E, F]``) that feed
   the radial MLP producing the tensor-product weights;
2. :func:`aggregate` — the neighbour aggregation of per-edge messages
   ``{ir: [E, P·(2l+1), C]}`` (rows: path-major); the ``"0e"`` entry is the ℓ=0 part that transforms may re-weight,
   the others are always aggregated as ``(1/avg_num_neighbors) Σ_j``;
3. :func:`readout_scalars` — the node scalars ``[N, C]`` that enter each readout.

Each transform is a Flax module factory; the backbone passes the transforms of its config.
With no transform every hook is the plain MACE / NequIP operation.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


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


def aggregate(transforms: Sequence, msgs: dict, ctx: HookContext, layer: int) -> dict:
    """``{ir: [E, R, C]}`` → ``{ir: [N, R, C]}``, default ``(1/avg_num_neighbors) Σ_{j∈N(i)}``.

    A transform's ``aggregate_scalars(agg0, msgs0, ctx, layer)`` sees the default ℓ=0 aggregate
    ``[N, P, C]`` and the per-edge ℓ=0 messages ``[E, P, C]`` and returns the new ℓ=0 aggregate.
    """
    num_nodes = ctx.node_mask.shape[0]
    norm = 1.0 / ctx.avg_num_neighbors
    agg = {ir: jax.ops.segment_sum(m, ctx.receivers, num_segments=num_nodes) * norm for ir, m in msgs.items()}
    for t in transforms:
        if hasattr(t, "aggregate_scalars") and "0e" in agg:
            agg["0e"] = t.aggregate_scalars(agg["0e"], msgs["0e"], ctx, layer)
    return agg


def readout_scalars(transforms: Sequence, x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
    for t in transforms:
        x = t.readout(x, ctx, layer) if hasattr(t, "readout") else x
    return x

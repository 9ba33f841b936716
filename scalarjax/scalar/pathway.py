"""The scalar pathway's hook points, shared by every backbone, and the transform protocol.

A backbone reaches its invariant (ℓ=0) channels in a few places and calls exactly one function
here for each, so that scalar-pathway transforms (PAN, PGS, ...) plug in without editing any
backbone and without any backbone-specific code in a transform:

1. :func:`edge_scalars` — the edge scalar features ``[E, F]`` (radial basis × envelope) before the
   radial MLP. They drive the weights of *every* path, so a transform acting here changes ℓ>0
   messages too; the shipped transforms do not use it.
2. :func:`aggregate` — the neighbour aggregation of the tensor-product messages. Transforms act
   on its ℓ=0 paths only, in two places: ``scalar_edge_weights`` (the radial weights of the ℓ=0
   paths, per neighbour, before the sum) and ``scalar_aggregate`` (a positive per-atom,
   per-channel amplitude that multiplies the constant ``1/avg_num_neighbors``). ℓ>0 paths are
   always ``(1/avg_num_neighbors) Σ_j`` with untouched weights.
3. :func:`node_scalars` — the ℓ=0 node features ``[N, C]`` after each layer's update, replaced
   in place: a transform here reaches every later layer (through the tensor products) as well as
   the readouts.
4. :func:`readout_scalars` — the node scalars ``[N, C]`` entering each readout (the energy heads
   only).

**Protocol.** A transform is a frozen dataclass deriving from :class:`ScalarTransform` and
registered with :func:`register_transform` under its ``kind``; it overrides any of the methods
``edge_scalars``, ``scalar_edge_weights``, ``scalar_aggregate``, ``node_scalars`` and ``readout``, each taking the
layer index and returning a Flax module factory ``f(name=...)`` (typically
``functools.partial(MyModule, self)``) or ``None`` for "not at this layer". The hook builds the
module inside the calling backbone module, so every layer gets its own parameters, named
``{kind}{index}_{hook}_{layer}``. Modules are called as

    edge_scalars:         (x [E, F], ctx, layer)             → [E, F]
    node_scalars:         (x [N, C], ctx, layer)             → [N, C]
    scalar_edge_weights:  (w0 [E, P0, C], ctx, layer)        → [E, P0, C]
    scalar_aggregate:     (agg0 [N, P0, C], ctx, layer)      → amplitude [N, C] (> 0; 1 = no change)
    readout:              (x [N, C], ctx, layer)             → [N, C]

Transforms compose in config order; amplitudes multiply. With no transform every hook is the
plain MACE / NequIP operation.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, NamedTuple, Optional, Sequence

import flax.linen as nn
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
    radial: jnp.ndarray  # [E, num_bessel] the backbone's edge scalar features B_n(r) · u_p(r/r_max) (0 on padded edges)
    envelope: jnp.ndarray  # [E] the backbone's cutoff envelope u_p(r/r_max) (0 on padded edges)
    r_max: float
    avg_num_neighbors: float
    num_bessel: int  # the backbone's radial basis size (modes 1 … num_bessel)
    envelope_p: int  # the backbone's polynomial-cutoff exponent


Factory = Callable[..., nn.Module]  # called as factory(name=...)


@dataclasses.dataclass(frozen=True)
class ScalarTransform:
    """Base of every transform's configuration (see the module docstring for the protocol).

    ``identity_init``: initialise so that the model's outputs equal the base model's exactly.
    """

    kind: ClassVar[str] = ""
    identity_init: bool = False

    def edge_scalars(self, layer: int) -> Optional[Factory]:
        return None

    def scalar_edge_weights(self, layer: int) -> Optional[Factory]:
        return None

    def scalar_aggregate(self, layer: int) -> Optional[Factory]:
        return None

    def node_scalars(self, layer: int) -> Optional[Factory]:
        return None

    def readout(self, layer: int) -> Optional[Factory]:
        return None


TRANSFORMS: dict[str, type] = {}


def register_transform(cls: type) -> type:
    """Class decorator: make ``cls`` available as ``{kind: cls.kind, ...}`` in ``model.scalar_transforms``."""
    if not (isinstance(cls, type) and issubclass(cls, ScalarTransform) and cls.kind):
        raise TypeError("a scalar transform derives from ScalarTransform and sets a non-empty `kind`")
    TRANSFORMS[cls.kind] = cls
    return cls


def transform_from_dict(data, path: str) -> ScalarTransform:
    """``{kind: pan, ...}`` → the registered dataclass (unknown kinds/keys and wrong types name ``path``)."""
    from scalarjax.configtools import from_dict, split_kind

    if isinstance(data, ScalarTransform):
        return data
    cls, settings = split_kind(data, TRANSFORMS, path, "scalar transform")
    return from_dict(cls, settings, path)


def transform_to_dict(t: ScalarTransform) -> dict:
    """A transform → ``{kind: ..., **fields}`` (YAML/JSON-able; the inverse of :func:`transform_from_dict`)."""
    return {"kind": t.kind, **dataclasses.asdict(t)}


def _modules(transforms: Sequence[ScalarTransform], hook: str, layer: int):
    for i, t in enumerate(transforms):
        factory = getattr(t, hook)(layer)
        if factory is not None:
            yield factory(name=f"{t.kind}{i}_{hook}_{layer}")


def edge_scalars(transforms: Sequence[ScalarTransform], x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
    """Hook 1: edge scalar features ``x [E, F]`` (radial basis × envelope) before the radial MLP → ``[E, F]``,
    through each transform's ``edge_scalars`` module in order (none: ``x`` unchanged)."""
    for m in _modules(transforms, "edge_scalars", layer):
        x = m(x, ctx, layer)
    return x


def aggregate(
    transforms: Sequence[ScalarTransform], plan, h: dict, sh: jnp.ndarray, weights: jnp.ndarray, ctx: HookContext, layer: int
) -> dict:
    """The neighbour aggregation of the channelwise-TP messages, ``{ir3: [N, P, 2l3+1, C]}``.

    Default: ``(1/avg_num_neighbors) Σ_{j∈N(i)} m_ij`` for every irrep. A message is linear in its
    radial weights, so the ℓ=0 part is re-weighted per neighbour through the weights of the ℓ=0
    paths (which come first in plan order) and per atom by multiplying the normalisation.

    ``h``: node features ``{ir: [N, 2l+1, C]}``, read at ``ctx.senders`` inside the product (so that
    large graphs can build their messages a chunk of edges at a time); ``weights`` ``[E, P, C]``.
    """
    from scalarjax.nn.tensor_product import channelwise_tp_aggregate

    n0 = int(np.sum([p.ir3 == "0e" for p in plan.paths]))
    edge_modules = list(_modules(transforms, "scalar_edge_weights", layer)) if n0 else []
    if edge_modules:
        w0, rest = weights[:, :n0], weights[:, n0:]
        for m in edge_modules:
            w0 = m(w0, ctx, layer) * ctx.edge_mask[:, None, None]
        weights = jnp.concatenate([w0, rest], axis=1)
    agg = channelwise_tp_aggregate(plan, h, sh, weights, ctx.senders, ctx.receivers, ctx.node_mask.shape[0])
    norm = 1.0 / ctx.avg_num_neighbors
    agg = {ir: a * norm for ir, a in agg.items()}
    if "0e" in agg:
        a0 = agg["0e"]  # [N, P0, 1, C]
        for m in _modules(transforms, "scalar_aggregate", layer):
            a0 = a0 * m(agg["0e"][:, :, 0, :], ctx, layer)[:, None, None, :]
        agg["0e"] = a0
    return agg


def node_scalars(transforms: Sequence[ScalarTransform], x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
    """Hook 3: the ℓ=0 node features ``x [N, C]`` after layer ``layer``'s update → ``[N, C]``, through each
    transform's ``node_scalars`` module in order (none: ``x`` unchanged)."""
    for m in _modules(transforms, "node_scalars", layer):
        x = m(x, ctx, layer)
    return x


def readout_scalars(transforms: Sequence[ScalarTransform], x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
    """Hook 4: the node scalars ``x [N, C]`` entering layer ``layer``'s energy readout → ``[N, C]``, through
    each transform's ``readout`` module in order (none: ``x`` unchanged)."""
    for m in _modules(transforms, "readout", layer):
        x = m(x, ctx, layer)
    return x

"""Pieces every backbone shares: edge geometry, species embedding, the equivariant convolution, readouts.

A backbone is a :class:`Backbone` module: :class:`~scalarjax.graph.inputs.GraphInputs` → per-atom
energies ``[N]`` in units of the model's ``scale`` (before E0, scale and shift, which
:mod:`scalarjax.model` adds once for all backbones).
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from scalarjax.graph.inputs import GraphInputs
from scalarjax.nn.features import Features, natural_irreps
from scalarjax.nn.linear import MLP, IrrepsLinear
from scalarjax.nn.radial import bessel_basis, polynomial_cutoff
from scalarjax.nn.tensor_product import channelwise_tp_plan
from scalarjax.scalar import pathway
from scalarjax.scalar.pathway import HookContext


def edge_geometry(vectors: jnp.ndarray, max_ell: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``[E, 3]`` (non-zero) vectors → lengths ``[E]`` Å and spherical harmonics ``[E, (max_ell+1)²]``
    (component normalisation, e3nn's real basis and ordering)."""
    lengths = jnp.sqrt(jnp.sum(vectors**2, axis=-1))
    sh = e3nn.spherical_harmonics(
        e3nn.Irreps("+".join(natural_irreps(max_ell))), vectors / lengths[:, None], normalize=False, normalization="component"
    )
    assert sh.irreps == e3nn.Irreps("+".join(natural_irreps(max_ell)))
    return lengths, sh.array


def edge_inputs(cfg, sh_max_ell: int, graph: GraphInputs, num_species: int) -> tuple[jnp.ndarray, HookContext]:
    """What every backbone derives from the edges, once: spherical harmonics ``[E, (sh_max_ell+1)²]``
    and the scalar-pathway :class:`HookContext`, whose ``radial`` (Bessel × envelope, ``[E, num_bessel]``,
    the backbone's edge scalar features) and ``envelope`` (``[E]``) are exactly zero on padded edges."""
    lengths, sh = edge_geometry(graph.vectors, sh_max_ell)
    envelope = polynomial_cutoff(lengths, cfg.r_max, cfg.num_polynomial_cutoff) * graph.edge_mask
    radial = bessel_basis(lengths, cfg.num_bessel, cfg.r_max) * envelope[:, None]
    ctx = HookContext(
        lengths=lengths,
        senders=graph.senders,
        receivers=graph.receivers,
        edge_mask=graph.edge_mask,
        node_mask=graph.node_mask,
        onehot=jax.nn.one_hot(graph.species, num_species, dtype=jnp.dtype(cfg.dtype)),
        radial=radial,
        envelope=envelope,
        r_max=cfg.r_max,
        avg_num_neighbors=cfg.avg_num_neighbors,
        num_bessel=cfg.num_bessel,
        envelope_p=cfg.num_polynomial_cutoff,
    )
    return sh, ctx


class Backbone(nn.Module):
    """What every backbone module holds: the model config (:class:`~scalarjax.config.ModelConfig`,
    its ``backbone`` field typed per backbone), the number of species and the scalar transforms at
    its hook points. ``__call__(graph: GraphInputs)`` returns per-atom energies ``[N]`` in units of
    the model's ``scale`` (before E0, scale and shift, which :mod:`scalarjax.model` adds)."""

    config: object  # scalarjax.config.ModelConfig (not imported: the config module stays a leaf)
    num_species: int
    transforms: tuple = ()


class SpeciesEmbedding(nn.Module):
    """One-hot species → ``channels`` scalars (MACE's ``LinearNodeEmbeddingBlock``): ``[N] → [N, 1, C]``."""

    num_species: int
    channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, species: jnp.ndarray) -> jnp.ndarray:
        w = self.param("w", lambda k, s: jax.random.normal(k, s, self.dtype), (self.num_species, self.channels))
        return (w * self.num_species**-0.5)[species][:, None, :]


class Convolution(nn.Module):
    """Equivariant convolution shared by MACE's interaction and NequIP's layer.

        h̃_i   = Linear_up(h_i)                                         (per irrep, C channels)
        w_ij  = RadialMLP(edge_scalars(B(r_ij) · u(r_ij)))              [E, paths, C]
        m_i   = aggregate_j  w_ij ⊙ (h̃_j ⊗ Y(r̂_ij))                     (channelwise TP; Σ_j / avg_num_neighbors)
        A_i   = Linear_ir3(m_i)                                        (mixes paths and channels per output irrep)

    Args: ``h`` ``{ir: [N, 2l+1, C_in]}``, ``sh`` ``[E, (sh_max_ell+1)²]``, ``ctx`` (its ``radial``
    ``[E, F]`` are the edge scalar features B(r) · u(r)).
    Returns ``{ir3: [N, 2l3+1, channels_out[ir3]]}`` for the irreps of ``channels_out`` that the
    product reaches. ``edge_scalars`` and ``aggregate`` are the scalar-pathway hooks, called here
    and nowhere else.
    """

    channels: int
    sh_max_ell: int
    channels_out: dict
    radial_mlp: tuple[int, ...]
    layer: int
    transforms: tuple = ()
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h: Features, sh, ctx: HookContext) -> Features:
        C = self.channels
        h = IrrepsLinear(irreps_out={ir: C for ir in h}, dtype=self.dtype, name="linear_up")(h)
        plan = channelwise_tp_plan(tuple(sorted(h)), self.sh_max_ell, tuple(self.channels_out))

        x = pathway.edge_scalars(self.transforms, ctx.radial, ctx, self.layer)
        w = MLP(features=tuple(self.radial_mlp) + (plan.num_paths * C,), dtype=self.dtype, name="radial_mlp")(x)
        w = w.reshape(-1, plan.num_paths, C) * ctx.edge_mask[:, None, None]

        agg = pathway.aggregate(self.transforms, plan, h, sh, w, ctx, self.layer)

        A = {}
        for ir3, block in agg.items():  # [N, P, 2l+1, C]
            P, c_out = block.shape[1], self.channels_out[ir3]
            W = self.param(f"linear_{ir3}", lambda k, s: jax.random.normal(k, s, self.dtype), (P, C, c_out))
            A[ir3] = jnp.einsum("npmc,pcd->nmd", block, W * (P * C) ** -0.5)
        return A


def layer_convolution(layer: nn.Module, sh_max_ell: int, channels_out: dict) -> Convolution:
    """The :class:`Convolution` of a backbone layer module, named ``conv`` inside it. ``layer`` is the
    calling module (MACE's interaction, NequIP's layer): it supplies ``channels``, ``radial_mlp``,
    ``layer`` (its index), ``transforms`` and ``dtype``, so every backbone builds it the same way."""
    shared = {key: getattr(layer, key) for key in ("channels", "radial_mlp", "layer", "transforms", "dtype")}
    return Convolution(sh_max_ell=sh_max_ell, channels_out=channels_out, name="conv", **shared)


class LinearReadout(nn.Module):
    """``[N, C]`` scalars → ``[N]`` energies: ``x @ w / sqrt(C)``."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return MLP(features=(1,), dtype=self.dtype)(x)[:, 0]


class NonLinearReadout(nn.Module):
    """``[N, C]`` → ``[N]``: ``W2 σ(W1 x)`` with a hidden width of ``hidden`` (MACE's MLP_irreps)."""

    hidden: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return MLP(features=(self.hidden, 1), dtype=self.dtype)(x)[:, 0]

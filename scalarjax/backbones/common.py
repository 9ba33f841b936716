"""Pieces every backbone shares: edge geometry, species embedding, readouts.

A backbone is a Flax module ``(species [N], vectors [E, 3], senders [E], receivers [E],
edge_mask [E], node_mask [N]) → per-atom energies [N]`` in units of the model's ``scale``
(before E0, scale and shift, which :mod:`scalarjax.model` adds once for all backbones).
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.features import natural_irreps
from scalarjax.nn.linear import MLP
from scalarjax.nn.radial import radial_embedding
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


def edge_features(lengths: jnp.ndarray, edge_mask: jnp.ndarray, num_bessel: int, r_max: float, p: int) -> jnp.ndarray:
    """Bessel × envelope ``[E, num_bessel]``, exactly zero on padded edges."""
    return radial_embedding(lengths, num_bessel, r_max, p) * edge_mask[:, None]


def hook_context(species, lengths, senders, receivers, edge_mask, node_mask, num_species, r_max, avg_num_neighbors, dtype) -> HookContext:
    return HookContext(
        lengths=lengths,
        senders=senders,
        receivers=receivers,
        edge_mask=edge_mask,
        node_mask=node_mask,
        onehot=jax.nn.one_hot(species, num_species, dtype=dtype),
        r_max=r_max,
        avg_num_neighbors=avg_num_neighbors,
    )


class SpeciesEmbedding(nn.Module):
    """One-hot species → ``channels`` scalars (MACE's ``LinearNodeEmbeddingBlock``): ``[N] → [N, 1, C]``."""

    num_species: int
    channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, species: jnp.ndarray) -> jnp.ndarray:
        w = self.param("w", lambda k, s: jax.random.normal(k, s, self.dtype), (self.num_species, self.channels))
        return (w * (1.0 / np.sqrt(self.num_species)))[species][:, None, :]


class LinearReadout(nn.Module):
    """``[N, C]`` scalars → ``[N]`` energies: ``x @ w / sqrt(C)``."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return MLP((1,), dtype=self.dtype)(x)[:, 0]


class NonLinearReadout(nn.Module):
    """``[N, C]`` → ``[N]``: ``W2 σ(W1 x)`` with a hidden width of ``hidden`` (MACE's MLP_irreps)."""

    hidden: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return MLP((self.hidden, 1), dtype=self.dtype)(x)[:, 0]

"""MACE (Batatia et al., NeurIPS 2022) on channels-last features.

Per interaction layer t (h⁰ = species embedding, scalars only):

    sc      = W_skip[s_i] · h_i                                      (t > 0, or all t with residual_first)
    h̃_i     = Linear_up(h_i)
    w_ij    = RadialMLP(edge_scalars(B(r_ij) · u(r_ij)))             [paths × C]
    A_i     = Linear( aggregate_j  w_ij ⊙ (h̃_j ⊗ Y(r̂_ij)) )          (channelwise TP, Σ_j / avg_num_neighbors;
                                                                      t = 0 unless residual_first:
                                                                      then W[s_i] · A_i, no sc)
    h_i^t   = Linear( SymmetricContraction_{s_i}(A_i; correlation) ) + sc;  h_i^t[0e] ← node_scalars(h_i^t[0e])
    E_i^t   = Readout_t(readout_scalars(h_i^t[0e]))                  (linear; MLP on the last layer)

The last layer keeps only scalars (its product outputs 0e). The per-atom output is Σ_t E_i^t.
``edge_scalars``, ``aggregate``, ``node_scalars`` and ``readout_scalars`` are the scalar-pathway hooks
(:mod:`scalarjax.scalar.pathway`), each called in exactly one place.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from scalarjax.backbones.common import (
    Convolution,
    LinearReadout,
    NonLinearReadout,
    SpeciesEmbedding,
    edge_inputs,
)
from scalarjax.config import ModelConfig
from scalarjax.nn.features import Features, irreps_to_channels, natural_irreps
from scalarjax.nn.linear import IrrepsLinear, SpeciesLinear
from scalarjax.nn.symmetric_contraction import SymmetricContraction
from scalarjax.scalar import pathway


class MACEInteraction(nn.Module):
    """Interaction block: returns the aggregated ``A_i`` (target irreps) and the skip ``sc``.

    ``residual=False`` is MACE's first block (``RealAgnosticInteractionBlock``): no skip from the
    embedding, a species-indexed linear on ``A`` instead. It makes every feature of an atom with no
    neighbours exactly zero, so an isolated atom's energy is its E0 (+ shift).
    """

    channels: int
    max_ell: int
    radial_mlp: tuple[int, ...]
    skip_irreps: dict
    num_species: int
    layer: int
    residual: bool = True
    transforms: tuple = ()
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h: Features, sh, edge_feats, ctx) -> tuple[Features, Features]:
        C = self.channels
        sc = SpeciesLinear(self.skip_irreps, self.num_species, self.dtype, name="skip")(h, ctx.onehot) if self.residual else {}
        target = {ir: C for ir in natural_irreps(self.max_ell)}
        A = Convolution(C, self.max_ell, target, self.radial_mlp, self.layer, self.transforms, self.dtype, name="conv")(
            h, sh, edge_feats, ctx
        )
        if not self.residual:  # MACE's first block: species-indexed linear on the messages instead of a skip
            A = SpeciesLinear({ir: C for ir in A}, self.num_species, self.dtype, name="species_linear")(A, ctx.onehot)
        return A, sc


class MACE(nn.Module):
    config: ModelConfig
    num_species: int
    transforms: tuple = ()

    @nn.compact
    def __call__(self, species, vectors, senders, receivers, edge_mask, node_mask) -> jnp.ndarray:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        hidden = irreps_to_channels(cfg.hidden_irreps)
        C = hidden["0e"]
        if any(c != C for c in hidden.values()):
            raise ValueError(f"MACE needs equal channels for all hidden irreps, got {cfg.hidden_irreps}")
        mlp_hidden = irreps_to_channels(cfg.mlp_irreps)["0e"]

        sh, edge_feats, ctx = edge_inputs(cfg, cfg.max_ell, species, vectors, senders, receivers, edge_mask, node_mask, self.num_species)

        h: Features = {"0e": SpeciesEmbedding(self.num_species, C, dtype, name="embedding")(species)}
        energy = jnp.zeros(species.shape[0], dtype)
        for t in range(cfg.num_interactions):
            last = t == cfg.num_interactions - 1
            out_irreps = {"0e": C} if last else hidden
            A, sc = MACEInteraction(
                C,
                cfg.max_ell,
                cfg.radial_mlp,
                out_irreps,
                self.num_species,
                t,
                t > 0 or bool(cfg.residual_first),
                self.transforms,
                dtype,
                name=f"interaction_{t}",
            )(h, sh, edge_feats, ctx)
            B = SymmetricContraction(tuple(out_irreps), cfg.correlation, self.num_species, dtype, name=f"product_{t}")(A, ctx.onehot)
            B = IrrepsLinear(out_irreps, dtype, name=f"product_linear_{t}")(B)
            h = {ir: B[ir] + sc[ir] if ir in sc else B[ir] for ir in out_irreps}
            if self.transforms:
                h["0e"] = pathway.node_scalars(self.transforms, h["0e"][:, 0, :], ctx, t)[:, None, :]
            scalars = pathway.readout_scalars(self.transforms, h["0e"][:, 0, :], ctx, t)
            if last:
                energy = energy + NonLinearReadout(mlp_hidden, dtype, name=f"readout_{t}")(scalars)
            else:
                energy = energy + LinearReadout(dtype, name=f"readout_{t}")(scalars)
        return energy

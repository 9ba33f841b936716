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
    Backbone,
    LinearReadout,
    NonLinearReadout,
    SpeciesEmbedding,
    edge_inputs,
    layer_convolution,
)
from scalarjax.graph.inputs import GraphInputs
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
    def __call__(self, h: Features, sh, ctx) -> tuple[Features, Features]:
        C, S, dtype = self.channels, self.num_species, self.dtype
        sc = SpeciesLinear(irreps_out=self.skip_irreps, num_species=S, dtype=dtype, name="skip")(h, ctx.onehot) if self.residual else {}
        A = layer_convolution(self, self.max_ell, {ir: C for ir in natural_irreps(self.max_ell)})(h, sh, ctx)
        if not self.residual:  # MACE's first block: species-indexed linear on the messages instead of a skip
            A = SpeciesLinear(irreps_out={ir: C for ir in A}, num_species=S, dtype=dtype, name="species_linear")(A, ctx.onehot)
        return A, sc


class MACE(Backbone):
    """MACE (Batatia et al. 2022): ``num_interactions`` interaction + symmetric-contraction layers
    (equations in the module docstring; settings: :class:`~scalarjax.config.MACEConfig`)."""

    @nn.compact
    def __call__(self, graph: GraphInputs) -> jnp.ndarray:
        cfg, bb, S = self.config, self.config.backbone, self.num_species
        dtype = jnp.dtype(cfg.dtype)
        hidden = irreps_to_channels(bb.hidden_irreps)
        C = hidden["0e"]
        if any(c != C for c in hidden.values()):
            raise ValueError(f"MACE needs equal channels for all hidden irreps, got {bb.hidden_irreps}")
        mlp_hidden = irreps_to_channels(bb.mlp_irreps)["0e"]

        sh, ctx = edge_inputs(cfg, bb.max_ell, graph, S)
        h: Features = {"0e": SpeciesEmbedding(num_species=S, channels=C, dtype=dtype, name="embedding")(graph.species)}
        energy = jnp.zeros(graph.species.shape[0], dtype)
        for t in range(bb.num_interactions):
            last = t == bb.num_interactions - 1
            out_irreps = {"0e": C} if last else hidden
            A, sc = MACEInteraction(
                channels=C,
                max_ell=bb.max_ell,
                radial_mlp=cfg.radial_mlp,
                skip_irreps=out_irreps,
                num_species=S,
                layer=t,
                residual=t > 0 or bool(bb.residual_first),
                transforms=self.transforms,
                dtype=dtype,
                name=f"interaction_{t}",
            )(h, sh, ctx)
            product = SymmetricContraction(
                irreps_out=tuple(out_irreps), correlation=bb.correlation, num_species=S, dtype=dtype, name=f"product_{t}"
            )
            B = IrrepsLinear(irreps_out=out_irreps, dtype=dtype, name=f"product_linear_{t}")(product(A, ctx.onehot))
            h = {ir: B[ir] + sc[ir] if ir in sc else B[ir] for ir in out_irreps}
            if self.transforms:
                h["0e"] = pathway.node_scalars(self.transforms, h["0e"][:, 0, :], ctx, t)[:, None, :]
            scalars = pathway.readout_scalars(self.transforms, h["0e"][:, 0, :], ctx, t)
            if last:
                energy = energy + NonLinearReadout(hidden=mlp_hidden, dtype=dtype, name=f"readout_{t}")(scalars)
            else:
                energy = energy + LinearReadout(dtype=dtype, name=f"readout_{t}")(scalars)
        return energy

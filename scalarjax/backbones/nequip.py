"""NequIP (Batzner et al., Nat. Commun. 2022) on the shared convolution.

Per layer t (h⁰ = species embedding, C scalars; irreps of every layer fixed up front by
:func:`layer_irreps`):

    x_i   = Conv_t(h_i)  +  W_sc[s_i] · h_i          (self-connection: species-indexed linear;
                                                     t = 0: W[s_i] · Conv_0(h_i) instead, no self-connection)
    g_i   = Gate(x_i):  0e → silu,  0o → tanh,  ℓ>0 block k → x_k · silu(gate scalar k)
    h_i^{t+1} = h_i^t + g_i   if resnet and the irreps are unchanged,  else g_i
    E_i   = Linear(Linear(readout_scalars(h_i^T[0e])))                      (nequip's two output linears)

``Conv_t`` is :class:`~scalarjax.backbones.common.Convolution` (linear → channelwise tensor
product with Y(r̂_ij), radial-MLP weights over Bessel × polynomial cutoff, Σ_j/avg_num_neighbors
→ linear), the same module MACE uses, so the scalar-pathway hooks (edge scalars, ℓ=0
aggregation, readout scalars) are the same calls in both backbones. Activations are normalised to
unit second moment (e3nn's ``normalize2mom``).

Differences from nequip, on purpose: the first layer has no self-connection from the embedding
(that term is a per-species constant) but a species-indexed linear on its messages, as in MACE's
first block, so that an isolated atom's energy is exactly E0 + shift; the neighbour sum is
normalised by avg_num_neighbors (nequip: its square root), the normalisation every scalarjax
backbone and the PAN transform share; the Bessel frequencies are fixed (nequip: trainable).
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from scalarjax.backbones.common import Backbone, SpeciesEmbedding, edge_inputs, layer_convolution
from scalarjax.graph.inputs import GraphInputs
from scalarjax.nn.features import Features, sort_irreps
from scalarjax.nn.linear import MLP, SpeciesLinear, normalized_silu
from scalarjax.scalar import pathway


def _second_moment_factor(f) -> float:
    z, w = np.polynomial.hermite_e.hermegauss(101)  # E over N(0, 1)
    return float(1.0 / np.sqrt(np.sum(w * f(z) ** 2) / np.sum(w)))


_TANH_NORM = _second_moment_factor(np.tanh)


def normalized_tanh(x: jnp.ndarray) -> jnp.ndarray:
    """``tanh(x) · c`` with ``c`` such that ``E[(c tanh z)²] = 1`` for ``z ~ N(0, 1)`` (e3nn's ``normalize2mom``); any shape."""
    return jnp.tanh(x) * _TANH_NORM


@functools.cache
def layer_irreps(num_layers: int, l_max: int, parity: bool) -> tuple[tuple[str, ...], ...]:
    """Output irreps of every layer: the hidden irreps (ℓ ≤ l_max; both parities if ``parity``)
    that the tensor products can reach from the scalar embedding (forward) and that can still
    reach the final 0e energy (backward). The last layer is scalars only."""
    hidden = {str(e3nn.Irrep(l, p)) for l in range(l_max + 1) for p in ((1, -1) if parity else ((-1) ** l,))}
    sh = [e3nn.Irrep(l, (-1) ** l) for l in range(l_max + 1)]

    def products(ir1: str) -> set:
        return {str(ir3) for y in sh for ir3 in e3nn.Irrep(ir1) * y}

    forward, irreps_in = [], {"0e"}
    for _ in range(num_layers):
        irreps_in = {ir for ir1 in irreps_in for ir in products(ir1)} & hidden
        forward.append(irreps_in)
    needed = {"0e"}
    out = [None] * num_layers
    for t in reversed(range(num_layers)):
        out[t] = forward[t] & needed
        needed = {ir1 for ir1 in hidden if products(ir1) & out[t]}
    return tuple(sort_irreps(o) for o in out)


def gate(x: Features, channels: int) -> Features:
    """Gate non-linearity on ``{"0e": [N, 1, C + G·C], "0o": [N, 1, C], ir: [N, 2l+1, C] ...}``.

    Even scalars: silu; odd scalars: tanh (odd, so a pseudoscalar stays a pseudoscalar); every
    ℓ>0 block ``k`` is multiplied by silu of its own C gate scalars (even, invariant), which keeps
    its parity. Returns ``{ir: [N, 2l+1, C]}``.
    """
    gated = [ir for ir in sort_irreps(x) if e3nn.Irrep(ir).l > 0]
    s = x["0e"]
    out = {"0e": normalized_silu(s[..., :channels])}
    if "0o" in x:
        out["0o"] = normalized_tanh(x["0o"])
    gates = normalized_silu(s[..., channels:])
    for k, ir in enumerate(gated):
        out[ir] = x[ir] * gates[..., k * channels : (k + 1) * channels]
    return out


class NequIPLayer(nn.Module):
    """Layer ``t`` (= ``layer``) of the module docstring: convolution, species-indexed self-connection
    (layer 0: species-indexed linear on the messages instead), :func:`gate`, optional residual.

    Args: ``h`` ``{ir: [N, 2l+1, C]}``, ``sh`` ``[E, (l_max+1)²]``, ``ctx`` the hook context.
    Returns ``{ir: [N, 2l+1, C]}`` for ``ir`` in ``irreps_out``; ``h + gate(x)`` when ``resnet`` and
    the irreps and shapes of ``h`` are those of the output.
    """

    channels: int
    l_max: int
    irreps_out: tuple[str, ...]
    radial_mlp: tuple[int, ...]
    num_species: int
    layer: int
    resnet: bool
    transforms: tuple = ()
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h: Features, sh, ctx) -> Features:
        C, S, dtype = self.channels, self.num_species, self.dtype
        n_gated = sum(e3nn.Irrep(ir).l > 0 for ir in self.irreps_out)
        channels_out = {ir: C + n_gated * C if ir == "0e" else C for ir in self.irreps_out}
        x = layer_convolution(self, self.l_max, channels_out)(h, sh, ctx)
        if self.layer == 0:
            x = SpeciesLinear(irreps_out=channels_out, num_species=S, dtype=dtype, name="species_linear")(x, ctx.onehot)
        else:
            sc = SpeciesLinear(irreps_out=channels_out, num_species=S, dtype=dtype, name="self_connection")(h, ctx.onehot)
            x = {ir: x[ir] + sc[ir] if ir in sc else x[ir] for ir in x}
        y = gate(x, C)
        if self.resnet and set(y) == set(h) and all(h[ir].shape == y[ir].shape for ir in y):
            y = {ir: h[ir] + y[ir] for ir in y}
        return y


class NequIP(Backbone):
    """NequIP (Batzner et al. 2022): ``num_layers`` gated interaction layers (equations in the module
    docstring; settings: :class:`~scalarjax.config.NequIPConfig`)."""

    @nn.compact
    def __call__(self, graph: GraphInputs) -> jnp.ndarray:
        cfg, bb, S = self.config, self.config.backbone, self.num_species
        dtype = jnp.dtype(cfg.dtype)
        C = bb.num_features
        sh, ctx = edge_inputs(cfg, bb.l_max, graph, S)

        h: Features = {"0e": SpeciesEmbedding(num_species=S, channels=C, dtype=dtype, name="embedding")(graph.species)}
        for t, irreps_out in enumerate(layer_irreps(bb.num_layers, bb.l_max, bb.parity)):
            layer = NequIPLayer(
                channels=C,
                l_max=bb.l_max,
                irreps_out=irreps_out,
                radial_mlp=cfg.radial_mlp,
                num_species=S,
                layer=t,
                resnet=bb.resnet,
                transforms=self.transforms,
                dtype=dtype,
                name=f"layer_{t}",
            )
            h = layer(h, sh, ctx)
            if self.transforms:
                h = {**h, "0e": pathway.node_scalars(self.transforms, h["0e"][:, 0, :], ctx, t)[:, None, :]}
        scalars = pathway.readout_scalars(self.transforms, h["0e"][:, 0, :], ctx, bb.num_layers - 1)
        hidden = MLP(features=(max(1, C // 2),), dtype=dtype, name="output_hidden")(scalars)
        return MLP(features=(1,), dtype=dtype, name="output")(hidden)[:, 0]

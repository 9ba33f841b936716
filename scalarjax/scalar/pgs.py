"""PGS — Physics-Guided Spectral mixers on the ℓ=0 pathway.

The paper (arXiv 2606.15892) adds a real Fourier–Bessel basis to the pair-level scalars and a
tapered "Exponential-of-Semicircle" spectral expansion at the readout. Its equations are not
public; this is our design, with what is ours marked.

**(a) Edge.** Fourier–Bessel modes beyond the backbone's radial basis (n = num_bessel+1 …
num_bessel+K_e), times the backbone's cutoff envelope u_p, added to the radial weights of the ℓ=0
paths (ours: only those, so that every ℓ>0 message is untouched):

    φ_n(r) = sqrt(2/r_max) sin(n π r / r_max) / r · u_p(r / r_max)
    w⁰_ij ← w⁰_ij + (φ(r_ij) · W_e) / sqrt(K_e)                 W_e ∈ R^{K_e × (P0·C)}

φ vanishes with its first two derivatives at r_max, like the base features, so smoothness at the
cutoff is kept; the higher modes resolve short-range structure (the repulsive wall) that the
base basis cannot.

**(b) Readout.** Each readout scalar x_c is expanded in K_r sine/cosine modes with a spectral taper
τ_k given by the exponential-of-semicircle window (ours: the ES kernel of non-uniform FFTs,
exp(β(sqrt(1 − t²) − 1)), evaluated at t = k/(K_r+1)), summed per channel with learned
coefficients and mixed back by one linear layer:

    ψ_{c,k}(x) = τ_k · [sin(ω k x_c),  cos(ω k x_c) − 1],      τ_k = exp(β (sqrt(1 − (k/(K_r+1))²) − 1))
    s_c   = Σ_k a_{c,k} · ψ_{c,k}(x) / sqrt(2 K_r)                 (a: [C, 2K_r], per channel)
    x'_d  = x_d + Σ_c s_c W_r[c, d] / sqrt(C)                       (W_r: [C, C])

bounded (|ψ| ≤ 2), smooth (analytic), and zero for x = 0 (an atom with no neighbours keeps
E0 + shift). The per-channel sum keeps the cost at O(K_r C + C²) per atom (ours, instead of a full
[2 K_r C × C] mixing; its measured cost: ``docs/performance-notes.md``). ω (``frequency``) and β
(``taper_beta``) are fixed hyper-parameters.

Initialisation (ours): a ~ N(0, 1); W_e, W_r ~ N(0, init_scale²) (default 0.1: close to the base
model, with the new directions already active), or W_e = W_r = 0 with ``identity_init: true``.

**Design alternatives** (the campaign's design screen, issue 13; defaults keep the design above):

- ``edge_placement: input`` — the extra modes enter the radial MLP's *input* instead of its ℓ=0
  outputs: ``x_ij ← x_ij + (φ(r_ij) · W_e) / sqrt(K_e)`` with ``W_e ∈ R^{K_e × F}`` (F = the
  backbone's number of radial features). The edge scalars drive the weights of every path, so
  this one changes ℓ>0 messages too (through ℓ=0 inputs only).
- ``edge_cutoff: r_in`` (Å) — a Fourier–Bessel basis of its own on a short inner cutoff where the
  repulsive wall is, modes n = 1 … K_e: ``φ_n(r) = sqrt(2/r_in) sin(nπr/r_in)/r · u_p(r/r_in)``,
  zero beyond r_in. On the data's distance range the high modes of the r_max basis are nearly
  spanned by its low modes; the inner basis is not.
- ``learn_frequency: true`` — ω is a learned per-channel parameter (initialised at ``frequency``);
  a ``frequency`` scaled to the measured spread of the scalars is a plain setting.
- ``readout_placement: node`` — the spectral mixing is applied in place to the ℓ=0 node features
  after every layer (the ``node_scalars`` hook), so it reaches the later layers and not only the
  energy heads.
- ``gate: true`` — per-channel gates g (initialised at 0) multiply both additions,
  ``w⁰ + g_e ⊙ (φ W_e)`` and ``x + g_r ⊙ (s W_r)``: the model is exactly the base at init while
  W_e, W_r start random, and learns how far to open each channel.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.radial import bessel_basis, polynomial_cutoff
from scalarjax.scalar.pathway import HookContext, ScalarTransform, register_transform


@register_transform
@dataclasses.dataclass(frozen=True)
class PGS(ScalarTransform):
    """PGS's settings (``kind: pgs``; equations, initialisation and the design alternatives in the
    module docstring): extra Fourier–Bessel edge modes (``edge_modes`` K_e, 0: off) and the tapered
    spectral readout mixing (``readout_modes`` K_r, 0: off); ``edge_cutoff`` in Å."""

    kind: ClassVar[str] = "pgs"
    edge_modes: int = 8  # K_e (0: no edge part)
    readout_modes: int = 4  # K_r (0: no readout part)
    frequency: float = 1.0  # ω
    taper_beta: float = 2.0  # β of the exponential-of-semicircle taper
    init_scale: float = 0.1
    edge_placement: str = "weights"  # weights | input
    edge_cutoff: Optional[float] = None  # Å; None: modes num_bessel+1 … of the r_max basis
    learn_frequency: bool = False
    readout_placement: str = "readout"  # readout | node
    gate: bool = False

    def __post_init__(self):
        if self.edge_placement not in ("weights", "input"):
            raise ValueError(f"pgs.edge_placement: {self.edge_placement!r} is not one of ('weights', 'input')")
        if self.readout_placement not in ("readout", "node"):
            raise ValueError(f"pgs.readout_placement: {self.readout_placement!r} is not one of ('readout', 'node')")
        if self.edge_cutoff is not None and self.edge_cutoff <= 0:
            raise ValueError(f"pgs.edge_cutoff: {self.edge_cutoff} must be a positive distance in Å")
        if self.edge_modes < 0 or self.readout_modes < 0:
            raise ValueError("pgs.edge_modes and pgs.readout_modes must be ≥ 0")

    def _module(self, hook: str):
        """The factory PGS puts at ``hook`` (its edge part at one edge hook, its readout part at one
        node hook, as the placements choose), or None."""
        edge = {"weights": "scalar_edge_weights", "input": "edge_scalars"}[self.edge_placement]
        node = {"readout": "readout", "node": "node_scalars"}[self.readout_placement]
        if hook == edge and self.edge_modes > 0:
            return functools.partial(PGSEdge, self)
        if hook == node and self.readout_modes > 0:
            return functools.partial(PGSReadout, self)
        return None

    def scalar_edge_weights(self, layer: int):
        return self._module("scalar_edge_weights")

    def edge_scalars(self, layer: int):
        return self._module("edge_scalars")

    def readout(self, layer: int):
        return self._module("readout")

    def node_scalars(self, layer: int):
        return self._module("node_scalars")


def _init(cfg: PGS):
    return nn.initializers.zeros if cfg.identity_init and not cfg.gate else nn.initializers.normal(cfg.init_scale)


def _gate(module: nn.Module, cfg: PGS, channels: int, dtype):
    """Per-channel gate ``g`` (zeros at init) when ``cfg.gate``, else 1."""
    return module.param("gate", nn.initializers.zeros, (channels,), dtype) if cfg.gate else 1.0


def edge_modes(cfg: PGS, r: jnp.ndarray, ctx: HookContext) -> jnp.ndarray:
    """``[E] → [E, K_e]``: the extra Fourier–Bessel modes × envelope (zero beyond their cutoff)."""
    if cfg.edge_cutoff is None:
        phi = bessel_basis(r, cfg.edge_modes, ctx.r_max, first_mode=ctx.num_bessel + 1)
        return phi * ctx.envelope[:, None]  # the backbone's envelope, computed once
    r_in = cfg.edge_cutoff
    phi = bessel_basis(jnp.minimum(r, r_in), cfg.edge_modes, r_in)  # clipped: no sin of far edges
    return phi * polynomial_cutoff(r, r_in, ctx.envelope_p)[:, None]


def es_taper(num_modes: int, beta: float) -> np.ndarray:
    """``τ_k = exp(β (sqrt(1 − t_k²) − 1))``, ``t_k = k / (K + 1)``, k = 1 … K: ``[K]`` in (0, 1) (module docstring, (b))."""
    t = np.arange(1, num_modes + 1) / (num_modes + 1)
    return np.exp(beta * (np.sqrt(1.0 - t**2) - 1.0))


class PGSEdge(nn.Module):
    """``w⁰ [E, P0, C] → w⁰ + g ⊙ φ W_e`` (``edge_placement: weights``) or the edge scalars
    ``x [E, F] → x + g ⊙ φ W_e`` (``input``)."""

    cfg: PGS

    @nn.compact
    def __call__(self, w: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
        K = self.cfg.edge_modes
        phi = edge_modes(self.cfg, ctx.lengths, ctx) * ctx.edge_mask[:, None]
        width = int(np.prod(w.shape[1:]))
        W = self.param("w", _init(self.cfg), (K, width), w.dtype)
        g = _gate(self, self.cfg, w.shape[-1], w.dtype)
        return w + (phi @ (W * K**-0.5)).reshape(w.shape) * g


class PGSReadout(nn.Module):
    """The spectral mixing (b) of the module docstring: ``x [N, C] → x + g ⊙ (s W_r) / sqrt(C)``, ``[N, C]``;
    the ``readout`` hook (``readout_placement: readout``) or ``node_scalars`` (``node``)."""

    cfg: PGS

    @nn.compact
    def __call__(self, x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
        cfg = self.cfg
        K, C = cfg.readout_modes, x.shape[-1]
        taper = jnp.asarray(es_taper(K, cfg.taper_beta), x.dtype)
        if cfg.learn_frequency:  # ω_c = exp(log ω_c) > 0, per channel
            omega = jnp.exp(self.param("log_frequency", nn.initializers.constant(np.log(cfg.frequency)), (C,), x.dtype))[:, None]
        else:
            omega = cfg.frequency
        arg = x[:, :, None] * omega * jnp.arange(1, K + 1, dtype=x.dtype)  # [N, C, K]
        psi = jnp.concatenate([jnp.sin(arg) * taper, (jnp.cos(arg) - 1.0) * taper], axis=-1)  # [N, C, 2K]
        a = self.param("coefficients", nn.initializers.normal(1.0), (C, 2 * K), x.dtype)
        s = jnp.sum(psi * a, axis=-1) * (2 * K) ** -0.5
        W = self.param("w", _init(cfg), (C, C), x.dtype)
        return x + (s @ (W * C**-0.5)) * _gate(self, cfg, C, x.dtype)

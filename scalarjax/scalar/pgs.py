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
E0 + shift). The per-channel sum keeps the cost at O(K_r C + C²) per atom (ours: a full
[2 K_r C × C] mixing costs ~4 % of MACE's inference FLOPs). ω (``frequency``) and β
(``taper_beta``) are fixed hyper-parameters.

Initialisation (ours): a ~ N(0, 1); W_e, W_r ~ N(0, init_scale²) (default 0.1: close to the base
model, with the new directions already active), or W_e = W_r = 0 with ``identity_init: true``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.radial import bessel_basis, polynomial_cutoff
from scalarjax.scalar.pathway import HookContext, ScalarTransform, register_transform


@register_transform
@dataclasses.dataclass(frozen=True)
class PGS(ScalarTransform):
    kind: ClassVar[str] = "pgs"
    edge_modes: int = 8  # K_e (0: no edge part)
    readout_modes: int = 4  # K_r (0: no readout part)
    frequency: float = 1.0  # ω
    taper_beta: float = 2.0  # β of the exponential-of-semicircle taper
    init_scale: float = 0.1

    def scalar_edge_weights(self, layer: int):
        return functools.partial(PGSEdge, self) if self.edge_modes > 0 else None

    def readout(self, layer: int):
        return functools.partial(PGSReadout, self) if self.readout_modes > 0 else None


def _init(cfg: PGS):
    return nn.initializers.zeros if cfg.identity_init else nn.initializers.normal(cfg.init_scale)


def es_taper(num_modes: int, beta: float) -> np.ndarray:
    t = np.arange(1, num_modes + 1) / (num_modes + 1)
    return np.exp(beta * (np.sqrt(1.0 - t**2) - 1.0))


class PGSEdge(nn.Module):
    cfg: PGS

    @nn.compact
    def __call__(self, w0: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
        K = self.cfg.edge_modes
        E, P0, C = w0.shape
        r = ctx.lengths
        phi = bessel_basis(r, K, ctx.r_max, first_mode=ctx.num_bessel + 1) * polynomial_cutoff(r, ctx.r_max, ctx.envelope_p)[:, None]
        W = self.param("w", _init(self.cfg), (K, P0 * C), w0.dtype)
        return w0 + (phi @ (W / np.sqrt(K))).reshape(E, P0, C)


class PGSReadout(nn.Module):
    cfg: PGS

    @nn.compact
    def __call__(self, x: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
        K, C = self.cfg.readout_modes, x.shape[-1]
        taper = jnp.asarray(es_taper(K, self.cfg.taper_beta), x.dtype)
        arg = x[:, :, None] * jnp.asarray(self.cfg.frequency * np.arange(1, K + 1), x.dtype)  # [N, C, K]
        psi = jnp.concatenate([jnp.sin(arg) * taper, (jnp.cos(arg) - 1.0) * taper], axis=-1)  # [N, C, 2K]
        a = self.param("coefficients", nn.initializers.normal(1.0), (C, 2 * K), x.dtype)
        s = jnp.sum(psi * a, axis=-1) / np.sqrt(2 * K)
        W = self.param("w", _init(self.cfg), (C, C), x.dtype)
        return x + s @ (W / np.sqrt(C))

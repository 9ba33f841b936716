"""PAN — Physics-Aware Neighbourhood pooling of the ℓ=0 messages.

The paper (arXiv 2606.15892) replaces the uniform ℓ=0 aggregation ``(1/avg_num_neighbors) Σ_j``
with a coordination-sensitive amplitude. Its equations are not public; this is our design.

Coordination (smooth, cutoff-weighted, species-aware), for atom i of species s_i:

    n_i  = Σ_{j ∈ N(i)} a_{s_i s_j} · u_q(r_ij / r_max)         a = softplus(θ) / softplus(0) > 0, θ ∈ R^{S×S}
    ℓ_i  = log(ε + n_i / n̄) − log(ε + 1),     n̄ = κ_q · avg_num_neighbors,  κ_q = ∫₀¹ 3x² u_q(x) dx

(``coordination_r_max: r_c`` replaces r_max by a shorter cutoff, e.g. the first shell, and n̄ by the
uniform-density estimate κ_q · avg_num_neighbors · (r_c/r_max)³), with u_q the polynomial cutoff of exponent q (C² at r_max for q ≥ 2; default 6, so n_i is C² in
the positions). κ_q is the mean of u_q over a uniformly filled cutoff sphere, so ℓ_i ≈ 0 for an
atom of average coordination at init (κ_6 ≈ 0.34). Amplitude, per atom and ℓ=0 channel c, and the pooled message:

    α_ic = exp( −γ_c ℓ_i + b_{s_i c} + Σ_h W2_hc · silu(W1_h ℓ_i) / sqrt(H) )   > 0
    A⁰_i = α_i ⊙ (1/avg_num_neighbors) Σ_j m⁰_ij

γ_c interpolates between sum pooling (γ = 0, the base model) and mean pooling over the
coordination shell (γ = 1); a bond-order potential (Tersoff) corresponds to γ ≈ 1/2. Optional
neighbour weights (``neighbor_weights: true``) rescale the ℓ=0 radial weights of every pair from
ℓ=0 information only (species of both atoms and the pair distance):

    w⁰_ij ← w⁰_ij ⊙ exp(tanh(MLP([onehot_i, onehot_j, B(r_ij) u(r_ij)])))     ∈ [e⁻¹, e]·w⁰_ij

Initialisation: b = 0, θ = 0, the MLP output layers W2 ~ N(0, init_scale²) (default init_scale 0:
they start at zero and learn from the first step, as their gradients do not vanish); γ_c spread evenly over
[0, 1] across the channels (our default: the channels start between sum and mean pooling), or
γ = 0 with ``identity_init: true``, which makes the model exactly the base model at init.
An isolated atom has no messages, so PAN leaves its energy (E0 + shift) unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.linear import normalized_silu
from scalarjax.nn.radial import bessel_basis, polynomial_cutoff
from scalarjax.scalar.pathway import HookContext, ScalarTransform, register_transform


@register_transform
@dataclasses.dataclass(frozen=True)
class PAN(ScalarTransform):
    """PAN's settings (``kind: pan``; equations and initialisation in the module docstring): the
    coordination amplitude α at every layer's ℓ=0 aggregation, and with ``neighbor_weights`` the
    per-pair rescaling of the ℓ=0 radial weights."""

    kind: ClassVar[str] = "pan"
    hidden: int = 8  # H, width of the coordination MLP
    epsilon: float = 0.1  # ε in log(ε + ñ)
    cutoff_p: int = 6  # q of the coordination switching function
    neighbor_weights: bool = False
    init_scale: float = 0.0  # std of the MLP output layers at init (0: they start at zero)
    # Å: the coordination's own cutoff (e.g. the first shell); None: the model's r_max
    coordination_r_max: Optional[float] = None

    def __post_init__(self):
        if self.coordination_r_max is not None and self.coordination_r_max <= 0:
            raise ValueError(f"pan.coordination_r_max: {self.coordination_r_max} must be a positive distance in Å")
        if self.hidden < 1 or self.epsilon <= 0:
            raise ValueError("pan.hidden must be ≥ 1 and pan.epsilon > 0")

    def scalar_aggregate(self, layer: int):
        return functools.partial(PANAmplitude, self)

    def scalar_edge_weights(self, layer: int):
        return functools.partial(PANNeighborWeights, self) if self.neighbor_weights else None


def _out_init(cfg: PAN):
    return nn.initializers.zeros if cfg.identity_init or cfg.init_scale == 0 else nn.initializers.normal(cfg.init_scale)


def shell_fraction(q: int) -> float:
    """κ_q = ∫₀¹ 3x² u_q(x) dx, the mean of the cutoff function over a uniformly filled sphere."""
    c = {0: 1.0, q: -0.5 * (q + 1) * (q + 2), q + 1: q * (q + 2), q + 2: -0.5 * q * (q + 1)}
    return float(sum(3.0 * coef / (k + 3) for k, coef in c.items()))


def coordination(ctx: HookContext, pair_weights: jnp.ndarray, p: int, r_c: Optional[float] = None) -> jnp.ndarray:
    """``n_i = Σ_j a[s_i, s_j] u_p(r_ij / r_c)``: ``[N]`` (a ``[S, S]``; r_c defaults to r_max)."""
    a_edge = jnp.sum((ctx.onehot[ctx.receivers] @ pair_weights) * ctx.onehot[ctx.senders], axis=-1)
    u = polynomial_cutoff(ctx.lengths, r_c or ctx.r_max, p) * ctx.edge_mask
    return jax.ops.segment_sum(a_edge * u, ctx.receivers, num_segments=ctx.onehot.shape[0])


class PANAmplitude(nn.Module):
    """The ``scalar_aggregate`` hook: ``agg0 [N, P0, C]`` (used for its shape and dtype only) → the
    amplitude ``α [N, C]`` > 0 of the module docstring (coordination from ``ctx``; q = ``cutoff_p``)."""

    cfg: PAN

    @nn.compact
    def __call__(self, agg0: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
        cfg, dtype = self.cfg, agg0.dtype
        S, C, H = ctx.onehot.shape[1], agg0.shape[-1], cfg.hidden
        theta = self.param("pair_logits", nn.initializers.zeros, (S, S), dtype)
        a = jax.nn.softplus(theta) / math.log(2.0)
        r_c = min(cfg.coordination_r_max or ctx.r_max, ctx.r_max)
        n = coordination(ctx, a, cfg.cutoff_p, r_c)
        # a uniform density's estimate of the mean count within r_c (exact for r_c = r_max)
        n_ref = shell_fraction(cfg.cutoff_p) * ctx.avg_num_neighbors * (r_c / ctx.r_max) ** 3
        ell = (jnp.log(cfg.epsilon + n / n_ref) - math.log(cfg.epsilon + 1.0))[:, None]  # [N, 1]
        gamma0 = np.zeros(C) if cfg.identity_init else np.linspace(0.0, 1.0, C)
        gamma = self.param("gamma", lambda k, s, d: jnp.asarray(gamma0, d), (C,), dtype)
        bias = self.param("species_log_gain", nn.initializers.zeros, (S, C), dtype)
        w1 = self.param("w1", nn.initializers.normal(1.0), (1, H), dtype)
        w2 = self.param("w2", _out_init(cfg), (H, C), dtype)
        log_amp = -ell * gamma + ctx.onehot @ bias + normalized_silu(ell @ w1) @ (w2 * H**-0.5)
        return jnp.exp(log_amp)


class PANNeighborWeights(nn.Module):
    """The ``scalar_edge_weights`` hook: ``w0 [E, P0, C]`` → ``w0 ⊙ exp(tanh(MLP(...)))``, the factor in
    [e⁻¹, e] per edge and channel (same for every ℓ=0 path) from both species and the first
    ``num_basis`` radial features B(r) · u(r) (module docstring)."""

    cfg: PAN
    num_basis: int = 4

    @nn.compact
    def __call__(self, w0: jnp.ndarray, ctx: HookContext, layer: int) -> jnp.ndarray:
        dtype, C, H = w0.dtype, w0.shape[-1], self.cfg.hidden
        if ctx.num_bessel >= self.num_basis:  # the backbone's own features: its first num_basis modes
            radial = ctx.radial[:, : self.num_basis]
        else:
            radial = bessel_basis(ctx.lengths, self.num_basis, ctx.r_max) * ctx.envelope[:, None]
        q = jnp.concatenate([ctx.onehot[ctx.receivers], ctx.onehot[ctx.senders], radial], axis=-1)
        w1 = self.param("w1", nn.initializers.normal(1.0), (q.shape[-1], H), dtype)
        w2 = self.param("w2", _out_init(self.cfg), (H, C), dtype)
        beta = jnp.exp(jnp.tanh(normalized_silu(q @ (w1 * q.shape[-1] ** -0.5)) @ (w2 * H**-0.5)))
        return w0 * beta[:, None, :]

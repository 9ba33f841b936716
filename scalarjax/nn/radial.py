"""Radial features of the pair distance: Bessel basis × polynomial cutoff envelope.

Both as in MACE (Batzner et al. 2022 / Batatia et al. 2022):

    B_n(r) = sqrt(2 / r_max) · sin(n π r / r_max) / r,            n = 1 … num_bessel
    u(x)   = 1 − (p+1)(p+2)/2 · x^p + p(p+2) · x^(p+1) − p(p+1)/2 · x^(p+2),   x = r / r_max < 1
    u(x)   = 0                                                      x ≥ 1

u and its first two derivatives vanish at r_max (C² for p ≥ 2), so energies and forces are
continuous as a neighbour crosses the cutoff.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def bessel_basis(r: jnp.ndarray, num_bessel: int, r_max: float, first_mode: int = 1) -> jnp.ndarray:
    """``r``: ``[E]`` distances (Å, > 0) → ``[E, num_bessel]`` (Å⁻¹ᐟ²), modes n = first_mode … first_mode + num_bessel − 1."""
    n = jnp.arange(first_mode, first_mode + num_bessel, dtype=r.dtype)
    prefactor = float(np.sqrt(2.0 / r_max))  # a Python float: keeps float32 inputs float32 under x64
    return prefactor * jnp.sin(n * (np.pi / r_max) * r[:, None]) / r[:, None]


def polynomial_cutoff(r: jnp.ndarray, r_max: float, p: int) -> jnp.ndarray:
    """``r``: ``[E]`` distances (Å) → ``[E]`` envelope in [0, 1], C² at ``r_max``."""
    x = r / r_max
    u = 1.0 - 0.5 * (p + 1.0) * (p + 2.0) * x**p + p * (p + 2.0) * x ** (p + 1) - 0.5 * p * (p + 1.0) * x ** (p + 2)
    return jnp.where(x < 1.0, u, 0.0)


def radial_embedding(r: jnp.ndarray, num_bessel: int, r_max: float, p: int) -> jnp.ndarray:
    """MACE's edge scalar features ``B_n(r) · u(r / r_max)``: ``[E]`` → ``[E, num_bessel]``."""
    return bessel_basis(r, num_bessel, r_max) * polynomial_cutoff(r, r_max, p)[:, None]

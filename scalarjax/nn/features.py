"""Channels-last equivariant features.

Inside the backbones an equivariant feature is a dict ``{irrep: array[N, 2l+1, C]}`` keyed by
the irrep's string (``"0e"``, ``"1o"``, ...): one block per ℓ, the ``m`` axis before the channel
axis, so that every linear map is a plain GEMM over ``N·(2l+1)`` rows and the tensor products
see contiguous channel vectors. e3nn-jax provides the irreps algebra (``e3nn.Irrep``), the
spherical harmonics and the Clebsch–Gordan / symmetric bases; its ``IrrepsArray`` is not used.
"""

from __future__ import annotations

from typing import Dict, Iterable

import e3nn_jax as e3nn
import jax.numpy as jnp

Features = Dict[str, jnp.ndarray]


def sort_irreps(irs: Iterable[str]) -> tuple[str, ...]:
    """Irreps strings in e3nn's canonical order (by ℓ, then parity)."""
    return tuple(str(ir) for ir in sorted({e3nn.Irrep(ir) for ir in irs}))


def natural_irreps(max_ell: int) -> tuple[str, ...]:
    """``0e, 1o, 2e, ...`` up to ``max_ell``: the parities of the spherical harmonics."""
    return tuple(str(e3nn.Irrep(l, (-1) ** l)) for l in range(max_ell + 1))


def irreps_to_channels(irreps: str) -> dict[str, int]:
    """``"64x0e+64x1o"`` → ``{"0e": 64, "1o": 64}`` (multiplicities of equal irreps summed)."""
    out: dict[str, int] = {}
    for mul, ir in e3nn.Irreps(irreps):
        out[str(ir)] = out.get(str(ir), 0) + mul
    return out

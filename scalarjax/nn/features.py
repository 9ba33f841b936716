"""Channels-last equivariant features.

Inside the backbones an equivariant feature is a dict ``{irrep: array[N, 2l+1, C]}`` keyed by
the irrep's string (``"0e"``, ``"1o"``, ...): one block per ℓ, the ``m`` axis before the channel
axis, so that every linear map is a plain GEMM over ``N·(2l+1)`` rows and the tensor products
see contiguous channel vectors. At module boundaries the same data is exchanged as an
``e3nn.IrrepsArray`` (:func:`to_irreps_array` / :func:`from_irreps_array`).
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


def to_irreps_array(features: Features) -> e3nn.IrrepsArray:
    """``{ir: [N, 2l+1, C]}`` → ``IrrepsArray`` with irreps ``C x ir + ...`` (e3nn layout)."""
    keys = sort_irreps(features)
    chunks = [jnp.swapaxes(features[k], -1, -2) for k in keys]  # [N, C, 2l+1]
    irreps = e3nn.Irreps([(features[k].shape[-1], k) for k in keys])
    return e3nn.from_chunks(irreps, chunks, features[keys[0]].shape[:-2])


def from_irreps_array(x: e3nn.IrrepsArray) -> Features:
    """Inverse of :func:`to_irreps_array` (irreps are regrouped by type first)."""
    x = x.regroup()
    return {str(ir): jnp.swapaxes(c, -1, -2) for (mul, ir), c in zip(x.irreps, x.chunks) if c is not None}

"""Equivariant linear maps and the radial MLP, written as GEMMs on channels-last features.

All weights are drawn from N(0, 1) and the fan-in normalisation 1/sqrt(fan_in) is applied in the
forward pass (e3nn's convention), so the initial scale does not depend on the width. Constants are
Python floats, never NumPy scalars: JAX types a NumPy float64 scalar strongly, so under
``jax_enable_x64`` it would silently promote a float32 model's activations to float64.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from scalarjax.nn.features import Features


def _normal(dtype):
    return lambda key, shape: jax.random.normal(key, shape, dtype)


class IrrepsLinear(nn.Module):
    """Per-irrep linear map ``y_ir[n, m, :] = x_ir[n, m, :] @ W_ir / sqrt(C_in)``.

    Irreps of the input that are not in ``irreps_out`` are dropped; irreps of the output with no
    input are absent. ``irreps_out`` maps irrep string → output channels.
    """

    irreps_out: dict
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Features) -> Features:
        out = {}
        for ir, c_out in self.irreps_out.items():
            if ir not in x:
                continue
            c_in = x[ir].shape[-1]
            w = self.param(f"w_{ir}", _normal(self.dtype), (c_in, c_out))
            out[ir] = jnp.einsum("nmc,cd->nmd", x[ir], w * c_in**-0.5)
        return out


# Species-indexed weights: up to this many species every species' output is computed by one GEMM and
# the node's own is selected (fastest for a few species); above it the node's own weights are gathered
# (the work per atom then does not grow with the species count: 89 for MACE-MP-0).
GATHER_ABOVE_SPECIES = 8


def species_index(onehot: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``[N, S]`` one-hot (all-zero rows for padding nodes) → ``([N]`` int species index, 0 for padding;
    ``[N, 1, 1]`` 1.0 for real nodes, 0.0 for padding, to keep gathered outputs of padding nodes zero)."""
    return jnp.argmax(onehot, axis=1), jnp.sum(onehot, axis=1)[:, None, None]


class SpeciesLinear(nn.Module):
    """Species-indexed linear map (MACE's ``skip_tp`` with one-hot node attributes).

    ``y_ir[n] = x_ir[n] @ W_ir[s_n] / sqrt(C_in)``, computed as one GEMM on the
    species-expanded input ``onehot[n, s] · x[n, m, c]`` reshaped to ``[N·(2l+1), S·C_in]``; with more
    than ``GATHER_ABOVE_SPECIES`` species, as a batched product with each node's gathered ``W[s_n]``.
    """

    irreps_out: dict
    num_species: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Features, onehot: jnp.ndarray) -> Features:
        out = {}
        S = self.num_species
        for ir, c_out in self.irreps_out.items():
            if ir not in x:
                continue
            n, m, c_in = x[ir].shape
            w = self.param(f"w_{ir}", _normal(self.dtype), (S, c_in, c_out))
            if S == 1:
                out[ir] = jnp.einsum("nmc,cd->nmd", x[ir], w[0] * c_in**-0.5)
                continue
            if S > GATHER_ABOVE_SPECIES:
                species, real = species_index(onehot)
                w_n = w[species] * real  # [N, C_in, C_out]
                out[ir] = jnp.einsum("nmc,ncd->nmd", x[ir], w_n * c_in**-0.5)
                continue
            xs = (onehot[:, None, :, None] * x[ir][:, :, None, :]).reshape(n, m, S * c_in)
            out[ir] = jnp.einsum("nmk,kd->nmd", xs, w.reshape(S * c_in, c_out) * c_in**-0.5)
        return out


def normalized_silu(x: jnp.ndarray) -> jnp.ndarray:
    """SiLU rescaled to unit second moment under x ~ N(0, 1) (e3nn's ``normalize2mom``)."""
    return jax.nn.silu(x) * 1.6765324703310907


class MLP(nn.Module):
    """Bias-free MLP ``x → W_k σ(… σ(W_1 x))`` with 1/sqrt(fan_in) scaling (e3nn ``FullyConnectedNet``).

    Without biases, ``f(0) = 0``: edge features that vanish at r_max give vanishing weights.
    """

    features: Sequence[int]
    dtype: jnp.dtype = jnp.float32
    activate_last: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.features):
            w = self.param(f"w_{i}", _normal(self.dtype), (x.shape[-1], width))
            x = x @ (w * x.shape[-1] ** -0.5)
            if i < len(self.features) - 1 or self.activate_last:
                x = normalized_silu(x)
        return x

"""Channelwise ("uvu") tensor product of node features with edge spherical harmonics.

For every allowed path ``p = (ir1, l2) → ir3`` and channel ``c``

    m_e[ir3][p, M, c] = w_e[p, c] · Σ_{m1, m2} C^{l1 l2 l3}_{m1 m2 M} · sqrt(2 l3 + 1) · Y^{l2}_{m2}(r̂_e) · h_{s(e)}[ir1][m1, c]

with C e3nn's real Clebsch–Gordan coefficients (unit Frobenius norm, hence sqrt(2l3+1) for
"component" normalisation) and ``w_e`` per-edge weights from the radial MLP.

Paths are grouped by input irrep ``ir1``; a group is (1) one small GEMM folding the
Clebsch–Gordan blocks into the spherical harmonics, ``A_e[r, m1] = Σ_k Y_e[k] T[k, r, m1]``, with
``r`` running over the (path, M) rows of the group, and (2) a batched ``[rows × m1] @ [m1 × C]``
product per edge. The group's rows are cut into paths and the weights into single paths with
``lax.split``, and the paths joined in output order with ``concatenate``: split and concatenate
transpose to each other, so the backward pass has no pads or scatter-adds (slow on XLA's CPU
backend). No generic ``e3nn.tensor_product`` dispatch.
"""

from __future__ import annotations

import dataclasses
import functools

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.features import Features, sort_irreps


@dataclasses.dataclass(frozen=True)
class Path:
    ir1: str
    l2: int
    ir3: str


@dataclasses.dataclass(frozen=True)
class ChannelwiseTPPlan:
    """Static description of the product; built once per (input irreps, max_ell, target)."""

    paths: tuple[Path, ...]  # sorted by (ir3, ir1, l2); position = path index p
    groups: tuple[tuple[str, np.ndarray, tuple[int, ...]], ...]  # (ir1, T[k, rows, 2l1+1], its paths in row order)

    @property
    def num_paths(self) -> int:
        return len(self.paths)

    @property
    def irreps_out(self) -> dict:
        """Output irrep → number of paths into it."""
        out: dict = {}
        for p in self.paths:
            out[p.ir3] = out.get(p.ir3, 0) + 1
        return out


@functools.lru_cache(maxsize=None)
def channelwise_tp_plan(irreps_in: tuple[str, ...], max_ell: int, irreps_target: tuple[str, ...]) -> ChannelwiseTPPlan:
    paths = []
    for ir1 in irreps_in:
        for l2 in range(max_ell + 1):
            for ir3 in e3nn.Irrep(ir1) * e3nn.Irrep(l2, (-1) ** l2):
                if str(ir3) in irreps_target:
                    paths.append(Path(ir1, l2, str(ir3)))
    paths.sort(key=lambda p: (e3nn.Irrep(p.ir3), e3nn.Irrep(p.ir1), p.l2))
    n_sh = (max_ell + 1) ** 2
    groups = []
    for ir1 in sort_irreps(p.ir1 for p in paths):
        members = [i for i, p in enumerate(paths) if p.ir1 == ir1]
        l1 = e3nn.Irrep(ir1).l
        T = np.zeros((n_sh, sum(e3nn.Irrep(paths[i].ir3).dim for i in members), 2 * l1 + 1))
        r = 0
        for i in members:
            l2, l3 = paths[i].l2, e3nn.Irrep(paths[i].ir3).l
            cg = e3nn.clebsch_gordan(l1, l2, l3) * np.sqrt(2 * l3 + 1)  # [m1, m2, M]
            T[l2**2 : (l2 + 1) ** 2, r : r + 2 * l3 + 1] = np.transpose(cg, (1, 2, 0))
            r += 2 * l3 + 1
        groups.append((ir1, T, tuple(members)))
    return ChannelwiseTPPlan(tuple(paths), tuple(groups))


def channelwise_tp(plan: ChannelwiseTPPlan, h_edge: Features, sh: jnp.ndarray, weights: jnp.ndarray) -> dict:
    """Per-edge messages.

    Args:
        h_edge: sender features ``{ir1: [E, 2l1+1, C]}``.
        sh: ``[E, (max_ell+1)²]`` spherical harmonics of the edge unit vectors (component norm).
        weights: ``[E, num_paths, C]`` radial weights.

    Returns:
        ``{ir3: [E, P_ir3 · (2l3+1), C]}`` messages, rows ordered by path (plan order) then M.
    """
    w_paths = jnp.split(weights, plan.num_paths, axis=1) if plan.num_paths > 1 else [weights]
    per_path = [None] * plan.num_paths
    for ir1, T, members in plan.groups:
        k, rows, d1 = T.shape
        A = (sh @ jnp.asarray(T.reshape(k, rows * d1), sh.dtype)).reshape(-1, rows, d1)
        h = h_edge[ir1]
        out = A * h if d1 == 1 else jnp.einsum("erm,emc->erc", A, h)  # [E, rows, C]
        dims = [e3nn.Irrep(plan.paths[i].ir3).dim for i in members]
        parts = jnp.split(out, np.cumsum(dims)[:-1].tolist(), axis=1) if len(members) > 1 else [out]
        for i, part in zip(members, parts):
            per_path[i] = part * w_paths[i]
    msgs: dict = {}
    for p, m in zip(plan.paths, per_path):
        msgs.setdefault(p.ir3, []).append(m)
    return {ir3: ms[0] if len(ms) == 1 else jnp.concatenate(ms, axis=1) for ir3, ms in msgs.items()}

"""Channelwise ("uvu") tensor product of node features with edge spherical harmonics.

For every allowed path ``p = (ir1, l2) → ir3`` and channel ``c``

    m_e[ir3][p, M, c] = w_e[p, c] · Σ_{m1, m2} C^{l1 l2 l3}_{m1 m2 M} · sqrt(2 l3 + 1) · Y^{l2}_{m2}(r̂_e) · h_{s(e)}[ir1][m1, c]

with C e3nn's real Clebsch–Gordan coefficients (unit Frobenius norm, hence sqrt(2l3+1) for
"component" normalisation) and ``w_e`` per-edge weights from the radial MLP.

Paths are grouped by ``(ir3, ir1)``, so that in a group all paths have the same shapes. A group is
(1) one small GEMM folding the Clebsch–Gordan blocks into the spherical harmonics,
``A_e[(p, M), m1] = Σ_k Y_e[k] T[k, (p, M), m1]``, (2) a batched ``[rows × m1] @ [m1 × C]``
product per edge, (3) a broadcast multiply by the group's weights and (4) a scatter-sum over
receivers; groups are joined on nodes, after the sum. The weights are cut into groups with
``lax.split`` (its transpose is a concatenate): the backward pass has no pads or gathers on
per-edge arrays, which are slow on XLA's CPU backend. No generic ``e3nn.tensor_product``.
"""

from __future__ import annotations

import dataclasses
import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.features import Features, sort_irreps


@dataclasses.dataclass(frozen=True)
class Path:
    """One path ``(ir1, l2) → ir3`` of the product: input irrep ⊗ spherical harmonic of degree ``l2``."""

    ir1: str
    l2: int
    ir3: str


@dataclasses.dataclass(frozen=True)
class ChannelwiseTPPlan:
    """Static description of the product; built once per (input irreps, max_ell, target)."""

    paths: tuple[Path, ...]  # sorted by (ir3, ir1, l2); position = path index p
    groups: tuple[tuple[str, str, int, np.ndarray], ...]  # (ir3, ir1, first path, T[k, P_g·(2l3+1), 2l1+1])

    @property
    def num_paths(self) -> int:
        return len(self.paths)


@functools.cache
def channelwise_tp_plan(irreps_in: tuple[str, ...], max_ell: int, irreps_target: tuple[str, ...]) -> ChannelwiseTPPlan:
    """The plan (cached): every path ``ir1 ⊗ Y^{l2} → ir3`` with ``l2 ≤ max_ell`` and ``ir3`` in
    ``irreps_target``, sorted by (ir3, ir1, l2), grouped by (ir3, ir1) with each group's
    Clebsch–Gordan blocks ``T [(max_ell+1)², P_g·(2l3+1), 2l1+1]`` (times sqrt(2l3+1), module docstring)."""
    paths = []
    for ir1 in irreps_in:
        for l2 in range(max_ell + 1):
            for ir3 in e3nn.Irrep(ir1) * e3nn.Irrep(l2, (-1) ** l2):
                if str(ir3) in irreps_target:
                    paths.append(Path(ir1, l2, str(ir3)))
    paths.sort(key=lambda p: (e3nn.Irrep(p.ir3), e3nn.Irrep(p.ir1), p.l2))
    n_sh = (max_ell + 1) ** 2
    groups = []
    for ir3 in sort_irreps(p.ir3 for p in paths):
        for ir1 in sort_irreps(p.ir1 for p in paths if p.ir3 == ir3):
            idx = [i for i, p in enumerate(paths) if p.ir3 == ir3 and p.ir1 == ir1]
            l1, l3 = e3nn.Irrep(ir1).l, e3nn.Irrep(ir3).l
            T = np.zeros((n_sh, len(idx), 2 * l3 + 1, 2 * l1 + 1))
            for j, i in enumerate(idx):
                l2 = paths[i].l2
                cg = e3nn.clebsch_gordan(l1, l2, l3) * np.sqrt(2 * l3 + 1)  # [m1, m2, M]
                T[l2**2 : (l2 + 1) ** 2, j] = np.transpose(cg, (1, 2, 0))
            groups.append((ir3, ir1, idx[0], T.reshape(n_sh, len(idx) * (2 * l3 + 1), 2 * l1 + 1)))
    return ChannelwiseTPPlan(tuple(paths), tuple(groups))


def channelwise_tp_aggregate(
    plan: ChannelwiseTPPlan, h_edge: Features, sh: jnp.ndarray, weights: jnp.ndarray, receivers: jnp.ndarray, num_nodes: int
) -> dict:
    """Messages summed over each receiver's neighbours: ``Σ_{e: r(e)=i} m_e``.

    Args:
        h_edge: sender features ``{ir1: [E, 2l1+1, C]}``.
        sh: ``[E, (max_ell+1)²]`` spherical harmonics of the edge unit vectors (component norm).
        weights: ``[E, num_paths, C]`` radial weights (the message is linear in them).
        receivers: ``[E]`` receiving node of every edge.

    Returns:
        ``{ir3: [N, P_ir3, 2l3+1, C]}``, paths in plan order.
    """
    bounds = [start for _, _, start, _ in plan.groups[1:]]
    w_groups = jnp.split(weights, bounds, axis=1) if bounds else [weights]
    out: dict = {}
    for (ir3, ir1, _, T), w in zip(plan.groups, w_groups):
        k, rows, d1 = T.shape
        P, d3 = w.shape[1], rows // w.shape[1]
        A = (sh @ jnp.asarray(T.reshape(k, rows * d1), sh.dtype)).reshape(-1, rows, d1)
        h = h_edge[ir1]
        m = A * h if d1 == 1 else jnp.einsum("erm,emc->erc", A, h)  # [E, P·d3, C]
        m = (m.reshape(-1, P, d3, m.shape[-1]) * w[:, :, None, :]).reshape(-1, rows, m.shape[-1])
        agg = jax.ops.segment_sum(m, receivers, num_segments=num_nodes)
        out.setdefault(ir3, []).append(agg.reshape(num_nodes, P, d3, -1))
    return {ir3: parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1) for ir3, parts in out.items()}


@dataclasses.dataclass(frozen=True)
class EdgeTPPlan:
    """Static description of a channelwise ("uuu") product of two equivariant features of the same
    edge (Allegro's ``V_ij ⊗ Γ_i``): every path ``ir1 ⊗ ir2 → ir3`` with ``ir3`` in the target.

    ``pairs``: per ``(ir1, ir2)`` the Clebsch–Gordan block ``C [2l1+1, 2l2+1, Σ_p (2l3+1)]`` (times
    sqrt(2l3+1)) of its paths, their outputs ``ir3`` and their path indices (position in ``paths``)."""

    paths: tuple[tuple[str, str, str], ...]  # (ir1, ir2, ir3), sorted by (ir3, ir1, ir2)
    pairs: tuple[tuple[str, str, np.ndarray, tuple[str, ...], tuple[int, ...]], ...]

    @property
    def num_paths(self) -> int:
        return len(self.paths)


@functools.cache
def edge_tp_plan(irreps1: tuple[str, ...], irreps2: tuple[str, ...], irreps_target: tuple[str, ...]) -> EdgeTPPlan:
    """The plan (cached) of :func:`edge_tensor_product`."""
    paths = sorted(
        (
            (ir1, ir2, str(ir3))
            for ir1 in irreps1
            for ir2 in irreps2
            for ir3 in e3nn.Irrep(ir1) * e3nn.Irrep(ir2)
            if str(ir3) in irreps_target
        ),
        key=lambda p: (e3nn.Irrep(p[2]), e3nn.Irrep(p[0]), e3nn.Irrep(p[1])),
    )
    pairs = []
    for ir1 in sort_irreps({p[0] for p in paths}):
        for ir2 in sort_irreps({p[1] for p in paths if p[0] == ir1}):
            idx = tuple(i for i, p in enumerate(paths) if p[:2] == (ir1, ir2))
            l1, l2 = e3nn.Irrep(ir1).l, e3nn.Irrep(ir2).l
            blocks = [e3nn.clebsch_gordan(l1, l2, e3nn.Irrep(paths[i][2]).l) * np.sqrt(2 * e3nn.Irrep(paths[i][2]).l + 1) for i in idx]
            pairs.append((ir1, ir2, np.concatenate(blocks, axis=-1), tuple(paths[i][2] for i in idx), idx))
    return EdgeTPPlan(tuple(paths), tuple(pairs))


def edge_tensor_product(plan: EdgeTPPlan, x1: Features, x2: Features, weights: jnp.ndarray) -> Features:
    """``out[ir3][e, M, u] = Σ_{p: → ir3} W[p, u] Σ_{m1, m2} C^p_{m1 m2 M} x1[ir1][e, m1, u] x2[ir2][e, m2, u]``.

    Args: ``x1``, ``x2`` ``{ir: [E, 2l+1, U]}`` (same channels ``U``); ``weights`` ``[P, U]`` (one per
    path and channel). Returns ``{ir3: [E, 2l3+1, U]}`` for every target irrep some path reaches.
    """
    out: dict = {}
    for ir1, ir2, cg, outs, idx in plan.pairs:
        y = jnp.einsum("emu,enu,mnk->eku", x1[ir1], x2[ir2], jnp.asarray(cg, x1[ir1].dtype))  # [E, Σ(2l3+1), U]
        start = 0
        for ir3, p in zip(outs, idx):
            d3 = 2 * e3nn.Irrep(ir3).l + 1
            term = y[:, start : start + d3, :] * weights[p]
            out[ir3] = term if ir3 not in out else out[ir3] + term
            start += d3
    return out

"""Channelwise ("uvu") tensor product of node features with edge spherical harmonics.

For every allowed path ``(ir1, l2) → ir3`` and channel ``c``

    m_e[ir3, p, M, c] = w_e[p, c] · Σ_{m1, m2} C^{l1 l2 l3}_{m1 m2 M} · sqrt(2 l3 + 1) · Y^{l2}_{m2}(r̂_e) · h_{s(e)}[ir1, m1, c]

with C e3nn's real Clebsch–Gordan coefficients (unit Frobenius norm, hence the sqrt(2l3+1) for
"component" normalisation) and ``w_e`` per-edge weights from the radial MLP.

Computed as (1) one small GEMM per input irrep that folds the Clebsch–Gordan blocks into the
spherical harmonics, ``A_e[r, m1] = Σ_k Y_e[k] · T[k, r, m1]``, where ``r`` runs over all
(path, M) rows of that input irrep; (2) a batched ``[rows × m1] @ [m1 × C]`` product per edge;
(3) one fused gather that orders the rows by output irrep (ℓ=0 first) and multiplies by the
weights. No generic ``e3nn.tensor_product`` dispatch, no per-path Python loop on the hot path.
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

    paths: tuple[Path, ...]  # sorted by (ir3, ir1, l2): path index p
    groups: tuple[tuple[str, np.ndarray], ...]  # (ir1, T[k, rows, 2l1+1]) per input irrep
    row_order: np.ndarray  # permutation of the concatenated group rows → grouped by ir3
    row_path: np.ndarray  # path index of every output row (after reordering)
    out_slices: tuple[tuple[str, int, int, int], ...]  # (ir3, start, n_paths, 2l3+1)

    @property
    def num_paths(self) -> int:
        return len(self.paths)

    @property
    def num_rows(self) -> int:
        return int(self.row_order.shape[0])

    @property
    def num_scalar_rows(self) -> int:
        """Rows of the ℓ=0e output (they come first): the scalar pathway's slice."""
        return sum(n * d for ir, _, n, d in self.out_slices if ir == "0e")


@functools.lru_cache(maxsize=None)
def channelwise_tp_plan(irreps_in: tuple[str, ...], max_ell: int, irreps_target: tuple[str, ...]) -> ChannelwiseTPPlan:
    paths = []
    for ir1 in irreps_in:
        i1 = e3nn.Irrep(ir1)
        for l2 in range(max_ell + 1):
            for ir3 in i1 * e3nn.Irrep(l2, (-1) ** l2):
                if str(ir3) in irreps_target:
                    paths.append(Path(ir1, l2, str(ir3)))
    paths.sort(key=lambda p: (e3nn.Irrep(p.ir3), e3nn.Irrep(p.ir1), p.l2))
    n_sh = (max_ell + 1) ** 2

    # Rows: for each path p, (2l3+1) rows. Global order = by path (already grouped by ir3).
    path_start, start = [], 0
    for p in paths:
        path_start.append(start)
        start += e3nn.Irrep(p.ir3).dim
    groups, concat_rows = [], []
    for ir1 in sort_irreps(irreps_in):
        l1 = e3nn.Irrep(ir1).l
        members = [(i, p) for i, p in enumerate(paths) if p.ir1 == ir1]
        if not members:
            continue
        rows = sum(e3nn.Irrep(p.ir3).dim for _, p in members)
        T = np.zeros((n_sh, rows, 2 * l1 + 1))
        r = 0
        for i, p in members:
            l3 = e3nn.Irrep(p.ir3).l
            cg = e3nn.clebsch_gordan(l1, p.l2, l3) * np.sqrt(2 * l3 + 1)  # [m1, m2, M]
            T[p.l2**2 : (p.l2 + 1) ** 2, r : r + 2 * l3 + 1, :] = np.transpose(cg, (1, 2, 0))
            concat_rows.extend(range(path_start[i], path_start[i] + 2 * l3 + 1))
            r += 2 * l3 + 1
        groups.append((ir1, T))
    concat_rows = np.asarray(concat_rows)
    row_order = np.argsort(concat_rows)  # concatenated position of each global row
    row_path = np.concatenate([np.full(e3nn.Irrep(p.ir3).dim, i) for i, p in enumerate(paths)])

    out_slices = []
    for ir3 in sort_irreps(p.ir3 for p in paths):
        idx = [i for i, p in enumerate(paths) if p.ir3 == ir3]
        out_slices.append((ir3, path_start[idx[0]], len(idx), e3nn.Irrep(ir3).dim))
    return ChannelwiseTPPlan(tuple(paths), tuple(groups), row_order, row_path, tuple(out_slices))


def channelwise_tp(plan: ChannelwiseTPPlan, h_edge: Features, sh: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """Per-edge messages.

    Args:
        h_edge: sender features ``{ir1: [E, 2l1+1, C]}``.
        sh: ``[E, (max_ell+1)²]`` spherical harmonics of the edge unit vectors (component norm).
        weights: ``[E, num_paths, C]`` radial weights.

    Returns:
        ``[E, num_rows, C]`` messages, rows grouped by output irrep (ℓ=0 first) then by path and M.
    """
    parts = []
    for ir1, T in plan.groups:
        _, rows, d1 = T.shape
        A = (sh @ jnp.asarray(T.reshape(T.shape[0], rows * d1), sh.dtype)).reshape(-1, rows, d1)
        h = h_edge[ir1]
        if d1 == 1:
            parts.append(A * h)  # [E, rows, 1] * [E, 1, C]
        else:
            parts.append(jnp.einsum("erm,emc->erc", A, h))
    msgs = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
    return msgs[:, plan.row_order, :] * weights[:, plan.row_path, :]


def split_rows(plan: ChannelwiseTPPlan, agg: jnp.ndarray) -> Features:
    """``[N, num_rows, C]`` aggregated rows → ``{ir3: [N, n_paths, 2l3+1, C]}``."""
    out = {}
    for ir3, start, n_paths, d in plan.out_slices:
        block = agg[:, start : start + n_paths * d, :]
        out[ir3] = block.reshape(agg.shape[0], n_paths, d, agg.shape[-1])
    return out

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


# Above this many edges the messages are built and summed in chunks of EDGE_CHUNK edges (a
# ``lax.scan`` whose body is rematerialised in the backward pass): the per-edge messages
# ``[E, Σ_p (2l3+1), C]`` and their gradients then exist for one chunk at a time instead of for the
# whole graph, which is what bounds the memory of large cells (medium MACE: ~45 kB per edge
# unchunked). The scan is unrolled by EDGE_CHUNK_UNROLL: XLA's CPU while loop costs much per
# iteration (Si 4096, E+F+S: 4.1 s rolled, 1.7–1.9 s unrolled by 4, 2.5 s one shot); fully unrolled,
# the chunks' buffers overlap (Si 32,768: 33 GB against 12.5 GB). Training batches and molecules stay
# below the threshold and take the one-shot path (chunks of a few thousand edges are slower there).
EDGE_CHUNK = 16384
CHUNK_ABOVE_EDGES = 2 * EDGE_CHUNK
EDGE_CHUNK_UNROLL = 4


def _group_messages(plan: ChannelwiseTPPlan, h: Features, senders, sh, weights) -> list:
    """Per group of the plan, the messages ``[E, P_g·(2l3+1), C]`` of the edges given."""
    bounds = [start for _, _, start, _ in plan.groups[1:]]
    w_groups = jnp.split(weights, bounds, axis=1) if bounds else [weights]
    out = []
    for (_, ir1, _, T), w in zip(plan.groups, w_groups):
        k, rows, d1 = T.shape
        P, d3 = w.shape[1], rows // w.shape[1]
        A = (sh @ jnp.asarray(T.reshape(k, rows * d1), sh.dtype)).reshape(-1, rows, d1)
        h_e = h[ir1][senders]
        m = A * h_e if d1 == 1 else jnp.einsum("erm,emc->erc", A, h_e)  # [E, P·d3, C]
        out.append((m.reshape(-1, P, d3, m.shape[-1]) * w[:, :, None, :]).reshape(-1, rows, m.shape[-1]))
    return out


def channelwise_tp_aggregate(
    plan: ChannelwiseTPPlan,
    h: Features,
    sh: jnp.ndarray,
    weights: jnp.ndarray,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    num_nodes: int,
    edge_chunk: int | None = None,
) -> dict:
    """Messages summed over each receiver's neighbours: ``Σ_{e: r(e)=i} m_e``.

    Args:
        h: node features ``{ir1: [N_in, 2l1+1, C]}``, read at ``senders``.
        sh: ``[E, (max_ell+1)²]`` spherical harmonics of the edge unit vectors (component norm).
        weights: ``[E, num_paths, C]`` radial weights (the message is linear in them).
        senders, receivers: ``[E]`` sending and receiving node of every edge.
        edge_chunk: edges per chunk; default: :data:`EDGE_CHUNK` when there are more than
            :data:`CHUNK_ABOVE_EDGES` edges, else one shot; always one shot for a symbolic edge
            count (an exported model). The result does not depend on it (beyond the order of
            floating-point sums).

    Returns:
        ``{ir3: [N, P_ir3, 2l3+1, C]}``, paths in plan order.
    """
    E = sh.shape[0]
    if not isinstance(E, int):  # a symbolic size (jax.export's shape polymorphism): no static chunk count
        edge_chunk = None
    elif edge_chunk is None:
        edge_chunk = EDGE_CHUNK if E > CHUNK_ABOVE_EDGES else E
    if edge_chunk is None or edge_chunk >= E:
        sums = [jax.ops.segment_sum(m, receivers, num_segments=num_nodes) for m in _group_messages(plan, h, senders, sh, weights)]
    else:
        sums = _chunked_sums(plan, h, sh, weights, senders, receivers, num_nodes, edge_chunk)
    out: dict = {}
    for (ir3, *_), agg in zip(plan.groups, sums):
        out.setdefault(ir3, []).append(agg.reshape(num_nodes, -1, 2 * e3nn.Irrep(ir3).l + 1, agg.shape[-1]))
    return {ir3: parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1) for ir3, parts in out.items()}


def _chunked_sums(plan, h, sh, weights, senders, receivers, num_nodes, chunk) -> list:
    """:func:`channelwise_tp_aggregate`'s per-group sums, ``chunk`` edges at a time. The edge arrays
    are zero-padded to a whole number of chunks (zero weights: zero messages, summed on node 0).
    The message builder is checkpointed, so the backward pass recomputes one chunk's messages
    instead of storing every chunk's; the scatter-add into the loop-carried sums stays outside it."""
    E = sh.shape[0]
    # A chunk that divides E (within a factor 2 of the one asked for) makes the split a free
    # reshape; otherwise the edge arrays are padded, which copies them (and their gradients).
    chunk = next((c for c in range(chunk, (chunk - 1) // 2, -1) if E % c == 0), chunk)
    n_chunks = -(-E // chunk)

    def split(x):
        if n_chunks * chunk > E:
            x = jnp.pad(x, [(0, n_chunks * chunk - E)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape(n_chunks, chunk, *x.shape[1:])

    messages = jax.checkpoint(lambda h_, s, y, w: _group_messages(plan, h_, s, y, w))
    C = weights.shape[-1]

    def body(sums, xs):
        sh_k, w_k, s_k, r_k = xs
        msgs = messages(h, s_k, sh_k, w_k)
        return [acc.at[r_k].add(m) for acc, m in zip(sums, msgs)], None

    init = [jnp.zeros((num_nodes, T.shape[1], C), weights.dtype) for _, _, _, T in plan.groups]
    sums, _ = jax.lax.scan(body, init, (split(sh), split(weights), split(senders), split(receivers)), unroll=EDGE_CHUNK_UNROLL)
    return sums


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

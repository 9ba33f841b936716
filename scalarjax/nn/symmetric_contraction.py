"""MACE's symmetric contraction (higher body-order product basis), per channel and per species.

For every channel ``c`` of node ``n`` with species ``s`` and every output irrep ``L``

    B[n, L, M, c] = Σ_{ν=1..correlation} Σ_p w_{s, L, ν}[p, c] · Σ_{i1..iν} U^{L,ν}_{i1..iν; p, M} · A[n, i1, c] ⋯ A[n, iν, c]

where ``A[n, :, c]`` is the channel's vector over the input irreps (e.g. 0e+1o+2e+3o, 16
numbers) and ``U^{L,ν}`` is e3nn's reduced basis of symmetric tensors of order ν that transform as
``L`` (``e3nn.reduced_symmetric_tensor_product_basis``).

Because ``U`` is symmetric in ``i1..iν`` the inner sum runs over the *monomials*
``A_{i1} ⋯ A_{iν}`` with ``i1 ≤ … ≤ iν`` (816 for ν=3 on 16 inputs), with coefficients summed over
permutations; monomials no output uses are pruned. The per-species weights are folded into the
basis once per call (``W_s[k, M, c] = Σ_p U[k, p, M] w_s[p, c]``, independent of the number of
atoms), so the per-atom work is one monomial build and one contraction over ``k``.

Layout choices and the variants measured against them: ``docs/performance-notes.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scalarjax.nn.features import Features
from scalarjax.nn.linear import GATHER_ABOVE_SPECIES, species_index

# The nested top degree (SymmetricContraction._folded) while its intermediate has at most this
# many rows per top-degree monomial. Medium MACE, float32, CPU: one species (ratio 1.4 and 0.9 for
# the two layers) 0.88× inference and 0.77× training time; three species (ratio 4.2) 1.3× inference.
NESTED_TOP_MAX_ROWS = 2.0


@dataclasses.dataclass(frozen=True)
class ContractionPlan:
    """Static tables of :class:`SymmetricContraction` for one (input irreps, correlation, output irreps),
    built by :func:`contraction_plan`: how to build the kept monomials degree by degree and the basis
    ``U[L]`` on them (``K`` = kept monomials of all degrees, ``P_L`` = paths summed over ν)."""

    mono_index: tuple  # per degree ν ≥ 2: (prefix index into degree ν-1 monomials, index into A)
    mono_keep: tuple  # per degree ν: which monomials of that degree enter the final list
    U: dict  # L → [K, P_L, 2L+1] coefficients on the kept monomials (all degrees stacked)
    num_paths: dict  # L → tuple(P_{L,ν} for ν = 1..correlation)


def sorted_monomials(D: int, nu: int) -> list:
    """All sorted index tuples ``i1 ≤ … ≤ iν`` over ``D`` inputs, lexicographic."""
    return [(i,) for i in range(D)] if nu == 1 else list(itertools.combinations_with_replacement(range(D), nu))


def symmetrize_to_monomials(tensor: np.ndarray, D: int, nu: int) -> np.ndarray:
    """``[D]*ν + [...]`` tensor → ``[n_monomials, ...]``: the coefficient of each sorted monomial
    ``A_i1 ⋯ A_iν`` in ``Σ_i T[i1..iν, ...] A_i1 ⋯ A_iν`` (the sum of T over the monomial's permutations)."""
    monos = sorted_monomials(D, nu)
    key = {t: j for j, t in enumerate(monos)}
    rows = np.array([key[tuple(sorted(t))] for t in itertools.product(range(D), repeat=nu)])
    flat = np.asarray(tensor).reshape(D**nu, -1)
    summed = np.zeros((len(monos), flat.shape[1]))
    np.add.at(summed, rows, flat)
    return summed.reshape((len(monos),) + np.asarray(tensor).shape[nu:])


@functools.cache
def monomial_coefficients(irreps_in: tuple[str, ...], correlation: int, irreps_out: tuple[str, ...]) -> dict:
    """``(L, ν) → [n_monomials_ν, P_{L,ν}, 2L+1]``: e3nn's reduced symmetric basis on sorted monomials.

    Path ``p`` of ``(L, ν)`` is the ``p``-th copy of ``L`` in ``e3nn.reduced_symmetric_tensor_product_basis``;
    this is the order of the weights ``w[L]`` (ν-blocks stacked) of :class:`SymmetricContraction`.
    """
    irreps = e3nn.Irreps("+".join(irreps_in))
    D = irreps.dim
    coeffs = {}
    for nu in range(1, correlation + 1):
        basis = e3nn.reduced_symmetric_tensor_product_basis(irreps, nu, keep_ir=list(irreps_out))
        summed = symmetrize_to_monomials(np.asarray(basis.array), D, nu).reshape(-1, basis.irreps.dim)
        for (mul, ir), sl in zip(basis.irreps, basis.irreps.slices()):
            assert (str(ir), nu) not in coeffs, "reduced basis irreps are expected to be simplified"
            coeffs[(str(ir), nu)] = summed[:, sl].reshape(-1, mul, ir.dim)
    for L in irreps_out:
        for nu in range(1, correlation + 1):
            coeffs.setdefault((L, nu), np.zeros((len(sorted_monomials(D, nu)), 0, e3nn.Irrep(L).dim)))
    return coeffs


@functools.cache
def contraction_plan(irreps_in: tuple[str, ...], correlation: int, irreps_out: tuple[str, ...]) -> ContractionPlan:
    """The :class:`ContractionPlan` (cached): :func:`monomial_coefficients` restricted to the monomials
    some output uses, plus those a higher degree is built from (module docstring)."""
    irreps = e3nn.Irreps("+".join(irreps_in))
    D = irreps.dim
    monos = [sorted_monomials(D, nu) for nu in range(1, correlation + 1)]  # all sorted tuples of each degree
    # Coefficients of every sorted monomial for every (L, ν, path, M).
    coeffs = monomial_coefficients(irreps_in, correlation, irreps_out)  # (L, ν) → [n_monos_ν, P, 2L+1]

    # Prune: keep a monomial if some output uses it, or a higher degree is built from it.
    used = [np.zeros(len(m), bool) for m in monos]
    for (_L, nu), c in coeffs.items():
        used[nu - 1] |= np.abs(c).reshape(c.shape[0], -1).max(axis=1, initial=0.0) > 1e-10
    needed = [u.copy() for u in used]
    for nu in range(correlation, 1, -1):
        key = {t: j for j, t in enumerate(monos[nu - 2])}
        for j in np.flatnonzero(needed[nu - 1]):
            needed[nu - 2][key[monos[nu - 1][j][:-1]]] = True
    # Index maps to build degree ν from the *needed* monomials of degree ν-1 times one input.
    mono_index = []
    for nu in range(2, correlation + 1):
        prev = [monos[nu - 2][j] for j in np.flatnonzero(needed[nu - 2])]
        key = {t: j for j, t in enumerate(prev)}
        cur = [monos[nu - 1][j] for j in np.flatnonzero(needed[nu - 1])]
        mono_index.append((np.array([key[t[:-1]] for t in cur]), np.array([t[-1] for t in cur])))
    # Among the needed monomials of each degree, those that enter the contraction.
    mono_keep = tuple(np.flatnonzero(used[nu][needed[nu]]) for nu in range(correlation))
    U, num_paths = {}, {}
    for L in irreps_out:
        blocks, P = [], [coeffs[(L, nu)].shape[1] for nu in range(1, correlation + 1)]
        for nu in range(1, correlation + 1):
            c = coeffs[(L, nu)][used[nu - 1]]  # [K_ν, P_ν, M]
            block = np.zeros((c.shape[0], sum(P), c.shape[2]))
            off = sum(P[: nu - 1])
            block[:, off : off + P[nu - 1]] = c
            blocks.append(block)
        U[L] = np.concatenate(blocks, axis=0)
        num_paths[L] = tuple(P)
    return ContractionPlan(tuple(mono_index), mono_keep, U, num_paths)


def symmetric_monomials(plan: ContractionPlan, A: jnp.ndarray) -> list:
    """``A``: ``[C, D, N]`` (channel-major) → per degree ν, ``[C, K_ν, N]`` kept monomials (lexicographic).

    Channel-major with nodes innermost, so that every gather over the monomial axis moves rows of
    ``N`` contiguous numbers. In the node-major layout ``[N, D, C]`` XLA's CPU backend fused the
    gathers, the product and the transpose the contraction needs into one strided loop 3–4× slower
    than this whole function (medium MACE, 10 aspirins: 150 ms of a 250 ms value-and-grad)."""
    prev, out = A, [A[:, plan.mono_keep[0]]]
    for (pre, last), keep in zip(plan.mono_index, plan.mono_keep[1:]):
        prev = prev[:, pre] * A[:, last]
        out.append(prev[:, keep])
    return out


def _monomials_below_top(plan: ContractionPlan, A: jnp.ndarray) -> tuple[list, jnp.ndarray]:
    """For correlation ν ≥ 2 and ``A`` ``[C, D, N]``: the kept monomials of degrees 1..ν−2 (as in
    :func:`symmetric_monomials`) and the *needed* monomials of degree ν−1 (those the top degree is
    built from; ``A`` itself when ν = 2), ``[C, P, N]``."""
    prev, lower = A, []
    for nu, (pre, last) in enumerate(plan.mono_index[:-1]):
        lower.append(prev[:, plan.mono_keep[nu]])
        prev = prev[:, pre] * A[:, last]
    return lower, prev


def split_outputs(B: jnp.ndarray, irreps_out: tuple[str, ...], dims: list) -> Features:
    """``[N, Σ_L (2L+1), C]`` (outputs stacked in ``irreps_out`` order) → ``{L: [N, 2L+1, C]}``."""
    bounds = np.cumsum(dims)[:-1].tolist()
    return dict(zip(irreps_out, jnp.split(B, bounds, axis=1)))


# Above CHUNK_ABOVE_NODES nodes the contraction runs over chunks of NODE_CHUNK nodes (a ``lax.scan``
# rematerialised in the backward pass, unrolled by NODE_CHUNK_UNROLL): its monomials, ``[C, K, N]``
# per degree, and their gradients then exist for one chunk at a time (medium MACE: ~250 kB per atom
# unchunked), and the chunks are faster as well (Si 512, E+F+S: 186 against 238 ms in float32, 430
# against 499 ms in float64; docs/performance-notes.md). Training batches of small cells and
# molecules stay below it.
NODE_CHUNK = 256
CHUNK_ABOVE_NODES = 2 * NODE_CHUNK
NODE_CHUNK_UNROLL = 4


def _folded_contract(plan: ContractionPlan, folded: tuple, A: jnp.ndarray) -> jnp.ndarray:
    """``A`` ``[C, D, N]`` → ``B`` ``[C, J, N]`` with the folded weights of
    :meth:`SymmetricContraction._folded`: ``(Wd, None, None)`` (every degree as monomials and a GEMM)
    or ``(Wd, W_top [C, J·P, D], W_prev [C, J, P])`` (the top degree nested)."""
    Wd, W_top, W_prev = folded
    C, N = A.shape[0], A.shape[2]
    B = 0.0
    if W_top is None:
        for mono, Wb in zip(symmetric_monomials(plan, A), Wd):
            B = B + jnp.einsum("cjk,ckn->cjn", Wb, mono)  # [C, J, N]
        return B
    lower, prev = _monomials_below_top(plan, A)  # kept monomials of degrees < ν−1; needed of ν−1
    for mono, Wb in zip(lower, Wd):
        B = B + jnp.einsum("cjk,ckn->cjn", Wb, mono)  # [C, J, N]
    J, P = W_prev.shape[1], W_prev.shape[2]
    T = jnp.einsum("cjq,cqn->cjn", W_top, A).reshape(C, J, P, N) + W_prev[..., None]
    return B + jnp.sum(T * prev[:, None], axis=2)  # a multiply-reduce, not a batched dot over (c, n)


def _over_node_chunks(f, weights, A: jnp.ndarray) -> jnp.ndarray:
    """``f(weights, A [C, D, N]) → [C, J, N]``, acting on every node alone, evaluated on chunks of
    :data:`NODE_CHUNK` nodes above :data:`CHUNK_ABOVE_NODES` nodes (else, and for a symbolic size as
    in an exported model, in one shot) with ``f`` checkpointed, so the backward pass recomputes one
    chunk's intermediates."""
    C, D, N = A.shape
    if not isinstance(N, int) or N <= CHUNK_ABOVE_NODES:  # symbolic (jax.export): no static chunk count
        return f(weights, A)
    chunk = NODE_CHUNK
    n_chunks = -(-N // chunk)
    A = jnp.pad(A, [(0, 0), (0, 0), (0, n_chunks * chunk - N)]) if n_chunks * chunk > N else A
    chunks = jnp.transpose(A.reshape(C, D, n_chunks, chunk), (2, 0, 1, 3))  # [K, C, D, chunk]
    f = jax.checkpoint(f)
    _, out = jax.lax.scan(lambda _, a: (None, f(weights, a)), None, chunks, unroll=NODE_CHUNK_UNROLL)  # [K, C, J, chunk]
    return jnp.transpose(out, (1, 2, 0, 3)).reshape(C, out.shape[2], -1)[:, :, :N]


class SymmetricContraction(nn.Module):
    """``{ir: [N, 2l+1, C]}`` (all input irreps, equal C) → ``{L: [N, 2L+1, C]}``.

    Weights ``w[L]``: ``[S, P_L, C]`` (P_L paths summed over ν), initialised N(0,1)/P_{L,ν} as in MACE.
    """

    irreps_out: tuple[str, ...]
    correlation: int
    num_species: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Features, onehot: jnp.ndarray) -> Features:
        keys = tuple(sorted(x, key=e3nn.Irrep))
        plan = contraction_plan(keys, self.correlation, self.irreps_out)
        A = jnp.concatenate([x[k] for k in keys], axis=1)  # [N, D, C]
        C = A.shape[-1]
        A_cm = jnp.transpose(A, (2, 1, 0))  # [C, D, N]

        ws = {}
        for L in self.irreps_out:
            P = plan.num_paths[L]

            def init(key, shape, P=P):
                scale = np.concatenate([np.full(p, 1.0 / max(p, 1)) for p in P])
                return jax.random.normal(key, shape, self.dtype) * jnp.asarray(scale, self.dtype)[None, :, None]

            ws[L] = self.param(f"w_{L}", init, (self.num_species, sum(P), C))
        if self.num_species > GATHER_ABOVE_SPECIES:
            monos = [jnp.transpose(m, (2, 1, 0)) for m in symmetric_monomials(plan, A_cm)]  # [N, K_ν, C]: per-node weights
            if A.shape[0] < self.num_species:
                return self._per_node_paths(plan, monos, ws, onehot)
            return self._gathered(plan, monos, ws, onehot)
        return self._folded(plan, A_cm, ws, onehot)

    def _folded(self, plan: ContractionPlan, A: jnp.ndarray, ws: dict, onehot: jnp.ndarray) -> Features:
        """A few species: every species' weights folded into the basis, ``W[c, j=(s, M), k] = Σ_p
        U[k, p, M] w[s, p, c]`` (independent of the number of atoms), then for all species at once
        (``A`` channel-major ``[C, D, N]``) and each node's species selected.

        Degrees below the top one: one channel-batched GEMM per degree, ``[S·Mt, K_ν] @ [K_ν, N]``
        on the kept monomials. The top degree ν = correlation is never built: with ``m_p`` the
        monomials of degree ν−1 that it extends (``p`` = position among them) and ``q`` the input
        that extends them,

            Σ_k W[c, j, k] m_k = Σ_p m_p[c, n] (W'[c, j, p] + Σ_q W''[c, j, p, q] A[c, q, n])

        where ``W''`` holds the top degree's folded weights at their (prefix, input) positions and
        ``W'`` degree ν−1's at their prefix positions (static scatters on weights, sizes
        independent of N). The inner sum is one GEMM ``[S·Mt·P, D] @ [D, N]`` per channel, the outer
        a multiply-reduce. Neither has gathers of the largest monomials or their scatter-add
        transposes, which dominated training on CPU (medium MACE, Si 64 × 4, float32: training step
        0.77× of the all-monomials GEMM form; docs/performance-notes.md). ``T`` has ``S·Mt·P``
        rows against the top degree's ``K`` monomials, so with several species (``S·Mt·P >
        NESTED_TOP_MAX_ROWS · K``) every degree is built as monomials and contracted by GEMMs."""
        S, C, D, N = self.num_species, A.shape[0], A.shape[1], A.shape[2]
        dims = [plan.U[L].shape[2] for L in self.irreps_out]
        W = jnp.concatenate(
            [jnp.einsum("kpm,spc->csmk", jnp.asarray(plan.U[L], self.dtype), ws[L]) for L in self.irreps_out], axis=2
        )  # [C, S, Mt, K]
        J = S * W.shape[2]
        kept = [len(k) for k in plan.mono_keep]
        Wd = jnp.split(W.reshape(C, J, -1), np.cumsum(kept)[:-1].tolist(), axis=2)  # per degree [C, J, K_ν]
        P = 0 if self.correlation == 1 else D if self.correlation == 2 else len(plan.mono_index[-2][0])
        if not 0 < J * P <= NESTED_TOP_MAX_ROWS * kept[-1]:  # correlation 1, or many species: T too large
            folded = (Wd, None, None)
        else:
            pre, last = plan.mono_index[-1]
            keep_top, keep_prev = plan.mono_keep[-1], plan.mono_keep[-2]
            W_top = jnp.zeros((C, J, P, D), W.dtype).at[:, :, pre[keep_top], last[keep_top]].add(Wd[-1])
            W_prev = jnp.zeros((C, J, P), W.dtype).at[:, :, keep_prev].add(Wd[-2])
            folded = (Wd, W_top.reshape(C, J * P, D), W_prev)
        B = _over_node_chunks(functools.partial(_folded_contract, plan), folded, A)  # [C, S·Mt, N]
        B = B.reshape(C, S, -1, N)
        B = jnp.transpose(B[:, 0], (2, 1, 0)) if S == 1 else jnp.einsum("csmn,ns->nmc", B, onehot)
        return split_outputs(B, self.irreps_out, dims)

    def _gathered(self, plan: ContractionPlan, monos: list, ws: dict, onehot: jnp.ndarray) -> Features:
        """Many species (foundation models: 89): the node's own folded weights are gathered, so the work
        per atom does not grow with S (``monos`` node-major ``[N, K_ν, C]``)."""
        dims = [plan.U[L].shape[2] for L in self.irreps_out]
        W = jnp.concatenate([jnp.einsum("kpm,spc->skmc", jnp.asarray(plan.U[L], self.dtype), ws[L]) for L in self.irreps_out], axis=2)
        bounds = np.cumsum([m.shape[1] for m in monos])[:-1].tolist()
        species, real = species_index(onehot)
        B = 0.0
        for mono, Wb in zip(monos, jnp.split(W, bounds, axis=1)):
            B = B + jnp.einsum("nkc,nkmc->nmc", mono, Wb[species])
        return split_outputs(B * real, self.irreps_out, dims)  # padding nodes (no species) stay zero

    def _per_node_paths(self, plan: ContractionPlan, monos: list, ws: dict, onehot: jnp.ndarray) -> Features:
        """Many species and fewer atoms than species (a molecule with an 89-element model): folding
        every species' weights into the basis (``S·K·P·M·C`` per call) would cost more than the atoms
        themselves. Instead the monomials are contracted with the basis per node and degree,
        ``t[n, p, M, c] = Σ_k mono[n, k, c] U[k, p, M]`` (``N·K·P·M·C``), then with the node's own
        weights ``B[n, M, c] = Σ_p t[n, p, M, c] w[s_n, p, c]``. The same polynomial as the folded path."""
        species, real = species_index(onehot)
        bounds = np.cumsum([0] + [m.shape[1] for m in monos])
        out = {}
        for L in self.irreps_out:
            U, w_n = plan.U[L], ws[L][species]  # [K, P, M], [N, P, C]
            paths = np.cumsum([0, *plan.num_paths[L]])
            B = 0.0
            for nu, mono in enumerate(monos):  # degree ν uses its own rows of U and its own paths
                U_nu = jnp.asarray(U[bounds[nu] : bounds[nu + 1], paths[nu] : paths[nu + 1]], self.dtype)
                t = jnp.einsum("nkc,kpm->npmc", mono, U_nu)
                B = B + jnp.einsum("npmc,npc->nmc", t, w_n[:, paths[nu] : paths[nu + 1]])
            out[L] = B * real  # padding nodes (no species) stay zero
        return out

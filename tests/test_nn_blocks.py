"""Each ``scalarjax.nn`` building block on its own, in the style of e3nn-jax's and e3x's tests:
equivariance under a random rotation and reflection (float64), a dense reference where one
exists, and the radial functions' smoothness at r_max.

Rotation of channels-last features ``{ir: [N, 2l+1, C]}`` uses e3nn's Wigner matrices of the
same real basis: ``x_ir → D_ir(R) x_ir`` along the ``m`` axis.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from physics_utils import random_orthogonal

from scalarjax.nn.linear import IrrepsLinear, SpeciesLinear
from scalarjax.nn.radial import bessel_basis, polynomial_cutoff, radial_embedding
from scalarjax.nn.symmetric_contraction import SymmetricContraction
from scalarjax.nn.tensor_product import channelwise_tp_aggregate, channelwise_tp_plan

IRREPS = ("0e", "1o", "2e")


def _rotate(x: dict, R: np.ndarray) -> dict:
    return {ir: jnp.einsum("mk,nkc->nmc", jnp.asarray(e3nn.Irrep(ir).D_from_matrix(jnp.asarray(R))), v) for ir, v in x.items()}


def _features(rng, n, c, irreps=IRREPS) -> dict:
    return {ir: jnp.asarray(rng.normal(size=(n, e3nn.Irrep(ir).dim, c))) for ir in irreps}


def _assert_equivariant(f, x: dict, R: np.ndarray, tol=1e-10):
    fx, frx = f(x), f(_rotate(x, R))
    assert set(fx) == set(frx) and fx
    for ir in fx:
        expected = _rotate({ir: fx[ir]}, R)[ir]
        np.testing.assert_allclose(frx[ir], expected, atol=tol, rtol=tol, err_msg=ir)
        assert np.abs(fx[ir]).max() > 1e-6, ir  # not vacuous


@pytest.mark.parametrize("reflect", [False, True])
def test_channelwise_tensor_product_is_equivariant(reflect):
    """Messages w_e (h_s(e) ⊗ Y(r̂_e)) summed on receivers: rotating h and the edge vectors rotates
    every output irrep (odd irreps change sign under the reflection)."""
    rng = np.random.default_rng(0)
    E, N, C, lmax = 30, 7, 3, 2
    plan = channelwise_tp_plan(IRREPS, lmax, ("0e", "1o", "1e", "2e", "2o", "3o"))
    vec = rng.normal(size=(E, 3))
    w = jnp.asarray(rng.normal(size=(E, plan.num_paths, C)))
    h = _features(rng, E, C)
    receivers = jnp.asarray(rng.integers(0, N, E))
    R = random_orthogonal(1, reflect)

    def sh(v):
        return e3nn.spherical_harmonics(
            e3nn.Irreps.spherical_harmonics(lmax), jnp.asarray(v), normalize=True, normalization="component"
        ).array

    def run(h_, v):
        out = channelwise_tp_aggregate(plan, h_, sh(v), w, jnp.arange(E), receivers, N)
        return {
            ir: a.reshape(N, -1, e3nn.Irrep(ir).dim, C).transpose(0, 2, 1, 3).reshape(N, e3nn.Irrep(ir).dim, -1) for ir, a in out.items()
        }

    ref = run(h, vec)
    rot = run(_rotate(h, R), vec @ R.T)
    assert {"1e", "2o", "3o"} <= set(ref)  # parity-odd products are produced too
    for ir in ref:
        np.testing.assert_allclose(rot[ir], _rotate({ir: ref[ir]}, R)[ir], atol=1e-10, rtol=1e-10, err_msg=ir)


def test_channelwise_tensor_product_matches_clebsch_gordan_reference():
    """One edge, one channel: the product equals the explicit CG contraction sqrt(2l3+1) C Y h."""
    rng = np.random.default_rng(2)
    plan = channelwise_tp_plan(("1o",), 2, ("0e", "1e", "2e"))
    v = rng.normal(size=(1, 3))
    sh = e3nn.spherical_harmonics(e3nn.Irreps.spherical_harmonics(2), jnp.asarray(v), True, "component").array
    h = {"1o": jnp.asarray(rng.normal(size=(1, 3, 1)))}
    w = jnp.ones((1, plan.num_paths, 1))
    out = channelwise_tp_aggregate(plan, h, sh, w, jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32), 1)
    for p_idx, p in enumerate(plan.paths):
        l3 = e3nn.Irrep(p.ir3).l
        cg = np.asarray(e3nn.clebsch_gordan(1, p.l2, l3)) * np.sqrt(2 * l3 + 1)
        y = np.asarray(sh[0, p.l2**2 : (p.l2 + 1) ** 2])
        expected = np.einsum("abM,a,b->M", cg, np.asarray(h["1o"][0, :, 0]), y)
        offset = [i for i, q in enumerate(plan.paths) if q.ir3 == p.ir3].index(p_idx)
        np.testing.assert_allclose(out[p.ir3][0, offset, :, 0], expected, atol=1e-12)


@pytest.mark.parametrize("E", [31, 32])  # chunks of 6: 31 edges padded to 36; 32 edges in 8 chunks of 4 (a divisor)
def test_channelwise_tensor_product_in_edge_chunks(E):
    """The chunked sum (scan over edge chunks, messages rematerialised) equals the one-shot sum, and so
    do its gradients with respect to node features, weights and spherical harmonics."""
    rng = np.random.default_rng(5)
    N, C, chunk = 6, 3, 6
    plan = channelwise_tp_plan(("0e", "1o"), 2, ("0e", "1o", "2e"))
    h = _features(rng, N, C, ("0e", "1o"))
    sh = jnp.asarray(rng.normal(size=(E, 9)))
    w = jnp.asarray(rng.normal(size=(E, plan.num_paths, C)))
    senders, receivers = jnp.asarray(rng.integers(0, N, E)), jnp.asarray(rng.integers(0, N, E))

    def loss(h_, sh_, w_, edge_chunk):
        out = channelwise_tp_aggregate(plan, h_, sh_, w_, senders, receivers, N, edge_chunk=edge_chunk)
        return sum(jnp.sum(jnp.sin(v)) for v in out.values())

    ref, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(h, sh, w, None)
    got, grads_c = jax.value_and_grad(loss, argnums=(0, 1, 2))(h, sh, w, chunk)
    assert abs(got - ref) <= 1e-12 * abs(ref)
    for a, b in zip(jax.tree_util.tree_leaves(grads_c), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
        assert np.abs(b).max() > 1e-3


@pytest.mark.parametrize("reflect", [False, True])
def test_symmetric_contraction_is_equivariant(reflect):
    rng = np.random.default_rng(3)
    N, C, S = 5, 4, 2
    onehot = jax.nn.one_hot(jnp.asarray(rng.integers(0, S, N)), S, dtype=jnp.float64)
    mod = SymmetricContraction(("0e", "1o", "2e"), 3, S, jnp.float64)
    x = _features(rng, N, C, ("0e", "1o", "2e", "3o"))
    params = mod.init(jax.random.PRNGKey(0), x, onehot)
    _assert_equivariant(lambda f: mod.apply(params, f, onehot), x, random_orthogonal(4, reflect))


@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("correlation", [1, 2, 3, 4])
def test_symmetric_contraction_matches_the_dense_basis(correlation, nested, monkeypatch):
    """Pruned-monomial contraction (top degree in the nested form, or every degree as monomials) =
    the dense einsum with e3nn's reduced symmetric basis U: B[L] = Σ_ν Σ_p w[p] Σ_{i1..iν}
    U[i1..iν, p, M] A_i1 ⋯ A_iν (one channel, one species), for every correlation the model accepts."""
    import scalarjax.nn.symmetric_contraction as sc_mod

    monkeypatch.setattr(sc_mod, "NESTED_TOP_MAX_ROWS", np.inf if nested else 0.0)
    rng = np.random.default_rng(5)
    irreps_in = ("0e", "1o")
    irreps = e3nn.Irreps("+".join(irreps_in))
    mod = SymmetricContraction(("0e", "1o"), correlation, 1, jnp.float64)
    x = _features(rng, 2, 1, irreps_in)
    params = mod.init(jax.random.PRNGKey(1), x, jnp.ones((2, 1)))
    out = mod.apply(params, x, jnp.ones((2, 1)))
    A = np.concatenate([np.asarray(x[k]) for k in irreps_in], axis=1)[:, :, 0]  # [N, D]
    for L in ("0e", "1o"):
        w = np.asarray(params["params"][f"w_{L}"])[0, :, 0]
        expected, start = 0.0, 0
        for nu in range(1, correlation + 1):
            U = e3nn.reduced_symmetric_tensor_product_basis(irreps, nu, keep_ir=[L])
            U = np.asarray(U.array).reshape(*(irreps.dim,) * nu, -1, e3nn.Irrep(L).dim)
            P = U.shape[-2]
            letters = "abcd"[:nu]
            operands = [U] + [A] * nu
            expr = f"{letters}pM," + ",".join(f"n{l}" for l in letters) + "->npM"
            expected = expected + np.einsum("npM,p->nM", np.einsum(expr, *operands), w[start : start + P])
            start += P
        np.testing.assert_allclose(out[L][:, :, 0], expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("reflect", [False, True])
def test_linears_are_equivariant_and_species_linear_selects_the_species(reflect):
    rng = np.random.default_rng(6)
    N, C, S = 6, 3, 3
    species = jnp.asarray(rng.integers(0, S, N))
    onehot = jax.nn.one_hot(species, S, dtype=jnp.float64)
    x = _features(rng, N, C)
    R = random_orthogonal(7, reflect)
    lin = IrrepsLinear({"0e": 4, "1o": 2, "2e": 5}, jnp.float64)
    p = lin.init(jax.random.PRNGKey(0), x)
    _assert_equivariant(lambda f: lin.apply(p, f), x, R)
    sl = SpeciesLinear({"0e": 4, "1o": 2, "2e": 5}, S, jnp.float64)
    q = sl.init(jax.random.PRNGKey(1), x, onehot)
    _assert_equivariant(lambda f: sl.apply(q, f, onehot), x, R)
    y = sl.apply(q, x, onehot)
    W = q["params"]["w_1o"]
    for n in range(N):  # y[n] = x[n] @ W[s_n] / sqrt(C)
        np.testing.assert_allclose(y["1o"][n], x["1o"][n] @ W[species[n]] / np.sqrt(C), atol=1e-12)


@pytest.mark.parametrize("N", [7, 14])
def test_many_species_gather_equals_selecting_among_all_species(monkeypatch, N):
    """Above GATHER_ABOVE_SPECIES species the node's own weights are gathered (the symmetric
    contraction: per-node basis contraction when there are fewer atoms than species, N=7, else the
    folded basis gathered per node, N=14); the result equals the select-among-all-species path for
    the same parameters (padding nodes, with an all-zero one-hot row, stay exactly zero), so
    foundation-model imports (89 species) are exact and fast."""
    import scalarjax.nn.linear as linear_mod
    import scalarjax.nn.symmetric_contraction as sc_mod

    rng = np.random.default_rng(8)
    C, S = 3, 12
    species = jnp.asarray(rng.integers(0, S, N))
    onehot = jax.nn.one_hot(species, S, dtype=jnp.float64).at[-1].set(0.0)  # last node: padding
    x = _features(rng, N, C, ("0e", "1o", "2e"))
    sc = SymmetricContraction(("0e", "1o"), 3, S, jnp.float64)
    sl = SpeciesLinear({"0e": 4, "1o": 2}, S, jnp.float64)
    p_sc = sc.init(jax.random.PRNGKey(0), x, onehot)
    p_sl = sl.init(jax.random.PRNGKey(1), x, onehot)
    outs = {}
    monkeypatch.setattr(sc_mod, "NESTED_TOP_MAX_ROWS", np.inf)  # the folded path in its nested form
    for threshold in (S - 1, S):  # gather, then select among all
        monkeypatch.setattr(linear_mod, "GATHER_ABOVE_SPECIES", threshold)
        monkeypatch.setattr(sc_mod, "GATHER_ABOVE_SPECIES", threshold)
        outs[threshold] = (sc.apply(p_sc, x, onehot), sl.apply(p_sl, x, onehot))
    for gathered, selected in zip(outs[S - 1], outs[S]):
        for ir in selected:
            assert np.abs(np.asarray(selected[ir][:-1])).max() > 1e-3
            np.testing.assert_allclose(gathered[ir], selected[ir], rtol=1e-12, atol=1e-13, err_msg=ir)
            assert not np.asarray(gathered[ir][-1]).any()


def test_radial_basis_and_envelope_are_smooth_at_r_max():
    """u(r_max) = u'(r_max) = u''(r_max) = 0 (C²) and u ≡ 0 beyond; the embedding vanishes there
    with its first two derivatives; Bessel modes are orthonormal on [0, r_max] with weight r²."""
    r_max, p = 5.0, 5
    u = lambda r: polynomial_cutoff(r, r_max, p)
    for f in (u, jax.grad(u), jax.grad(jax.grad(u))):
        assert abs(float(f(jnp.asarray(r_max - 1e-9)))) < 1e-6
        assert float(f(jnp.asarray(r_max + 0.3))) == 0.0
    assert float(u(jnp.asarray(0.0))) == 1.0 and 0 < float(u(jnp.asarray(2.5))) < 1
    emb = lambda r: radial_embedding(r[None], 8, r_max, p)[0]
    for f in (emb, jax.jacfwd(emb), jax.jacfwd(jax.jacfwd(emb))):
        assert np.abs(np.asarray(f(jnp.asarray(r_max - 1e-7)))).max() < 1e-4
    r = jnp.linspace(1e-4, r_max, 20001)
    B = np.asarray(bessel_basis(r, 6, r_max))
    gram = np.trapezoid(B[:, :, None] * B[:, None, :] * np.asarray(r)[:, None, None] ** 2, np.asarray(r), axis=0)
    np.testing.assert_allclose(gram, np.eye(6), atol=2e-3)

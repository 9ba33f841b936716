"""The campaign's design alternatives for PAN and PGS (issue 13, phase 1): each option keeps the
physics (invariance, forces = −∇E, smoothness), starts at the base model where it says so, and
does what it claims (an inner cutoff is local to it; in-place mixing reaches later layers).

All options of one kind are switched on together in one tiny MACE, so the suite compiles few
programs: ``ALT`` = PAN on a first-shell cutoff + PGS with its modes on the radial MLP's input
from an inner-cutoff basis + PGS in place on the node scalars with learned frequencies and gates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from flax.traverse_util import flatten_dict, unflatten_dict
from physics_utils import captured_intermediates, evaluate, evaluate_one, random_orthogonal, triclinic_cell

from scalarjax.config import load_model_config
from scalarjax.potential import Potential

ALT = (
    {"kind": "pan", "coordination_r_max": 2.5, "init_scale": 0.5, "hidden": 4},
    {"kind": "pgs", "edge_placement": "input", "edge_cutoff": 2.2, "edge_modes": 3, "readout_modes": 0, "init_scale": 0.5},
    {
        "kind": "pgs",
        "edge_modes": 0,
        "readout_modes": 3,
        "readout_placement": "node",
        "learn_frequency": True,
        "gate": True,
        "init_scale": 0.5,
    },
)


@pytest.fixture(scope="module")
def base():
    return Potential(load_model_config(TINY), seed=1)


def _with(base, transforms, seed=5, perturb_gates=0.0):
    pot = Potential(load_model_config(TINY, scalar_transforms=transforms), seed=seed)
    flat = flatten_dict(jax.device_get(pot.params))
    flat.update(flatten_dict(jax.device_get(base.params)))
    if perturb_gates:
        flat = {k: v + perturb_gates if k[-1] == "gate" else v for k, v in flat.items()}
    return Potential(pot.config, params=unflatten_dict(flat))


def test_alternatives_keep_the_symmetries_and_gradients(base):
    pot = _with(base, ALT, perturb_gates=0.7)  # gates open: every new path is active
    atoms = triclinic_cell(1)
    e, f, s = evaluate_one(pot, atoms)
    Q = random_orthogonal(3, True)
    rot = atoms.copy()
    rot.set_cell(atoms.cell @ Q.T, scale_atoms=False)
    rot.positions = atoms.positions @ Q.T
    e2, f2, _ = evaluate_one(pot, rot)
    assert e2 == pytest.approx(e, rel=1e-10) and np.allclose(f2, f @ Q.T, rtol=1e-9, atol=1e-11)
    h = 1e-5
    for i, k in [(0, 0), (5, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        (ep, em), _, _ = evaluate(pot, [plus, minus])
        assert -(ep - em) / (2 * h) == pytest.approx(f[i, k], rel=1e-6, abs=1e-8)
    assert abs(e - evaluate_one(base, atoms)[0]) > 1e-6  # the options change the model


def test_identity_and_gates_start_at_the_base_model(base):
    """identity_init on every option, and gate: true with random W: the base model at init."""
    ident = tuple({**t, "identity_init": True} for t in ALT)
    gated = (
        {"kind": "pgs", "gate": True, "init_scale": 0.5, "edge_cutoff": 2.0},
        {"kind": "pgs", "gate": True, "init_scale": 0.5, "readout_placement": "node", "edge_placement": "input"},
    )
    atoms = triclinic_cell(2)
    e0, f0, s0 = evaluate_one(base, atoms)
    for transforms in (ident, gated):
        e1, f1, s1 = evaluate_one(_with(base, transforms), atoms)
        assert (
            e1 == pytest.approx(e0, rel=1e-13)
            and np.allclose(f1, f0, rtol=1e-11, atol=1e-13)
            and np.allclose(s1, s0, rtol=1e-11, atol=1e-14)
        )


def test_inner_cutoff_modes_are_local_and_smooth():
    """The inner basis is exactly zero beyond r_in and C¹-small at it (value and slope → 0)."""
    from scalarjax.scalar import pathway, transform_from_dict
    from scalarjax.scalar.pgs import edge_modes

    cfg = transform_from_dict({"kind": "pgs", "edge_cutoff": 2.5, "edge_modes": 4}, "t")
    ctx = pathway.HookContext(
        lengths=None,
        senders=None,
        receivers=None,
        edge_mask=None,
        node_mask=None,
        onehot=None,
        radial=None,
        envelope=None,
        r_max=5.0,
        avg_num_neighbors=4.0,
        num_bessel=8,
        envelope_p=5,
    )
    r = jnp.asarray([1.5, 2.4999, 2.5, 3.0, 4.9])
    phi = np.asarray(edge_modes(cfg, r, ctx))
    assert np.all(phi[2:] == 0) and np.abs(phi[0]).max() > 0.1 and np.abs(phi[1]).max() < 1e-6
    slope = jax.jacfwd(lambda x: edge_modes(cfg, x, ctx).sum())(jnp.asarray([2.4999, 2.6]))
    assert np.abs(np.asarray(slope)).max() < 1e-3


def _conv_inputs(pot, atoms):
    hits = captured_intermediates(pot, atoms, lambda m, name: type(m).__name__ == "Convolution")
    return {"/".join(k): v for k, v in flatten_dict(hits).items()}


def test_node_placement_reaches_later_layers(base):
    """In-place spectral mixing changes the second layer's messages; readout placement does not."""
    atoms = triclinic_cell(4)
    ref = _conv_inputs(base, atoms)
    layer1 = [k for k in ref if k.startswith("interaction_1/")]
    assert layer1
    node = {"kind": "pgs", "edge_modes": 0, "readout_placement": "node", "init_scale": 0.5}
    readout = {**node, "readout_placement": "readout"}
    a = _conv_inputs(_with(base, (node,)), atoms)
    b = _conv_inputs(_with(base, (readout,)), atoms)
    assert any(not np.allclose(a[k][0]["0e"], ref[k][0]["0e"]) for k in layer1)
    for k in layer1:
        for ir in ref[k][0]:
            np.testing.assert_array_equal(b[k][0][ir], ref[k][0][ir])


def test_alternative_settings_are_checked():
    for bad, match in (
        ({"kind": "pgs", "edge_placement": "output"}, "edge_placement"),
        ({"kind": "pgs", "readout_placement": "everywhere"}, "readout_placement"),
        ({"kind": "pgs", "edge_cutoff": -1.0}, "edge_cutoff"),
        ({"kind": "pan", "coordination_r_max": 0.0}, "coordination_r_max"),
    ):
        with pytest.raises(ValueError, match=match):
            load_model_config(atomic_numbers=(14,), scalar_transforms=[bad])

"""The physics suite in float32, the precision models train and run MD in: the same symmetries,
gradients, images and padding as test_physics.py (float64), with tolerances float32 allows.

Each check has a float32 budget well above round-off (≈1e-7 relative per operation, amplified by a
few hundred operations) and far below what a real bug gives (an equivariance slip, a missing
factor or a sign in F or σ changes the result by O(1)). Every backbone, with PAN+PGS attached so
that every hook is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import TINY_VARIANTS
from physics_utils import evaluate, evaluate_one, molecule, random_orthogonal, strained_pair, triclinic_cell

from scalarjax.data.configuration import full_to_voigt, voigt_to_full

RTOL32 = 2e-5  # symmetries and padding: a few hundred float32 round-offs


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.fixture(scope="module", params=["mace+pan+pgs", "nequip+pan+pgs", "allegro+pan+pgs"])
def pot32(request):
    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    pot = Potential(load_model_config({**TINY_VARIANTS[request.param], "dtype": "float32"}), seed=1)
    assert all(np.asarray(x).dtype == np.float32 for x in __import__("jax").tree.leaves(pot.params))
    return pot


def test_float32_model_computes_in_float32_under_x64(pot32):
    """The suite runs with ``jax_enable_x64`` on (as any session using float64 elsewhere does): a
    NumPy float64 scalar or array in the forward pass would silently promote a float32 model to
    float64 (slower, and parameters created from activation dtypes would be float64)."""
    import re

    import jax

    from scalarjax.model import dummy_inputs

    assert jax.config.jax_enable_x64
    jaxpr = str(jax.make_jaxpr(pot32.model.apply)(pot32.params, dummy_inputs(pot32.config)))
    promoted = sorted({line.strip()[:100] for line in jaxpr.splitlines() if re.search(r"f64\[\d", line)})
    assert promoted == [], promoted[:5]


def test_rotation_reflection_translation_permutation(pot32):
    atoms = triclinic_cell(1)
    e, f, s = evaluate_one(pot32, atoms)
    Q = random_orthogonal(3, True)
    rot = atoms.copy()
    rot.set_cell(atoms.cell @ Q.T, scale_atoms=False)
    rot.positions = atoms.positions @ Q.T + np.array([0.7, -1.1, 2.3])
    perm = np.random.default_rng(0).permutation(len(atoms))
    rot = rot[perm]
    e2, f2, s2 = evaluate_one(pot32, rot)
    assert np.linalg.norm(f) > 1e-3 and np.linalg.norm(s) > 1e-5  # not vacuous
    assert abs(e2 - e) <= RTOL32 * abs(e)
    assert rel_err(f2, (f @ Q.T)[perm]) <= 10 * RTOL32
    assert rel_err(s2, full_to_voigt(Q @ voigt_to_full(s) @ Q.T)) <= 10 * RTOL32


def test_forces_and_stress_are_energy_derivatives(pot32):
    """Central differences with a step float32 can resolve (h = 1e-2 Å / 1e-3 strain): truncation
    O(h²) and round-off ε|E|/h are both ~1e-3 of the force, a sign or factor error is 100%."""
    atoms = triclinic_cell(2)
    _, f, s = evaluate_one(pot32, atoms)
    for i, k in [(0, 0), (3, 1), (6, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += 1e-2
        minus.positions[i, k] -= 1e-2
        (ep, em), _, _ = evaluate(pot32, [plus, minus])
        assert -(ep - em) / 2e-2 == pytest.approx(f[i, k], rel=2e-2, abs=2e-2 * float(np.abs(f).max()))
    V, h = atoms.get_volume(), 1e-3
    for v, (a, b) in enumerate([(0, 0), (1, 2)]):
        (ep, em), _, _ = evaluate(pot32, strained_pair(atoms, a, b, h))
        voigt_index = [0, 3][v]
        assert (ep - em) / (2 * h) / V == pytest.approx(s[voigt_index], rel=2e-2, abs=2e-2 * float(np.abs(s).max()))


def test_padding_and_batch_neighbours_do_not_change_results(pot32):
    target = triclinic_cell(6)
    e, f, s = evaluate_one(pot32, target)
    (e2, _, _), (f2, _, _), (s2, _, _) = map(tuple, evaluate(pot32, [target, molecule(7), triclinic_cell(8, n=5)]))
    assert abs(e2 - e) <= RTOL32 * abs(e) and rel_err(f2, f) <= 10 * RTOL32 and rel_err(s2, s) <= 10 * RTOL32


def test_isolated_atom_and_cutoff(pot32):
    cfg = pot32.config
    e, f, _ = evaluate_one(pot32, Atoms(numbers=[14], positions=[[0.1, 0.2, 0.3]]))
    assert e == pytest.approx(cfg.atomic_energies[1] + cfg.shift, rel=1e-6) and np.all(f == 0)
    r = cfg.r_max
    (e_in, e_near, e_out), _, _ = evaluate(
        pot32, [Atoms(numbers=[8, 14], positions=[[0, 0, 0], [0, 0, x]]) for x in (r - 0.5, r - 1e-3, r + 1e-3)]
    )
    assert abs(e_in - e_out) > 1e-4 and abs(e_near - e_out) < 1e-5

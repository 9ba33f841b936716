"""Allegro: strict locality, the product's pruned irreps, the reference's parameter count.

The physics suite (test_physics.py, test_physics_float32.py) and the scalar-pathway guarantees
(test_scalar_pathway.py) run on Allegro through conftest's TINY_BY_BACKBONE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from conftest import TINY, TINY_ALLEGRO, TINY_TRANSFORMS
from physics_utils import PAD

from scalarjax.config import load_model_config
from scalarjax.data.configuration import Configuration
from scalarjax.graph.batch import batch_graphs, configuration_to_graph
from scalarjax.potential import Potential, make_energy_fn


def per_atom_energies(pot: Potential, atoms: Atoms) -> np.ndarray:
    """E_i of every atom (eV), through the same energy function the potential differentiates."""
    captured = []

    def apply(params, inputs):
        out = pot.model.apply(params, inputs)
        captured.append(out)
        return out

    g = configuration_to_graph(Configuration.from_atoms(atoms), pot.elements, pot.config.r_max)
    b = batch_graphs([g], PAD)  # one padded shape for every structure: one compilation per model
    pos = jnp.asarray(b.nodes["positions"])
    make_energy_fn(apply, pot.config.r_max, pos.dtype)(pot.params, b, pos, jnp.zeros((b.n_node.shape[0], 3, 3), pos.dtype))
    return np.asarray(captured[0][: len(atoms)])


def chain(r_max: float) -> Atoms:
    """O–Si–O: atom 2 is beyond r_max of atom 0 but within r_max of atom 1, atom 0's neighbour (a
    message-passing model feels atom 2 at atom 0 after two layers)."""
    step = 0.6 * r_max
    return Atoms(numbers=[8, 14, 8], positions=[[0.0, 0.0, 0.0], [step, 0.3, 0.0], [2 * step, -0.2, 0.4]])


@pytest.mark.parametrize("name, strictly_local", [("allegro", True), ("allegro+pan+pgs", True), ("mace", False)])
def test_strict_locality(name, strictly_local):
    """Moving an atom that stays beyond r_max of atom 0 leaves E_0 unchanged for Allegro; MACE's
    two interactions see it through the atom in between (so the test can fail)."""
    cfg = {"allegro": TINY_ALLEGRO, "allegro+pan+pgs": {**TINY_ALLEGRO, "scalar_transforms": TINY_TRANSFORMS}, "mace": TINY}[name]
    pot = Potential(load_model_config(cfg), seed=3)
    atoms = chain(pot.config.r_max)
    base = per_atom_energies(pot, atoms)
    changes = []
    for shift in ([0.3, 0.0, 0.0], [0.0, 0.7, -0.4], [0.2, -0.5, 0.6], [40.0, -3.0, 5.0]):  # beyond r_max of atom 0
        moved = atoms.copy()
        moved.positions[2] += shift
        assert np.linalg.norm(moved.positions[2] - moved.positions[0]) > pot.config.r_max
        changes.append(abs(per_atom_energies(pot, moved)[0] - base[0]))
    if strictly_local:
        assert max(changes) <= 1e-12 * abs(base[0])
    else:
        assert max(changes) > 1e-6
    assert abs(base[1]) > 1e-6  # not vacuous: atoms do interact


def test_pruned_irreps_and_paths():
    from scalarjax.backbones.allegro import allegro_layer_irreps
    from scalarjax.nn.features import natural_irreps
    from scalarjax.nn.tensor_product import edge_tp_plan

    # two layers: 1e and 2o cannot reach the last 0e, so parity changes nothing (as in the reference)
    assert allegro_layer_irreps(2, 2, True) == allegro_layer_irreps(2, 2, False) == (("0e", "1o", "2e"), ("0e",))
    assert "1e" in allegro_layer_irreps(3, 2, True)[0] and "1e" not in allegro_layer_irreps(3, 2, False)[0]
    sh = natural_irreps(2)
    assert [edge_tp_plan(sh, sh, out).num_paths for out in allegro_layer_irreps(2, 2, True)] == [11, 3]
    assert [
        edge_tp_plan(tuple(ins), sh, out).num_paths
        for ins, out in zip([sh, *allegro_layer_irreps(3, 2, True)], allegro_layer_irreps(3, 2, True))
    ] == [15, 15, 3]


@pytest.mark.parametrize("settings, reference", [({"num_tensor_features": 32, "readout_mlp": [64]}, 68672), ({}, 51008)])
def test_parameter_count_matches_nequip_allegro(settings, reference):
    """Counts of nequip-allegro 0.8.3 (installed in a separate environment; not a dependency) for Si,
    r_max 5, 2 layers, l_max 2, parity: the tutorial's widths (U = 32, readout 64) and the builder's
    defaults (ours: U = 16, readout 32). Same weights, same shapes."""
    from scalarjax.model import abstract_params, build_model

    cfg = load_model_config({"backbone": {"kind": "allegro", **settings}, "atomic_numbers": [14]})
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params(build_model(cfg))))
    assert count == reference


def test_edge_tensor_product_is_equivariant():
    from physics_utils import random_orthogonal

    from scalarjax.nn.tensor_product import edge_tensor_product, edge_tp_plan

    rng = np.random.default_rng(0)
    irreps = ("0e", "1o", "1e", "2e")
    E, U = 5, 3
    x1 = {ir: rng.normal(size=(E, 2 * int(ir[0]) + 1, U)) for ir in irreps}
    x2 = {ir: rng.normal(size=(E, 2 * int(ir[0]) + 1, U)) for ir in irreps}
    plan = edge_tp_plan(irreps, irreps, irreps)
    W = rng.normal(size=(plan.num_paths, U))
    import e3nn_jax as e3nn

    R = random_orthogonal(1, True)
    D = {ir: np.asarray(e3nn.Irrep(ir).D_from_matrix(R)) for ir in irreps}
    rot = lambda x: {ir: np.einsum("mn,enu->emu", D[ir], v) for ir, v in x.items()}
    a = rot(edge_tensor_product(plan, x1, x2, W))
    b = edge_tensor_product(plan, rot(x1), rot(x2), W)
    for ir in irreps:
        np.testing.assert_allclose(np.asarray(a[ir]), np.asarray(b[ir]), atol=1e-10)
    assert all(np.abs(np.asarray(a[ir])).max() > 1e-2 for ir in irreps)

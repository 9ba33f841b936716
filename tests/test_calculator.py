"""ASE calculator: properties, units and conventions, configs, capacity growth without recompiles."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from conftest import TINY
from physics_utils import count_traces

from scalarjax import Calculator, ModelConfig, load_model_config


@pytest.fixture(scope="module")
def calc():
    return Calculator.from_config(TINY, seed=1)


def test_properties_and_stress_convention(calc):
    atoms = bulk("Si", "diamond", a=5.3, cubic=True)
    atoms.numbers[:2] = 8
    atoms.rattle(0.05, seed=1)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == e
    f = atoms.get_forces()
    assert f.shape == (8, 3) and np.abs(f.sum(0)).max() < 1e-10
    s = atoms.get_stress()
    assert s.shape == (6,)
    # ASE convention σ = (1/V) dE/dε in Voigt order [xx, yy, zz, yz, xz, xy]: every component against
    # its own finite strain (ε symmetric: a shear enters as ε_ij = ε_ji = ±h/2).
    h = 1e-5
    for k, (i, j) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        es = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[i, j] += sign * h / 2
            eps[j, i] += sign * h / 2
            st = atoms.copy()
            st.calc = calc
            st.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
            es.append(st.get_potential_energy())
        assert (es[0] - es[1]) / (2 * h) / atoms.get_volume() == pytest.approx(s[k], rel=1e-5, abs=1e-9), k


def test_non_periodic_has_no_stress(calc):
    atoms = Atoms("OSiO", positions=[[0, 0, 0], [1.6, 0, 0], [3.2, 0.3, 0]])
    atoms.calc = calc
    atoms.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_one_evaluation_per_change(calc, monkeypatch):
    atoms = Atoms("OSi", positions=[[0, 0, 0], [1.6, 0, 0]])
    atoms.calc = calc
    calls = []
    original = calc.potential.__call__
    monkeypatch.setattr(type(calc.potential), "__call__", lambda self, *a, **k: calls.append(1) or original(*a, **k))
    atoms.get_potential_energy()
    atoms.get_forces()
    assert len(calls) == 1
    atoms.positions[1, 0] += 0.1
    atoms.get_forces()
    assert len(calls) == 2


def test_md_does_not_recompile_every_step():
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    calc = Calculator.from_config(TINY, seed=1)
    atoms = bulk("Si", "diamond", a=5.4, cubic=True)
    atoms.numbers[::3] = 8
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    atoms.calc = calc
    VelocityVerlet(atoms, 1.0 * units.fs).run(30)
    assert calc.potential.compile_count <= 2
    # A bigger system grows the capacity geometrically: one more compile, not one per size.
    for n in (2, 3):
        big = atoms.repeat((n, 1, 1))
        big.calc = calc
        big.get_forces()
    assert calc.potential.compile_count <= 4


def test_from_config_variants(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("model:\n  r_max: 3.0\n  max_ell: 1\n  hidden_irreps: 4x0e+4x1o\n  radial_mlp: [4]\n  correlation: 2\n")
    c1 = Calculator.from_config(str(path), species=["Ag"])
    assert c1.config.r_max == 3.0 and c1.config.atomic_numbers == (47,)
    c2 = Calculator.from_config({"max_ell": 1, "hidden_irreps": "4x0e+4x1o", "radial_mlp": [4], "dtype": "float64"}, species=[47, "Cu"])
    assert c2.config.atomic_numbers == (29, 47) and c2.config.dtype == "float64"
    c3 = Calculator.from_config(c2.config)
    assert c3.config == c2.config
    with pytest.raises(KeyError, match="model: unknown key"):
        load_model_config({"rmax": 4.0})
    with pytest.raises(TypeError, match=r"model\.max_ell"):
        load_model_config({"max_ell": "three"})
    assert ModelConfig().r_max == 5.0


def test_float32_computes_in_float32():
    """A float32 model really computes in float32 (x64 is on in the tests): its forces equal the
    float64 evaluation of the same parameters to float32 rounding, and differ from it by more than
    float64 rounding would."""
    import jax

    from scalarjax.potential import Potential

    calc32 = Calculator.from_config({**TINY, "dtype": "float32"}, seed=1)
    pot64 = Potential(
        dataclasses.replace(calc32.config, dtype="float64"), params=jax.tree.map(lambda x: x.astype(np.float64), calc32.potential.params)
    )
    atoms = Atoms("OSiO", positions=[[0, 0, 0], [1.6, 0.1, 0], [3.1, 0.4, 0.2]])
    atoms.calc = calc32
    f32 = atoms.get_forces()
    atoms.calc = Calculator(pot64)
    f64 = atoms.get_forces()
    assert calc32.potential.dtype == np.float32
    rel = np.abs(f32 - f64).max() / np.abs(f64).max()
    assert 1e-12 < rel < 1e-5


def test_float64_without_x64_is_a_clear_error():
    code = (
        "import scalarjax\n"
        "try:\n"
        "    scalarjax.Calculator.from_config({'dtype': 'float64'}, species=['Si'])\n"
        "except ValueError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"JAX_ENABLE_X64": "0", "PATH": ""})
    assert "ERR" in out.stdout and "x64" in out.stdout, out.stderr


def test_capacity_covers_a_shell_just_outside_the_cutoff():
    """fcc Ag's third shell sits at 5.01 Å, just outside r_max = 5 Å: a perfect cell has 18 neighbours per
    atom, a thermally rattled one up to 42. The capacity (pairs within r_max + SKIN, 0.25 Å) absorbs that: no recompile."""
    from ase.build import bulk

    import scalarjax

    calc = scalarjax.Calculator.from_config(
        {"max_ell": 1, "hidden_irreps": "4x0e+4x1o", "radial_mlp": [4], "correlation": 2, "r_max": 5.0}, species=["Ag"]
    )
    atoms = bulk("Ag", "fcc", a=4.09, cubic=True).repeat(2)
    atoms.calc = calc
    atoms.get_forces()
    compiles = calc.potential.compile_count
    hot = atoms.copy()
    hot.rattle(0.15, seed=3)
    hot.calc = calc
    with count_traces() as traces:
        hot.get_forces()
    assert traces[0] == 0
    from scalarjax.graph.neighbors import neighbor_list

    assert len(neighbor_list(hot.positions, hot.cell, hot.pbc, 5.0)[0]) > 1.1 * 18 * len(atoms)  # the margin alone would overflow
    assert calc.potential.compile_count == compiles

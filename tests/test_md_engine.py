"""The in-XLA MD engine (scalarjax.simulation.engine): on-device neighbour list against matscipy's,
velocity Verlet against ASE's, NVE energy conservation (with a control that fails), capacity
overflow and reallocation, no recompilation across chunks, Langevin temperature, the md command.

One tiny float64 MACE and one 16-atom triclinic Si cell (the fcc primitive cell of diamond, a = 5.66 Å,
repeated 2×2×2: 8.0 Å vectors, 6.5 Å between lattice planes, thinner than 2·(r_max + skin) = 8 Å,
so the minimum image would miss pairs; the second shell sits at r_max + skin, so the number of
pairs changes as atoms move). The NVE tests share one capacity and chunk length, so
they share one compiled program (the time step is a traced argument).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import TINY
from physics_utils import count_traces, molecule, triclinic_cell

SKIN = 0.5  # Å (the engine's default is 0.25): r_max + skin = 4.0 Å, the second shell of si16
CHUNK = 50  # steps per call in these tests


@pytest.fixture(scope="module")
def pot():
    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    return Potential(load_model_config(TINY), seed=1)


def si16(temperature_K: float = 300.0, seed: int = 0, a: float = 5.66):
    """Rattled triclinic diamond Si (16 atoms, lattice constant ``a``, 4 % expanded by default),
    Maxwell–Boltzmann velocities with zero total momentum."""
    from ase.build import bulk
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = bulk("Si", "diamond", a=a).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=seed + 1)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms


def start_count(pot) -> int:
    """Pairs within r_max + skin in the start cell (the host list)."""
    from scalarjax.graph.neighbors import neighbor_list

    a = si16()
    return len(neighbor_list(a.positions, a.cell, a.pbc, pot.config.r_max + SKIN)[0])


@pytest.fixture(scope="module")
def capacity(pot) -> int:
    """The capacity a run grows to from exactly the start count (so the overflow test's grown run and
    the reference run share the other tests' compiled program)."""
    from scalarjax.simulation.engine import GROWTH

    return math.ceil(GROWTH * start_count(pot))


def engine(pot, atoms, capacity, **kw):
    from scalarjax.simulation.engine import Engine

    return Engine(pot, atoms, skin=SKIN, capacity=capacity, chunk_steps=CHUNK, **{"timestep_fs": 1.0, **kw})


def _pair_set(senders, receivers, shifts, vectors, cutoff):
    keep = np.linalg.norm(vectors, axis=1) <= cutoff
    return {(int(i), int(j), tuple(np.rint(s).astype(int))) for i, j, s in zip(senders[keep], receivers[keep], shifts[keep])}


def _off_cell(atoms):
    """The same cell with atoms moved by lattice vectors and out of the cell (unwrapped positions)."""
    a = atoms.copy()
    n = np.random.default_rng(3).integers(-2, 3, size=(len(a), 3))
    a.positions = a.positions + n @ np.asarray(a.cell)
    return a


@pytest.mark.parametrize(
    "atoms, cutoff",
    [
        (triclinic_cell(0), 3.5),  # 5 Å vectors < 2·cutoff
        (_off_cell(triclinic_cell(1)), 4.0),
        (triclinic_cell(2, n=3), 6.0),  # an atom's own images within the cutoff
        (molecule(0), 3.5),
    ],
    ids=["triclinic", "unwrapped", "own-images", "molecule"],
)
def test_neighbor_list_matches_host(atoms, cutoff):
    """The set of (i, j, S) pairs equals matscipy's (scalarjax.graph.neighbors), both within the list's
    cutoff and within a smaller r_max (the pairs the model sees); shifts refer to the positions as given."""
    from scalarjax.elements import ElementTable
    from scalarjax.graph.neighbors import neighbor_list
    from scalarjax.simulation.engine import build_neighbors, make_system

    system = make_system(atoms, ElementTable((8, 14)), np.float64, cutoff)
    nbr = build_neighbors(np.asarray(atoms.positions), system, cutoff, capacity=4000)
    c = int(nbr.count)
    assert not bool(nbr.overflow) and 0 < c < 4000
    assert (np.asarray(nbr.senders[c:]) == len(atoms)).all() and not np.asarray(nbr.shifts[c:]).any()
    s, r, S = (np.asarray(x)[:c] for x in (nbr.senders, nbr.receivers, nbr.shifts))
    vec = atoms.positions[r] - atoms.positions[s] + S @ np.asarray(atoms.cell)
    for rc in (cutoff, cutoff - SKIN):
        hs, hr, hS = neighbor_list(atoms.positions, atoms.cell, atoms.pbc, rc)
        host = _pair_set(hs, hr, hS, atoms.positions[hr] - atoms.positions[hs] + hS @ np.asarray(atoms.cell), rc)
        assert _pair_set(s, r, S, vec, rc) == host and len(host) > 0


def test_overflow_flag_when_capacity_is_too_small():
    from scalarjax.elements import ElementTable
    from scalarjax.simulation.engine import build_neighbors, make_system

    atoms = triclinic_cell(0)
    system = make_system(atoms, ElementTable((8, 14)), np.float64, 3.5)
    nbr = build_neighbors(np.asarray(atoms.positions), system, 3.5, capacity=10)
    assert bool(nbr.overflow) and int(nbr.count) > 10 and nbr.senders.shape == (10,)


def test_velocity_verlet_matches_ase(pot, capacity):
    """40 steps (1 fs, 900 K start so the list is rebuilt) against ase.md.VelocityVerlet with the
    scalarjax ASE calculator from the same positions and velocities: positions within 1e-9 Å,
    velocities within 1e-9 Å/τ, potential energies within 1e-9 eV at every step (float64)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from scalarjax.calculator import Calculator

    atoms = si16(900.0)
    eng = engine(pot, atoms, capacity)
    obs = np.concatenate([eng.advance(20), eng.advance(20)])
    assert int(eng.state.neighbors.builds) >= 2  # the rebuild path ran

    ref = atoms.copy()
    ref.calc = Calculator(pot)
    dyn = VelocityVerlet(ref, 1.0 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(ref.get_potential_energy()), interval=1)
    dyn.run(40)
    np.testing.assert_allclose(obs[:, 0], energies[1:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(eng.state.positions), ref.positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(eng.state.velocities), ref.get_velocities(), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def nve_run(pot, capacity):
    """300 steps at 1 fs in seven chunks of different lengths, traces counted after the first."""
    eng = engine(pot, si16(600.0), capacity)
    first = eng.advance(CHUNK)
    compiled = eng.compile_count
    with count_traces() as traces:
        rest = [eng.advance(CHUNK) for _ in range(4)] + [eng.advance(17), eng.advance(33)]
    return dict(obs=np.concatenate([first, *rest]), traces=traces[0], compiles=eng.compile_count - compiled, engine=eng)


def _max_deviation(obs, n_atoms):
    e = obs.sum(axis=1)
    return np.abs(e - e[0]).max() / n_atoms  # eV/atom


def test_nve_conserves_energy_and_a_too_large_step_does_not(pot, capacity, nve_run):
    """E_total = E_pot + E_kin within 2e-5 eV/atom over 300 steps at 1 fs; 100 steps at 8 fs (the
    negative control, same program) break that bound by far, so it checks the integrator."""
    good = _max_deviation(nve_run["obs"], 16)
    control = engine(pot, si16(600.0), capacity, timestep_fs=8.0)
    bad = _max_deviation(np.concatenate([control.advance(CHUNK), control.advance(CHUNK)]), 16)
    assert nve_run["obs"].shape == (300, 2)
    assert good < 2e-5, good
    assert bad > 20 * good and bad > 1e-4, (bad, good)
    assert int(nve_run["engine"].state.neighbors.builds) > 3
    assert nve_run["obs"][:, 1].mean() > 0.2  # atoms really move (E_kin, eV)


def test_no_recompilation_across_chunks(nve_run):
    """After the first chunk, six more chunks of different lengths (the count is traced) trace and
    compile nothing."""
    assert nve_run["traces"] == 0 and nve_run["compiles"] == 0


def test_overflow_reallocates_once_and_matches_a_large_enough_run(pot, capacity):
    """Capacity = exactly the pairs at the start: a later rebuild finds more, the host grows the
    capacity once (×GROWTH) and redoes the chunk; the trajectory equals a run that had that capacity
    from the start (to 1e-12 Å)."""
    small = engine(pot, si16(600.0), start_count(pot), timestep_fs=2.0)
    big = engine(pot, si16(600.0), capacity, timestep_fs=2.0)
    assert small.reallocations == 0
    for _ in range(2):
        a, b = small.advance(CHUNK), big.advance(CHUNK)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(small.state.positions), np.asarray(big.state.positions), rtol=0, atol=1e-12)
    assert small.reallocations == 1 and small.capacity == capacity == big.capacity
    assert int(small.state.neighbors.count) > start_count(pot)


def test_langevin_reaches_the_target_temperature(pot, capacity):
    """BAOAB at 600 K (friction 0.05/fs, 2 fs) from a 1500 K start: the mean kinetic temperature over
    the last 500 steps is 600 K within 10 % (16 atoms: ±20 % per sample, 50 friction times averaged)."""
    from ase import units

    atoms = si16(1500.0)
    eng = engine(pot, atoms, capacity, ensemble="nvt", timestep_fs=2.0, temperature_K=600.0, friction_per_fs=0.05, seed=7)
    obs = np.concatenate([eng.advance(CHUNK) for _ in range(12)])
    temperature = 2 * obs[:, 1] / (3 * len(atoms) * units.kB)
    assert temperature[0] > 1000
    assert abs(temperature[100:].mean() - 600.0) < 60.0, temperature[100:].mean()


def test_md_command_with_the_jax_engine(tmp_path, capsys):
    """``scalarjax md --engine jax`` writes the ASE path's outputs; npt is a one-line user error."""
    import ase.io
    import yaml

    from scalarjax.cli import main
    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential
    from scalarjax.training.config import RunConfig, to_dict
    from scalarjax.training.trainer import save_params

    model = Potential(load_model_config(TINY), seed=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(RunConfig(model=model.config))))
    save_params(run / "best", model.params)
    structure = tmp_path / "cell.xyz"
    ase.io.write(structure, si16(a=5.0))  # shells at 3.54 and 4.15 Å: the pairs within 3.75 Å stay put
    args = ["md", str(run), "--structure", str(structure), "--engine", "jax", "--steps", "40", "--log-interval", "5"]
    args += ["--traj-interval", "20", "--chunk", str(CHUNK), "--out", str(tmp_path / "md")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "md" / "summary.json").read_text())
    assert summary["engine"] == "jax" and summary["steps"] == 40 and summary["compiles_during_run"] == 0
    frames = ase.io.read(tmp_path / "md" / "trajectory.xyz", ":")
    assert len(frames) == 3 and np.isfinite(frames[-1].get_forces()).all()  # steps 0, 20, 40
    log = np.loadtxt(tmp_path / "md" / "md.log")
    assert log.shape == (9, 7) and np.isfinite(log[:, :5]).all() and abs(log[-1, 1] - log[0, 1]) < 1e-3
    capsys.readouterr()
    assert main(["md", str(run), "--structure", str(structure), "--engine", "jax", "--ensemble", "npt"]) == 2
    assert "needs --engine ase" in capsys.readouterr().err

"""Helpers for the physics tests: evaluate a Potential on ASE atoms, random structures."""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from ase import Atoms

from scalarjax.data.configuration import Configuration, full_to_voigt
from scalarjax.graph.batch import PadSize, batch_graphs, configuration_to_graph, pad_size_for

PAD = PadSize(n_node=80, n_edge=3584, n_graph=4)  # one shape for most tests: one compile


@contextlib.contextmanager
def count_traces():
    """``with count_traces() as n: ...`` — ``n[0]`` is the number of jaxprs traced inside the block by
    any jitted function (every jit cache miss traces once, whether or not XLA's persistent cache then
    serves the compiled program): the recompilation counter of the tests."""
    from jax import monitoring

    count = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(listener)


def evaluate(pot, atoms_list, size: PadSize = PAD):
    """Energies [G], per-structure forces, Voigt stresses (None for non-periodic)."""
    graphs = [configuration_to_graph(Configuration.from_atoms(a), pot.elements, pot.config.r_max) for a in atoms_list]
    out = jax.device_get(pot(batch_graphs(graphs, size), compute_stress=True))
    energies, forces, stresses, start = [], [], [], 0
    for g, a in enumerate(atoms_list):
        energies.append(float(out["energy"][g]))
        forces.append(np.asarray(out["forces"][start : start + len(a)]))
        stresses.append(full_to_voigt(np.asarray(out["stress"][g])) if any(a.pbc) else None)
        start += len(a)
    return energies, forces, stresses


def strained_pair(atoms: Atoms, a: int, b: int, h: float) -> list:
    """``atoms`` under the symmetric strains ±ε with ε_ab = ε_ba = h (a = b) or h/2 (shear, so that
    d/dγ with γ = 2ε_ab gives σ_ab V), positions scaled with the cell."""
    eps = np.zeros((3, 3))
    eps[a, b] = eps[b, a] = h if a == b else h / 2
    out = []
    for sign in (1, -1):
        st = atoms.copy()
        st.set_cell(atoms.cell @ (np.eye(3) + sign * eps), scale_atoms=True)
        out.append(st)
    return out


def evaluate_one(pot, atoms, size: PadSize = PAD):
    e, f, s = evaluate(pot, [atoms], size)
    return e[0], f[0], s[0]


def triclinic_cell(seed: int = 0, n: int = 8) -> Atoms:
    """A rattled, sheared periodic Si/O cell with 8 atoms (≈5 Å vectors, smaller than 2·r_max)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.2, 0.0, 0.0], [0.7, 5.0, 0.0], [-0.4, 0.5, 5.4]])
    frac = rng.uniform(size=(n, 3))
    atoms = Atoms(numbers=rng.choice([8, 14], size=n), scaled_positions=frac, cell=cell, pbc=True)
    # Push apart atoms that landed too close (keeps the test away from the unphysical regime).
    for _ in range(50):
        d = atoms.get_all_distances(mic=True) + np.eye(n) * 10
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] > 1.4:
            break
        atoms.positions[i] += rng.normal(size=3) * 0.7
    return atoms


def molecule(seed: int = 0, n: int = 6) -> Atoms:
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(n, 3)) * 1.3
    return Atoms(numbers=rng.choice([8, 14], size=n), positions=pos, pbc=False)


def random_orthogonal(seed: int, reflect: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if reflect else q


def captured_intermediates(pot, atoms, filter_fn=True) -> dict:
    """The backbone's Flax intermediates for one structure (``capture_intermediates=filter_fn``),
    evaluated through the same energy function the potential differentiates."""
    import jax.numpy as jnp

    from scalarjax.potential import make_energy_fn

    captured = []

    def apply(params, *inputs):
        out, state = pot.model.apply(params, *inputs, capture_intermediates=filter_fn)
        captured.append(state["intermediates"]["backbone"])
        return out

    g = configuration_to_graph(Configuration.from_atoms(atoms), pot.elements, pot.config.r_max)
    b = batch_graphs([g], pad_size_for([g]))
    pos = jnp.asarray(b.nodes["positions"])
    make_energy_fn(apply, pot.config.r_max, pos.dtype)(pot.params, b, pos, jnp.zeros((b.n_node.shape[0], 3, 3), pos.dtype))
    return captured[0]


def write_mlearn_aimd_json(path, frames) -> None:
    """An mlearn-format JSON of diamond Si AIMD-NVT frames, ``frames = [(temperature_K, a_Å), ...]``."""
    import json

    from ase.build import bulk

    items = []
    for k, (temp, a) in enumerate(frames):
        at = bulk("Si", "diamond", a=a, cubic=True)
        at.rattle(0.05, seed=k)
        items.append(
            {
                "structure": {
                    "lattice": {"matrix": at.cell.tolist()},
                    "sites": [{"xyz": list(x), "species": [{"element": "Si"}]} for x in at.positions],
                },
                "outputs": {"energy": -5.0 * len(at), "forces": [[0.0, 0.0, 0.0]] * len(at)},
                "group": "AIMD-NVT",
                "description": f"Snapshot {k} of 100000 of AIMD NVT simulation for normal structure at {temp} K",
            }
        )
    with open(path, "w") as f:
        json.dump(items, f)

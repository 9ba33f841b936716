"""State of the in-XLA MD engine (:mod:`scalarjax.simulation.engine`) and its on-device neighbour
list: the fixed system, the settings, the integrator state, the image shifts, the all-pairs build
over them, its Verlet-skin refresh and the padded graph the model reads (equations, units and
scaling in the engine's module docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from scalarjax.errors import InputError

CHUNK_STEPS = 100  # steps per host call (the default of Settings.max_steps)


class System(NamedTuple):
    """What stays fixed during a run (device arrays, a jit argument). N atoms, M image shifts.

    ``species [N]`` int32 (index into the model's elements), ``masses [N]`` amu, ``cell [3, 3]`` Å
    (rows = lattice vectors, zeros allowed along non-periodic directions), ``full_cell [3, 3]`` (the
    cell completed to a non-singular one, ``ase.geometry.complete_cell``), ``inv_cell [3, 3]`` (its
    inverse: fractional ``f = x · inv_cell``), ``pbc [3]`` bool, ``images [M, 3]`` integer-valued shifts;
    the integrator's ``dt`` (τ), ``kT`` (eV) and friction ``gamma`` (1/τ), scalars, so that runs that
    differ only in them share one compiled program."""

    species: jnp.ndarray
    masses: jnp.ndarray
    cell: jnp.ndarray
    full_cell: jnp.ndarray
    inv_cell: jnp.ndarray
    pbc: jnp.ndarray
    images: jnp.ndarray
    dt: jnp.ndarray
    kT: jnp.ndarray
    gamma: jnp.ndarray


class NeighborList(NamedTuple):
    """Fixed-capacity edge list (C = capacity): ``senders [C]``, ``receivers [C]`` int32 (padding
    edges: both N, the padding node), ``shifts [C, 3]`` (edge vector ``x_r − x_s + shifts · cell``
    for the *unwrapped* positions), ``reference [N, 3]`` Å (positions at the last build), ``count``
    (pairs within r_max + skin at the last build, may exceed C), ``overflow`` (sticky: some build
    found more than C pairs), ``builds`` (number of builds)."""

    senders: jnp.ndarray
    receivers: jnp.ndarray
    shifts: jnp.ndarray
    reference: jnp.ndarray
    count: jnp.ndarray
    overflow: jnp.ndarray
    builds: jnp.ndarray


class MDState(NamedTuple):
    """Integrator state: ``positions [N, 3]`` Å, ``velocities [N, 3]`` Å/τ (ASE units),
    ``forces [N, 3]`` eV/Å and ``energy`` (eV) at ``positions``, the neighbour list, the PRNG
    ``key`` (Langevin noise), the ``step`` counter and ``primed`` (False until forces and energy
    have been computed)."""

    positions: jnp.ndarray
    velocities: jnp.ndarray
    forces: jnp.ndarray
    energy: jnp.ndarray
    neighbors: NeighborList
    key: jnp.ndarray
    step: jnp.ndarray
    primed: jnp.ndarray


@dataclass(frozen=True)
class Settings:
    """Static settings of the jitted loop: ``ensemble`` (nve | nvt), ``cutoff`` = r_max + skin and
    ``skin`` (Å), ``max_steps`` (steps one call can run: the length of its observable buffer)."""

    ensemble: str
    cutoff: float
    skin: float
    max_steps: int = CHUNK_STEPS


def image_shifts(cell, pbc, cutoff: float) -> np.ndarray:
    """Integer shifts S ``[M, 3]`` such that every pair of atoms *wrapped into the cell*
    (fractional coordinates in [0, 1) along periodic directions) closer than ``cutoff`` (Å) is
    ``x_j − x_i + S·L`` for an S in the set: ``|S_k| ≤ ceil(cutoff · |b_k|)`` with ``b_k`` the k-th
    column of ``L⁻¹`` (``1/|b_k|`` is the spacing of the lattice planes), 0 along non-periodic k.
    Host-side, once per run (the cell is fixed in NVE/NVT)."""
    from ase.geometry import complete_cell

    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    inv = np.linalg.inv(complete_cell(np.asarray(cell, np.float64).reshape(3, 3)))
    reach = [int(math.ceil(cutoff * np.linalg.norm(inv[:, k]))) if pbc[k] else 0 for k in range(3)]
    grids = np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.float64)


def make_system(
    atoms, elements, dtype, cutoff: float, timestep_fs: float = 1.0, temperature_K: float = 0.0, friction_per_fs: float = 0.0
) -> System:
    """``atoms`` (ASE) → :class:`System` in ``dtype`` for a model with element table ``elements``;
    time step (fs), thermostat temperature (K) and friction (1/fs) converted to ASE units."""
    from ase import units
    from ase.geometry import complete_cell

    cell = np.asarray(atoms.get_cell(), np.float64)
    pbc = np.asarray(atoms.get_pbc(), bool)
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-9 and pbc.all():
        raise InputError(f"atoms: periodic cell has zero volume: {cell.tolist()}")
    full = complete_cell(cell)
    images = image_shifts(cell, pbc, cutoff)
    if len(atoms) ** 2 * len(images) >= 2**31:
        raise InputError(
            f"{len(atoms)} atoms × {len(images)} cell images: too many pairs for the jax engine's all-pairs "
            "neighbour list (N²·M < 2³¹); use the ASE engine"
        )
    return System(
        species=jnp.asarray(elements.index(atoms.get_atomic_numbers(), "atoms"), jnp.int32),
        masses=jnp.asarray(atoms.get_masses(), dtype),
        cell=jnp.asarray(cell, dtype),
        full_cell=jnp.asarray(full, dtype),
        inv_cell=jnp.asarray(np.linalg.inv(full), dtype),
        pbc=jnp.asarray(pbc),
        images=jnp.asarray(images, dtype),
        dt=jnp.asarray(timestep_fs * units.fs, dtype),
        kT=jnp.asarray(units.kB * temperature_K, dtype),
        gamma=jnp.asarray(friction_per_fs / units.fs, dtype),
    )


def _pairs_within(positions, system: System, cutoff: float):
    """``(mask [N, M, N], wrap [N, 3])``: ``mask[i, m, j]`` = ``|x̃_j − x̃_i + S_m·L| ≤ cutoff`` for the
    positions wrapped into the cell, ``x̃ = x + wrap·L`` (wrap integer-valued, 0 along non-periodic
    directions), excluding an atom with itself at S = 0. Sender-major, like matscipy's list."""
    n = positions.shape[0]
    frac = positions @ system.inv_cell
    wrap = jnp.where(system.pbc[None, :], -jnp.floor(frac), 0.0)
    x = positions + wrap @ system.full_cell
    offsets = system.images @ system.full_cell  # [M, 3]
    diff = x[None, None, :, :] - x[:, None, None, :] + offsets[None, :, None, :]
    d2 = jnp.sum(diff * diff, axis=-1)
    itself = jnp.eye(n, dtype=bool)[:, None, :] & jnp.all(system.images == 0, axis=1)[None, :, None]
    return (d2 <= cutoff * cutoff) & ~itself, wrap


def build_neighbors(positions, system: System, cutoff: float, capacity: int) -> NeighborList:
    """All pairs within ``cutoff`` (Å) of ``positions [N, 3]``, compacted to ``capacity`` edges
    (jittable; ``capacity`` static), sorted by sender. Edge k < count is (sender i, receiver j,
    shift S + n_j − n_i); the rest are padding edges N → N with zero shift. ``overflow`` = count >
    capacity (then the pairs past the capacity are missing and the caller must reallocate).
    Flat indices are int32: N²·M < 2³¹ (e.g. 8900 atoms with 27 images)."""
    n, n_images = positions.shape[0], system.images.shape[0]
    mask, wrap = _pairs_within(positions, system, cutoff)
    count = jnp.sum(mask, dtype=jnp.int32)
    (flat,) = jnp.nonzero(mask.reshape(-1), size=capacity, fill_value=0)
    i, mj = jnp.divmod(flat, n_images * n)
    m, j = jnp.divmod(mj, n)
    valid = jnp.arange(capacity) < count
    shifts = system.images[m] + wrap[j] - wrap[i]
    return NeighborList(
        senders=jnp.where(valid, i, n).astype(jnp.int32),
        receivers=jnp.where(valid, j, n).astype(jnp.int32),
        shifts=jnp.where(valid[:, None], shifts, 0.0).astype(positions.dtype),
        reference=positions,
        count=count,
        overflow=count > capacity,
        builds=jnp.asarray(1, jnp.int32),
    )


def refresh_neighbors(nbr: NeighborList, positions, system: System, settings: Settings) -> NeighborList:
    """Rebuild (``lax.cond``) when some atom moved more than skin/2 since the last build; the
    ``overflow`` flag stays set and ``builds`` counts on."""
    moved = jnp.max(jnp.sum((positions - nbr.reference) ** 2, axis=-1))

    def rebuild(_):
        new = build_neighbors(positions, system, settings.cutoff, nbr.senders.shape[0])
        return new._replace(overflow=nbr.overflow | new.overflow, builds=nbr.builds + 1)

    return jax.lax.cond(moved > (0.5 * settings.skin) ** 2, rebuild, lambda _: nbr, None)


def pad_neighbors(nbr: NeighborList, capacity: int) -> NeighborList:
    """The same list in a larger ``capacity`` (padding edges appended): the state a run with that
    capacity from the start would hold. Host-side, between chunks."""
    extra = capacity - nbr.senders.shape[0]
    pad_node = nbr.reference.shape[0]
    fill = lambda a, v: jnp.concatenate([a, jnp.full((extra, *a.shape[1:]), v, a.dtype)])
    return nbr._replace(senders=fill(nbr.senders, pad_node), receivers=fill(nbr.receivers, pad_node), shifts=fill(nbr.shifts, 0))


def padded_graph(positions, system: System, nbr: NeighborList) -> jraph.GraphsTuple:
    """The model's input: one real graph (N atoms, ``min(count, C)`` edges) and the padding graph
    (one padding node at index N, zero cell) — the layout of :mod:`scalarjax.graph.batch`."""
    n, cap = positions.shape[0], nbr.senders.shape[0]
    real = jnp.minimum(nbr.count, cap).astype(jnp.int32)
    return jraph.GraphsTuple(
        nodes={
            "positions": jnp.concatenate([positions, jnp.zeros((1, 3), positions.dtype)]),
            "species": jnp.concatenate([system.species, jnp.zeros((1,), jnp.int32)]),
        },
        edges={"shifts": nbr.shifts},
        globals={"cell": jnp.stack([system.cell, jnp.zeros_like(system.cell)]), "pbc": jnp.stack([system.pbc, jnp.zeros(3, bool)])},
        senders=nbr.senders,
        receivers=nbr.receivers,
        n_node=jnp.asarray([n, 1], jnp.int32),
        n_edge=jnp.stack([real, cap - real]),
    )

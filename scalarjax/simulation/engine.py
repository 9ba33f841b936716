"""Molecular dynamics inside XLA: K steps per host call, the neighbour list rebuilt on the device.

``scalarjax md --engine jax`` (ensembles ``nve`` and ``nvt``; the driver with logs and trajectory is
:func:`scalarjax.simulation.md.run_md_engine`). The ASE path
(:mod:`scalarjax.simulation.md`) pays one host round-trip per step (neighbour list with matscipy,
graph building, device copy); here a jitted ``lax.while_loop`` runs up to ``chunk_steps`` steps per
call and the host only writes logs and trajectory frames between chunks.

Units (ASE's): positions Å, masses amu, energies eV, forces eV/Å, time in ASE's unit
``τ = Å·sqrt(amu/eV) ≈ 10.18 fs`` (``dt = timestep_fs · ase.units.fs``), velocities
``v`` in Å/τ (what ``atoms.get_velocities()`` returns), temperature ``T = 2 E_kin / (3 N k_B)`` K.

Integrators (``a = F/m``, ``F = −∂E/∂x`` from :func:`scalarjax.potential.make_potential`):

* ``nve``, velocity Verlet (ASE's ``VelocityVerlet``, same operation order)::

      v ← v + (dt/2) a(x);   x ← x + dt v;   v ← v + (dt/2) a(x)

* ``nvt``, Langevin with BAOAB splitting (Leimkuhler–Matthews), friction γ (1/fs, → 1/τ)::

      B: v ← v + (dt/2) a   A: x ← x + (dt/2) v   O: v ← c₁ v + sqrt((1 − c₁²) k_B T / m) ξ
      A: x ← x + (dt/2) v   B: v ← v + (dt/2) a(x),          c₁ = exp(−γ dt), ξ ~ N(0, 1)

  (the centre of mass is not fixed, like the ASE path's ``Langevin(fixcm=False)``).

Neighbour list (:func:`build_neighbors`): all pairs (i, j, S) with ``|x_j − x_i + S·L| ≤ r_max +
skin`` over a fixed set of integer image shifts S computed once on the host
(:func:`image_shifts`, enough images for cells thinner than 2·cutoff, e.g. 64-atom Si, 10.86 Å
for 5.5 Å), compacted with ``jnp.nonzero(size=capacity)`` into fixed-capacity senders/receivers/
shifts. It is rebuilt (``lax.cond``) when an atom moved more than skin/2 since the last build, so
no pair enters r_max unseen; edges between r_max and r_max + skin carry exactly zero (the cutoff
envelope). More pairs than the capacity set a sticky ``overflow`` flag: the host then grows the
capacity geometrically (one recompilation) and redoes that chunk from its start state, so no pair
is ever lost. A build costs O(M·N²) time and ~5·M·N² bytes (mask and its prefix sum) for M images
and N atoms, e.g. M = 27 for both Si cells: fine up to a few thousand atoms when rebuilds are rare
(every ~10–30 steps at 300 K with the default 0.25 Å skin); beyond N²·M = 2³¹ the engine refuses (a cell
list would be the next step).
Positions are never wrapped: a build wraps a copy into the cell and expresses the shifts for the
unwrapped positions (``S' = S + n_j − n_i``), so trajectories are continuous, as in ASE.

jax-md (0.2.29, which does import and run with this JAX) is not used: its neighbour list assumes the
minimum image (box ≥ 2·cutoff: in the 10.86 Å Si cell at 5.5 Å it misses pairs) and returns no
integer cell shifts, which the model's edge vectors and stress need.

The model is a :class:`~scalarjax.potential.Potential` (parameters passed as a jit argument) or an
:class:`~scalarjax.export.ExportedPotential` (its StableHLO function called inside the loop). The
integration runs in the model's dtype. The pressure is not computed (the log's P column is nan).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from scalarjax.errors import InputError
from scalarjax.simulation.engine_state import (  # noqa: F401  (re-exported)
    CHUNK_STEPS,
    MDState,
    NeighborList,
    Settings,
    System,
    build_neighbors,
    image_shifts,
    make_system,
    pad_neighbors,
    padded_graph,
    refresh_neighbors,
)

ENSEMBLES = ("nve", "nvt")
SKIN = 0.25  # Å, Verlet skin: thin, because the model pays for every edge in the list, also those
# beyond r_max (64-atom Si: 1848 pairs within 5.25 Å, 1994 within 5.5 Å), while a rebuild costs
# little next to a model call (~3 ms at 64 atoms, ~0.2 s at 512 on 2 cores, vs ~0.1 and ~1 s)
HEADROOM = 1.1  # initial capacity over the pairs found at the start
GROWTH = 1.25  # geometric growth of the capacity on overflow


def model_function(potential) -> tuple[object, Callable]:
    """``(params, fn)`` with ``fn(params, graph) → (energy () eV, forces [N+1, 3] eV/Å)`` for a
    :class:`~scalarjax.potential.Potential` or an :class:`~scalarjax.export.ExportedPotential`
    (params None: they are constants of the exported function). Anything else: :class:`InputError`."""
    from scalarjax.export import ExportedPotential, load_export
    from scalarjax.potential import Potential, make_potential

    if isinstance(potential, ExportedPotential):
        call, _ = load_export(potential.path)

        def exported(params, g):
            f = potential.dtype
            e, forces, _ = call(
                *(g.nodes["positions"].astype(f), g.nodes["species"], g.senders, g.receivers, g.edges["shifts"].astype(f)),
                *(g.globals["cell"].astype(f), g.globals["pbc"], g.n_node, g.n_edge),
            )
            return e[0], forces

        return None, exported
    if isinstance(potential, Potential):
        fn = make_potential(potential.model.apply, potential.config.r_max, potential.dtype, compute_stress=False)

        def live(params, g):
            out = fn(params, g)
            return out["energy"][0], out["forces"]

        return potential.params, live
    raise InputError(f"the jax MD engine takes a scalarjax Potential or ExportedPotential, not {type(potential).__name__}")


def _forces(model_fn, params, system: System, nbr: NeighborList, positions):
    """``(energy, forces [N, 3])`` at ``positions`` with the list ``nbr``."""
    energy, forces = model_fn(params, padded_graph(positions, system, nbr))
    return energy, forces[: positions.shape[0]]


def _move(settings: Settings, system: System, s: MDState):
    """The part of a step before the force call: ``(x, v, key)`` after B-drift (VV: ``v + (dt/2) a``,
    ``x + dt v``) or B-A-O-A (BAOAB); equations in the module docstring."""
    dt, inv_m = system.dt, 1.0 / system.masses[:, None]
    v = s.velocities + (0.5 * dt) * s.forces * inv_m
    if settings.ensemble == "nve":
        return s.positions + dt * v, v, s.key
    key, noise = jax.random.split(s.key)
    c1 = jnp.exp(-system.gamma * dt)
    sigma = jnp.sqrt((1.0 - c1 * c1) * system.kT * inv_m)
    x = s.positions + (0.5 * dt) * v
    v = c1 * v + sigma * jax.random.normal(noise, v.shape, v.dtype)
    return x + (0.5 * dt) * v, v, key


def _step(model_fn, settings: Settings, params, system: System, s: MDState) -> MDState:
    """One step of velocity Verlet (``nve``) or Langevin BAOAB (``nvt``), or, on a state whose forces
    are not yet known (``primed`` False), only the force call at the current positions: the loop's
    single call site of the model serves the start too (one compiled copy of the model)."""
    first = ~s.primed
    x, v, key = _move(settings, system, s)
    x, v = jnp.where(first, s.positions, x), jnp.where(first, s.velocities, v)
    key = jnp.where(first, s.key, key)
    nbr = refresh_neighbors(s.neighbors, x, system, settings)
    energy, forces = _forces(model_fn, params, system, nbr, x)
    v = jnp.where(first, v, v + (0.5 * system.dt) * forces / system.masses[:, None])
    return MDState(x, v, forces, energy, nbr, key, s.step + (~first).astype(s.step.dtype), jnp.asarray(True))


def kinetic_energy(masses, velocities):
    """``E_kin = ½ Σ_i m_i |v_i|²`` (eV) for masses ``[N]`` amu and velocities ``[N, 3]`` Å/τ."""
    return 0.5 * jnp.sum(masses[:, None] * velocities * velocities)


def make_chunk(model_fn, settings: Settings) -> Callable:
    """Jitted ``(params, system, state, n_steps) → (state, observables [max_steps, 2])``: up to
    ``n_steps ≤ settings.max_steps`` steps (a traced count: any count runs the same program) in one
    ``lax.while_loop``, stopping early when the neighbour list overflows; an unprimed state first
    gets its forces (an extra iteration that is not a step). Row k of the observables is
    ``(E_pot, E_kin)`` (eV) after step k + 1 (zeros past the steps run)."""

    def chunk(params, system, state, n_steps):
        start = state.step

        def cond(carry):
            s, _ = carry
            return ((s.step - start < n_steps) | ~s.primed) & ~s.neighbors.overflow

        def body(carry):
            s, obs = carry
            s = _step(model_fn, settings, params, system, s)
            row = jnp.stack([s.energy, kinetic_energy(system.masses, s.velocities)]).astype(obs.dtype)
            return s, obs.at[jnp.maximum(s.step - start - 1, 0)].set(row)

        obs = jnp.zeros((settings.max_steps, 2), state.positions.dtype)
        return jax.lax.while_loop(cond, body, (state, obs))

    return jax.jit(chunk)


def make_start(settings: Settings) -> Callable:
    """Jitted ``(system, positions, velocities, key, capacity) → MDState`` (``capacity`` static): the
    first neighbour list, no forces yet (``primed`` False: the loop's first call computes them)."""

    def start(system, positions, velocities, key, capacity):
        nbr = build_neighbors(positions, system, settings.cutoff, capacity)
        zero = jnp.zeros((), positions.dtype)
        return MDState(positions, velocities, jnp.zeros_like(positions), zero, nbr, key, jnp.asarray(0, jnp.int32), jnp.asarray(False))

    return jax.jit(start, static_argnames=("capacity",))


class Engine:
    """Host driver of the jitted loop for one system: the start state, chunks of steps, and the
    neighbour-list capacity (grown on overflow, the chunk redone from its start state).

    ``potential``: :class:`~scalarjax.potential.Potential` or :class:`~scalarjax.export.ExportedPotential`;
    ``atoms``: ASE atoms with positions (Å), velocities (``atoms.get_velocities()``, Å/τ) and masses
    (amu); the cell stays fixed. ``capacity``: edges of the neighbour list (default: the pairs
    within r_max + skin at the start × ``HEADROOM``). ``compile_count`` counts compiled programs
    (one per capacity for the loop, one for the start)."""

    def __init__(
        self,
        potential,
        atoms,
        *,
        ensemble: str = "nve",
        timestep_fs: float = 1.0,
        temperature_K: float = 300.0,
        friction_per_fs: float = 0.01,
        skin: float = SKIN,
        capacity: Optional[int] = None,
        chunk_steps: int = CHUNK_STEPS,
        seed: int = 0,
    ):
        if ensemble not in ENSEMBLES:
            raise InputError(f"ensemble {ensemble!r}: the jax engine runs {ENSEMBLES} (npt needs the ASE engine)")
        if not (math.isfinite(skin) and skin >= 0 and chunk_steps >= 1 and (capacity is None or capacity >= 1)):
            raise InputError(f"md engine: skin {skin} Å must be ≥ 0, chunk {chunk_steps} and capacity {capacity} ≥ 1")
        self.dtype = jnp.dtype(potential.dtype)
        self.settings = Settings(ensemble=ensemble, cutoff=float(potential.config.r_max) + skin, skin=skin, max_steps=chunk_steps)
        thermo = dict(timestep_fs=timestep_fs, temperature_K=temperature_K, friction_per_fs=friction_per_fs)
        self.system = make_system(atoms, potential.elements, self.dtype, self.settings.cutoff, **thermo)
        self.params, model_fn = model_function(potential)
        self._chunk = make_chunk(model_fn, self.settings)
        self._start = make_start(self.settings)
        self.reallocations = 0
        self.capacity = int(capacity or self._initial_capacity(atoms))
        self.state = self._begin(atoms.get_positions(), atoms.get_velocities(), seed)

    def _initial_capacity(self, atoms) -> int:
        """Pairs within r_max + skin now (host list, which also checks the input) × HEADROOM, ≥ 16."""
        from scalarjax.graph.neighbors import neighbor_list

        pairs = len(neighbor_list(atoms.get_positions(), atoms.get_cell(), atoms.get_pbc(), self.settings.cutoff, "atoms")[0])
        return max(16, int(math.ceil(HEADROOM * pairs)))

    def _grow(self, needed: int) -> None:
        self.capacity = max(int(math.ceil(GROWTH * self.capacity)), int(math.ceil(HEADROOM * needed)))
        self.reallocations += 1

    def _begin(self, positions, velocities, seed: int) -> MDState:
        """The first neighbour list (grown until it fits), then the forces (the loop, zero steps)."""
        pos = jnp.asarray(positions, self.dtype)
        vel = jnp.asarray(velocities, self.dtype)
        while True:
            state = self._start(self.system, pos, vel, jax.random.PRNGKey(seed), capacity=self.capacity)
            if not bool(state.neighbors.overflow):
                break
            self._grow(int(state.neighbors.count))
        state, _ = self._chunk(self.params, self.system, state, np.int32(0))
        if not np.isfinite(float(state.energy)):
            raise FloatingPointError(f"the model returned a non-finite energy ({float(state.energy)}) at the start")
        return state

    def compile(self) -> None:
        """Compile the loop for the current capacity (a call running zero steps)."""
        jax.block_until_ready(self._chunk(self.params, self.system, self.state, np.int32(0)))

    def advance(self, n_steps: int) -> np.ndarray:
        """Run ``n_steps`` (≤ chunk_steps) steps; returns ``(E_pot, E_kin)`` ``[n_steps, 2]`` eV after
        each step. On overflow: grow the capacity, pad the start state's list, redo the chunk."""
        if not 0 <= n_steps <= self.settings.max_steps:
            raise ValueError(f"advance({n_steps}): at most chunk_steps = {self.settings.max_steps} steps per call")
        while True:
            state, obs = self._chunk(self.params, self.system, self.state, np.int32(n_steps))
            if not bool(state.neighbors.overflow):
                break
            self._grow(int(state.neighbors.count))
            self.state = self.state._replace(neighbors=pad_neighbors(self.state.neighbors, self.capacity))
        obs = np.asarray(obs, np.float64)[:n_steps]  # sliced on the host: no eager op (trace) per length
        if not np.isfinite(obs).all():
            raise FloatingPointError(f"non-finite energy within steps {int(self.state.step)}..{int(state.step)} of the jax MD engine")
        self.state = state
        return obs

    @property
    def compile_count(self) -> int:
        """Programs compiled so far (loop and start; a recompilation adds one)."""
        return self._chunk._cache_size() + self._start._cache_size()

    def snapshot(self, atoms):
        """A copy of ``atoms`` at the current state: positions, velocities, and a single-point
        calculator holding energy (eV) and forces (eV/Å)."""
        from ase.calculators.singlepoint import SinglePointCalculator

        s = jax.device_get(self.state)
        frame = atoms.copy()
        frame.set_positions(np.asarray(s.positions, np.float64))
        frame.set_velocities(np.asarray(s.velocities, np.float64))
        frame.calc = SinglePointCalculator(frame, energy=float(s.energy), forces=np.asarray(s.forces, np.float64))
        return frame

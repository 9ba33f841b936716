"""Molecular dynamics drivers: :func:`run_md` on ASE's integrators with a scalarjax calculator, and
:func:`run_md_engine` on the in-XLA engine (:mod:`scalarjax.simulation.engine`, ``nve``/``nvt``),
with the same log, trajectory and summary.

ASE path ensembles: ``nve`` (velocity Verlet), ``nvt`` (Langevin, friction in 1/fs), ``npt`` (isotropic
Martyna–Tobias–Klein Nosé–Hoover chains, ``IsotropicMTKNPT``; periodic cells only). Units: time fs,
temperature K, pressure GPa, energies eV. The log has one row per ``log_interval`` steps:

    time_ps, E_total, E_pot, E_kin (eV), T (K), P (GPa, periodic only; includes the kinetic part), V (Å³)

The trajectory (extxyz) stores positions, momenta, energy, forces (and stress) every
``traj_interval`` steps. The calculator's padded shapes grow geometrically, so a run compiles once
or twice; ``compiles`` in the summary counts compilations of the energy function during the run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from scalarjax.errors import InputError

ENSEMBLES = ("nve", "nvt", "npt")


def check_md_settings(
    steps: int, timestep_fs: float, temperature_K: float, log_interval: int = 1, traj_interval: int = 1, friction_per_fs: float = 0.01
) -> None:
    """Settings that would run backwards, not move, or divide by zero: an :class:`InputError` naming them."""
    import math

    checks = (
        ("steps", steps, steps >= 1, "must be at least 1"),
        ("timestep", timestep_fs, math.isfinite(timestep_fs) and timestep_fs > 0, "fs must be positive"),
        ("temperature", temperature_K, math.isfinite(temperature_K) and temperature_K >= 0, "K must be ≥ 0"),
        ("log-interval", log_interval, log_interval >= 1, "must be at least 1"),
        ("traj-interval", traj_interval, traj_interval >= 1, "must be at least 1"),
        ("friction", friction_per_fs, math.isfinite(friction_per_fs) and friction_per_fs >= 0, "1/fs must be ≥ 0"),
    )
    for name, value, ok, rule in checks:
        if not ok:
            raise InputError(f"md --{name} {value}: {rule}")


def initial_velocities(atoms, temperature_K: float, seed: int) -> None:
    """Maxwell–Boltzmann momenta at ``temperature_K`` with zero total momentum (unless already set)."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    if temperature_K > 0 and not np.any(atoms.get_momenta()):
        thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
        Stationary(atoms)


def make_integrator(
    atoms,
    ensemble: str,
    timestep_fs: float,
    temperature_K: float,
    friction_per_fs: float = 0.01,
    pressure_GPa: float = 0.0,
    tdamp_fs: float = 100.0,
    pdamp_fs: float = 1000.0,
    seed: int = 0,
):
    """An ASE integrator for ``ensemble`` (``nve``: velocity Verlet; ``nvt``: Langevin with friction
    ``friction_per_fs`` in 1/fs and a NumPy generator seeded with ``seed``; ``npt``: isotropic MTK
    Nosé–Hoover chains at ``pressure_GPa``, thermostat/barostat time constants ``tdamp_fs`` /
    ``pdamp_fs``, periodic cells only), stepping ``timestep_fs``. It is not run here."""
    from ase import units

    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(
            atoms, dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs, fixcm=False, rng=np.random.default_rng(seed)
        )
    if ensemble == "npt":
        if not all(atoms.pbc):
            raise InputError("md --ensemble npt needs a fully periodic cell")
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(
            atoms,
            dt,
            temperature_K=temperature_K,
            pressure_au=pressure_GPa * units.GPa,
            tdamp=tdamp_fs * units.fs,
            pdamp=pdamp_fs * units.fs,
        )
    raise InputError(f"ensemble {ensemble!r}: choose one of {ENSEMBLES}")


def _pressure_GPa(atoms) -> Optional[float]:
    from ase import units

    if not all(atoms.pbc) or "stress" not in atoms.calc.implemented_properties:
        return None
    return float(-np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3 / units.GPa)


def run_md(
    atoms,
    calc,
    ensemble: str = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    pressure_GPa: float = 0.0,
    friction_per_fs: float = 0.01,
    log_interval: int = 10,
    traj_interval: int = 100,
    trajectory: Optional[Path] = None,
    log: Optional[Path] = None,
    seed: int = 0,
    progress: Optional[bool] = None,
) -> dict:
    """Run ``steps`` steps; returns a summary with the logged rows, throughput and drift (NVE)."""
    if ensemble not in ENSEMBLES:
        raise InputError(f"ensemble {ensemble!r}: choose one of {ENSEMBLES}")
    check_md_settings(steps, timestep_fs, temperature_K, log_interval, traj_interval, friction_per_fs)
    progress = sys.stderr.isatty() if progress is None else progress
    atoms.calc = calc
    initial_velocities(atoms, temperature_K, seed)
    dyn = make_integrator(atoms, ensemble, timestep_fs, temperature_K, friction_per_fs, pressure_GPa, seed=seed)
    atoms.get_forces()  # compile before the clock starts
    pot = getattr(calc, "potential", None)
    compiles_before = pot.compile_count if pot is not None else 0
    log_file = fresh_outputs(log, trajectory)
    from scalarjax.progress import bar

    pbar = bar(None, steps, f"MD {ensemble}", progress, unit="step")
    observer = _Observer(atoms, dyn, log_interval, _Log(timestep_fs, log_file, pbar))
    dyn.attach(observer.observe, interval=log_interval)
    if trajectory:
        import ase.io

        dyn.attach(lambda: ase.io.write(trajectory, atoms, format="extxyz", append=True), interval=traj_interval)
    t0 = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - t0
    pbar.close()
    if log_file:
        log_file.close()
    compiles = (pot.compile_count - compiles_before) if pot is not None else None
    return _summary(atoms, observer.log.rows, ensemble, steps, timestep_fs, temperature_K, seconds, compiles)


def _summary(atoms, rows, ensemble, steps, timestep_fs, temperature_K, seconds, compiles, **extra) -> dict:
    """The summary both drivers return: settings, throughput, ``extra`` (engine counters), the logged rows
    and, past two rows, :func:`energy_statistics` (drift)."""
    summary = dict(ensemble=ensemble, n_atoms=len(atoms), steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K)
    summary.update(seconds=seconds, steps_per_s=steps / seconds, compiles_during_run=compiles, **extra, rows=rows)
    if len(rows) > 2:
        summary.update(energy_statistics(rows, len(atoms)))
    return summary


def run_md_engine(
    atoms,
    potential,
    ensemble: str = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    friction_per_fs: float = 0.01,
    log_interval: int = 10,
    traj_interval: int = 100,
    trajectory: Optional[Path] = None,
    log: Optional[Path] = None,
    seed: int = 0,
    progress: Optional[bool] = None,
    skin: Optional[float] = None,
    capacity: Optional[int] = None,
    chunk_steps: Optional[int] = None,
) -> dict:
    """:func:`run_md` on the in-XLA engine (:class:`scalarjax.simulation.engine.Engine`, ``nve``/``nvt``):
    the same log (P: nan, no stress), frames and summary, ``atoms`` left at the final state; ``skin``
    (Å), ``capacity``, ``chunk_steps``: the engine's defaults unless given. The summary adds
    ``compile_seconds`` (before the clock), ``neighbor_capacity``, ``neighbor_builds``, ``reallocations``."""
    from scalarjax.progress import bar
    from scalarjax.simulation import engine as xla

    if ensemble not in xla.ENSEMBLES:
        raise InputError(f"md --ensemble {ensemble} needs --engine ase (the jax engine runs {', '.join(xla.ENSEMBLES)})")
    check_md_settings(steps, timestep_fs, temperature_K, log_interval, traj_interval, friction_per_fs)
    initial_velocities(atoms, temperature_K, seed)
    t0 = time.perf_counter()
    kw = dict(ensemble=ensemble, timestep_fs=timestep_fs, temperature_K=temperature_K, friction_per_fs=friction_per_fs, seed=seed)
    given = {k: v for k, v in dict(skin=skin, capacity=capacity, chunk_steps=chunk_steps).items() if v is not None}
    engine = xla.Engine(potential, atoms, **kw, **given)
    engine.compile()
    compile_seconds, compiles_before = time.perf_counter() - t0, engine.compile_count
    log_file = fresh_outputs(log, trajectory)
    pbar = bar(None, steps, f"MD {ensemble} (jax)", sys.stderr.isatty() if progress is None else progress, unit="step")
    rec = _EngineRecorder(engine, atoms, _Log(timestep_fs, log_file, pbar), log_interval, trajectory)
    rec.row(0, float(engine.state.energy), float(xla.kinetic_energy(engine.system.masses, engine.state.velocities)))
    rec.frame()
    t0 = time.perf_counter()
    try:
        _run_chunks(engine, rec, steps, traj_interval)
    finally:
        pbar.close()
        log_file and log_file.close()
    seconds = time.perf_counter() - t0
    final = engine.snapshot(atoms)
    atoms.set_positions(final.get_positions())
    atoms.set_velocities(final.get_velocities())
    counters = dict(
        compile_seconds=compile_seconds,
        neighbor_capacity=engine.capacity,
        neighbor_builds=int(engine.state.neighbors.builds),
        reallocations=engine.reallocations,
    )
    summary = _summary(
        atoms, rec.log.rows, ensemble, steps, timestep_fs, temperature_K, seconds, engine.compile_count - compiles_before, **counters
    )
    return {"engine": "jax", **summary}


@dataclass
class _EngineRecorder:
    """The in-XLA engine's rows (every ``log_interval`` steps; T from E_kin, the cell's fixed volume)
    and extxyz frames (:meth:`Engine.snapshot`)."""

    engine: Any
    atoms: Any
    log: _Log
    log_interval: int
    trajectory: Optional[Path]

    def row(self, step: int, e_pot: float, e_kin: float) -> None:
        from ase import units

        if step % self.log_interval == 0:
            volume = self.atoms.get_volume() if all(self.atoms.pbc) else None
            self.log.add(step, e_pot, e_kin, 2.0 * e_kin / (3 * len(self.atoms) * units.kB), None, volume)

    def frame(self) -> None:
        if self.trajectory:
            import ase.io

            ase.io.write(self.trajectory, self.engine.snapshot(self.atoms), format="extxyz", append=True)


def _run_chunks(engine, rec: _EngineRecorder, steps: int, traj_interval: int) -> None:
    """``steps`` steps of ``engine`` in chunks of at most its ``chunk_steps`` that end on every
    multiple of ``traj_interval`` (a frame there); a row after each step."""
    done = 0
    while done < steps:
        n = min(engine.settings.max_steps, steps - done, traj_interval - done % traj_interval)
        for k, (e_pot, e_kin) in enumerate(engine.advance(n)):
            rec.row(done + k + 1, float(e_pot), float(e_kin))
        done += n
        rec.log.pbar.update(n)
        if done % traj_interval == 0:
            rec.frame()


def fresh_outputs(log: Optional[Path], trajectory: Optional[Path]):
    """Create the log (with its header; returned open) and an empty trajectory, whichever are asked for.

    Outputs are created afresh (O_EXCL after unlinking a previous file or a planted symlink), so
    they never write through a symlink; callers pick non-clobbering names (scalarjax.fileio.fresh_name).
    """
    for path in (log, trajectory):
        if path:
            Path(path).unlink(missing_ok=True)
    log_file = open(log, "x") if log else None
    if log_file:
        log_file.write("# time_ps E_total_eV E_pot_eV E_kin_eV T_K P_GPa V_A3\n")
    if trajectory:
        open(trajectory, "x").close()
    return log_file


@dataclass
class _Log:
    """Rows of observables (eV, K, GPa, Å³; P and V ``None`` where not computed or not periodic) to
    ``rows``, to the log file (nan for ``None``) and to the progress bar's postfix."""

    timestep_fs: float
    log_file: Any
    pbar: Any
    rows: list = field(default_factory=list)

    def add(self, step: int, e_pot: float, e_kin: float, T_K: float, P_GPa: Optional[float], V_A3: Optional[float]) -> None:
        row = {
            "step": step,
            "time_ps": step * self.timestep_fs / 1000,
            "E_total": e_pot + e_kin,
            "E_pot": e_pot,
            "E_kin": e_kin,
            "T_K": T_K,
            "P_GPa": P_GPa,
            "V_A3": V_A3,
        }
        self.rows.append(row)
        if self.log_file:
            p = "nan" if P_GPa is None else f"{P_GPa:.6f}"
            v = "nan" if V_A3 is None else f"{V_A3:.4f}"
            self.log_file.write(f"{row['time_ps']:.5f} {row['E_total']:.8f} {e_pot:.8f} {e_kin:.8f} {T_K:.3f} {p} {v}\n")
        self.pbar.set_postfix_str(f"T {T_K:.0f} K  E {row['E_total']:.5f} eV")


@dataclass
class _Observer:
    """Attached to the ASE integrator every ``log_interval`` steps: one row of the atoms' observables."""

    atoms: Any
    dyn: Any
    log_interval: int
    log: _Log

    def observe(self) -> None:
        atoms, step = self.atoms, self.dyn.nsteps
        volume = atoms.get_volume() if all(atoms.pbc) else None
        e_pot, e_kin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        self.log.add(step, e_pot, e_kin, atoms.get_temperature(), _pressure_GPa(atoms), volume)
        if step:
            self.log.pbar.update(self.log_interval)


def energy_statistics(rows: list, n_atoms: int) -> dict:
    """Drift (meV/atom/ps: slope of a linear fit of E_total/N against time), fluctuation (meV/atom:
    standard deviation of E_total/N) and the mean temperature over the second half of the rows."""
    e = np.array([r["E_total"] for r in rows]) / n_atoms
    t = np.array([r["time_ps"] for r in rows])
    return {
        "drift_meV_per_atom_per_ps": 1e3 * float(np.polyfit(t, e, 1)[0]),
        "fluctuation_meV_per_atom": 1e3 * float(np.std(e)),
        "mean_T_K": float(np.mean([r["T_K"] for r in rows[len(rows) // 2 :]])),
    }


def nve_drift(calc, atoms, steps: int = 1000, timestep_fs: float = 2.0, temperature_K: float = 300.0, seed: int = 0) -> dict:
    """Energy drift (meV/atom/ps, slope of a linear fit of E_total/N) and its fluctuation under NVE,
    with the mean temperature of the run's second half (``mean_T_K``)."""
    s = run_md(atoms, calc, "nve", temperature_K, timestep_fs, steps, log_interval=1, seed=seed, progress=False)
    return {
        k: s[k]
        for k in (
            "n_atoms",
            "steps",
            "timestep_fs",
            "temperature_K",
            "drift_meV_per_atom_per_ps",
            "fluctuation_meV_per_atom",
            "mean_T_K",
            "steps_per_s",
            "compiles_during_run",
        )
    }

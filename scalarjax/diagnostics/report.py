"""``scalarjax diagnose``: the four physical artifacts of a weak scalar pathway, for one or more runs.

For every run (a trained run directory) and one system preset:

- **repulsion**: the homonuclear dimer curve down to well inside the data's shortest distance and
  the energy / pressure of the crystal under uniform compression, with softening flags;
- **phonons** (phonopy): band structure and DOS of the crystal relaxed with the model (cell and
  positions), the Γ frequencies and the optical one (diamond Si: compared with DFT-PBE and
  experiment);
- **nve**: energy drift (meV/atom/ps) and fluctuation of an NVE run of a supercell;
- **rdf**: g(r) of a hot cell from Langevin NVT at the data's own liquid state point (the AIMD
  temperature nearest the preset's and the density of those frames, when ``--data`` has them),
  compared with the AIMD frames of that temperature only: where g first reaches 0.1 and 0.5, the
  first peak and the over-approach (neighbours per atom inside the reference's core edge), each
  with a bootstrap interval over frames (:func:`scalarjax.diagnostics.liquid_structure`).

Numbers go to ``diagnostics.json`` and plots (one per diagnostic, all runs overlaid) to PNGs in
the output directory.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Optional, Sequence

import numpy as np

from scalarjax.diagnostics.systems import (  # noqa: F401  (PRESETS, liquid_* re-exported)
    PRESETS,
    SystemPreset,
    crystal,
    liquid_cell,
    liquid_state_point,
    preset_for,
    reference_frames,
)
from scalarjax.errors import InputError

DIAGNOSTICS = ("repulsion", "phonons", "nve", "rdf")


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long each diagnostic runs: MD steps, curve points, phonon mesh and supercell.
    :meth:`quick`: a small budget for smoke tests, too short for meaningful numbers."""

    nve_steps: int = 1000
    rdf_equilibrate_steps: int = 500
    rdf_sample_steps: int = 1000
    rdf_every: int = 10
    dimer_points: int = 111
    compression_points: int = 26
    phonon_mesh: int = 16
    band_points: int = 51
    phonon_supercell: Optional[tuple[int, int, int]] = None  # None: the preset's

    @classmethod
    def quick(cls) -> Budget:
        return cls(
            nve_steps=40,
            rdf_equilibrate_steps=20,
            rdf_sample_steps=40,
            rdf_every=10,
            dimer_points=21,
            compression_points=6,
            phonon_mesh=6,
            band_points=7,
            phonon_supercell=(2, 2, 2),
        )


def diagnose_run(
    calc,
    p: SystemPreset,
    which: Sequence[str],
    budget: Budget,
    r_data_min: Optional[float],
    seed: int = 0,
    state: Optional[dict] = None,
    md_engine: str = "auto",
) -> dict:
    """The chosen diagnostics of one calculator. ``state``: the liquid state point
    (:func:`liquid_state_point`); default the preset's temperature at the crystal's density.
    ``md_engine``: what runs the liquid's Langevin MD (:func:`md_engine_for`)."""
    runners = {
        "repulsion": lambda: _repulsion(calc, p, budget, r_data_min),
        "phonons": lambda: _phonons(calc, p, budget),
        "nve": lambda: _nve(calc, p, budget, seed),
        "rdf": lambda: _rdf(calc, p, budget, seed, state, md_engine_for(md_engine)),
    }
    out: dict = {}
    timings: dict = {}
    for name in DIAGNOSTICS:  # in this order, whatever the order of ``which``
        if name in which:
            t = time.perf_counter()
            out[name] = runners[name]()
            timings[name] = time.perf_counter() - t
    out["seconds"] = timings
    return out


def _repulsion(calc, p: SystemPreset, budget: Budget, r_data_min: Optional[float]) -> dict:
    """Homonuclear dimer curve from half the data's shortest distance (1 Å without data) to 0.5 Å
    past the cutoff, its softening flags, and the crystal's energy and pressure with the cell
    scaled uniformly by 0.80–1.05."""
    from scalarjax import diagnostics as dg

    z = crystal(p).numbers[0]
    r_lo = 0.5 * (r_data_min or 2.0)
    dimer = dg.dimer_curve(calc, z, z, r_min=r_lo, r_max=calc.config.r_max + 0.5, n=budget.dimer_points)
    comp = dg.compression_curve(calc, crystal(p), scales=np.linspace(0.80, 1.05, budget.compression_points))
    return {
        "dimer": dimer,
        "dimer_flags": dg.softening_flags(
            np.asarray(dimer["r"]), np.asarray(dimer["energy_eV"]), r_data_min, force=np.asarray(dimer["force_eV_per_A"])
        ),
        "compression": comp,
        "r_data_min": r_data_min,
    }


def _phonons(calc, p: SystemPreset, budget: Budget) -> dict:
    """Phonons of the primitive cell relaxed with the model (cell and positions); the preset cell if
    the relaxation fails. Diamond Si also gets the DFT-PBE and measured Γ optical frequencies."""
    from scalarjax import diagnostics as dg
    from scalarjax.simulation import relax

    cell = crystal(p, cubic=False)  # phonons at the model's own lattice constant: relax the cell first
    try:
        relaxed = relax(cell, calc, fmax=1e-3, steps=200, cell=True, optimizer="BFGS")
        relaxation = {k: relaxed[k] for k in ("converged", "steps", "max_force", "volume")}
        relaxation["volume_ratio_to_preset"] = relaxed["volume"] / crystal(p, cubic=False).get_volume()
    except ValueError as err:  # e.g. a badly trained model collapses the cell: report, use the preset cell
        cell, relaxation = crystal(p, cubic=False), {"error": str(err)}
    res = dg.phonons(
        calc, cell, supercell=budget.phonon_supercell or p.phonon_supercell, mesh=(budget.phonon_mesh,) * 3, npoints=budget.band_points
    )
    res["relaxation"] = relaxation
    if p.symbol == "Si":
        res["reference_gamma_optical_THz"] = {
            "dft_pbe": dg.SI_DFT_PBE_GAMMA_OPTICAL_THZ,
            "experiment": dg.SI_EXPERIMENT_GAMMA_OPTICAL_THZ,
        }
    return res


def _nve(calc, p: SystemPreset, budget: Budget, seed: int) -> dict:
    """Energy drift of NVE MD from 300 K in the preset's MD supercell, rattled by 0.02 Å."""
    from scalarjax.simulation import nve_drift

    atoms = crystal(p).repeat(p.supercell_md)
    atoms.rattle(0.02, seed=seed)
    return nve_drift(calc, atoms, budget.nve_steps, p.timestep_fs, 300.0, seed)


MD_ENGINES = ("auto", "ase", "jax")


def md_engine_for(choice: str) -> str:
    """``"ase"`` or ``"jax"`` (:mod:`scalarjax.simulation.engine`) for the liquid's MD. ``"auto"``: the
    jax engine on an accelerator, ASE on the CPU, where the model call is the whole step either way
    (medium MACE: the ASE step costs ~1.05 model calls) and the engine's loop takes longer to compile.
    The NVE drift always runs on ASE: it integrates in float64, the engine in the model's dtype."""
    if choice not in MD_ENGINES:
        raise InputError(f"md engine {choice!r}: choose from {MD_ENGINES}")
    if choice != "auto":
        return choice
    import jax

    return "ase" if jax.default_backend() == "cpu" else "jax"


def _liquid_frames(calc, atoms, temperature: float, p: SystemPreset, budget: Budget, seed: int, engine: str) -> list:
    """Langevin NVT (friction 0.02/fs) from Maxwell–Boltzmann velocities: ``rdf_equilibrate_steps``,
    then a frame every ``rdf_every`` steps for ``rdf_sample_steps``, with ASE's integrator or the jax engine."""
    from scalarjax.simulation import run_md
    from scalarjax.simulation.md import initial_velocities, make_integrator

    frames: list = []
    if engine == "ase":
        run_md(
            atoms, calc, "nvt", temperature, p.timestep_fs, budget.rdf_equilibrate_steps, friction_per_fs=0.02, seed=seed, progress=False
        )
        dyn = make_integrator(atoms, "nvt", p.timestep_fs, temperature, 0.02, seed=seed + 1)
        dyn.attach(lambda: frames.append(atoms.copy()), interval=budget.rdf_every)
        dyn.run(budget.rdf_sample_steps)
        return frames
    from scalarjax.simulation.engine import Engine

    initial_velocities(atoms, temperature, seed)
    chunk = max(budget.rdf_every, 100)
    eng = Engine(
        calc.potential,
        atoms,
        ensemble="nvt",
        timestep_fs=p.timestep_fs,
        temperature_K=temperature,
        friction_per_fs=0.02,
        chunk_steps=chunk,
        seed=seed,
    )
    for done in range(0, budget.rdf_equilibrate_steps, chunk):
        eng.advance(min(chunk, budget.rdf_equilibrate_steps - done))
    frames.append(eng.snapshot(atoms))  # step 0 of sampling, as ASE's attach does
    for _ in range(budget.rdf_sample_steps // budget.rdf_every):
        eng.advance(budget.rdf_every)
        frames.append(eng.snapshot(atoms))
    return frames


def _rdf(calc, p: SystemPreset, budget: Budget, seed: int, state: Optional[dict], engine: str = "ase", start=None) -> dict:
    """g(r) of Langevin NVT at the liquid state point (equilibrated, then sampled every
    ``budget.rdf_every`` steps), and against the reference frames when there are any. ``start``: the
    initial configuration (e.g. a reference frame of the state point, already disordered: a short
    equilibration suffices); default the preset's crystal scaled to the state point's density."""
    from scalarjax import diagnostics as dg

    state = state or liquid_state_point([], p)
    temperature = state["temperature_K"]
    atoms = liquid_cell(p, state["volume_per_atom_A3"]) if start is None else start.copy()
    frames = _liquid_frames(calc, atoms, temperature, p, budget, seed, engine)
    atoms = frames[-1]
    r_max = min(6.0, 0.49 * min(atoms.cell.lengths()) * 2)
    out = {
        **dg.rdf(frames, r_max=r_max),
        "temperature_K": temperature,
        "volume_per_atom_A3": atoms.get_volume() / len(atoms),
        "state_point_matched": state["matched"],
        "n_frames": len(frames),
        "n_atoms": len(atoms),
        "md_engine": engine,
    }
    if state["frames"]:
        liquid = dg.liquid_structure(frames, state["frames"], r_max=r_max, seed=seed)
        out["vs_reference"] = {k: v for k, v in liquid.items() if k not in ("r",)}
    return out


def diagnose(
    run_dirs: Sequence[str],
    system: str = "auto",
    which: Sequence[str] = DIAGNOSTICS,
    data: Optional[str] = None,
    out_dir: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
    quick: bool = False,
    dtype: Optional[str] = None,
    seed: int = 0,
    md_engine: str = "auto",
) -> dict:
    """``scalarjax diagnose``: the diagnostics ``which`` of every run in ``run_dirs`` on one system
    preset (``"auto"``: the one of the runs' element); ``data`` (a data set, optional) supplies the
    shortest distance and the reference liquid frames. Writes ``diagnostics.json`` and one PNG per
    diagnostic to ``out_dir`` (default ``run_dirs[0]/diagnostics``) and returns the report, in which
    the runs are named by ``labels`` (default: their directory names)."""
    from scalarjax import diagnostics as dg
    from scalarjax.calculator import Calculator

    labels = _check_choices(which, labels, run_dirs)
    md_engine_for(md_engine)  # an unknown choice fails before any model loads
    out = pathlib.Path(out_dir or pathlib.Path(run_dirs[0]) / "diagnostics")
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget.quick() if quick else Budget()
    calcs = {label: Calculator.from_run(r, dtype=dtype) for label, r in zip(labels, run_dirs)}
    p = preset_for(next(iter(calcs.values())).config.atomic_numbers, system)
    data_all, aimd = reference_frames(data, p)
    r_data_min = dg.shortest_distance(data_all) if data_all else None
    report = {
        "system": dataclasses.asdict(p),
        "budget": dataclasses.asdict(budget),
        "runs": dict(zip(labels, map(str, run_dirs))),
        "data": data,
        "r_data_min": r_data_min,
        "results": {},
    }
    state = liquid_state_point(aimd, p)
    report["liquid_state_point"] = {k: v for k, v in state.items() if k != "frames"} | {"n_reference_frames": len(state["frames"])}
    from scalarjax.progress import bar

    for label, calc in bar(calcs.items(), len(calcs), "diagnose", unit="run"):
        report["results"][label] = diagnose_run(calc, p, which, budget, r_data_min, seed, state, md_engine)
    if "rdf" in which and state["frames"]:
        report["data_rdf"] = _data_rdf(state, next(iter(report["results"].values()))["rdf"])
    from scalarjax.fileio import write_json

    write_json(out / "diagnostics.json", _plain(report))
    _plots(report["results"], report.get("data_rdf"), which, p, r_data_min, out)
    report["out_dir"] = str(out)
    return report


def _check_choices(which: Sequence[str], labels: Optional[Sequence[str]], run_dirs: Sequence[str]) -> list:
    """Known diagnostics and one distinct label per run (default: the run directories' names) → the labels."""
    unknown = set(which) - set(DIAGNOSTICS)
    if unknown:
        raise InputError(f"--only: unknown diagnostic(s) {sorted(unknown)}; choose from {DIAGNOSTICS}")
    labels = list(labels or [pathlib.Path(r).name for r in run_dirs])
    if len(labels) != len(run_dirs) or len(set(labels)) != len(labels):
        raise InputError(f"--labels: one distinct label per run is needed ({len(run_dirs)} runs, labels {labels})")
    return labels


def _data_rdf(state: dict, first: dict) -> dict:
    """g(r) of the reference AIMD frames on the bins of the first run's g(r) (``first``)."""
    from scalarjax import diagnostics as dg

    return {
        **dg.rdf(state["frames"], r_max=float(first["r"][-1]) + 0.5 * float(np.diff(first["r"][:2])[0])),
        "n_frames": len(state["frames"]),
        "temperature_K": state["temperature_K"],
    }


def _plots(res: dict, data_rdf: Optional[dict], which: Sequence[str], p: SystemPreset, r_data_min: Optional[float], out: pathlib.Path):
    """One PNG per diagnostic in ``out``, every run overlaid (the data's g(r) with the runs')."""
    from scalarjax import diagnostics as dg

    if "repulsion" in which:
        dg.plot_dimer_curves({k: v["repulsion"]["dimer"] for k, v in res.items()}, out / "dimer.png", r_data_min=r_data_min)
        dg.plot_compression_curves({k: v["repulsion"]["compression"] for k, v in res.items()}, out / "compression.png")
    if "phonons" in which:
        ref = (
            {"DFT-PBE Γ optical": dg.SI_DFT_PBE_GAMMA_OPTICAL_THZ, "experiment": dg.SI_EXPERIMENT_GAMMA_OPTICAL_THZ}
            if p.symbol == "Si"
            else None
        )
        dg.plot_phonon_bands({k: v["phonons"] for k, v in res.items()}, out / "phonons.png", reference_THz=ref)
    if "rdf" in which:
        curves = {k: v["rdf"] for k, v in res.items()}
        if data_rdf:
            curves["data (AIMD)"] = data_rdf
        dg.plot_rdfs(curves, out / "rdf.png", r_data_min=r_data_min)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def summary_table(report: dict) -> str:
    """One line per run: the headline number of each diagnostic."""
    fmt = lambda v, spec=".2f": "-" if v is None else format(v, spec)
    rows = []
    for label, r in report["results"].items():
        cells = [f"{label}:"]
        if "repulsion" in r:
            f = r["repulsion"]["dimer_flags"]
            bad = [k for k in ("softening", "non_monotonic", "no_wall", "multiple_minima") if f.get(k)]
            cells.append(f"dimer wall {'FLAGGED (' + ', '.join(bad) + ')' if bad else 'ok'}, r_eq {fmt(f.get('r_eq'))} Å")
        if "phonons" in r:
            cells.append(
                f"Γ optical {fmt(r['phonons'].get('gamma_optical_THz'))} THz, min freq {fmt(r['phonons'].get('min_frequency_THz'))} THz"
            )
        if "nve" in r:
            cells.append(f"NVE drift {fmt(r['nve']['drift_meV_per_atom_per_ps'], '+.3f')} meV/atom/ps")
        if "rdf" in r:
            v = r["rdf"].get("vs_reference")
            if v:
                m, ref = v["model"], v["reference"]
                cells.append(
                    f"liquid {r['rdf']['temperature_K']:.0f} K: g=0.1 at {fmt(m['r_g_0.1']['value'])} Å (AIMD {fmt(ref['r_g_0.1']['value'])}), "
                    f"peak {fmt(m['first_peak_r']['value'])} Å (AIMD {fmt(ref['first_peak_r']['value'])}), "
                    f"over-approach {fmt(v['over_approach'], '+.3f')} neighbours/atom"
                )
            else:
                cells.append(f"g(r) peak {fmt(r['rdf']['first_peak_r'])} Å at {r['rdf']['temperature_K']:.0f} K (no reference frames)")
        rows.append("  ".join(cells))
    if report.get("data_rdf"):
        d = report["data_rdf"]
        rows.append(
            f"data AIMD g(r) at {d.get('temperature_K', float('nan')):.0f} K: peak {fmt(d['first_peak_r'])} Å ({d['n_frames']} frames)"
        )
    return "\n".join(rows)

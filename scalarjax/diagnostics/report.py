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
import json
import pathlib
import time
from typing import Optional, Sequence

import numpy as np

from scalarjax.errors import InputError

DIAGNOSTICS = ("repulsion", "phonons", "nve", "rdf")


@dataclasses.dataclass(frozen=True)
class SystemPreset:
    """A crystal and the MD settings used to probe it (Å, K, fs)."""

    symbol: str
    lattice: str  # ase.build.bulk crystal structure
    a: float  # Å
    supercell_md: tuple[int, int, int]  # repeats of the cubic cell for NVE / RDF
    phonon_supercell: tuple[int, int, int]  # repeats of the primitive cell for phonopy
    liquid_K: float  # temperature of the hot (liquid) NVT run
    timestep_fs: float = 2.0
    data_config_types: tuple[str, ...] = ("AIMD-NVT",)  # frames of the data used as the reference g(r)


PRESETS = {
    "si": SystemPreset("Si", "diamond", 5.431, (2, 2, 2), (3, 3, 3), 2500.0),
    "ag": SystemPreset("Ag", "fcc", 4.09, (2, 2, 2), (3, 3, 3), 2000.0),
    "li": SystemPreset("Li", "bcc", 3.44, (3, 3, 3), (4, 4, 4), 1000.0, timestep_fs=1.0),
}


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


def preset_for(run_elements: Sequence[int], system: str) -> SystemPreset:
    """The preset named ``system``, or for ``"auto"`` the one whose element is the run's only one;
    an :class:`InputError` listing the presets otherwise."""
    from ase.data import chemical_symbols

    if system != "auto":
        if system not in PRESETS:
            raise InputError(f"--system {system!r}: choose one of {sorted(PRESETS)} or auto")
        return PRESETS[system]
    symbols = {chemical_symbols[z] for z in run_elements}
    for p in PRESETS.values():
        if {p.symbol} == symbols:
            return p
    raise InputError(f"--system auto: no preset for the elements {sorted(symbols)}; choose one of {sorted(PRESETS)}")


def crystal(p: SystemPreset, cubic: bool = True):
    """The preset's ideal crystal at its lattice constant: the conventional cubic cell, or with
    ``cubic=False`` ASE's primitive cell."""
    from ase.build import bulk

    return bulk(p.symbol, p.lattice, a=p.a, cubic=cubic)


def reference_frames(data_path: Optional[str], p: SystemPreset):
    """The data set's own configurations of the preset's element: all (for the shortest distance) and
    its AIMD frames (reference g(r)), each with its temperature in ``atoms.info["temperature_K"]``
    where the data says it (mlearn: "... at 2530 K" in the item's description)."""
    if not data_path:
        return [], []
    from scalarjax.data.io import read_configurations

    configs = [c for c in read_configurations(data_path) if set(c.to_atoms().get_chemical_symbols()) == {p.symbol}]
    temperatures = _frame_temperatures(data_path)
    aimd = []
    for c in configs:
        if c.config_type in p.data_config_types and all(c.pbc):
            atoms = c.to_atoms()
            t = temperatures.get(c.source)
            if t is not None:
                atoms.info["temperature_K"] = t
            aimd.append(atoms)
    return [c.to_atoms() for c in configs], aimd


def _frame_temperatures(data_path: str) -> dict:
    """``{source: temperature_K}`` from an mlearn JSON's descriptions; empty for other formats."""
    import re

    if not str(data_path).endswith(".json"):
        return {}
    with open(data_path) as f:
        items = json.load(f)
    out = {}
    for i, item in enumerate(items if isinstance(items, list) else []):
        m = re.search(r"at\s+([0-9.]+)\s*K\b", str(item.get("description", "")) if isinstance(item, dict) else "")
        if m:
            out[f"{data_path}:{i}"] = float(m.group(1))
    return out


def liquid_state_point(aimd: list, p: SystemPreset) -> dict:
    """The data's own liquid state point: the AIMD temperature nearest the preset's liquid one, the
    mean volume per atom of those frames, and the frames themselves (the reference g(r)). Without
    temperatures in the data: the preset's temperature and crystal density, and every AIMD frame
    (flagged ``matched: false``)."""
    temps = sorted({a.info["temperature_K"] for a in aimd if "temperature_K" in a.info})
    if not temps:
        return {
            "temperature_K": p.liquid_K,
            "volume_per_atom_A3": crystal(p).get_volume() / len(crystal(p)),
            "frames": aimd,
            "matched": False,
            "available_K": [],
        }
    t = min(temps, key=lambda x: abs(x - p.liquid_K))
    frames = [a for a in aimd if a.info.get("temperature_K") == t]
    return {
        "temperature_K": t,
        "volume_per_atom_A3": float(np.mean([a.get_volume() / len(a) for a in frames])),
        "frames": frames,
        "matched": True,
        "available_K": temps,
    }


def liquid_cell(p: SystemPreset, volume_per_atom: float):
    """The preset's MD supercell scaled isotropically to ``volume_per_atom`` (Å³)."""
    atoms = crystal(p).repeat(p.supercell_md)
    scale = (volume_per_atom * len(atoms) / atoms.get_volume()) ** (1.0 / 3.0)
    atoms.set_cell(atoms.cell * scale, scale_atoms=True)
    return atoms


def diagnose_run(
    calc, p: SystemPreset, which: Sequence[str], budget: Budget, r_data_min: Optional[float], seed: int = 0, state: Optional[dict] = None
) -> dict:
    """The chosen diagnostics of one calculator. ``state``: the liquid state point
    (:func:`liquid_state_point`); default the preset's temperature at the crystal's density."""
    runners = {
        "repulsion": lambda: _repulsion(calc, p, budget, r_data_min),
        "phonons": lambda: _phonons(calc, p, budget),
        "nve": lambda: _nve(calc, p, budget, seed),
        "rdf": lambda: _rdf(calc, p, budget, seed, state),
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


def _rdf(calc, p: SystemPreset, budget: Budget, seed: int, state: Optional[dict]) -> dict:
    """g(r) of Langevin NVT at the liquid state point (equilibrated, then sampled every
    ``budget.rdf_every`` steps), and against the reference frames when there are any."""
    from scalarjax import diagnostics as dg
    from scalarjax.simulation import run_md
    from scalarjax.simulation.md import make_integrator

    state = state or liquid_state_point([], p)
    temperature = state["temperature_K"]
    atoms = liquid_cell(p, state["volume_per_atom_A3"])
    run_md(atoms, calc, "nvt", temperature, p.timestep_fs, budget.rdf_equilibrate_steps, friction_per_fs=0.02, seed=seed, progress=False)
    frames = []
    dyn = make_integrator(atoms, "nvt", p.timestep_fs, temperature, 0.02, seed=seed + 1)
    dyn.attach(lambda: frames.append(atoms.copy()), interval=budget.rdf_every)
    dyn.run(budget.rdf_sample_steps)
    r_max = min(6.0, 0.49 * min(atoms.cell.lengths()) * 2)
    out = {
        **dg.rdf(frames, r_max=r_max),
        "temperature_K": temperature,
        "volume_per_atom_A3": atoms.get_volume() / len(atoms),
        "state_point_matched": state["matched"],
        "n_frames": len(frames),
        "n_atoms": len(atoms),
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
) -> dict:
    """``scalarjax diagnose``: the diagnostics ``which`` of every run in ``run_dirs`` on one system
    preset (``"auto"``: the one of the runs' element); ``data`` (a data set, optional) supplies the
    shortest distance and the reference liquid frames. Writes ``diagnostics.json`` and one PNG per
    diagnostic to ``out_dir`` (default ``run_dirs[0]/diagnostics``) and returns the report, in which
    the runs are named by ``labels`` (default: their directory names)."""
    from scalarjax import diagnostics as dg
    from scalarjax.calculator import Calculator

    labels = _check_choices(which, labels, run_dirs)
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
        report["results"][label] = diagnose_run(calc, p, which, budget, r_data_min, seed, state)
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

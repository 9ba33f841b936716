"""The four physical artifacts of one finished campaign run (issue 13, point 7), measured while its
trained parameters still exist.

    python experiments/campaign_artifacts.py RUN_DIR --dataset si [--budget default|quick] [--out FILE.json]

A campaign run keeps only its small result file; the run directory with the parameters does not
survive to a later session. So the runner (``experiments/campaign.py``, cells with ``artifacts: true``)
calls this right after training and stores :func:`measure`'s dict in the run's result file under
``"artifacts"``. Everything comes from the library's diagnostics (``scalarjax/diagnostics/``, the
code behind ``scalarjax diagnose``); this module only chooses the systems, the settings and the
numbers kept. Data: the run's own mlearn training and test files (``config.yaml``), else
``$SCALARJAX_DATA/mlearn/{Si,Li}/``.

(a) **repulsion**
    - *short pairs*: on the data's hottest AIMD frames (Si 3374 K: 18 training + 2 test frames, ~50
      pairs; Li 907 K), the signed error of the pair-stretching force f_ij = ½ (F_j − F_i)·û_ij
      over pairs shorter than ``r_short`` (Si 2.1 Å, the issue's; Li 2.3 Å, the same ~2% tail of
      the first shell): < 0 = the model pushes close atoms apart less than DFT
      (:func:`scalarjax.diagnostics.short_pair_force_errors`); pooled over both files and test only;
    - *strained cells*: the Elastic cells of the largest compressive and tensile strain (Si ±0.1,
      Li ±0.01; 6 deformation modes each): signed pressure error (GPa; < 0 on compressed cells =
      too soft) and stress MAE (:func:`scalarjax.diagnostics.stress_errors`);
    - *curves*: the dimer curve and the crystal's uniform compression (0.80–1.05 of the lattice
      constant) with ``softening_flags`` / ``compression_flags`` (flagged: softening, non-monotonic,
      no wall or several minima).
(b) **phonons** (Si only; Li's bcc has no optical branch): Γ optical frequency of the crystal
    relaxed with the model (phonopy, 2×2×2 supercell; Γ is exact for any supercell), against
    DFT-PBE (``SI_DFT_PBE_GAMMA_OPTICAL_THZ``, 15.2 THz), and the lowest frequency seen.
(c) **nve**: energy drift in float64 (the model evaluated in float64, ASE's velocity Verlet in
    float64) at the data's liquid AIMD state point (Si 2530 K, Li 907 K; the AIMD temperature
    nearest the preset's), time steps 1, 2 and 3 fs, ``nve_trajectories`` trajectories each,
    started from reference AIMD frames of that temperature (spread over the set) with
    Maxwell–Boltzmann velocities (seed k for trajectory k: the same starts for every time step and
    every model). Drift = slope of a linear fit of E_total/N over time (meV/atom/ps); per time
    step: mean ± SE over trajectories. The kinetic energy shares itself with the potential
    energy, so the mean temperature settles below the start (~2250 K for Si; recorded as ``mean_T_K``).
(d) **liquid**: g(r) of Langevin NVT at that state point (temperature and density of the AIMD
    frames; started from one of them) against the AIMD frames of that temperature only
    (:func:`scalarjax.diagnostics.liquid_structure`, as ``scalarjax diagnose``): r where g first
    reaches 0.1 and 0.5, the first peak, the over-approach (neighbours per atom inside the
    reference's r_g=0.5), 95% bootstrap intervals over frames.

Precision: (c) and (b) in float64 (x64 is switched on in this process); (a) and (d) in the run's
own dtype (float32 in the campaign): a float32 model's force and stress errors are what it
predicts, and the g(r) of a Langevin run does not need float64.

CPU cost (medium MACE of ``experiments/configs/mlearn_si.yaml``, 2-core CPU, measured while a
campaign run trained on the same cores, so an upper bound; wall seconds per artifact, compilation
included, here mostly loaded from the persistent compilation cache):

    artifact (default budget)                 setting                                   s
    (a) short pairs + strained cells (f32)    20 + 12 cells of 64 atoms                 3
    (a) dimer + compression curves (f32)      61 + 16 points                            5 (+~55 compiling)
    (b) relax + phonopy Γ (f64)               2x2x2 supercell                           2
    (c) NVE (f64)                             3 dt x 3 trajectories x 0.5 ps,         470 (0.17 s/step)
                                              64 atoms, 2751 steps
    (d) liquid g(r) (f32)                     300 + 1000 Langevin steps, 64 atoms,     84 (0.064 s/step)
                                              101 frames, 500 bootstrap resamples
    total                                                                            568 (9.5 min wall,
                                                                                          450 s CPU)

Measured on a 3-epoch medium MACE (181k parameters) with the persistent compilation cache warm
(load average ~5 while measuring: the job got 78% of a core pair). A first run of a new variant
compiles its programs again: ~2 min more (the first measurement, with 0.3 ps NVE trajectories and
600 liquid steps, took 454 s, of which ~55 s compiling the curves' shapes and ~40 s the liquid's).
Uncontended, expect roughly half. The worst case stays under ~12 min, inside the ~15 min allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time
from contextlib import contextmanager
from typing import Optional, Union

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class ArtifactSystem:
    """One data set's artifact settings: the diagnose preset, its element and the short-pair cutoff (Å)."""

    preset: str
    element: str
    r_short: float


SYSTEMS = {"si": ArtifactSystem("si", "Si", 2.1), "li": ArtifactSystem("li", "Li", 2.3)}


@dataclasses.dataclass(frozen=True)
class ArtifactBudget:
    """How long each artifact runs. The default fits ~15 min per medium-MACE run on a 2-core CPU
    (module docstring); :meth:`quick` is for smoke tests only (numbers without meaning)."""

    dimer_points: int = 61
    compression_points: int = 16
    phonon_supercell: tuple[int, int, int] = (2, 2, 2)
    phonon_mesh: int = 8
    band_points: int = 11
    nve_timesteps_fs: tuple[float, ...] = (1.0, 2.0, 3.0)
    nve_trajectories: int = 3
    nve_ps: float = 0.5  # simulated time per trajectory (steps = nve_ps / timestep: 500, 250, 167)
    rdf_equilibrate_steps: int = 300  # from an AIMD frame of the state point: already disordered
    rdf_sample_steps: int = 1000  # 2 ps for Si (2 fs), 1 ps for Li (1 fs); a frame every 10 steps
    rdf_every: int = 10
    n_boot: int = 500

    @classmethod
    def quick(cls) -> ArtifactBudget:
        return cls(
            dimer_points=9,
            compression_points=5,
            phonon_supercell=(1, 1, 1),
            phonon_mesh=4,
            band_points=3,
            nve_trajectories=2,
            nve_ps=0.012,
            rdf_equilibrate_steps=4,
            rdf_sample_steps=8,
            rdf_every=4,
            n_boot=20,
        )

    def diagnose_budget(self):
        """The same settings as a :class:`scalarjax.diagnostics.report.Budget` (``scalarjax diagnose``'s)."""
        from scalarjax.diagnostics.report import Budget

        return Budget(
            rdf_equilibrate_steps=self.rdf_equilibrate_steps,
            rdf_sample_steps=self.rdf_sample_steps,
            rdf_every=self.rdf_every,
            dimer_points=self.dimer_points,
            compression_points=self.compression_points,
            phonon_mesh=self.phonon_mesh,
            band_points=self.band_points,
            phonon_supercell=self.phonon_supercell,
        )


BUDGETS = {"default": ArtifactBudget(), "quick": ArtifactBudget.quick()}
FLAGS = ("softening", "non_monotonic", "no_wall", "multiple_minima")


def resolve_budget(budget: Union[str, ArtifactBudget]) -> ArtifactBudget:
    if isinstance(budget, ArtifactBudget):
        return budget
    if budget not in BUDGETS:
        from scalarjax.errors import InputError

        raise InputError(f"artifact budget {budget!r}: choose one of {sorted(BUDGETS)}")
    return BUDGETS[budget]


def system_for(dataset: str) -> ArtifactSystem:
    if dataset not in SYSTEMS:
        from scalarjax.errors import InputError

        raise InputError(f"artifacts are defined for the data sets {sorted(SYSTEMS)} (mlearn Si, Li), not {dataset!r}")
    return SYSTEMS[dataset]


def data_files(run_dir, system: ArtifactSystem) -> dict:
    """``{"train": path, "test": path}``: the run's own data files when they exist here, else the
    mlearn files under ``$SCALARJAX_DATA``; an :class:`InputError` when neither exists."""
    import yaml

    from scalarjax.data.io import data_dir
    from scalarjax.errors import InputError

    cfg = yaml.safe_load((pathlib.Path(run_dir) / "config.yaml").read_text()).get("data", {})
    own = {k: cfg.get(k) for k in ("train", "test")}
    if all(v and pathlib.Path(v).is_file() for v in own.values()):
        return own
    shared = {k: data_dir() / "mlearn" / system.element / f"{name}.json" for k, name in (("train", "training"), ("test", "test"))}
    if all(p.is_file() for p in shared.values()):
        return {k: str(v) for k, v in shared.items()}
    raise InputError(f"no mlearn {system.element} data: neither the run's {own} nor {shared['train'].parent} (set SCALARJAX_DATA)")


def _enable_x64() -> None:
    """float64 needs JAX's x64 mode; it is switched on for the whole process (the campaign runner
    calls this module in a subprocess so that its own training processes never see it)."""
    import jax

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


@contextmanager
def _timed(seconds: dict, name: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(time.perf_counter() - t, 1)


def _read(files: dict, p) -> dict:
    """The labelled configurations of the preset's element per split, each AIMD frame's temperature
    (``temperature_K``, from the description) and each Elastic cell's strain."""
    from scalarjax.data.io import read_configurations
    from scalarjax.diagnostics.systems import elastic_strain, frame_descriptions, frame_temperatures

    out = {"configs": [], "temperature": {}, "strain": {}}
    for split, path in files.items():
        temps = frame_temperatures(str(path))
        descr = frame_descriptions(str(path))
        for c in read_configurations(str(path)):
            if {int(z) for z in c.species} != {_number(p.symbol)}:
                continue
            out["configs"].append((split, c))
            if c.source in temps:
                out["temperature"][c.source] = temps[c.source]
            if c.config_type == "Elastic" and c.source in descr:
                s = elastic_strain(descr[c.source])
                if s is not None:
                    out["strain"][c.source] = s
    return out


def _number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def _aimd_atoms(data: dict, p) -> list:
    """The AIMD frames (ase.Atoms with ``info["temperature_K"]``) of both splits, as ``scalarjax diagnose`` sees them."""
    frames = []
    for _, c in data["configs"]:
        if c.config_type in p.data_config_types and all(c.pbc) and c.source in data["temperature"]:
            atoms = c.to_atoms()
            atoms.info["temperature_K"] = data["temperature"][c.source]
            frames.append(atoms)
    return frames


def _predict(calc, configs: list) -> tuple[list, list]:
    """Model forces ``[n, 3]`` (eV/Å) and Voigt stresses ``[6]`` (eV/Å³, ASE sign) of configurations."""
    forces, stresses = [], []
    for c in configs:
        atoms = c.to_atoms()
        atoms.calc = calc
        forces.append(atoms.get_forces())
        stresses.append(atoms.get_stress(voigt=True))
    return forces, stresses


def short_pairs(calc, data: dict, system: ArtifactSystem, p) -> dict:
    """(a) The signed pair-force error on the hottest AIMD frames: both files pooled, and test only."""
    from scalarjax.diagnostics import short_pair_force_errors

    aimd = [(s, c) for s, c in data["configs"] if c.config_type in p.data_config_types and c.source in data["temperature"]]
    if not aimd:
        return {"error": "no AIMD frames with a temperature in the data"}
    hottest = max(data["temperature"][c.source] for _, c in aimd)
    hot = [(s, c) for s, c in aimd if data["temperature"][c.source] == hottest]
    forces, _ = _predict(calc, [c for _, c in hot])
    out = {"temperature_K": hottest}
    for name, keep in (("all", lambda s: True), ("test", lambda s: s == "test")):
        sel = [k for k, (s, _) in enumerate(hot) if keep(s)]
        out[name] = short_pair_force_errors(
            [hot[k][1] for k in sel], [forces[k] for k in sel], [hot[k][1].forces for k in sel], system.r_short
        )
    return out


def strained_cells(calc, data: dict) -> dict:
    """(a) Stress errors on the Elastic cells of the largest compressive and tensile strain."""
    from scalarjax.diagnostics import stress_errors

    cells = [(s, c, data["strain"][c.source]) for s, c in data["configs"] if c.source in data["strain"] and c.stress is not None]
    if not cells:
        return {"error": "no Elastic cells with a strain and a stress in the data"}
    out = {}
    for side, strain in (("compressed", min(x for *_, x in cells)), ("stretched", max(x for *_, x in cells))):
        sel = [(s, c) for s, c, x in cells if x == strain]
        _, model = _predict(calc, [c for _, c in sel])
        out[side] = {
            "strain": strain,
            "n_test": sum(s == "test" for s, _ in sel),
            **stress_errors(model, [c.stress for _, c in sel]),
        }
    return out


def curves(calc, p, budget: ArtifactBudget, r_data_min: Optional[float]) -> dict:
    """(a) Dimer and compression curves with their flags (``scalarjax diagnose``'s repulsion)."""
    from scalarjax.diagnostics import compression_flags
    from scalarjax.diagnostics.report import _repulsion

    rep = _repulsion(calc, p, budget.diagnose_budget(), r_data_min)
    dimer, comp = rep["dimer_flags"], compression_flags(rep["compression"])
    pressure = rep["compression"]["pressure_GPa"]
    return {
        "dimer_flagged": any(dimer[k] for k in FLAGS),
        "dimer_flags": [k for k in FLAGS if dimer[k]],
        "dimer_r_eq_A": dimer["r_eq"],
        "dimer_softening_inside_data": dimer["softening_inside_data"],
        "compression_flagged": any(comp[k] for k in FLAGS),
        "compression_flags": [k for k in FLAGS if comp[k]],
        "compression_scale_at_min_energy": rep["compression"]["scale_at_min_energy"],
        "compression_pressure_at_0.80_GPa": pressure[0],
        "r_data_min_A": r_data_min,
        "dimer_r_min_A": rep["dimer"]["r"][0],
    }


def gamma_optical(calc64, p, budget: ArtifactBudget) -> dict:
    """(b) The Γ optical frequency (THz) of the crystal relaxed with the model, against DFT-PBE."""
    from scalarjax import diagnostics as dg
    from scalarjax.diagnostics.report import _phonons

    if p.symbol != "Si":
        return {"skipped": f"no optical branch in {p.lattice} {p.symbol} (one atom per primitive cell)"}
    ph = _phonons(calc64, p, budget.diagnose_budget())
    relax = ph["relaxation"]
    opt = ph["gamma_optical_THz"]
    return {
        "gamma_optical_THz": opt,
        "dft_pbe_THz": dg.SI_DFT_PBE_GAMMA_OPTICAL_THZ,
        "gamma_optical_minus_dft_pbe_THz": None if opt is None else opt - dg.SI_DFT_PBE_GAMMA_OPTICAL_THZ,
        "min_frequency_THz": ph["min_frequency_THz"],
        "relaxation_converged": relax.get("converged"),
        "lattice_constant_A": None if "volume" not in relax else (4 * relax["volume"]) ** (1 / 3),  # fcc primitive: a³/4
        "supercell": list(budget.phonon_supercell),
    }


def nve(calc64, state: dict, budget: ArtifactBudget, seed: int) -> dict:
    """(c) NVE drift in float64 at the state point, per time step over ``nve_trajectories`` starts."""
    from scalarjax.simulation import nve_drift

    frames = state["frames"]
    if not frames:
        return {"error": "no reference frames at the state point"}
    starts = [frames[int(k)] for k in np.round(np.linspace(0, len(frames) - 1, budget.nve_trajectories))]
    out = {"temperature_K": state["temperature_K"], "n_atoms": len(starts[0]), "trajectory_ps": budget.nve_ps}
    for dt in budget.nve_timesteps_fs:
        steps = max(3, int(round(1000 * budget.nve_ps / dt)))
        drifts, fluct, temps, errors = [], [], [], []
        for k, start in enumerate(starts):
            atoms = start.copy()
            try:
                r = nve_drift(calc64, atoms, steps, dt, state["temperature_K"], seed + k)
            except (FloatingPointError, ValueError, RuntimeError) as err:  # a blown-up trajectory is a result
                errors.append(f"trajectory {k}: {str(err).splitlines()[0][:200]}")
                continue
            drifts.append(r["drift_meV_per_atom_per_ps"])
            fluct.append(r["fluctuation_meV_per_atom"])
            temps.append(r["mean_T_K"])
        d = np.asarray(drifts)
        out[f"dt{dt:g}fs"] = {
            "steps": steps,
            "drift_meV_per_atom_per_ps": [float(x) for x in d],
            "drift_mean": float(d.mean()) if len(d) else None,
            "drift_se": float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None,
            "abs_drift_mean": float(np.abs(d).mean()) if len(d) else None,
            "fluctuation_meV_per_atom": float(np.mean(fluct)) if fluct else None,
            "mean_T_K": float(np.mean(temps)) if temps else None,
            "n_failed": len(errors),
            "errors": errors,
        }
    return out


def liquid(calc, p, state: dict, budget: ArtifactBudget, seed: int) -> dict:
    """(d) Liquid g(r) at the state point against its AIMD frames (``scalarjax diagnose``'s rdf,
    started from a reference frame); the onsets, peak and over-approach with their intervals."""
    from scalarjax.diagnostics.report import _rdf, md_engine_for

    if not state["frames"]:
        return {"error": "no reference frames at the state point"}
    res = _rdf(calc, p, budget.diagnose_budget(), seed, state, md_engine_for("auto"), start=state["frames"][0])
    vs = res.get("vs_reference", {})
    numbers = ("r_g_0.1", "r_g_0.5", "first_peak_r", "neighbours_within_r_cut")
    return {
        "temperature_K": res["temperature_K"],
        "volume_per_atom_A3": res["volume_per_atom_A3"],
        "n_atoms": res["n_atoms"],
        "n_frames": vs.get("n_frames"),
        "r_cut": vs.get("r_cut"),
        "model": {k: vs["model"][k] for k in numbers if k in vs.get("model", {})},
        "reference": {k: vs["reference"][k] for k in numbers if k in vs.get("reference", {})},
        "over_approach": vs.get("over_approach"),
        "closest_approach_A": res["closest_approach"],
    }


def summary(out: dict) -> dict:
    """The headline numbers (one float or 0/1 each), which the campaign report tabulates over seeds."""

    def get(*path):
        x = out
        for k in path:
            if not isinstance(x, dict) or k not in x:
                return None
            x = x[k]
        return float(x) if isinstance(x, (int, float, bool)) and x is not None else None

    s = {
        "short_pair_force_error_eV_per_A": get("repulsion", "short_pairs", "all", "mean_signed_error_eV_per_A"),
        "short_pair_force_error_test_eV_per_A": get("repulsion", "short_pairs", "test", "mean_signed_error_eV_per_A"),
        "short_pair_force_mae_eV_per_A": get("repulsion", "short_pairs", "all", "mae_eV_per_A"),
        "compressed_pressure_error_GPa": get("repulsion", "strained", "compressed", "pressure_error_GPa"),
        "stretched_pressure_error_GPa": get("repulsion", "strained", "stretched", "pressure_error_GPa"),
        "compressed_stress_mae_meV_per_A3": get("repulsion", "strained", "compressed", "stress_mae_meV_per_A3"),
        "stretched_stress_mae_meV_per_A3": get("repulsion", "strained", "stretched", "stress_mae_meV_per_A3"),
        "dimer_flagged": get("repulsion", "curves", "dimer_flagged"),
        "compression_flagged": get("repulsion", "curves", "compression_flagged"),
        "gamma_optical_THz": get("phonons", "gamma_optical_THz"),
        "gamma_optical_minus_dft_pbe_THz": get("phonons", "gamma_optical_minus_dft_pbe_THz"),
    }
    for key in out.get("nve", {}):
        if key.startswith("dt"):
            s[f"nve_drift_{key}_meV_per_atom_per_ps"] = get("nve", key, "drift_mean")
            s[f"nve_abs_drift_{key}_meV_per_atom_per_ps"] = get("nve", key, "abs_drift_mean")
    for name, key in (("r_g01_A", "r_g_0.1"), ("r_g05_A", "r_g_0.5"), ("first_peak_A", "first_peak_r")):
        s[f"liquid_{name}"] = get("liquid", "model", key, "value")
    s["liquid_over_approach"] = get("liquid", "over_approach")
    return {k: v for k, v in s.items() if v is not None and math.isfinite(v)}


def measure(
    run_dir, dataset: str = "si", budget: Union[str, ArtifactBudget] = "default", files: Optional[dict] = None, seed: int = 0
) -> dict:
    """(a)–(d) of the trained model in ``run_dir`` (its best EMA parameters) on the mlearn data set
    ``dataset`` (``"si"`` or ``"li"``), with ``budget`` (an :class:`ArtifactBudget` or a name in
    ``BUDGETS``); ``files``: ``{"train": path, "test": path}`` (default :func:`data_files`).

    Returns a small JSON-able dict: one entry per artifact (``repulsion``, ``phonons``, ``nve``,
    ``liquid``), ``summary`` (the headline numbers, :func:`summary`), ``seconds`` per artifact
    (compilation included), the budget and the state point. Switches JAX's x64 mode on in this
    process (float64 for (b) and (c))."""
    system = system_for(dataset)
    budget = resolve_budget(budget)
    _enable_x64()
    from scalarjax import diagnostics as dg
    from scalarjax.calculator import Calculator
    from scalarjax.diagnostics.systems import PRESETS, liquid_state_point

    t0 = time.perf_counter()
    p = PRESETS[system.preset]
    files = files or data_files(run_dir, system)
    data = _read(files, p)
    calc = Calculator.from_run(run_dir)  # the run's own dtype
    calc64 = Calculator.from_run(run_dir, dtype="float64")
    state = liquid_state_point(_aimd_atoms(data, p), p)
    r_data_min = dg.shortest_distance([c for _, c in data["configs"]]) if data["configs"] else None
    out: dict = {
        "dataset": dataset,
        "budget": dataclasses.asdict(budget),
        "dtype": {"repulsion": calc.config.dtype, "liquid": calc.config.dtype, "phonons": "float64", "nve": "float64"},
        "data_files": {k: pathlib.Path(v).name for k, v in files.items()},
        "state_point": {k: v for k, v in state.items() if k != "frames"} | {"n_reference_frames": len(state["frames"])},
        "r_short": system.r_short,
    }
    seconds: dict = {}
    # The hot 64-atom frames first: the padded shape they allocate serves every smaller periodic cell.
    with _timed(seconds, "short_pairs_and_strained"):
        out["repulsion"] = {"short_pairs": short_pairs(calc, data, system, p), "strained": strained_cells(calc, data)}
    with _timed(seconds, "liquid"):
        out["liquid"] = liquid(calc, p, state, budget, seed)
    with _timed(seconds, "curves"):
        out["repulsion"]["curves"] = curves(calc, p, budget, r_data_min)
    with _timed(seconds, "nve"):
        out["nve"] = nve(calc64, state, budget, seed)
    with _timed(seconds, "phonons"):
        out["phonons"] = gamma_optical(calc64, p, budget)
    seconds["total"] = round(time.perf_counter() - t0, 1)
    out["seconds"] = seconds
    out["summary"] = summary(out)
    return _plain(out)


def _plain(x):
    """numpy scalars and arrays → Python floats and lists; non-finite floats → None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--dataset", default="si", help=f"one of {sorted(SYSTEMS)}")
    ap.add_argument("--budget", default="default", help=f"one of {sorted(BUDGETS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the dict here as JSON (default: print it)")
    args = ap.parse_args(argv)
    from scalarjax import _runtime

    _runtime.use_compilation_cache()  # before JAX is imported
    from scalarjax.errors import UserError

    if not (pathlib.Path(args.run_dir) / "config.yaml").is_file():
        print(f"error: {args.run_dir} is not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    try:
        result = measure(args.run_dir, args.dataset, args.budget, seed=args.seed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
        print(json.dumps({"summary": result["summary"], "seconds": result["seconds"]}, indent=1))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The campaign's physical artifacts (issue 13, point 7): the pure functions they add to
``scalarjax.diagnostics`` against exact answers, and ``experiments/campaign_artifacts.py``'s
``measure`` end to end on a tiny model and a small synthetic mlearn data set (the real data's
selection in a test that skips without it)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from conftest import TINY

from scalarjax.diagnostics import (
    compression_curve,
    compression_flags,
    dimer_curve,
    pair_forces,
    short_pair_force_errors,
    stress_errors,
)
from scalarjax.diagnostics.systems import elastic_strain

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY_SI = {**TINY, "atomic_numbers": (14,), "atomic_energies": (-3.5,), "dtype": "float32"}


def _artifacts_module():
    spec = importlib.util.spec_from_file_location("campaign_artifacts", ROOT / "experiments" / "campaign_artifacts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["campaign_artifacts"] = module
    spec.loader.exec_module(module)
    return module


def test_pair_force_is_the_dimer_radial_force_and_uses_the_periodic_image():
    """f_ij = ½ (F_j − F_i)·û equals dimer_curve's −dE/dr for an isolated dimer (EMT Cu, repulsive at
    short r), and across a periodic boundary it follows the image vector, not x_j − x_i."""
    r = np.array([1.8, 2.2, 2.6])
    curve = dimer_curve(EMT(), 29, 29, r_min=1.8, r_max=2.6, n=3)
    for rk, expected in zip(r, curve["force_eV_per_A"]):
        atoms = Atoms("Cu2", positions=[[0, 0, 0], [rk, 0, 0]])
        atoms.calc = EMT()
        d, f = pair_forces(atoms, atoms.get_forces(), r_short=3.0)
        assert d == pytest.approx([rk]) and f == pytest.approx([expected], rel=1e-9)
    assert curve["force_eV_per_A"][0] > 0  # pushed apart: positive
    # atoms at x = 0.5 and 9.0 in a 10 Å box are 1.5 Å apart through the boundary; pushed apart means
    # atom 0 moves to +x (away from atom 1's image at −1.0) and atom 1 to −x
    box = Atoms("Si2", positions=[[0.5, 5, 5], [9.0, 5, 5]], cell=[10, 10, 10], pbc=True)
    d, f = pair_forces(box, np.array([[2.0, 0, 0], [-2.0, 0, 0]]), r_short=2.1)
    assert d == pytest.approx([1.5]) and f == pytest.approx([2.0])


def test_short_pair_force_errors_sign_and_counts():
    """Two fcc Cu frames with one nearest-neighbour pair squeezed to 2.0 and 2.1 Å (EMT pushes it
    apart): only those pairs are below 2.2 Å; a model that pushes them apart half as hard as the
    reference has mean signed error = −½ the reference's mean pair force, every pair softer. The
    diamond cell has 4 bonds per atom."""
    frames, refs = [], []
    for d in (2.0, 2.1):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # nearest neighbours 2.55 Å
        u = atoms.positions[1] - atoms.positions[0]
        atoms.positions[1] = atoms.positions[0] + d * u / np.linalg.norm(u)
        atoms.calc = EMT()
        frames.append(atoms)
        refs.append(atoms.get_forces())
    res = short_pair_force_errors(frames, [0.5 * f for f in refs], refs, r_short=2.2)
    assert res["n_pairs"] == 2 and res["n_frames"] == 2 and res["shortest_pair_A"] == pytest.approx(2.0)
    assert res["mean_reference_pair_force_eV_per_A"] > 0.5
    assert res["mean_signed_error_eV_per_A"] == pytest.approx(-0.5 * res["mean_reference_pair_force_eV_per_A"])
    assert res["fraction_softer"] == 1.0 and res["se_eV_per_A"] > 0
    assert res["mae_eV_per_A"] == pytest.approx(-res["mean_signed_error_eV_per_A"])
    harder = short_pair_force_errors(frames, [2.0 * f for f in refs], refs, r_short=2.2)
    assert harder["mean_signed_error_eV_per_A"] == pytest.approx(res["mean_reference_pair_force_eV_per_A"])
    assert harder["fraction_softer"] == 0.0
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    zero = np.zeros((8, 3))
    assert short_pair_force_errors([si], [zero], [zero], r_short=2.4)["n_pairs"] == 16
    none = short_pair_force_errors([si], [zero], [zero], r_short=2.1)
    assert none["n_pairs"] == 0 and none["mean_signed_error_eV_per_A"] is None


def test_stress_errors_pressure_sign_and_units():
    """Reference under 2 GPa of hydrostatic compression (ASE sign: σ = −P), the model gives 1.5 GPa:
    pressure error −0.5 GPa (too soft); MAE over the 6 Voigt components = 3 × 0.5 GPa / 6 in meV/Å³."""
    gpa = units.GPa  # eV/Å³ per GPa
    ref = np.array([[-2.0, -2.0, -2.0, 0, 0, 0]] * 2) * gpa
    model = np.array([[-1.5, -1.5, -1.5, 0, 0, 0]] * 2) * gpa
    res = stress_errors(model, ref)
    assert res["pressure_error_GPa"] == pytest.approx(-0.5) and res["reference_pressure_GPa"] == pytest.approx(2.0)
    assert res["stress_mae_meV_per_A3"] == pytest.approx(1e3 * 0.25 * gpa) and res["pressure_error_se_GPa"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        stress_errors(model[:1], ref)


def test_compression_flags_read_the_pressure_as_a_wall_force():
    """EMT Cu under uniform compression is a clean wall; F = 3ℓ²P is −dE/dℓ (finite differences of
    the energy per atom against ℓ = v^⅓); a pressure that sags inside the wall is flagged softening."""
    comp = compression_curve(EMT(), bulk("Cu", "fcc", a=3.61, cubic=True), scales=np.linspace(0.8, 1.05, 26))
    flags = compression_flags(comp)
    assert not any(flags[k] for k in ("softening", "non_monotonic", "no_wall", "multiple_minima"))
    ell = np.cbrt(comp["volume_per_atom_A3"])
    f_fd = -np.gradient(comp["energy_per_atom_eV"], ell)
    f = 3 * ell**2 * np.asarray(comp["pressure_eV_per_A3"])
    np.testing.assert_allclose(f[1:-1], f_fd[1:-1], rtol=0.03, atol=0.02)
    assert flags["F_at_r_min"] == pytest.approx(f[0])
    soft = dict(comp)
    p = np.asarray(comp["pressure_eV_per_A3"]).copy()
    p[:5] = p[5] * np.linspace(0.5, 0.9, 5)  # the five most compressed cells push back less than the sixth
    soft["pressure_eV_per_A3"] = p.tolist()
    assert compression_flags(soft)["softening"]


def test_elastic_strain_from_the_description():
    assert elastic_strain("Si 2x2x2 cell, mode 0, strain -0.1") == -0.1
    assert elastic_strain("Li 1x1x1 cell, mode 4, strain 0.005") == 0.005
    assert elastic_strain("Ground state crystal") is None


def _write_mlearn(path, items) -> None:
    """An mlearn JSON from ``(ase.Atoms, group, description, stress_ase_eV_per_A3 or None)``; energies
    and forces are zeros (the artifacts compare against them)."""
    out = []
    for atoms, group, description, stress in items:
        outputs = {"energy": -5.0 * len(atoms), "forces": [[0.0, 0.0, 0.0]] * len(atoms)}
        if stress is not None:  # ASE (xx, yy, zz, yz, xz, xy), tension > 0 → mlearn kBar, compression > 0, (xx, yy, zz, xy, yz, xz)
            xx, yy, zz, yz, xz, xy = -np.asarray(stress) / (0.1 * units.GPa)
            outputs["virial_stress"] = [xx, yy, zz, xy, yz, xz]
        out.append(
            {
                "structure": {
                    "lattice": {"matrix": atoms.cell.tolist()},
                    "sites": [{"xyz": list(x), "species": [{"element": "Si"}]} for x in atoms.positions],
                },
                "outputs": outputs,
                "group": group,
                "description": description,
            }
        )
    path.write_text(json.dumps(out))


def _synthetic_si(tmp_path) -> dict:
    """Train and test files: AIMD frames at 300, 2530 and 3374 K (8-atom cells; the 3374 K ones with
    a 2.0 Å pair) and Elastic cells at strains ±0.1 and ±0.05."""

    def frame(a, seed, squeeze=False):
        at = bulk("Si", "diamond", a=a, cubic=True)
        at.rattle(0.08, seed=seed)
        if squeeze:  # atom 1 toward atom 0 (nearest neighbours along (1,1,1)): 2.0 Å apart
            u = at.positions[1] - at.positions[0]
            at.positions[1] = at.positions[0] + 2.0 * u / np.linalg.norm(u)
        return at

    def aimd(t, a, seed, squeeze=False):
        return frame(a, seed, squeeze), "AIMD-NVT", f"Snapshot {seed} of AIMD NVT simulation at {t} K", None

    def elastic(strain, seed):
        at = bulk("Si", "diamond", a=5.47 * (1 + strain), cubic=True)
        p_gpa = -300.0 * strain  # compressed (strain < 0): positive pressure, ASE stress −P
        return at, "Elastic", f"Si 1x1x1 cell, mode 0, strain {strain}", [-p_gpa * units.GPa] * 3 + [0.0] * 3

    train = [aimd(300, 5.47, 0), aimd(2530, 5.47, 1), aimd(2530, 5.47, 2), aimd(3374, 5.47, 3, True)]
    train += [elastic(s, k) for k, s in enumerate((-0.1, -0.05, 0.05, 0.1))]
    test = [aimd(2530, 5.47, 4), aimd(3374, 5.47, 5, True), elastic(-0.1, 9)]
    files = {"train": tmp_path / "training.json", "test": tmp_path / "test.json"}
    _write_mlearn(files["train"], train)
    _write_mlearn(files["test"], test)
    return {k: str(v) for k, v in files.items()}


def _run_dir(path, model_cfg, seed=0):
    """A run directory as the trainer writes it (config.yaml + best/ parameters), without training."""
    import yaml

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential
    from scalarjax.training.config import RunConfig, to_dict
    from scalarjax.training.trainer import save_params

    pot = Potential(load_model_config(model_cfg), seed=seed)
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(to_dict(RunConfig(model=pot.config))))
    save_params(path / "best", pot.params)
    return path


def test_measure_end_to_end_on_a_tiny_model(tmp_path):
    """Every artifact of a tiny float32 Si model with the quick budget: the dict's sections, the
    selection (hottest frames, most strained cells, the 2530 K state point), finite numbers, JSON."""
    ca = _artifacts_module()
    files = _synthetic_si(tmp_path)
    run = _run_dir(tmp_path / "run", TINY_SI, seed=1)
    out = ca.measure(run, "si", "quick", files=files)
    assert set(out) >= {"repulsion", "phonons", "nve", "liquid", "summary", "seconds", "budget", "state_point"}
    json.dumps(out, allow_nan=False)  # plain JSON: no NaN, no numpy
    sp = out["repulsion"]["short_pairs"]
    assert sp["temperature_K"] == 3374 and sp["all"]["n_frames"] == 2 and sp["test"]["n_frames"] == 1
    assert sp["all"]["n_pairs"] == 2 and sp["all"]["shortest_pair_A"] == pytest.approx(2.0)
    st = out["repulsion"]["strained"]
    assert (st["compressed"]["strain"], st["compressed"]["n_cells"], st["compressed"]["n_test"]) == (-0.1, 2, 1)
    assert (st["stretched"]["strain"], st["stretched"]["n_cells"]) == (0.1, 1)
    assert st["compressed"]["reference_pressure_GPa"] == pytest.approx(30.0)
    assert out["state_point"]["temperature_K"] == 2530 and out["state_point"]["n_reference_frames"] == 3
    assert out["nve"]["temperature_K"] == 2530 and out["dtype"]["nve"] == "float64"
    for dt in ("dt1fs", "dt2fs", "dt3fs"):
        assert out["nve"][dt]["n_failed"] == 0 and len(out["nve"][dt]["drift_meV_per_atom_per_ps"]) == 2
    assert out["liquid"]["reference"]["r_g_0.5"]["value"] is not None
    expected = {
        "short_pair_force_error_eV_per_A",
        "compressed_pressure_error_GPa",
        "dimer_flagged",
        "compression_flagged",
        "gamma_optical_THz",
        "nve_drift_dt1fs_meV_per_atom_per_ps",
        "nve_drift_dt3fs_meV_per_atom_per_ps",
        "liquid_r_g05_A",
        "liquid_over_approach",
    }
    assert expected <= set(out["summary"])
    assert all(math.isfinite(v) for v in out["summary"].values())
    assert len(json.dumps(out)) < 20_000  # small: no per-frame arrays


def test_measure_refuses_other_data_sets_in_one_line(tmp_path):
    from scalarjax.errors import InputError

    ca = _artifacts_module()
    with pytest.raises(InputError, match="not 'aspirin'"):
        ca.measure(tmp_path, "aspirin", "quick")
    with pytest.raises(InputError, match="artifact budget"):
        ca.resolve_budget("huge")


def test_selection_on_the_real_mlearn_si(shared_data):
    """On mlearn Si: the hottest AIMD frames are the 3374 K ones (18 training + 2 test), with pairs
    below 2.1 Å; the most strained Elastic cells are the six deformation modes at ±0.1."""
    import scalarjax
    from scalarjax.diagnostics.systems import PRESETS, liquid_state_point

    ca = _artifacts_module()
    files = {"train": str(shared_data / "mlearn/Si/training.json"), "test": str(shared_data / "mlearn/Si/test.json")}
    p = PRESETS["si"]
    data = ca._read(files, p)
    calc = scalarjax.Calculator.from_config(TINY_SI, seed=1)
    sp = ca.short_pairs(calc, data, ca.SYSTEMS["si"], p)
    assert sp["temperature_K"] == 3374 and (sp["all"]["n_frames"], sp["test"]["n_frames"]) == (20, 2)
    assert sp["all"]["n_pairs"] >= 40 and sp["all"]["shortest_pair_A"] == pytest.approx(1.829, abs=1e-3)
    st = ca.strained_cells(calc, data)
    assert st["compressed"]["strain"] == -0.1 and st["stretched"]["strain"] == 0.1
    assert st["compressed"]["n_cells"] == 6 and st["compressed"]["reference_pressure_GPa"] == pytest.approx(8.7265, abs=1e-3)
    state = liquid_state_point(ca._aimd_atoms(data, p), p)
    assert state["temperature_K"] == 2530 and len(state["frames"]) == 20

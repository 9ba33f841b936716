"""MD and relaxations: energy conservation as a check of exact, smooth forces; the md/relax commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.calculator import Calculator as ASECalculator
from conftest import TINY
from physics_utils import triclinic_cell, write_mlearn_aimd_json


@pytest.fixture(scope="module")
def tiny_calc():
    import scalarjax

    return scalarjax.Calculator.from_config(TINY, seed=4)


class ScaledForces(ASECalculator):
    """Negative control: the same energy, forces off by a factor (no longer −∇E)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner, factor):
        super().__init__()
        self.inner, self.factor = inner, factor

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.inner
        self.results = {"energy": a.get_potential_energy(), "forces": self.factor * a.get_forces()}


def _hot_cell():
    atoms = triclinic_cell(31)
    atoms.rattle(0.05, seed=2)
    return atoms


def test_nve_conserves_energy(tiny_calc):
    """300 velocity-Verlet steps (0.5 fs, 600 K, float64): E_total stays within a tight bound; the same run with
    forces 3 % off drifts far outside it, so the bound is a real check of F = −∇E and of smoothness at r_max."""
    from scalarjax.simulation import run_md

    def max_dev(calc):
        s = run_md(_hot_cell(), calc, "nve", temperature_K=600.0, timestep_fs=0.5, steps=300, log_interval=5, progress=False)
        e = np.array([r["E_total"] for r in s["rows"]])
        return np.abs(e - e[0]).max() / s["n_atoms"], s

    dev, s = max_dev(tiny_calc)
    assert dev < 2e-5, dev  # eV/atom
    assert s["compiles_during_run"] == 0
    assert np.mean([r["E_kin"] for r in s["rows"]]) > 0.01  # atoms really move
    bad, _ = max_dev(ScaledForces(tiny_calc, 1.03))
    assert bad > 20 * dev and bad > 1e-4, (bad, dev)


def test_relax_lowers_energy_to_fmax(tiny_calc):
    from scalarjax.simulation import relax

    atoms = _hot_cell()
    out = relax(atoms, tiny_calc, fmax=0.02, steps=400, cell=True)
    assert out["converged"] and out["max_force"] < 0.02 and out["E_final"] < out["E_initial"]


def _run_dir(tmp_path, model_cfg, seed=0):
    """A run directory as the trainer writes it (config.yaml + best/ parameters), without training."""
    import yaml

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential
    from scalarjax.training.config import RunConfig, to_dict
    from scalarjax.training.trainer import save_params

    pot = Potential(load_model_config(model_cfg), seed=seed)
    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(RunConfig(model=pot.config))))
    save_params(run / "best", pot.params)
    return run


def test_md_and_relax_commands(tmp_path, capsys):
    import ase.io

    from scalarjax.cli import main

    run = _run_dir(tmp_path, {**TINY, "dtype": "float32"})
    structure = tmp_path / "cell.xyz"
    ase.io.write(structure, _hot_cell())
    for ensemble in ("nvt", "npt"):
        out = tmp_path / ensemble
        assert (
            main(
                [
                    "md",
                    str(run),
                    "--structure",
                    str(structure),
                    "--ensemble",
                    ensemble,
                    "--steps",
                    "20",
                    "--timestep",
                    "0.5",
                    "--log-interval",
                    "5",
                    "--traj-interval",
                    "10",
                    "--dtype",
                    "float64",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        summary = json.loads((out / "summary.json").read_text())
        assert summary["ensemble"] == ensemble and summary["steps"] == 20
        assert len(ase.io.read(out / "trajectory.xyz", ":")) == 3  # steps 0, 10, 20
        log = np.loadtxt(out / "md.log")
        assert log.shape == (5, 7) and np.all(np.isfinite(log[:, :5]))
    assert main(["relax", str(run), "--structure", str(structure), "--fmax", "0.05", "--out", str(tmp_path / "r.xyz")]) == 0
    assert ase.io.read(tmp_path / "r.xyz").get_forces().max() < 1.0
    capsys.readouterr()


def test_diagnose_command_compares_runs(tmp_path, capsys):
    """``scalarjax diagnose A B --quick``: every diagnostic for both runs in one JSON, overlaid plots."""
    from scalarjax.cli import main

    a = _run_dir(tmp_path / "a", {**TINY, "dtype": "float32"}, seed=0)
    b = _run_dir(tmp_path / "b", {**TINY, "dtype": "float32"}, seed=1)
    out = tmp_path / "diag"
    data = tmp_path / "si_aimd.json"
    write_mlearn_aimd_json(data, [(300, 5.43), (2530, 5.47), (2530, 5.47)])
    assert (
        main(["diagnose", str(a), str(b), "--labels", "base,other", "--system", "si", "--quick", "--out", str(out), "--data", str(data)])
        == 0
    )
    report = json.loads((out / "diagnostics.json").read_text())
    # the liquid runs at the data's state point and is compared with the 2530 K frames only
    assert report["liquid_state_point"]["temperature_K"] == 2530 and report["liquid_state_point"]["n_reference_frames"] == 2
    for r in report["results"].values():
        assert r["rdf"]["volume_per_atom_A3"] == pytest.approx(5.47**3 / 8)
        assert r["rdf"]["vs_reference"]["reference"]["r_g_0.1"]["value"] is not None
    assert set(report["results"]) == {"base", "other"}
    for r in report["results"].values():
        assert set(r) >= {"repulsion", "phonons", "nve", "rdf"}
        assert len(r["phonons"]["gamma_THz"]) == 6 and r["rdf"]["n_frames"] > 0
    e = [np.asarray(r["repulsion"]["dimer"]["energy_eV"]) for r in report["results"].values()]
    assert not np.allclose(e[0], e[1])  # two different models really were evaluated
    for png in ("dimer.png", "compression.png", "phonons.png", "rdf.png"):
        assert (out / png).stat().st_size > 1000
    assert "base:" in capsys.readouterr().out

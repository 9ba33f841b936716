"""Tests of the data readers (scalarjax.data.io): synthetic files, plus the shared reference data."""

from __future__ import annotations

import json
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from scalarjax.data import (
    Configuration,
    LabelKeys,
    data_dir,
    read_ase,
    read_configurations,
    read_mlearn_json,
    read_rmd17_npz,
    voigt_to_full,
)

EV_PER_KCAL_MOL = 0.0433641153  # as quoted for rMD17; ase.units gives 0.04336410390 (CODATA)
EV_A3_PER_KBAR = 1.0 / 1602.1766208
LABELS_ALL = ("energy", "forces", "stress")


def _water(seed: int = 0, cell: float = 6.0) -> ase.Atoms:
    rng = np.random.default_rng(seed)
    return ase.Atoms("H2O", positions=rng.uniform(0, 3, (3, 3)), cell=np.eye(3) * cell, pbc=True)


def _labels(seed: int):
    rng = np.random.default_rng(100 + seed)
    return -10.0 - seed, rng.normal(size=(3, 3)), rng.normal(size=6) * 1e-2


# ---------------------------------------------------------------- extended XYZ / ase


def test_extxyz_single_point_calculator_round_trip(tmp_path: Path):
    frames, expected = [], []
    for s in range(3):
        atoms = _water(s)
        energy, forces, stress = _labels(s)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        atoms.info["config_type"] = f"type{s}"
        frames.append(atoms)
        expected.append((atoms, energy, forces, stress))
    path = tmp_path / "spc.xyz"
    ase.io.write(path, frames, format="extxyz")

    configs = read_ase(path, keys=LabelKeys(required=("energy", "forces", "stress")))
    assert len(configs) == 3
    for i, (c, (atoms, energy, forces, stress)) in enumerate(zip(configs, expected)):
        assert isinstance(c, Configuration)
        np.testing.assert_array_equal(c.species, [1, 1, 8])
        np.testing.assert_allclose(c.positions, atoms.positions, atol=1e-7)
        np.testing.assert_allclose(c.cell, np.eye(3) * 6.0)
        assert c.pbc == (True, True, True)
        assert c.energy == pytest.approx(energy)
        np.testing.assert_allclose(c.forces, forces, atol=1e-7)
        np.testing.assert_allclose(c.stress, stress, atol=1e-9)
        assert c.config_type == f"type{i}"
        assert c.source == f"{path}:{i}"
        assert (c.weight, c.energy_weight, c.forces_weight, c.stress_weight) == (1.0, 1.0, 1.0, 1.0)


def test_extxyz_custom_keys_in_info_and_arrays(tmp_path: Path):
    atoms = _water(1)
    energy, forces, stress = _labels(1)
    atoms.info.update(
        REF_energy=energy,
        REF_stress=voigt_to_full(stress),
        config_weight=0.5,
        config_forces_weight=2.0,
        config_stress_weight=0.0,
        kind="liquid",
    )
    atoms.arrays["REF_forces"] = forces
    path = tmp_path / "ref.xyz"
    ase.io.write(path, atoms, format="extxyz")

    keys = LabelKeys(energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress", required=("energy", "forces", "stress"))
    (c,) = read_ase(path, keys=keys, config_type_key="kind")
    assert c.energy == pytest.approx(energy)
    np.testing.assert_allclose(c.forces, forces, atol=1e-7)
    np.testing.assert_allclose(c.stress, stress, atol=1e-9)
    assert (c.weight, c.energy_weight, c.forces_weight, c.stress_weight) == (0.5, 1.0, 2.0, 0.0)
    assert c.config_type == "liquid"

    # Default key names find nothing here: missing optional labels are None, never zero.
    (d,) = read_ase(path)
    assert d.energy is None and d.forces is None and d.stress is None
    assert d.config_type == "Default"


def test_missing_required_label_names_file_and_frame(tmp_path: Path):
    frames = []
    for s in range(3):
        atoms = _water(s)
        energy, forces, _ = _labels(s)
        if s != 1:
            atoms.info["REF_energy"] = energy
        atoms.arrays["REF_forces"] = forces
        frames.append(atoms)
    path = tmp_path / "gap.xyz"
    ase.io.write(path, frames, format="extxyz")
    keys = LabelKeys(energy_key="REF_energy", forces_key="REF_forces", required=("energy", "forces"))

    with pytest.raises(ValueError, match=r"gap\.xyz, frame 1: missing required label\(s\) \['energy'\]"):
        read_ase(path, keys=keys)
    # Frame numbers refer to the file even when reading a slice of it.
    with pytest.raises(ValueError, match=r"gap\.xyz, frame 1:"):
        read_ase(path, index="1:", keys=keys)
    # Without the requirement the missing energy is None.
    configs = read_ase(path, keys=LabelKeys(energy_key="REF_energy", forces_key="REF_forces"))
    assert [c.energy is None for c in configs] == [False, True, False]


def test_misshaped_labels_name_file_and_frame(tmp_path: Path):
    good, bad = _water(0), _water(1)
    for atoms in (good, bad):
        atoms.info["REF_energy"] = -1.0
    good.arrays["REF_forces"] = np.zeros((3, 3))
    bad.arrays["REF_forces"] = np.zeros((3, 2))
    path = tmp_path / "shape.xyz"
    ase.io.write(path, [good, bad], format="extxyz")
    keys = LabelKeys(energy_key="REF_energy", forces_key="REF_forces")
    with pytest.raises(ValueError, match=r"shape\.xyz, frame 1: forces have shape \(3, 2\), expected \(3, 3\)"):
        read_ase(path, keys=keys)

    bad_stress = _water(2)
    bad_stress.info["REF_stress"] = np.arange(4.0)
    path = tmp_path / "stress.xyz"
    ase.io.write(path, [bad_stress], format="extxyz")
    with pytest.raises(ValueError, match=r"stress\.xyz, frame 0: stress has shape \(4,\)"):
        read_ase(path, keys=LabelKeys(stress_key="REF_stress"))


@pytest.mark.parametrize("layout, key", [("3x3", "virial"), ("9", "virial"), ("6", "REF_virial"), ("3x3", "REF_virial")])
def test_virial_converts_to_stress(tmp_path: Path, layout: str, key: str):
    atoms = _water(3, cell=5.0)
    volume = atoms.get_volume()
    stress = np.array([0.01, -0.02, 0.03, 0.004, -0.005, 0.006])  # eV/Å³, ASE Voigt
    virial_full = -voigt_to_full(stress) * volume  # eV
    atoms.info[key] = {"3x3": virial_full, "9": virial_full.reshape(9), "6": -stress * volume}[layout]
    path = tmp_path / "virial.xyz"
    ase.io.write(path, atoms, format="extxyz")
    (c,) = read_ase(path, keys=LabelKeys(virial_key=key, required=("stress",)))
    np.testing.assert_allclose(c.stress, stress, atol=1e-12)


def test_virial_without_cell_is_an_error(tmp_path: Path):
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.info["virial"] = np.eye(3)
    path = tmp_path / "novol.xyz"
    ase.io.write(path, atoms, format="extxyz")
    with pytest.raises(ValueError, match=r"novol\.xyz, frame 0: virial given but the cell has no volume"):
        read_ase(path)


def test_label_keys_reject_unknown_requirement():
    with pytest.raises(ValueError, match="unknown labels"):
        LabelKeys(required=("energy", "dipole"))


# ---------------------------------------------------------------- rMD17 npz


def _write_rmd17(path: Path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "nuclear_charges": np.array([6, 1, 8]),
        "coords": rng.normal(size=(2, 3, 3)),
        "energies": np.array([-100.0, -101.5]),
        "forces": rng.normal(size=(2, 3, 3)),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_rmd17_npz_round_trip_with_unit_conversion(tmp_path: Path):
    path = tmp_path / "mol.npz"
    arrays = _write_rmd17(path)
    configs = read_rmd17_npz(path)
    assert len(configs) == 2
    for i, c in enumerate(configs):
        np.testing.assert_array_equal(c.species, [6, 1, 8])
        np.testing.assert_allclose(c.positions, arrays["coords"][i])
        assert c.energy == pytest.approx(arrays["energies"][i] * EV_PER_KCAL_MOL, rel=1e-6)
        np.testing.assert_allclose(c.forces, arrays["forces"][i] * EV_PER_KCAL_MOL, rtol=1e-6)
        assert c.stress is None and c.pbc == (False, False, False) and c.source == f"{path}:{i}"
    assert len(read_configurations(path)) == 2


def test_rmd17_npz_errors(tmp_path: Path):
    path = tmp_path / "nokey.npz"
    _write_rmd17(path, forces=None)
    with pytest.raises(ValueError, match=r"nokey\.npz: not an rMD17 npz, missing key\(s\) \['forces'\]"):
        read_rmd17_npz(path)
    path = tmp_path / "shape.npz"
    _write_rmd17(path, forces=np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"shape\.npz: forces has shape \(2, 4, 3\)"):
        read_rmd17_npz(path)


# ---------------------------------------------------------------- mlearn JSON


def _mlearn_item(energy=-10.0, virial=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0)):
    lattice = [[3.0, 0.0, 0.0], [0.1, 3.2, 0.0], [0.0, 0.0, 3.4]]
    sites = [
        {"species": [{"element": "Si", "occu": 1}], "xyz": [0.0, 0.0, 0.0], "abc": [0, 0, 0]},
        {"species": [{"element": "Li", "occu": 1}], "xyz": [1.0, 1.5, 1.7], "abc": [0.3, 0.5, 0.5]},
    ]
    outputs = {"energy": energy, "forces": [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]], "virial_stress": list(virial)}
    if energy is None:
        del outputs["energy"]
    return {"structure": {"lattice": {"matrix": lattice}, "sites": sites}, "outputs": outputs, "group": "Elastic", "num_atoms": 2}


def test_mlearn_json_parsing(tmp_path: Path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps([_mlearn_item()]))
    (c,) = read_mlearn_json(path)
    np.testing.assert_array_equal(c.species, [14, 3])
    np.testing.assert_allclose(c.positions, [[0, 0, 0], [1.0, 1.5, 1.7]])
    np.testing.assert_allclose(c.cell[1], [0.1, 3.2, 0.0])
    assert c.pbc == (True, True, True) and c.config_type == "Elastic" and c.energy == -10.0
    np.testing.assert_allclose(c.forces, [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    # [xx, yy, zz, xy, yz, xz] kBar, VASP sign -> [xx, yy, zz, yz, xz, xy] eV/Å³, ASE sign.
    np.testing.assert_allclose(c.stress, -np.array([1.0, 2.0, 3.0, 5.0, 6.0, 4.0]) * EV_A3_PER_KBAR, rtol=1e-8)
    assert len(read_configurations(path)) == 1


def test_mlearn_json_errors(tmp_path: Path):
    path = tmp_path / "noenergy.json"
    path.write_text(json.dumps([_mlearn_item(), _mlearn_item(energy=None)]))
    with pytest.raises(ValueError, match=r"noenergy\.json, frame 1: missing required label\(s\) \['energy'\]"):
        read_mlearn_json(path)
    assert read_mlearn_json(path, required=())[1].energy is None
    path = tmp_path / "badvirial.json"
    path.write_text(json.dumps([_mlearn_item(virial=(1.0, 2.0, 3.0))]))
    with pytest.raises(ValueError, match=r"badvirial\.json, frame 0: virial_stress has shape \(3,\)"):
        read_mlearn_json(path)


def test_data_dir_from_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SCALARJAX_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("SCALARJAX_DATA")
    assert data_dir() == Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------- real reference data


def _si_elastic(shared_data: Path):
    path = shared_data / "mlearn" / "Si" / "training.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    configs = [c for c in read_mlearn_json(path, required=LABELS_ALL) if c.config_type == "Elastic"]
    ground = min(configs, key=lambda c: c.energy)
    return configs, ground


def test_mlearn_si_stress_sign_uniaxial(shared_data: Path):
    """dE/dε along uniaxial strain families matches +V*stress (ASE sign) within 3% (found: ≤1.2%)."""
    configs, ground = _si_elastic(shared_data)
    a0 = np.diag(ground.cell)
    assert np.abs(ground.stress).max() < 1e-4  # equilibrium: |σ| < 0.04 kBar
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        family = [c for c in configs if np.allclose(c.cell, np.diag(np.diag(c.cell))) and np.allclose(np.diag(c.cell)[others], a0[others])]
        assert len(family) >= 8
        strain = np.array([np.log(c.cell[axis, axis] / a0[axis]) for c in family])
        energy = np.array([c.energy for c in family])
        v_sigma = np.array([c.volume * c.stress[axis] for c in family])
        dE = np.polyval(np.polyder(np.polyfit(strain, energy, 5)), strain)
        strained = np.abs(strain) > 0.01
        assert np.all(np.sign(dE[strained]) == np.sign(v_sigma[strained]))
        np.testing.assert_allclose(v_sigma[strained], dE[strained], rtol=0.03)
        # ASE pressure -tr(σ)/3 is positive for compressed cells, negative for expanded ones.
        pressure = np.array([-c.stress[:3].sum() / 3 for c in family])
        assert np.all(np.sign(pressure[strained]) == -np.sign(strain[strained]))


def test_mlearn_si_stress_sign_shear(shared_data: Path):
    """Tilted cells: dE/dγ matches +V*σ_shear in sign and within 10% (found: ≤5%, the families
    are Lagrangian strains, not pure simple shear) and sits in the right Voigt slot."""
    configs, ground = _si_elastic(shared_data)
    for (row, col), slot in (((1, 0), 5), ((2, 0), 4), ((2, 1), 3)):
        tilt = [(i, j) for i in range(3) for j in range(3) if i > j and (i, j) != (row, col)]
        family = [ground] + [c for c in configs if abs(c.cell[row, col]) > 1e-3 and all(abs(c.cell[i, j]) < 1e-8 for i, j in tilt)]
        assert len(family) >= 8
        gamma = np.array([c.cell[row, col] / c.cell[row, row] for c in family])
        energy = np.array([c.energy for c in family])
        v_sigma = np.array([c.volume * c.stress[slot] for c in family])
        dE = np.polyval(np.polyder(np.polyfit(gamma, energy, 6)), gamma)
        sheared = np.abs(gamma) > 0.01
        assert np.all(np.sign(dE[sheared]) == np.sign(v_sigma[sheared]))
        np.testing.assert_allclose(v_sigma[sheared], dE[sheared], rtol=0.10)
        other_slots = [k for k in (3, 4, 5) if k != slot]
        assert np.abs(np.array([c.stress[other_slots] for c in family])).max() < 1e-4


@pytest.mark.parametrize("element, n_train, n_test", [("Si", 214, 25), ("Li", 241, 29)])
def test_mlearn_files_read_fully(shared_data: Path, element: str, n_train: int, n_test: int):
    for name, n in (("training", n_train), ("test", n_test)):
        path = shared_data / "mlearn" / element / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"{path} not found")
        configs = read_configurations(path, required=LABELS_ALL)
        assert len(configs) == n
        assert {c.config_type for c in configs} >= {"AIMD-NVT", "Vacancy", "Elastic", "Surface"}


def test_rmd17_aspirin_xyz(shared_data: Path):
    path = shared_data / "rmd17" / "aspirin_train.xyz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    configs = read_configurations(path, keys=LabelKeys(required=("energy", "forces")))
    assert len(configs) == 1200
    c = configs[0]
    assert c.n_atoms == 21 and c.pbc == (False, False, False) and c.stress is None
    assert sorted(set(c.species.tolist())) == [1, 6, 8]
    assert c.energy == pytest.approx(-17617.826906338443)
    energies = np.array([c.energy for c in configs])
    assert np.all(np.isfinite(energies)) and energies.std() > 0.01

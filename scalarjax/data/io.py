"""Readers that turn data files into :class:`~scalarjax.data.configuration.Configuration` lists.

All readers return the project's units: Å, eV (total energy), eV/Å, and stress in eV/Å³ with
ASE's sign (``stress = (1/V) ∂E/∂ε``, positive under tension) in Voigt order
``[xx, yy, zz, yz, xz, xy]``. A label that is absent is ``None``; a *required* label that is
absent, or any label of the wrong shape or non-finite, raises ``ValueError`` naming the file and
the frame index. Nothing is ever silently filled with zeros.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from ase import units

from scalarjax.errors import InputError

from .configuration import Configuration, full_to_voigt

PathLike = Union[str, os.PathLike]
LABELS = ("energy", "forces", "stress")
KCAL_MOL = units.kcal / units.mol  # eV per kcal/mol (≈ 0.0433641)
KBAR = 0.1 * units.GPa  # eV/Å³ per kBar (1 eV/Å³ ≈ 1602.18 kBar)
WEIGHT_KEYS = {  # atoms.info key -> Configuration field, as in MACE
    "config_weight": "weight",
    "config_energy_weight": "energy_weight",
    "config_forces_weight": "forces_weight",
    "config_stress_weight": "stress_weight",
}


def data_dir() -> Path:
    """Directory of the shared reference data: ``$SCALARJAX_DATA``, else ``<repo>/../shared/data``.

    The path may not exist (e.g. on a machine without the data); callers check ``.is_dir()``.
    """
    env = os.environ.get("SCALARJAX_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class LabelKeys:
    """Names under which labels are stored in ``atoms.info`` / ``atoms.arrays`` / ``atoms.calc``.

    ``virial_key`` (eV, ``virial = -stress * V``) is used when no stress is found. ``required``
    lists which of ``"energy"``, ``"forces"``, ``"stress"`` must be present in every frame
    (stress is satisfied by a virial).
    """

    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str = "virial"
    required: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = set(self.required) - set(LABELS)
        if unknown:
            raise InputError(f"LabelKeys.required: unknown labels {sorted(unknown)}, expected a subset of {LABELS}")


def _lookup(atoms, key: str) -> Any:
    """``key`` from ``atoms.info``, ``atoms.arrays`` or the attached (single point) calculator."""
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    return results.get(key)


def _numbers(value: Any, message: str) -> np.ndarray:
    """``value`` as float64 numbers, or an :class:`InputError` with ``message`` (a label that is not numbers)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(message) from None


def _energy(value: Any, where: str) -> Optional[float]:
    if value is None:
        return None
    arr = _numbers(value, f"{where}: energy must be one finite number, got {value!r}")
    if arr.size != 1 or not np.isfinite(arr).all():
        raise InputError(f"{where}: energy must be one finite number, got {value!r}")
    return float(arr.reshape(()))


def _forces(value: Any, n_atoms: int, where: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    arr = _numbers(value, f"{where}: forces are not numbers")
    if arr.shape != (n_atoms, 3):
        raise InputError(f"{where}: forces have shape {arr.shape}, expected ({n_atoms}, 3)")
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: forces contain non-finite values")
    return arr


def _tensor(value: Any, name: str, where: str) -> Optional[np.ndarray]:
    """6 (ASE Voigt), 9 or 3x3 numbers -> ``[6]`` Voigt (xx, yy, zz, yz, xz, xy)."""
    if value is None:
        return None
    arr = _numbers(value, f"{where}: {name} is not numbers: {value!r}")
    if arr.shape == (6,):
        voigt = arr
    elif arr.shape in ((9,), (3, 3)):
        full = arr.reshape(3, 3)
        voigt = full_to_voigt(0.5 * (full + full.T))
    else:
        raise InputError(f"{where}: {name} has shape {arr.shape}, expected (6,), (9,) or (3, 3)")
    if not np.isfinite(voigt).all():
        raise InputError(f"{where}: {name} contains non-finite values")
    return voigt


def _check_required(labels: dict, required: Sequence[str], where: str) -> None:
    missing = [k for k in required if labels.get(k) is None]
    if missing:
        raise InputError(f"{where}: missing required label(s) {missing}")


def _frame_numbers(index: Union[int, str, slice], count: int) -> list[int]:
    """Frame numbers in the file for the ``count`` frames selected by ``index`` (best effort)."""
    from ase.io.formats import string2index

    idx = string2index(index) if isinstance(index, str) else index
    if isinstance(idx, int):
        return [idx]
    start, step = idx.start or 0, idx.step or 1
    if start >= 0 and step > 0:
        return [start + k * step for k in range(count)]
    return list(range(count))  # negative start/step: positions within the selection


def read_ase(
    path: PathLike,
    index: Union[int, str, slice] = ":",
    keys: LabelKeys = LabelKeys(),
    config_type_key: str = "config_type",
    format: Optional[str] = None,
) -> list[Configuration]:
    """Read extended XYZ (or anything ``ase.io.read`` reads) into configurations.

    Labels are looked up by the names in ``keys``, first in ``atoms.info`` / ``atoms.arrays``
    and then in an attached ``SinglePointCalculator`` (where ASE puts standard ``energy``,
    ``forces``, ``stress`` of extended XYZ). Units are assumed to be eV, eV/Å and eV/Å³ (ASE sign);
    a virial (eV; 6, 9 or 3x3 numbers) is converted with ``stress = -virial / V``. Per-config
    weights come from ``config_weight``, ``config_{energy,forces,stress}_weight`` (default 1.0)
    and the type from ``info[config_type_key]`` (default ``"Default"``).
    """
    import ase.io

    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    try:
        frames = ase.io.read(str(path), index=index, format=format)
    except Exception as err:  # ase's parse errors (many types: truncated, random bytes) do not name the file
        msg = str(err).splitlines()[0][:200] if str(err) else ""
        raise InputError(f"{path}: cannot read it as {format or 'a structure file'} ({type(err).__name__}: {msg})") from err
    if not isinstance(frames, list):
        frames = [frames]
    configs = []
    for frame, atoms in zip(_frame_numbers(index, len(frames)), frames):
        where = f"{path}, frame {frame}"
        labels: dict[str, Any] = {
            "energy": _energy(_lookup(atoms, keys.energy_key), where),
            "forces": _forces(_lookup(atoms, keys.forces_key), len(atoms), where),
            "stress": _tensor(_lookup(atoms, keys.stress_key), "stress", where),
        }
        if labels["stress"] is None:
            virial = _tensor(_lookup(atoms, keys.virial_key), "virial", where)
            if virial is not None:
                volume = abs(atoms.get_volume()) if atoms.cell.rank == 3 else 0.0
                if volume <= 0.0:
                    raise InputError(f"{where}: virial given but the cell has no volume")
                labels["stress"] = -virial / volume
        _check_required(labels, keys.required, where)
        try:
            weights = {field: float(atoms.info[k]) for k, field in WEIGHT_KEYS.items() if k in atoms.info}
        except (ValueError, TypeError):
            raise InputError(f"{where}: a config_*weight in the comment line is not a number") from None
        config_type = str(atoms.info.get(config_type_key, "Default"))
        configs.append(Configuration.from_atoms(atoms, **labels, **weights, config_type=config_type, source=f"{path}:{frame}"))
    return configs


def read_rmd17_npz(path: PathLike, config_type: str = "Default") -> list[Configuration]:
    """Read a revised-MD17 ``.npz`` (one molecule, many frames; no cell, no periodicity).

    Keys: ``nuclear_charges`` ``[n]``, ``coords`` ``[T, n, 3]`` (Å), ``energies`` ``[T]``
    (kcal/mol) and ``forces`` ``[T, n, 3]`` (kcal/mol/Å), converted to eV and eV/Å with
    ``units.kcal / units.mol`` (≈ 0.0433641 eV per kcal/mol).
    """
    try:
        npz_file = np.load(str(path))
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npz ({err})") from None
    with npz_file as npz:
        missing = [k for k in ("nuclear_charges", "coords", "energies", "forces") if k not in npz.files]
        if missing:
            raise InputError(f"{path}: not an rMD17 npz, missing key(s) {missing} (found {sorted(npz.files)})")
        z = np.asarray(npz["nuclear_charges"], dtype=np.int64).reshape(-1)
        coords, energies, forces = (np.asarray(npz[k], dtype=np.float64) for k in ("coords", "energies", "forces"))
    t, n = energies.reshape(-1).shape[0], z.shape[0]
    for name, arr, shape in (("coords", coords, (t, n, 3)), ("forces", forces, (t, n, 3))):
        if arr.shape != shape:
            raise InputError(f"{path}: {name} has shape {arr.shape}, expected {shape} ({t} energies, {n} atoms)")
    energies = energies.reshape(-1) * KCAL_MOL
    forces = forces * KCAL_MOL
    return [
        Configuration(
            species=z,
            positions=coords[i],
            energy=_energy(energies[i], f"{path}, frame {i}"),
            forces=_forces(forces[i], n, f"{path}, frame {i}"),
            config_type=config_type,
            source=f"{path}:{i}",
        )
        for i in range(t)
    ]


def mlearn_stress(virial_stress_kbar: Sequence[float]) -> np.ndarray:
    """mlearn ``outputs.virial_stress`` → ASE Voigt stress in eV/Å³.

    mlearn stores VASP's stress: 6 numbers in kBar, order ``[xx, yy, zz, xy, yz, xz]``, positive
    under *compression*. ASE's is positive under tension, so ``stress_ase = -virial_stress * KBAR``
    reordered to ``[xx, yy, zz, yz, xz, xy]``. Established on the Si ``Elastic`` group
    (``mlearn/Si/training.json``, 2x2x2 cells, V0 = 1308.4 Å³, E0 = -347.2207 eV): along a
    uniaxial strain family, ``dE/dε`` (ε = ln(a/a0), quintic fit) vs ``V * virial_stress / 1602.18``
    is -122.2 vs +123.7 eV at ε = -0.112 (compressed), -25.3 vs +25.3 at ε = -0.020, and
    +24.8 vs -24.6 at ε = +0.020, +117.6 vs -117.1 at ε = +0.091: equal magnitude (within 1.2%),
    opposite sign. Shear families (b-vector tilted along x etc.) confirm the sign and the
    xy/yz/xz placement (a tilt of the b-vector along x moves only entry 3 = xy).
    """
    v = np.asarray(virial_stress_kbar, dtype=np.float64)
    if v.shape != (6,):
        raise InputError(f"virial_stress has shape {v.shape}, expected (6,)")
    xx, yy, zz, xy, yz, xz = v
    return -KBAR * np.array([xx, yy, zz, yz, xz, xy])


def read_mlearn_json(path: PathLike, required: Sequence[str] = ("energy", "forces")) -> list[Configuration]:
    """Read an mlearn JSON list (Zuo et al. 2020): periodic cells with energy, forces and stress.

    Per item: ``structure.lattice.matrix`` (Å, rows), ``structure.sites[*].xyz`` (Å) and
    ``.species[0].element``, ``outputs.energy`` (eV, total), ``outputs.forces`` (eV/Å),
    ``outputs.virial_stress`` (kBar, VASP; converted by :func:`mlearn_stress`), ``group`` →
    ``config_type``.
    """
    from ase.data import atomic_numbers

    try:
        with open(path) as f:
            items = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON list of structures, got {type(items).__name__}")
    configs = []
    for i, item in enumerate(items):
        where = f"{path}, frame {i}"
        try:
            structure = item["structure"]
            cell = np.asarray(structure["lattice"]["matrix"], dtype=np.float64)
            sites = structure["sites"]
            species = [atomic_numbers[site["species"][0]["element"]] for site in sites]
            positions = np.asarray([site["xyz"] for site in sites], dtype=np.float64).reshape(-1, 3)
        except (KeyError, IndexError, TypeError) as err:
            raise InputError(f"{where}: malformed structure ({err!r})") from err
        outputs = item.get("outputs") or {}
        stress = outputs.get("virial_stress")
        if stress is not None:
            try:
                stress = mlearn_stress(stress)
            except ValueError as err:
                raise InputError(f"{where}: {err}") from None
        labels = {
            "energy": _energy(outputs.get("energy"), where),
            "forces": _forces(outputs.get("forces"), len(species), where),
            "stress": stress,
        }
        _check_required(labels, required, where)
        configs.append(
            Configuration(
                species=species,
                positions=positions,
                cell=cell,
                pbc=(True, True, True),
                **labels,
                config_type=str(item.get("group", "Default")),
                source=f"{path}:{i}",
            )
        )
    return configs


def read_configurations(path: PathLike, format: Optional[str] = None, **kw: Any) -> list[Configuration]:
    """Read ``path`` with the reader picked by ``format`` or, when ``None``, by its suffix.

    ``format``: ``"rmd17"`` (``.npz``), ``"mlearn"`` (``.json``), otherwise an ``ase.io`` format
    (``"extxyz"`` etc.) for :func:`read_ase`. ``kw`` goes to the chosen reader.
    """
    suffix = Path(path).suffix.lower()
    if format == "rmd17" or (format is None and suffix == ".npz"):
        return read_rmd17_npz(path, **kw)
    if format == "mlearn" or (format is None and suffix == ".json"):
        return read_mlearn_json(path, **kw)
    return read_ase(path, format=format, **kw)

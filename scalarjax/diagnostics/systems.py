"""The systems ``scalarjax diagnose`` probes: crystal presets (Si, Ag, Li) and the reference frames
and liquid state point taken from the training data."""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence

import numpy as np

from scalarjax.errors import InputError


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
    temperatures = frame_temperatures(data_path)
    aimd = []
    for c in configs:
        if c.config_type in p.data_config_types and all(c.pbc):
            atoms = c.to_atoms()
            t = temperatures.get(c.source)
            if t is not None:
                atoms.info["temperature_K"] = t
            aimd.append(atoms)
    return [c.to_atoms() for c in configs], aimd


def frame_temperatures(data_path: str) -> dict:
    """``{source: temperature_K}`` from an mlearn JSON's descriptions; empty for other formats."""
    import re

    out = {}
    for source, text in frame_descriptions(data_path).items():
        m = re.search(r"at\s+([0-9.]+)\s*K\b", text)
        if m:
            out[source] = float(m.group(1))
    return out


def frame_descriptions(data_path: str) -> dict:
    """``{source: description}`` of an mlearn JSON's items (``source`` as :class:`~scalarjax.data.Configuration`
    names them, ``"PATH:INDEX"``); empty for other formats."""
    if not str(data_path).endswith(".json"):
        return {}
    with open(data_path) as f:
        items = json.load(f)
    return {
        f"{data_path}:{i}": str(item.get("description", ""))
        for i, item in enumerate(items if isinstance(items, list) else [])
        if isinstance(item, dict)
    }


def elastic_strain(description: str) -> Optional[float]:
    """The strain magnitude of an mlearn ``Elastic`` cell from its description (``"Si 2x2x2 cell, mode 0,
    strain -0.1"`` → −0.1: the deformation mode's amplitude, negative = compressed); ``None`` when the
    description names no strain (e.g. ``"Ground state crystal"``)."""
    import re

    m = re.search(r"strain\s+([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)", description)
    return float(m.group(1)) if m else None


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

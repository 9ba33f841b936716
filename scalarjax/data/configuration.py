"""The one record type for a (possibly labelled) atomic configuration.

Units: positions and cell in Å, energy in eV (total), forces in eV/Å, stress in eV/Å³ with
ASE's sign convention (stress = (1/V) ∂E/∂ε, positive under tension) in Voigt order
[xx, yy, zz, yz, xz, xy]. A missing label is ``None`` -- never a zero.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from scalarjax.errors import InputError


@dataclasses.dataclass(frozen=True, eq=False)
class Configuration:
    """A labelled atomic configuration.

    Attributes:
        species: ``[n_atoms]`` int atomic numbers.
        positions: ``[n_atoms, 3]`` Cartesian positions, Å.
        cell: ``[3, 3]`` lattice vectors as rows, Å (zeros when there is no cell).
        pbc: periodicity along each lattice vector.
        energy: total energy, eV, or ``None`` when not labelled.
        forces: ``[n_atoms, 3]`` forces, eV/Å, or ``None``.
        stress: ``[6]`` Voigt stress (xx, yy, zz, yz, xz, xy), eV/Å³, ASE sign, or ``None``.
        weight: weight of the whole configuration in the loss.
        energy_weight, forces_weight, stress_weight: per-property weights of this configuration.
        config_type: free label used for per-type loss weights and metrics.
        source: where it came from (``file:frame``), used in error messages.
    """

    species: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 3)))
    pbc: tuple = (False, False, False)
    energy: Optional[float] = None
    forces: Optional[np.ndarray] = None
    stress: Optional[np.ndarray] = None
    weight: float = 1.0
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    stress_weight: float = 1.0
    config_type: str = "Default"
    source: str = ""

    def __post_init__(self):
        species = np.asarray(self.species, dtype=np.int64).reshape(-1)
        n = species.shape[0]
        positions = np.asarray(self.positions, dtype=np.float64)
        if positions.shape != (n, 3):
            raise InputError(f"{self.source or 'configuration'}: positions have shape {positions.shape}, expected ({n}, 3)")
        cell = np.asarray(self.cell, dtype=np.float64)
        if cell.shape != (3, 3):
            raise InputError(f"{self.source or 'configuration'}: cell has shape {cell.shape}, expected (3, 3)")
        pbc = tuple(bool(p) for p in np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)))
        where = self.source or "configuration"
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        if bad.size:  # NaN/inf positions give E = F = 0 downstream and stall the neighbour search
            raise InputError(f"{where}: non-finite position(s) of atom(s) {bad[:5].tolist()}{' ...' if bad.size > 5 else ''}")
        if not np.isfinite(cell).all():
            raise InputError(f"{where}: non-finite cell {cell.tolist()}")
        if n and (species.min() < 1 or species.max() > 118):
            z = int(species[(species < 1) | (species > 118)][0])
            raise InputError(f"{where}: {z} is not an atomic number (1..118)")
        object.__setattr__(self, "species", species)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "cell", cell)
        object.__setattr__(self, "pbc", pbc)
        if self.energy is not None:
            object.__setattr__(self, "energy", float(self.energy))
        if self.forces is not None:
            forces = np.asarray(self.forces, dtype=np.float64)
            if forces.shape != (n, 3):
                raise InputError(f"{self.source or 'configuration'}: forces have shape {forces.shape}, expected ({n}, 3)")
            object.__setattr__(self, "forces", forces)
        if self.stress is not None:
            stress = np.asarray(self.stress, dtype=np.float64)
            if stress.shape == (3, 3):
                stress = full_to_voigt(stress)
            if stress.shape != (6,):
                raise InputError(f"{self.source or 'configuration'}: stress has shape {stress.shape}, expected (6,) or (3, 3)")
            object.__setattr__(self, "stress", stress)

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[0])

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))

    def to_atoms(self):
        """An ``ase.Atoms`` view (labels not attached)."""
        import ase

        return ase.Atoms(numbers=self.species, positions=self.positions, cell=self.cell, pbc=self.pbc)

    @classmethod
    def from_atoms(cls, atoms, **labels) -> Configuration:
        return cls(
            species=atoms.get_atomic_numbers(),
            positions=atoms.get_positions(),
            cell=np.asarray(atoms.get_cell()),
            pbc=tuple(atoms.get_pbc()),
            **labels,
        )


def full_to_voigt(s: np.ndarray) -> np.ndarray:
    """``[..., 3, 3]`` symmetric tensor → ``[..., 6]`` Voigt (xx, yy, zz, yz, xz, xy)."""
    s = np.asarray(s)
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 1, 2], s[..., 0, 2], s[..., 0, 1]], axis=-1)


def voigt_to_full(v: np.ndarray) -> np.ndarray:
    """``[..., 6]`` Voigt (xx, yy, zz, yz, xz, xy) → ``[..., 3, 3]`` symmetric tensor."""
    v = np.asarray(v)
    xx, yy, zz, yz, xz, xy = (v[..., i] for i in range(6))
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1), np.stack([xz, yz, zz], -1)], -2)

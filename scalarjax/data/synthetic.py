"""The embedded default data set: fcc Ag cells labelled with ASE's EMT calculator.

Generated, not shipped: rattled and strained 2×2×2 conventional cells (32 atoms), cells with a
vacancy, and a (111) surface slab with vacuum along z (periodic in-plane, non-periodic normal),
each labelled with EMT energy (eV), forces (eV/Å) and, where periodic in 3D, stress (eV/Å³, ASE
sign). Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT

from scalarjax.data.configuration import Configuration

A_AG = 4.09  # Å, EMT's fcc Ag lattice constant is close to experiment


def _label(atoms, config_type: str, source: str) -> Configuration:
    atoms.calc = EMT()
    stress = atoms.get_stress() if atoms.pbc.all() else None
    return Configuration.from_atoms(
        atoms,
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces(),
        stress=stress,
        config_type=config_type,
        source=source,
    )


def ag_emt_dataset(n: int = 240, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)) -> list[Configuration]:
    """``n`` labelled Ag configurations: ``fractions`` of rattled/strained bulk, vacancy and slab cells
    (default 70% / 20% / 10%). Slabs alternate between (111) and (100) surfaces (27 atoms each, 6 Å
    of vacuum per side, periodic in-plane only) with a random in-plane strain, so the surface
    energy is seen over a range of geometries rather than at one."""
    rng = np.random.default_rng(seed)
    bulk_f, vac_f, _ = (f / sum(fractions) for f in fractions)
    out = []
    n_slab = 0
    for k in range(n):
        u = k / n
        if u < bulk_f:
            atoms = bulk("Ag", "fcc", a=A_AG, cubic=True).repeat(2)
            kind = "bulk"
        elif u < bulk_f + vac_f:
            atoms = bulk("Ag", "fcc", a=A_AG, cubic=True).repeat(2)
            del atoms[int(rng.integers(len(atoms)))]
            kind = "vacancy"
        else:
            build = fcc111 if n_slab % 2 == 0 else fcc100
            n_slab += 1
            atoms = build("Ag", size=(3, 3, 3), a=A_AG, vacuum=6.0)
            atoms.pbc = (True, True, False)
            kind = "surface"
        strain = np.eye(3) + rng.normal(scale=0.02, size=(3, 3))
        if kind == "surface":  # in-plane only: the vacuum direction stays as built
            strain[2, :] = strain[:, 2] = 0.0
            strain[2, 2] = 1.0
        strain = 0.5 * (strain + strain.T)
        atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=rng.uniform(0.02, 0.15), size=atoms.positions.shape)
        out.append(_label(atoms, kind, f"ag_emt:{k}"))
    return out

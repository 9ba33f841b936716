"""Relaxations with ASE's optimisers: positions, or positions and cell via ``FrechetCellFilter``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")


def relax(
    atoms,
    calc,
    fmax: float = 0.01,
    steps: int = 500,
    cell: bool = False,
    pressure_GPa: float = 0.0,
    optimizer: str = "FIRE",
    trajectory: Optional[Path] = None,
) -> dict:
    """Minimise the energy until max |F| < ``fmax`` eV/Å (and the cell's generalised forces, with ``cell``).

    Returns energies (eV), the largest residual force (eV/Å), the number of steps, whether it
    converged, and the final volume (Å³). ``atoms`` is relaxed in place.
    """
    import math

    import ase.optimize
    from ase import units
    from ase.filters import FrechetCellFilter

    from scalarjax.errors import InputError

    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer {optimizer!r}: choose one of {OPTIMIZERS}")
    if not (math.isfinite(fmax) and fmax > 0):
        raise InputError(f"relax --fmax {fmax}: must be a positive force (eV/Å)")
    if steps < 1:
        raise InputError(f"relax --steps {steps}: must be at least 1")
    if cell and not all(atoms.pbc):
        raise InputError("relax --cell needs a fully periodic cell")
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    target = FrechetCellFilter(atoms, scalar_pressure=pressure_GPa * units.GPa) if cell else atoms
    opt = getattr(ase.optimize, optimizer)(target, logfile=None, trajectory=str(trajectory) if trajectory else None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    forces = atoms.get_forces()
    return {
        "converged": converged,
        "steps": int(opt.nsteps),
        "E_initial": float(e0),
        "E_final": float(atoms.get_potential_energy()),
        "max_force": float(np.linalg.norm(forces, axis=1).max()),
        "volume": float(atoms.get_volume()) if all(atoms.pbc) else None,
        "cell": atoms.cell.array.tolist(),
    }

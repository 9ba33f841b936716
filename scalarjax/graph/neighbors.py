"""Neighbour lists with matscipy, as integer cell shifts so positions and cell stay differentiable.

An edge ``(sender i, receiver j, shift S)`` means the vector

    r_ij = x_j − x_i + S · cell        (S integer row vector, cell rows = lattice vectors, Å)

with ``|r_ij| ≤ r_max``. Periodic, triclinic and mixed-pbc cells are handled by matscipy; cells
thinner than ``r_max`` give all the periodic images within the cutoff (including an atom's own
images). Non-periodic directions get a padding box large enough that nothing wraps.
"""

from __future__ import annotations

import numpy as np
from matscipy.neighbours import neighbour_list

from scalarjax.errors import InputError

# Two atoms closer than this are an input error (a duplicated atom), not physics.
MIN_DISTANCE = 1e-3  # Å


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc, r_max: float, source: str = "configuration"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``senders [E]``, ``receivers [E]`` (int32) and ``shifts [E, 3]`` (integer-valued).

    Raises :class:`~scalarjax.errors.InputError` (a ``ValueError``) for non-finite input, a periodic direction with a degenerate cell or for two atoms
    closer than ``MIN_DISTANCE``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.array(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    n = len(positions)
    if n == 0:
        raise InputError(f"{source}: no atoms")
    if not (np.isfinite(positions).all() and np.isfinite(cell).all()):  # matscipy would crawl, the model give E = 0
        raise InputError(f"{source}: non-finite positions or cell")
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-9 and pbc.all():
        raise InputError(f"{source}: periodic cell has zero volume: {cell.tolist()}")
    for d in np.flatnonzero(pbc):
        if np.linalg.norm(cell[d]) < 1e-9:
            raise InputError(f"{source}: periodic direction {d} has a zero lattice vector")

    # matscipy needs a non-singular cell that contains every atom along non-periodic directions.
    box = cell.copy()
    if not pbc.all():
        extent = positions.max(0) - positions.min(0) if n else np.zeros(3)
        span = float(np.max(extent)) + 2.0 * r_max + 1.0
        for d in np.flatnonzero(~pbc):
            if np.linalg.norm(box[d]) < 1e-9 or abs(np.linalg.det(box)) < 1e-9:
                box[d] = 0.0
                box[d, d] = span
        if abs(np.linalg.det(box)) < 1e-9:
            raise InputError(f"{source}: cannot build a non-singular box from cell {cell.tolist()} and pbc {pbc.tolist()}")
        # Shift atoms into the box along non-periodic directions (vectors are unchanged).
        shifted = positions - positions.min(0) + 0.5 * r_max
        positions = np.where(~pbc[None, :] & (np.linalg.norm(cell, axis=1) < 1e-9)[None, :], shifted, positions)

    i, j, S, d = neighbour_list("ijSd", positions=positions, cell=box, pbc=pbc, cutoff=float(r_max))
    if len(d) and d.min() < MIN_DISTANCE:
        k = int(np.argmin(d))
        raise InputError(
            f"{source}: atoms {int(i[k])} and {int(j[k])} are {d[k]:.2e} Å apart (overlapping atoms); "
            f"minimum allowed distance is {MIN_DISTANCE} Å"
        )
    return i.astype(np.int32), j.astype(np.int32), S.astype(np.float64)

"""Shared helpers of the diagnostics: frames as ``ase.Atoms``, pair distances, JSON-safe values.

Pair distances come from a neighbour list, never from an O(N²) Python loop: matscipy for fully
periodic cells (fast, C), ASE's ``neighbor_list`` otherwise (it builds its own bounding box for
open boundaries and zero cells, which matscipy cannot). Both return every periodic image within
the cutoff, an atom's own images included, so cutoffs larger than half the cell are exact.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def as_atoms_list(frames: Any) -> list:
    """``ase.Atoms``, a :class:`~scalarjax.data.Configuration` or an iterable of either → list of ``ase.Atoms``."""
    from ase import Atoms

    from scalarjax.data.configuration import Configuration

    if isinstance(frames, (Atoms, Configuration)):
        frames = [frames]
    out = []
    for f in frames:
        if isinstance(f, Configuration):
            f = f.to_atoms()
        if not isinstance(f, Atoms):
            raise TypeError(f"expected ase.Atoms or scalarjax Configuration, got {type(f).__name__}")
        out.append(f)
    return out


def pair_distances(atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs ``(i [P], j [P], d [P] Å)`` with ``0 < d ≤ cutoff``, every periodic image included.

    Each unordered pair appears twice (i→j and j→i); an atom's own periodic images appear as
    ``i == j`` pairs (they are real neighbours in the periodic crystal).
    """
    i, j, d = _neighbours(atoms, cutoff, "ijd")
    return i, j, d


def pair_vectors(atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs ``(i [P], j [P], D [P, 3] Å)`` within ``cutoff`` as :func:`pair_distances`, with
    the vector ``D = x_j + S·cell − x_i`` from atom i to the periodic image of j that is the neighbour."""
    i, j, vec = _neighbours(atoms, cutoff, "ijD")
    return i, j, vec.reshape(-1, 3)


def _neighbours(atoms, cutoff: float, quantities: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """matscipy's (fully periodic) or ASE's neighbour list: ``i``, ``j`` and the third quantity."""
    if len(atoms) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3) if quantities[2] == "D" else 0)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    if pbc.all():
        from matscipy.neighbours import neighbour_list

        i, j, x = neighbour_list(quantities, atoms, float(cutoff))
    else:
        from ase.neighborlist import neighbor_list

        i, j, x = neighbor_list(quantities, atoms, float(cutoff))
    return np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64), np.asarray(x, dtype=np.float64)


def floats(x: Iterable) -> list:
    """A (nested) array → nested lists of Python floats (JSON-serialisable)."""
    return np.asarray(x, dtype=np.float64).tolist()


def opt_float(x) -> float | None:
    """``None`` stays ``None``; non-finite values become ``None`` (JSON has no inf/NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None

"""Data statistics a model needs before training, computed once and stored in the run.

* E0 (eV per element): the energy of an isolated-atom configuration of that element when the data
  has one, else least squares of total energies on element counts, ``E_g ≈ Σ_z n_gz E0_z``.
* ``avg_num_neighbors``: mean number of neighbours within r_max over all atoms of the training set.
* ``scale`` (eV) as MACE's default ``rms_forces_scaling``: the RMS of the force components.
  ``shift`` is left at 0: a per-atom shift is the same as adding it to every E0, and keeping it
  at 0 keeps an isolated atom's energy equal to its E0 (with least-squares E0s the mean per-atom
  residual is ~0 anyway; :func:`compute_scale_shift` reports it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from scalarjax.data.configuration import Configuration


def compute_e0s(configs: Sequence[Configuration], atomic_numbers: Sequence[int]) -> tuple[float, ...]:
    """E0 (eV) per element of ``atomic_numbers``, in that order (module docstring): isolated-atom energies
    (one atom, no pbc) where present, the rest by least squares on the other labelled energies.
    ``ValueError`` when some must be fitted and no configuration has an energy; warns when underdetermined."""
    zs = list(atomic_numbers)
    isolated = {}
    for c in configs:
        if c.n_atoms == 1 and c.energy is not None and not any(c.pbc):
            isolated[int(c.species[0])] = c.energy
    labelled = [c for c in configs if c.energy is not None and not (c.n_atoms == 1 and int(c.species[0]) in isolated)]
    missing = [z for z in zs if z not in isolated]
    e0 = dict(isolated)
    if missing:
        if not labelled:
            raise ValueError("cannot fit E0s: no configuration has an energy label")
        counts = np.array([[np.sum(c.species == z) for z in zs] for c in labelled], dtype=float)
        energies = np.array([c.energy for c in labelled])
        known = np.array([e0.get(z, 0.0) for z in zs])
        fit_cols = [i for i, z in enumerate(zs) if z in missing]
        rhs = energies - counts @ known
        sol, _, rank, _ = np.linalg.lstsq(counts[:, fit_cols], rhs, rcond=None)
        for i, v in zip(fit_cols, sol):
            e0[zs[i]] = float(v)
        if rank < len(fit_cols):
            import warnings

            from ase.data import chemical_symbols

            fitted = ", ".join(f"E0({chemical_symbols[zs[i]]}) = {e0[zs[i]]:.1f} eV" for i in fit_cols)
            warnings.warn(
                f"E0s by least squares are not determined by this data: its element counts span {rank} composition(s) for "
                f"{len(fit_cols)} element(s) (e.g. one molecule). Got {fitted}: energies of the training compositions are "
                f"fine, but an isolated atom or another composition is off by up to hundreds of eV. Give isolated-atom "
                f"energies (model.atomic_energies, or single-atom configurations in the data) for a transferable model."
            )
    return tuple(float(e0[z]) for z in zs)


def compute_avg_num_neighbors(graphs) -> float:
    """Total edges / total nodes of the (unpadded) graphs: the mean number of neighbours within r_max."""
    nodes = sum(int(g.n_node.sum()) for g in graphs)
    edges = sum(int(g.n_edge.sum()) for g in graphs)
    return edges / max(nodes, 1)


def compute_scale_shift(configs: Sequence[Configuration], atomic_numbers: Sequence[int], e0s: Sequence[float]) -> tuple[float, float]:
    """``(scale, mean residual)``: the RMS force component (eV/Å, taken as the energy scale in eV; 1.0
    without forces) and the mean of ``(E_g − Σ_i E0[z_i]) / N_g`` (eV/atom; 0.0 without energies)."""
    e0 = dict(zip(atomic_numbers, e0s))
    forces = [c.forces for c in configs if c.forces is not None]
    scale = float(np.sqrt(np.mean(np.concatenate([f.reshape(-1) for f in forces]) ** 2))) if forces else 1.0
    per_atom = [(c.energy - sum(e0[int(z)] for z in c.species)) / c.n_atoms for c in configs if c.energy is not None]
    shift = float(np.mean(per_atom)) if per_atom else 0.0
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return scale, shift

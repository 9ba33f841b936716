"""Errors against the data's own labels where a repulsive wall shows: short pairs and strained cells.

A soft repulsive wall is a *signed* error: the model pushes close atoms apart less than the
reference does, and under compression it gives too low a pressure. Mean absolute errors hide the
sign; these functions keep it. They take forces and stresses as arrays (the model's and the
reference's, e.g. DFT labels of a data set), so they are pure and cheap; evaluating the model is
the caller's business.

Units: Å, eV/Å (forces), eV/Å³ in (stress, ASE's sign: σ positive under tension), GPa and meV/Å³ out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import units

from ._common import as_atoms_list, opt_float, pair_vectors


def pair_forces(atoms, forces: np.ndarray, r_short: float) -> tuple[np.ndarray, np.ndarray]:
    """The relative force along every short pair of one frame.

    For each unordered pair (i, j), i ≠ j, closer than ``r_short`` (Å; every periodic image, each
    unordered pair once), with ``u = D_ij / |D_ij|`` the unit vector from i to the neighbouring
    image of j::

        f_ij = ½ (F_j − F_i) · u      (eV/Å)

    the force that stretches the pair: > 0 when the two atoms are pushed apart. For an isolated
    dimer it is :func:`~scalarjax.diagnostics.dimer_curve`'s radial force −dE/dr; in a condensed
    frame it includes every other neighbour's pull too. Returns ``(d [P] Å, f [P] eV/Å)``.
    """
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    i, j, vec = pair_vectors(atoms, r_short)
    keep = i < j  # each unordered pair once (j→i is the same pair); self-images have no relative force
    i, j, vec = i[keep], j[keep], vec[keep]
    d = np.linalg.norm(vec, axis=1)
    keep = d < r_short
    i, j, vec, d = i[keep], j[keep], vec[keep], d[keep]
    u = vec / d[:, None]
    return d, 0.5 * np.sum((forces[j] - forces[i]) * u, axis=1)


def short_pair_force_errors(frames, model_forces: Sequence, reference_forces: Sequence, r_short: float = 2.1) -> dict:
    """Signed error of the pair-stretching force (:func:`pair_forces`) over the pairs shorter than
    ``r_short`` Å of ``frames`` (ase.Atoms / Configuration, or a list), model against reference.

    Per pair ``δ_ij = f_ij(model) − f_ij(reference)`` (eV/Å): < 0 where the model pushes the pair
    apart less than the reference (a soft wall), > 0 where it pushes harder. Returns:

    * ``n_frames``, ``n_pairs``, ``r_short``; ``shortest_pair_A`` (the shortest pair seen);
    * ``mean_signed_error_eV_per_A`` = mean δ and ``se_eV_per_A`` = SD(δ)/√n_pairs (pairs of one
      frame are correlated, so this SE is a lower bound);
    * ``mae_eV_per_A`` = mean |δ|; ``fraction_softer`` = share of pairs with δ < 0;
    * ``mean_reference_pair_force_eV_per_A``: the scale (the reference's mean f_ij on these pairs).

    The statistics are ``None`` when there is no such pair.
    """
    frames = as_atoms_list(frames)
    if not (len(frames) == len(model_forces) == len(reference_forces)):
        raise ValueError(f"{len(frames)} frames, {len(model_forces)} model and {len(reference_forces)} reference force arrays")
    dist, delta, ref = [], [], []
    for atoms, fm, fr in zip(frames, model_forces, reference_forces):
        d, f_model = pair_forces(atoms, fm, r_short)
        _, f_ref = pair_forces(atoms, fr, r_short)
        dist.append(d)
        delta.append(f_model - f_ref)
        ref.append(f_ref)
    d, delta, ref = (np.concatenate(x) if x else np.zeros(0) for x in (dist, delta, ref))
    n = len(delta)
    return {
        "r_short": float(r_short),
        "n_frames": len(frames),
        "n_pairs": int(n),
        "shortest_pair_A": opt_float(d.min()) if n else None,
        "mean_signed_error_eV_per_A": opt_float(delta.mean()) if n else None,
        "se_eV_per_A": opt_float(delta.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
        "mae_eV_per_A": opt_float(np.abs(delta).mean()) if n else None,
        "fraction_softer": float(np.mean(delta < 0)) if n else None,
        "mean_reference_pair_force_eV_per_A": opt_float(ref.mean()) if n else None,
    }


def pressure(stress: np.ndarray) -> np.ndarray:
    """``P = −(σ_xx + σ_yy + σ_zz)/3`` of Voigt stresses ``[..., 6]`` (xx, yy, zz, yz, xz, xy; ASE sign),
    in the stress's unit: positive under compression."""
    stress = np.asarray(stress, dtype=np.float64)
    if stress.shape[-1] != 6:
        raise ValueError(f"stress must be Voigt [..., 6], got shape {stress.shape}")
    return -np.mean(stress[..., :3], axis=-1)


def stress_errors(model_stress: Sequence, reference_stress: Sequence) -> dict:
    """Stress errors of a set of cells, model against reference (Voigt ``[n, 6]``, eV/Å³, ASE sign).

    * ``pressure_error_GPa`` = mean over cells of ``P_model − P_ref`` (:func:`pressure`, GPa;
      1 eV/Å³ = 160.2177 GPa) and ``pressure_error_se_GPa`` = its SD/√n: on compressed cells a
      negative value is a model that resists compression less than the reference (a soft wall);
    * ``reference_pressure_GPa``: the mean P_ref of the cells (the scale);
    * ``stress_mae_meV_per_A3``: mean |σ_model − σ_ref| over the cells and their 6 Voigt components;
    * ``n_cells``.
    """
    sm = np.asarray(model_stress, dtype=np.float64).reshape(-1, 6)
    sr = np.asarray(reference_stress, dtype=np.float64).reshape(-1, 6)
    if sm.shape != sr.shape:
        raise ValueError(f"model stress {sm.shape} and reference stress {sr.shape} differ in shape")
    n = len(sm)
    dp = (pressure(sm) - pressure(sr)) / units.GPa
    return {
        "n_cells": int(n),
        "pressure_error_GPa": opt_float(dp.mean()) if n else None,
        "pressure_error_se_GPa": opt_float(dp.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
        "reference_pressure_GPa": opt_float(pressure(sr).mean() / units.GPa) if n else None,
        "stress_mae_meV_per_A3": opt_float(1e3 * np.abs(sm - sr).mean()) if n else None,
    }

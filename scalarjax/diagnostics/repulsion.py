"""Short-range repulsion: dimer curves, uniform compression, wall-softening analysis, data range.

An interatomic potential trained on near-equilibrium data has no information below the shortest
distance in its training set; there the learned wall may soften, turn over or open a hole, and
MD that reaches it collapses. These functions measure the wall and say where it misbehaves
relative to the data range.

Units: Å, eV, eV/Å; pressure in eV/Å³ and GPa, positive under compression
(P = −tr(σ)/3 with ASE's stress sign, σ positive under tension).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ._common import as_atoms_list, floats, opt_float, pair_distances


def dimer_curve(calc, z1: int, z2: int, r_min: float = 0.5, r_max: float = 6.0, n: int = 111) -> dict:
    """Energy and radial force of an isolated dimer (non-periodic, no cell) on ``n`` equally spaced r.

    Atom 0 of element ``z1`` sits at the origin, atom 1 (``z2``) at ``(r, 0, 0)``.

    * ``energy_eV [n]``: ``E(r) − E(r_max)``, so the last point is the zero (the separated limit
      when ``r_max`` exceeds the model's cutoff; compare ``E_ref_eV`` with ``E_atoms_eV``).
    * ``force_eV_per_A [n]``: the radial force ``−dE/dr = (F₁ₓ − F₀ₓ)/2`` from the calculator's
      forces (exact derivative of the model, no finite differences); the antisymmetric
      combination cancels any spurious net force. Positive = repulsive.
    * ``E_ref_eV``: the raw energy at ``r_max``; ``E_atoms_eV``: the sum of the two isolated-atom
      energies (two extra evaluations).
    """
    from ase import Atoms

    if not (0 < r_min < r_max) or n < 3:
        raise ValueError(f"need 0 < r_min < r_max and n >= 3, got r_min={r_min}, r_max={r_max}, n={n}")
    r = np.linspace(r_min, r_max, int(n))
    atoms = Atoms(numbers=[int(z1), int(z2)], positions=np.zeros((2, 3)), pbc=False)
    atoms.calc = calc
    energies, radial = np.empty(len(r)), np.empty(len(r))
    for k, rk in enumerate(r):
        atoms.positions = np.array([[0.0, 0.0, 0.0], [rk, 0.0, 0.0]])
        energies[k] = atoms.get_potential_energy()
        f = atoms.get_forces()
        radial[k] = 0.5 * (f[1, 0] - f[0, 0])
    e_atoms = 0.0
    for z in (z1, z2):
        single = Atoms(numbers=[int(z)], positions=np.zeros((1, 3)), pbc=False)
        single.calc = calc
        e_atoms += single.get_potential_energy()
    return {
        "z1": int(z1),
        "z2": int(z2),
        "r": floats(r),
        "energy_eV": floats(energies - energies[-1]),
        "force_eV_per_A": floats(radial),
        "E_ref_eV": float(energies[-1]),
        "E_atoms_eV": float(e_atoms),
    }


def compression_curve(calc, atoms, scales: Sequence[float] = np.linspace(0.80, 1.05, 26)) -> dict:
    """Energy and pressure under uniform isotropic scaling of the cell (atoms scaled with it).

    For each factor ``s`` the cell vectors become ``s · cell`` (volume ``s³ V``), fractional
    coordinates fixed. Returns per scale: ``volume_per_atom_A3``, ``energy_per_atom_eV``,
    ``pressure_eV_per_A3`` = −tr(σ)/3 (σ the calculator's stress, ASE sign) and ``pressure_GPa``;
    compression (s < s_eq) gives P > 0. Thermodynamic consistency: P = −dE/dV (checked in the tests).
    """
    from ase import units

    if not np.all(atoms.get_pbc()):
        raise ValueError("compression_curve needs a fully periodic cell")
    scales = np.asarray(scales, dtype=np.float64)
    n = len(atoms)
    a = atoms.copy()
    a.calc = calc
    volume, energy, pressure = [], [], []
    for s in scales:
        a.set_cell(atoms.cell * s, scale_atoms=True)
        energy.append(a.get_potential_energy() / n)
        stress = a.get_stress(voigt=True)
        pressure.append(-float(np.mean(stress[:3])))
        volume.append(a.get_volume() / n)
    pressure = np.asarray(pressure)
    return {
        "n_atoms": n,
        "scales": floats(scales),
        "volume_per_atom_A3": floats(volume),
        "energy_per_atom_eV": floats(energy),
        "pressure_eV_per_A3": floats(pressure),
        "pressure_GPa": floats(pressure / units.GPa),
        "scale_at_min_energy": float(scales[int(np.argmin(energy))]),
    }


def softening_flags(
    r: Sequence[float],
    E: Sequence[float],
    r_data_min: Optional[float] = None,
    force: Optional[Sequence[float]] = None,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    e_tol: float = 1e-2,
) -> dict:
    """Is the repulsive wall of a pair curve ``E(r)`` monotonic and stiffening toward short r?

    Definitions (all on the sampled points):

    * ``F(r) = −dE/dr``: the given ``force`` (e.g. ``dimer_curve``'s exact radial force) if any,
      else finite differences of ``E`` (``np.gradient``: second-order central inside, one-sided
      at the ends). One source is used for every check below, never a mix. With finite
      differences on a uniform grid a discretely convex E (increasing successive differences)
      never trips the softening test.
    * ``r_eq``, ``E_min``: position and value of the global minimum of ``E``; the wall is the
      points with ``r < r_eq``. A physical wall has ``dE/dr < 0`` there and a repulsive force that
      grows monotonically as r decreases (E'' > 0: for LJ and Morse the inflection lies beyond r_eq).

    Flags (a violation counts when it exceeds ``tol = atol + rtol · max|F_wall|``, eV/Å, so
    round-off of a float32 model does not trip them):

    * ``no_wall``: the minimum is at the shortest sampled r: E keeps falling as atoms approach.
    * ``multiple_minima``: more than one local minimum of prominence > ``e_tol`` eV (their
      positions in ``minima_r``). A hole *deeper* than the bond well becomes the global minimum,
      so r_eq itself lands in the hole and the wall left of it may look clean: this flag (and
      ``r_eq_below_data_min``) is what exposes it. Tail wiggles of meV do not count.
    * ``non_monotonic``: some wall point has ``dE/dr > tol``: E rises with r inside the wall (a
      hole or bump); ``r_non_monotonic`` is the largest such r.
    * ``softening``: moving inward from r_eq the wall force drops somewhere by more than ``tol``:
      ``force_drop = max over r_i < r_j < r_eq of F(r_j) − F(r_i)``. This includes the case of the
      wall's maximum force ``F_max`` sitting at an interior ``r_at_F_max`` instead of the smallest r
      (``force_max_interior``) and softer shoulders where the force dips and recovers.
      ``r_softening`` is where the largest drop begins (the force maximum preceding it).

    ``r_data_min`` (the shortest distance in the training data, if known) is echoed with
    ``softening_inside_data`` / ``non_monotonic_inside_data`` (the defect lies at r ≥ r_data_min,
    i.e. where the model was trained: a real fitting error, not extrapolation) and
    ``r_eq_below_data_min`` (the minimum itself lies outside the data: suspicious).
    """
    r, E, F, source = _sorted_curve(r, E, force)
    i_eq = int(np.argmin(E))
    out = _unflagged(r, E, i_eq, source, r_data_min, e_tol)
    if i_eq == 0:  # no wall: E keeps falling down to the shortest sampled r
        return out
    out.update(_wall_flags(F[:i_eq], r[:i_eq], atol, rtol))  # the wall: r < r_eq, increasing r
    if r_data_min is not None:
        if out["r_softening"] is not None:
            out["softening_inside_data"] = bool(out["r_softening"] >= r_data_min)
        if out["r_non_monotonic"] is not None:
            out["non_monotonic_inside_data"] = bool(out["r_non_monotonic"] >= r_data_min)
    return out


def compression_flags(compression: Mapping, **kwargs) -> dict:
    """:func:`softening_flags` of a :func:`compression_curve`: is the crystal's wall under uniform
    compression monotonic and stiffening?

    The curve is read as a pair curve in the linear size per atom ``ℓ = v^{1/3}`` (Å, v the volume
    per atom): ``E(ℓ)`` the energy per atom and, from the model's exact pressure
    (P = −dE/dv, v = ℓ³),

        F(ℓ) = −dE/dℓ = 3 ℓ² P        (eV/Å per atom; > 0 under compression)

    so every flag means what it does for a dimer: ``no_wall`` (the energy keeps falling to the most
    compressed cell), ``non_monotonic`` (P < 0 inside the wall), ``softening`` (F drops somewhere as
    the cell shrinks). A physical equation of state never trips ``softening``: −dF/dℓ = 3ℓ(3B − 2P)
    with B the bulk modulus, positive since B ≥ B₀ + B′P > P. ``r_eq`` etc. are then linear sizes ℓ (Å);
    ``kwargs`` go to :func:`softening_flags` (tolerances).
    """
    v = np.asarray(compression["volume_per_atom_A3"], dtype=np.float64)
    ell = np.cbrt(v)
    force = 3.0 * ell**2 * np.asarray(compression["pressure_eV_per_A3"], dtype=np.float64)
    return softening_flags(ell, compression["energy_per_atom_eV"], force=force, **kwargs)


def _sorted_curve(r, E, force) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``r``, ``E`` sorted by r and ``F = −dE/dr`` (the given force, else finite differences), with
    the name of F's source."""
    r = np.asarray(r, dtype=np.float64)
    E = np.asarray(E, dtype=np.float64)
    if r.ndim != 1 or r.shape != E.shape or len(r) < 3:
        raise ValueError(f"r and E must be 1-D of equal length >= 3, got {r.shape} and {E.shape}")
    order = np.argsort(r)
    r, E = r[order], E[order]
    if np.any(np.diff(r) <= 0):
        raise ValueError("r has repeated values")
    if force is None:
        return r, E, -np.gradient(E, r), "finite_differences"
    return r, E, np.asarray(force, dtype=np.float64)[order], "force"


def _unflagged(r: np.ndarray, E: np.ndarray, i_eq: int, source: str, r_data_min: Optional[float], e_tol: float) -> dict[str, Any]:
    """:func:`softening_flags`' result before the wall is examined: the minimum (``r_eq``,
    ``E_min``, ``no_wall``, ``multiple_minima``) and every wall flag at its clean value."""
    from scipy.signal import find_peaks

    minima = find_peaks(-E, prominence=e_tol)[0]
    return {
        "derivative_source": source,
        "r_eq": float(r[i_eq]),
        "E_min": float(E[i_eq]),
        "n_wall_points": int(i_eq),
        "no_wall": bool(i_eq == 0),
        "minima_r": floats(r[minima]),
        "multiple_minima": bool(len(minima) > 1),
        "non_monotonic": False,
        "r_non_monotonic": None,
        "softening": False,
        "force_max_interior": False,
        "F_max": None,
        "r_at_F_max": None,
        "F_at_r_min": None,
        "force_drop": 0.0,
        "r_softening": None,
        "tol": None,
        "r_data_min": opt_float(r_data_min),
        "softening_inside_data": None,
        "non_monotonic_inside_data": None,
        "r_eq_below_data_min": None if r_data_min is None else bool(r[i_eq] < r_data_min),
    }


def _wall_flags(Fw: np.ndarray, rw: np.ndarray, atol: float, rtol: float) -> dict:
    """The wall's entries of :func:`softening_flags` from its forces ``Fw`` at ``rw`` (r < r_eq,
    increasing r); a flag is set only where a violation exceeds ``tol = atol + rtol · max|F_wall|``."""
    tol = float(atol + rtol * np.max(np.abs(Fw)))
    k_max = int(np.argmax(Fw))
    out = {
        "tol": tol,
        "F_max": float(Fw[k_max]),
        "r_at_F_max": float(rw[k_max]),
        "F_at_r_min": float(Fw[0]),
        "force_max_interior": bool(Fw[k_max] - Fw[0] > tol),
    }
    # dE/dr = −F > tol anywhere in the wall: E increases with r there.
    bad = np.flatnonzero(-Fw > tol)
    if len(bad):
        out["non_monotonic"] = True
        out["r_non_monotonic"] = float(rw[bad[-1]])

    # Walk inward from r_eq: the running maximum of F seen at larger r minus F here is the drop.
    inward = Fw[::-1]
    running_max = np.maximum.accumulate(inward)
    drops = running_max - inward
    k = int(np.argmax(drops))
    out["force_drop"] = float(drops[k])
    if drops[k] > tol:
        out["softening"] = True
        k_peak = int(np.argmax(inward[: k + 1]))
        out["r_softening"] = float(rw[::-1][k_peak])
    return out


def shortest_distance(frames: Any, start_cutoff: float = 3.0) -> float:
    """The shortest interatomic distance (Å) over a data set, minimum image / all periodic images.

    ``frames``: ``ase.Atoms``, :class:`~scalarjax.data.Configuration` or an iterable of them.
    Periodic self-images count (in a one-atom cell the shortest lattice vector is a distance).
    Neighbour lists only: the cutoff starts at ``start_cutoff`` and doubles for a frame with no
    pair inside it; once a distance d is known, later frames are searched only up to d (nothing
    longer can lower the minimum). ``inf`` when no frame has two atoms (or a periodic image).
    """
    best = np.inf
    for atoms in as_atoms_list(frames):
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        if len(atoms) == 0 or (len(atoms) == 1 and not pbc.any()):
            continue
        # An upper bound on this frame's shortest distance: a periodic self-image or the extent.
        bound = 0.0
        if pbc.any():
            bound = float(np.min(np.linalg.norm(np.asarray(atoms.cell)[pbc], axis=1)))
        if len(atoms) > 1:
            pos = atoms.get_positions()
            bound = max(bound, float(np.linalg.norm(pos.max(0) - pos.min(0))))
        cutoff = min(start_cutoff, best) if np.isfinite(best) else start_cutoff
        while True:
            _, _, d = pair_distances(atoms, cutoff)
            if len(d):
                best = min(best, float(d.min()))
                break
            if np.isfinite(best) and cutoff >= best:
                break  # nothing in this frame is shorter than the current minimum
            if cutoff > bound:
                break
            cutoff *= 2.0
            if np.isfinite(best):
                cutoff = min(cutoff, best)
    return float(best)


def plot_dimer_curves(results: Mapping, path, r_data_min: Optional[float] = None, ylim=None):
    """E(r) (top) and −dE/dr (bottom) of one ``dimer_curve`` result or ``{label: result}`` overlaid.

    ``r_data_min`` draws the data-range edge; ``ylim`` (eV) defaults to a window around the
    well (walls reach hundreds of eV). Returns the path written.
    """
    from ._plot import figure, labelled, legend, save

    runs = labelled(results, "force_eV_per_A")
    fig, axes = figure(2, 1, figsize=(6.0, 6.0), sharex=True)
    ax_e, ax_f = axes[0, 0], axes[1, 0]
    e_min = min(0.0, *(float(np.min(res["energy_eV"])) for res in runs.values()))
    if ylim is None:
        ylim = (1.2 * e_min - 0.2, max(2.0, -3.0 * e_min))
    f_lo, f_hi = 0.0, 1.0
    for label, res in runs.items():
        e, f = np.asarray(res["energy_eV"]), np.asarray(res["force_eV_per_A"])
        ax_e.plot(res["r"], e, label=label or None)
        ax_f.plot(res["r"], f, label=label or None)
        shown = e <= ylim[1]  # the force panel shows the same stretch of curve as the energy panel
        f_lo, f_hi = min(f_lo, float(f.min())), max(f_hi, float(f[shown].max()) if shown.any() else 1.0)
    ax_e.set_ylim(*ylim)
    ax_f.set_ylim(1.5 * f_lo - 0.1, 1.2 * f_hi)
    for ax in (ax_e, ax_f):
        ax.axhline(0.0, color="0.7", lw=0.8)
        if r_data_min is not None:
            ax.axvline(r_data_min, color="0.4", ls="--", lw=0.8, label="shortest distance in data" if ax is ax_e else None)
    ax_e.set_ylabel("E(r) − E(r_max) (eV)")
    ax_f.set_ylabel("−dE/dr (eV/Å)")
    ax_f.set_xlabel("r (Å)")
    pairs = {(res["z1"], res["z2"]) for res in runs.values()}
    if len(pairs) == 1:
        from ase.data import chemical_symbols

        z1, z2 = pairs.pop()
        ax_e.set_title(f"{chemical_symbols[z1]}–{chemical_symbols[z2]} dimer")
    legend(ax_e, list(runs) + ([r_data_min] if r_data_min is not None else []))
    return save(fig, path)


def plot_compression_curves(results: Mapping, path):
    """E per atom (top) and pressure in GPa (bottom) against volume per atom, results overlaid."""
    from ._plot import figure, labelled, legend, save

    runs = labelled(results, "pressure_GPa")
    fig, axes = figure(2, 1, figsize=(6.0, 6.0), sharex=True)
    for label, res in runs.items():
        axes[0, 0].plot(res["volume_per_atom_A3"], res["energy_per_atom_eV"], "o-", ms=3, label=label or None)
        axes[1, 0].plot(res["volume_per_atom_A3"], res["pressure_GPa"], "o-", ms=3, label=label or None)
    axes[1, 0].axhline(0.0, color="0.7", lw=0.8)
    axes[0, 0].set_ylabel("E per atom (eV)")
    axes[1, 0].set_ylabel("P (GPa)")
    axes[1, 0].set_xlabel("V per atom (Å³)")
    legend(axes[0, 0], list(runs))
    return save(fig, path)

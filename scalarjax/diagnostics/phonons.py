"""Harmonic phonons: phonopy (bands, DOS, Γ) and an independent finite-difference Γ check.

Frequencies are in THz, ``ν = √λ / 2π`` with ``λ`` an eigenvalue of the mass-weighted force-constant
matrix ``D = Φ / √(mᵢ mⱼ)`` (Φ in eV/Å², masses in amu); an unstable mode (λ < 0) is reported as a
negative frequency ``−√|λ| / 2π`` (phonopy's convention).

The structure is used as given: it should be at a stationary point of the model (relax it with the
model first). The residual forces of the undisplaced supercell are reported (a large value means
the frequencies belong to a non-stationary point) and subtracted from the displaced ones; with
phonopy's ± displacement pairs the subtraction changes nothing (the fit cancels a constant force),
but it keeps any one-sided displacement scheme right.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from ase import units

from ._common import floats

#: √(eV / (Å² amu)) in rad/s → THz (÷ 2π ÷ 10¹²): 15.6333, phonopy's factor for VASP/ASE units.
EV_A2_AMU_TO_THZ = math.sqrt(units._e / units._amu) * 1e10 / (2.0 * math.pi) / 1e12

#: Γ optical (Γ₂₅′, LTO) frequency of diamond Si in DFT-PBE at the PBE lattice constant
#: (a ≈ 5.47 Å, against 5.431 Å measured), THz. Representative value: PBE calculations (DFPT or
#: frozen phonons) at their own lattice constant give about 15.1–15.3 THz, below LDA and below
#: experiment, because GGA expands the lattice and the mode has a positive Grüneisen parameter
#: (Favot & Dal Corso, Phys. Rev. B 60, 11427 (1999), who find Si's GGA dispersion worse than
#: LDA's; He et al., Phys. Rev. B 89, 064305 (2014), a functional comparison including Si).
#: NOTE: 15.2 is the middle of that range, not a number transcribed from one table; quote the
#: specific table (functional, pseudopotential, lattice constant) before using it in a paper.
#: What matters for a model trained on PBE data (mlearn Si) is that the target is ≈15.2, not 15.5.
SI_DFT_PBE_GAMMA_OPTICAL_THZ = 15.2

#: Measured Γ optical frequency of Si, THz, from inelastic neutron scattering (Nilsson & Nelin,
#: Phys. Rev. B 6, 3777 (1972); earlier G. Dolling, in Inelastic Scattering of Neutrons in Solids
#: and Liquids (IAEA, Vienna, 1963), Vol. II, p. 37). The room-temperature Raman line,
#: ≈520 cm⁻¹ = 15.6 THz, agrees.
SI_EXPERIMENT_GAMMA_OPTICAL_THZ = 15.53

#: The standard fcc-lattice dispersion path (fcc metals, diamond, zincblende) in ASE's labels.
FCC_PATH = "GXU,KGL"


def _signed_frequencies(eigenvalues: np.ndarray) -> np.ndarray:
    ev = np.asarray(eigenvalues, dtype=np.float64)
    return np.sign(ev) * np.sqrt(np.abs(ev)) * EV_A2_AMU_TO_THZ


def gamma_frequencies_fd(calc, atoms, delta: float = 0.01) -> np.ndarray:
    """Γ-point frequencies ``[3N]`` (THz, ascending) of the cell from a finite-difference Hessian.

    Every atom is displaced by ±``delta`` Å along x, y, z and the force constants are the central
    differences ``Φ[(i,α),(j,β)] = −(F_jβ(+δ_iα) − F_jβ(−δ_iα)) / 2δ`` (error O(δ²)), symmetrised
    ``(Φ + Φᵀ)/2``, mass-weighted and diagonalised. Displacing atom i moves all its periodic
    images with it, so this is the Γ-point dynamical matrix of the cell *as a periodic crystal*:
    for a supercell of a primitive cell its spectrum is the union of the primitive cell's
    frequencies at the q-points commensurate with the supercell. No acoustic sum rule is imposed:
    the three acoustic modes come out ≈ 0 because the model is translation invariant (six ≈ 0 for a
    molecule). ``6N`` evaluations; independent of phonopy (no symmetry, no interpolation).
    """
    a = atoms.copy()
    a.calc = calc
    n = len(a)
    x0 = a.get_positions()
    masses = a.get_masses()
    hessian = np.empty((3 * n, 3 * n))
    for i in range(n):
        for alpha in range(3):
            forces = []
            for sign in (1.0, -1.0):
                x = x0.copy()
                x[i, alpha] += sign * delta
                a.positions = x
                forces.append(a.get_forces().reshape(-1))
            hessian[3 * i + alpha] = -(forces[0] - forces[1]) / (2.0 * delta)
    hessian = 0.5 * (hessian + hessian.T)
    inv_sqrt_m = 1.0 / np.sqrt(np.repeat(masses, 3))
    dynmat = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    return np.sort(_signed_frequencies(np.linalg.eigvalsh(dynmat)))


def _to_phonopy_atoms(atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        numbers=atoms.get_atomic_numbers(),
        cell=np.asarray(atoms.get_cell()),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),  # ASE's masses, so phonopy and the FD check weigh alike
    )


def _to_ase_atoms(patoms):
    from ase import Atoms

    return Atoms(numbers=patoms.numbers, cell=patoms.cell, scaled_positions=patoms.scaled_positions, pbc=True)


def _supercell_matrix(supercell) -> np.ndarray:
    m = np.asarray(supercell, dtype=np.int64)
    if m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or round(abs(np.linalg.det(m))) < 1:
        raise ValueError(f"supercell must be 3 integers or a non-singular 3x3 integer matrix, got {supercell!r}")
    return m


def _commensurate_qpoints(phonon) -> np.ndarray:
    """q-points (reduced, primitive reciprocal basis) where the supercell force constants are exact.

    With supercell rows ``A_sc = M A_prim``, q is commensurate iff ``M q`` is integer; phonopy's
    ``get_commensurate_points`` takes that matrix in its column convention, ``Mᵀ``.
    """
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    m_rows = np.rint(np.asarray(phonon.supercell.cell) @ np.linalg.inv(np.asarray(phonon.primitive.cell))).astype(np.int64)
    q = np.asarray(get_commensurate_points(m_rows.T))
    if len(q) != round(abs(np.linalg.det(m_rows))) or not np.allclose(q @ m_rows.T, np.rint(q @ m_rows.T), atol=1e-8):
        raise RuntimeError(f"commensurate q-points inconsistent with the supercell matrix {m_rows.tolist()}")
    return q


def _gamma_modes(phonon) -> tuple[np.ndarray, np.ndarray]:
    """Γ frequencies (ascending) and the indices of the three acoustic modes among them.

    The acoustic modes are the three whose eigenvectors overlap most with rigid translations
    (``√mᵢ`` along x, y, z in the mass-weighted basis), not simply the three lowest: in an
    unstable structure an optical mode can lie below them (negative).
    """
    gamma = phonon.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    freqs, vecs = np.asarray(gamma.frequencies[0]), np.asarray(gamma.eigenvectors[0])
    order = np.argsort(freqs)
    freqs, vecs = freqs[order], vecs[:, order]
    sqrt_m = np.sqrt(np.asarray(phonon.primitive.masses))
    translations = np.kron(sqrt_m[:, None], np.eye(3)) / np.linalg.norm(sqrt_m)  # [3N, 3], orthonormal
    overlap = np.sum(np.abs(translations.T @ vecs) ** 2, axis=0)
    acoustic = np.sort(np.argsort(-overlap)[:3])
    return freqs, acoustic


def _band_segments(primitive_cell, band_path) -> tuple[str, list[list[str]], dict]:
    """(path string, [[label, ...] per continuous piece], {label: reduced q}) from ASE's special points.

    ``"auto"``: Γ-X-U|K-Γ-L for an fcc lattice, else ASE's default path for the Bravais lattice
    (Setyawan–Curtarolo). ASE instead of seekpath: always available and the same path on every
    machine, whatever optional packages are installed. ASE maps the special points onto the given
    cell, so they are reduced coordinates of *this* primitive cell's reciprocal basis, which is
    what phonopy expects.
    """
    from ase.cell import Cell
    from ase.dft.kpoints import parse_path_string

    cell = Cell(np.asarray(primitive_cell))
    if band_path == "auto":
        lattice = cell.get_bravais_lattice()
        band_path = FCC_PATH if lattice.name == "FCC" else lattice.special_path
    bandpath = cell.bandpath(band_path, npoints=0)
    return band_path, parse_path_string(band_path), dict(bandpath.special_points)


def _band_structure(phonon, band_path, npoints: int) -> dict:
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    path, pieces, special = _band_segments(phonon.primitive.cell, band_path)
    q_paths = [[special[label] for label in piece] for piece in pieces]
    qpoints, connections = get_band_qpoints_and_path_connections(q_paths, npoints=npoints)
    phonon.run_band_structure(qpoints, path_connections=connections)
    bands = phonon.band_structure
    segment_labels = [(piece[k], piece[k + 1]) for piece in pieces for k in range(len(piece) - 1)]
    segments = [
        {"start": s, "end": e, "qpoints": floats(q), "distances": floats(d), "frequencies_THz": floats(f)}
        for (s, e), q, d, f in zip(segment_labels, bands.qpoints, bands.distances, bands.frequencies)
    ]
    return {"path": path, "npoints": int(npoints), "segments": segments}


def _force_constants(calc, unitcell, supercell, displacement: float, symmetrize: bool):
    """phonopy's finite-displacement force constants of ``unitcell`` with ``calc`` → (the Phonopy
    object, the bookkeeping entries of :func:`phonons`' result).

    The forces of the undisplaced supercell (the residual: nonzero away from a stationary point)
    are subtracted from every displaced one.
    """
    try:
        from phonopy import Phonopy
    except ImportError as exc:  # pragma: no cover - phonopy becomes a declared dependency
        raise ImportError("scalarjax.diagnostics.phonons needs phonopy (pip install phonopy)") from exc

    if not np.all(unitcell.get_pbc()):
        raise ValueError("phonons needs a fully periodic unit cell")
    smat = _supercell_matrix(supercell)
    with warnings.catch_warnings():
        # "auto" is our explicit choice; phonopy ≥4 warns that it differs from its v3 default.
        warnings.filterwarnings("ignore", message=".*primitive_matrix.*")
        phonon = Phonopy(_to_phonopy_atoms(unitcell), supercell_matrix=smat, primitive_matrix="auto")
    phonon.generate_displacements(distance=displacement, is_plusminus="auto")

    def forces_of(patoms) -> np.ndarray:
        a = _to_ase_atoms(patoms)
        a.calc = calc
        return np.asarray(a.get_forces(), dtype=np.float64)

    residual = forces_of(phonon.supercell)
    phonon.forces = np.array([forces_of(sc) - residual for sc in phonon.supercells_with_displacements])
    phonon.produce_force_constants(show_drift=False)
    if symmetrize:
        phonon.symmetrize_force_constants(show_drift=False)
    return phonon, {
        "n_atoms_primitive": int(len(phonon.primitive)),
        "n_atoms_supercell": int(len(phonon.supercell)),
        "n_displacements": int(len(phonon.supercells_with_displacements)),
        "supercell_matrix": smat.tolist(),
        "displacement_A": float(displacement),
        "max_residual_force_eV_per_A": float(np.max(np.linalg.norm(residual, axis=1))),
    }


def _gamma_entries(gamma: np.ndarray, acoustic: np.ndarray, n_prim: int) -> dict:
    """Γ frequencies (THz), the three acoustic ones and the highest optical one (``None`` when the
    primitive cell has one atom: no optical branch)."""
    return {
        "gamma_THz": floats(gamma),
        "gamma_acoustic_THz": floats(gamma[acoustic]),
        "gamma_optical_THz": float(np.max(np.delete(gamma, acoustic))) if n_prim > 1 else None,
    }


def _total_dos(phonon, mesh: Sequence[int]) -> tuple[dict, np.ndarray]:
    """Total DOS on a Γ-centred q-mesh (tetrahedron method) → (the ``dos`` entry, the mesh's frequencies)."""
    phonon.run_mesh(list(mesh), is_gamma_center=True)  # a shifted even mesh breaks the point group
    phonon.run_total_dos()
    frequencies = phonon.mesh.frequencies
    total = phonon.total_dos
    dos = {"frequencies_THz": floats(total.frequency_points), "states_per_THz": floats(total.dos), "mesh": [int(m) for m in mesh]}
    return dos, frequencies


def _lowest_frequency(gamma, commensurate, bands: Optional[dict], mesh_frequencies) -> float:
    """The lowest frequency (THz) seen anywhere: Γ, the commensurate q-points, the bands, the DOS mesh."""
    lowest = [float(gamma.min()), float(commensurate.min())]
    if bands is not None:
        lowest.append(min(float(np.min(s["frequencies_THz"])) for s in bands["segments"]))
    if mesh_frequencies is not None:
        lowest.append(float(np.min(mesh_frequencies)))
    return float(min(lowest))


def phonons(
    calc,
    unitcell,
    supercell: Union[Sequence[int], Sequence[Sequence[int]]] = (2, 2, 2),
    displacement: float = 0.01,
    mesh: Optional[Sequence[int]] = (16, 16, 16),
    band_path: Optional[str] = "auto",
    npoints: int = 51,
    symmetrize: bool = True,
) -> dict:
    """Harmonic phonons of a crystal with phonopy's finite-displacement method.

    ``unitcell`` (ase.Atoms, periodic) is reduced to its primitive cell by phonopy
    (``primitive_matrix="auto"``); ``supercell`` (3 integers or a 3x3 integer matrix S relative
    to ``unitcell``, phonopy's column convention: supercell rows = ``S.T @ unitcell.cell``, i.e.
    ``ase.build.make_supercell(unitcell, S.T)``) sets the range of the force constants. Displacements of ``displacement`` Å are
    symmetry-reduced; phonopy adds the −δ partner wherever symmetry does not make it redundant, so
    the force constants are effectively central differences. Residual forces of the undisplaced
    supercell are subtracted. ``symmetrize``: phonopy's translational-invariance and permutation
    symmetrisation of the force constants.

    ``band_path``: ``"auto"`` (Γ-X-U|K-Γ-L for fcc lattices such as diamond Si, else ASE's default
    path of the Bravais lattice), a path of ASE special-point letters (``"GXWKGLUWLK,UX"``,
    comma = break), or ``None`` for no bands; ``npoints`` per segment. ``mesh``: q-mesh of the
    total DOS (tetrahedron method), or ``None``.

    Returns (THz throughout):

    * ``gamma_THz``: the 3·N_prim frequencies at Γ, ascending; ``gamma_acoustic_THz``: the three
      acoustic ones (≈ 0; identified by their overlap with rigid translations);
      ``gamma_optical_THz``: the highest non-acoustic Γ frequency (the triply degenerate optical
      mode of diamond Si; negative if unstable; ``None`` for a one-atom primitive cell);
    * ``commensurate_qpoints`` and ``commensurate_frequencies_THz`` (all of them, ascending): the
      q-points commensurate with the supercell, where the force constants are exact rather than
      Fourier-interpolated; the latter equal ``gamma_frequencies_fd`` of the supercell;
    * ``bands``: ``{"path", "npoints", "segments": [{"start", "end", "qpoints", "distances"
      (1/Å, no 2π), "frequencies_THz" [npoints][3N_prim]}]}``;
    * ``dos``: ``{"frequencies_THz", "states_per_THz", "mesh"}``, normalised to 3·N_prim states;
    * ``min_frequency_THz``: the lowest frequency seen anywhere (negative = unstable);
    * bookkeeping: ``n_atoms_primitive``, ``n_atoms_supercell``, ``n_displacements``,
      ``supercell_matrix``, ``displacement_A``, ``max_residual_force_eV_per_A``.
    """
    phonon, out = _force_constants(calc, unitcell, supercell, displacement, symmetrize)
    gamma, acoustic = _gamma_modes(phonon)
    qpoints = _commensurate_qpoints(phonon)
    commensurate = np.sort(np.asarray(phonon.run_qpoints(qpoints).frequencies).reshape(-1))
    bands = None if band_path is None else _band_structure(phonon, band_path, npoints)
    dos, mesh_frequencies = (None, None) if mesh is None else _total_dos(phonon, mesh)
    return {
        **out,
        **_gamma_entries(gamma, acoustic, len(phonon.primitive)),
        "commensurate_qpoints": floats(qpoints),
        "commensurate_frequencies_THz": floats(commensurate),
        "min_frequency_THz": _lowest_frequency(gamma, commensurate, bands, mesh_frequencies),
        "bands": bands,
        "dos": dos,
    }


_GREEK = {"G": "Γ"}


def _draw_bands(ax, with_bands: dict, color_of: dict) -> None:
    """Every result's branches on ``ax``, each segment stretched onto the first result's segment
    length (results relaxed to different lattice constants line up at the special points)."""
    ref = next(iter(with_bands.values()))["bands"]
    starts, x = [], 0.0
    for seg in ref["segments"]:
        starts.append(x)
        x += seg["distances"][-1] - seg["distances"][0]
    for label, res in with_bands.items():
        segs = res["bands"]["segments"]
        if [(s["start"], s["end"]) for s in segs] != [(s["start"], s["end"]) for s in ref["segments"]]:
            raise ValueError(f"result {label!r} follows another band path; cannot overlay")
        for k, (seg, ref_seg) in enumerate(zip(segs, ref["segments"])):
            d = np.asarray(seg["distances"])
            span = d[-1] - d[0]
            ref_span = ref_seg["distances"][-1] - ref_seg["distances"][0]
            xs = starts[k] + (d - d[0]) / (span if span > 0 else 1.0) * ref_span
            lines = ax.plot(xs, seg["frequencies_THz"], color=color_of[label], lw=1.0)
            if k == 0 and label:
                lines[0].set_label(label)  # one legend entry per result, not per branch
    _special_point_ticks(ax, ref["segments"], starts)


def _special_point_ticks(ax, segments: list, starts: list) -> None:
    """Special-point labels and vertical lines at the segment ends; a break in the path (a segment
    that does not start where the previous one ended) shares one tick, labelled ``"K|U"``."""
    ticks, names = [], []
    for k, seg in enumerate(segments):
        end_x = starts[k] + seg["distances"][-1] - seg["distances"][0]
        start_name = _GREEK.get(seg["start"], seg["start"])
        if k == 0:
            ticks.append(starts[k])
            names.append(start_name)
        elif segments[k - 1]["end"] != seg["start"]:
            names[-1] = f"{names[-1]}|{start_name}"
        ticks.append(end_x)
        names.append(_GREEK.get(seg["end"], seg["end"]))
    ax.set_xticks(ticks, names)
    for t in ticks:
        ax.axvline(t, color="0.8", lw=0.8)
    ax.set_xlim(ticks[0], ticks[-1])


def plot_phonon_bands(results: Mapping, path, reference_THz: Optional[Mapping[str, float]] = None):
    """Dispersion (left) and total DOS (right) of one ``phonons`` result or ``{label: result}`` overlaid.

    Every result must follow the same special-point path; each segment is drawn on the first
    result's segment length, so models relaxed to slightly different lattice constants still
    line up at the special points. ``reference_THz``: horizontal lines, e.g.
    ``{"PBE Γ optical": SI_DFT_PBE_GAMMA_OPTICAL_THZ}``. Returns the path written.
    """
    from ._plot import figure, labelled, save

    runs = labelled(results, "gamma_THz")
    with_bands = {k: v for k, v in runs.items() if v.get("bands")}
    with_dos = {k: v for k, v in runs.items() if v.get("dos")}
    if not with_bands and not with_dos:
        raise ValueError("no band structure or DOS in the results")
    fig, axes = figure(1, 2, figsize=(8.0, 4.5), sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    ax_b, ax_d = axes[0, 0], axes[0, 1]
    colors = [f"C{k}" for k in range(len(runs))]
    color_of = dict(zip(runs, colors))

    if with_bands:
        _draw_bands(ax_b, with_bands, color_of)
    ax_b.axhline(0.0, color="0.6", lw=0.8)
    for name, value in (reference_THz or {}).items():
        ax_b.axhline(value, color="k", ls=":", lw=1.0, label=name)
    ax_b.set_ylabel("frequency (THz)")
    if any(runs) or reference_THz:
        ax_b.legend(fontsize="small", loc="lower right")

    for label, res in with_dos.items():
        ax_d.plot(res["dos"]["states_per_THz"], res["dos"]["frequencies_THz"], color=color_of[label], lw=1.0)
    ax_d.set_xlabel("DOS (1/THz)")
    ax_d.set_xlim(left=0.0)
    return save(fig, path)

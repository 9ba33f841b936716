"""Physical diagnostics (``scalarjax.diagnostics``), each checked against an independent or exact answer.

* phonons: phonopy's frequencies against a brute-force finite-difference Hessian of the same
  periodic cell. Exact relation used: displacing an atom of a periodic cell moves all its images,
  so the FD Hessian of a cell C is its Γ-point dynamical matrix, whose spectrum is the union of the
  primitive cell's frequencies over the q-points commensurate with C. Hence (a) phonopy's Γ
  frequencies from any supercell = FD of the primitive cell, and (b) phonopy's frequencies at the
  supercell-commensurate q-points = FD of the supercell (there its force constants are exact, no
  interpolation). Both hold to O(δ²) of the central differences, for any range of the potential.
* dimer / compression: forces against finite differences of the energies along the curve,
  pressure against −dE/dV, the separated-limit reference against isolated atoms.
* softening flags: analytic curves (Lennard-Jones, a soft-core wall, holes).
* RDF: an ideal gas (g = (N−1)/N, r_max beyond half the cell) and perfect lattices (peak positions,
  coordination numbers 12, 6, 24, 12 of fcc; 4 of diamond; pair-resolved rock salt).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.spacegroup import crystal
from conftest import TINY

from scalarjax.diagnostics import (
    SI_DFT_PBE_GAMMA_OPTICAL_THZ,
    compression_curve,
    dimer_curve,
    first_peak,
    gamma_frequencies_fd,
    phonons,
    plot_compression_curves,
    plot_dimer_curves,
    plot_phonon_bands,
    plot_rdfs,
    rdf,
    shortest_distance,
    softening_flags,
)

# conftest's TINY MACE with Si only (float64; conftest switches x64 on).
TINY_SI = {**TINY, "atomic_numbers": (14,), "atomic_energies": (-3.5,)}


@pytest.fixture(scope="module")
def tiny_si():
    """One calculator for the module. The 16-atom supercell is evaluated first, so the padded
    shape it allocates serves every smaller periodic cell: one compilation."""
    import scalarjax

    return scalarjax.Calculator.from_config(TINY_SI, seed=1)


@pytest.fixture(scope="module")
def si_phonons(tiny_si):
    prim = bulk("Si", "diamond", a=5.43)
    return prim, phonons(tiny_si, prim, supercell=(2, 2, 2), mesh=(8, 8, 8), npoints=11)


def assert_spectra_close(a, b, rtol=1e-3):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = np.max(np.abs(b))
    assert scale > 0.3  # THz: a real spectrum, not all zeros
    assert np.max(np.abs(a - b)) <= rtol * scale, np.max(np.abs(a - b))


# ----------------------------------------------------------------------------------- phonons


def test_phonopy_gamma_and_commensurate_match_fd_tiny_si(tiny_si, si_phonons):
    prim, res = si_phonons
    assert res["n_atoms_primitive"] == 2 and res["n_atoms_supercell"] == 16
    json.dumps(res)  # plain floats and lists

    # (b) the 8 q-points commensurate with 2x2x2 against the 48 Γ modes of the 16-atom supercell.
    assert len(res["commensurate_qpoints"]) == 8
    fd_super = gamma_frequencies_fd(tiny_si, prim.repeat((2, 2, 2)))
    assert_spectra_close(res["commensurate_frequencies_THz"], fd_super)
    # (a) Γ from the supercell force constants against the primitive cell's own FD Hessian.
    fd_prim = gamma_frequencies_fd(tiny_si, prim)
    assert_spectra_close(res["gamma_THz"], fd_prim)

    # Three acoustic modes ≈ 0 in both; the optical triplet is the rest. The untrained model makes
    # diamond unstable, so the optical mode is imaginary (negative) and lies *below* the acoustic
    # ones: identified by the eigenvectors, not as the three lowest.
    assert np.max(np.abs(res["gamma_acoustic_THz"])) < 1e-3
    assert np.sum(np.abs(fd_prim) < 1e-3) == 3
    optical = np.sort(fd_prim)[np.abs(np.sort(fd_prim)) > 1e-3]
    assert len(optical) == 3 and np.ptp(optical) < 1e-6 * np.max(np.abs(optical))  # triply degenerate
    assert res["gamma_optical_THz"] == pytest.approx(np.max(optical), rel=1e-3)
    assert res["min_frequency_THz"] <= res["gamma_optical_THz"]


def test_phonon_bands_and_dos_are_consistent(si_phonons):
    _, res = si_phonons
    bands = res["bands"]
    assert bands["path"] == "GXU,KGL"  # the fcc-lattice fallback (no seekpath needed)
    assert [(s["start"], s["end"]) for s in bands["segments"]] == [("G", "X"), ("X", "U"), ("K", "G"), ("G", "L")]
    first = bands["segments"][0]
    assert np.allclose(first["qpoints"][0], 0.0) and np.allclose(first["qpoints"][-1], [0.5, 0.0, 0.5])
    assert np.allclose(np.sort(first["frequencies_THz"][0]), res["gamma_THz"], atol=1e-6)
    # |ΓX| = 1/a for the fcc lattice (phonopy's distances carry no 2π).
    assert first["distances"][-1] - first["distances"][0] == pytest.approx(1 / 5.43, rel=1e-9)
    dos = res["dos"]
    integral = np.trapezoid(dos["states_per_THz"], dos["frequencies_THz"])
    assert integral == pytest.approx(3 * res["n_atoms_primitive"], rel=0.02)  # 3N states per cell


def test_phonopy_commensurate_non_diagonal_supercell(tiny_si):
    """Conventional cubic Si (8 atoms) as phonopy's unit and supercell: the primitive → supercell
    matrix is non-diagonal ([[-1,1,1],[1,-1,1],[1,1,-1]]); commensurate q = Γ and the three X."""
    conv = bulk("Si", "diamond", a=5.43, cubic=True)
    res = phonons(tiny_si, conv, supercell=(1, 1, 1), mesh=None, band_path=None)
    assert res["n_atoms_primitive"] == 2 and res["bands"] is None and res["dos"] is None
    q = np.abs(np.asarray(res["commensurate_qpoints"]))
    assert len(q) == 4 and np.allclose(np.sort(np.sum(q, axis=1)), [0.0, 1.0, 1.0, 1.0])
    assert_spectra_close(res["commensurate_frequencies_THz"], gamma_frequencies_fd(tiny_si, conv))


@pytest.mark.filterwarnings("ignore:.*Point group symmetries of supercell")  # expected for this S
def test_phonopy_commensurate_non_symmetric_supercell_matrix(tiny_si):
    """A non-symmetric supercell matrix S pins the transposition conventions: phonopy's supercell
    is ``make_supercell(prim, S.T)`` and its commensurate q must satisfy (S.T) q ∈ Z³."""
    from ase.build import make_supercell

    prim = bulk("Si", "diamond", a=5.43)
    s = np.array([[2, 1, 0], [0, 1, 0], [0, 0, 1]])  # commensurate q: Γ and (½, ½, 0); with S (not Sᵀ): (½, 0, 0)
    res = phonons(tiny_si, prim, supercell=s, mesh=None, band_path=None)
    assert res["n_atoms_supercell"] == 4
    assert np.allclose(np.abs(res["commensurate_qpoints"]), [[0, 0, 0], [0.5, 0.5, 0]])
    assert_spectra_close(res["commensurate_frequencies_THz"], gamma_frequencies_fd(tiny_si, make_supercell(prim, s.T)))


def test_phonons_off_equilibrium(tiny_si):
    """Atom 1 moved along [111] (C3v kept): nonzero residual forces, reported, and the harmonic
    frequencies still agree with the central-difference Hessian, which is blind to them."""
    prim = bulk("Si", "diamond", a=5.43)
    prim.positions[1] += 0.05 * np.ones(3) / np.sqrt(3)
    res = phonons(tiny_si, prim, supercell=(1, 1, 1), mesh=None, band_path=None)
    assert res["max_residual_force_eV_per_A"] > 1e-3
    assert_spectra_close(res["gamma_THz"], gamma_frequencies_fd(tiny_si, prim))


def test_phonons_emt_stable_metals():
    """A stable potential: fcc Cu (one atom, no optical mode) and L1₂ Cu₃Au (optical modes > 0)."""
    cu = bulk("Cu", "fcc", a=3.6)
    res = phonons(EMT(), cu, supercell=(3, 3, 3), mesh=(8, 8, 8), npoints=5)
    assert res["gamma_optical_THz"] is None and len(res["gamma_THz"]) == 3
    assert_spectra_close(res["commensurate_frequencies_THz"], gamma_frequencies_fd(EMT(), cu.repeat(3)))
    assert res["min_frequency_THz"] > -1e-3 and 4.0 < np.max(res["commensurate_frequencies_THz"]) < 12.0

    cu3au = crystal(["Au", "Cu"], basis=[(0, 0, 0), (0, 0.5, 0.5)], spacegroup=221, cellpar=[3.75] * 3 + [90] * 3)
    res = phonons(EMT(), cu3au, supercell=(2, 2, 2), mesh=None, band_path="GXMGR")  # simple-cubic path
    fd = gamma_frequencies_fd(EMT(), cu3au)
    assert_spectra_close(res["gamma_THz"], fd)
    assert res["gamma_optical_THz"] == pytest.approx(fd[-1], rel=1e-3) and fd[3] > 1.0
    assert [s["start"] for s in res["bands"]["segments"]] == ["G", "X", "M", "G"]


# --------------------------------------------------------------------- dimers and compression


def test_dimer_curve_emt_forces_match_energy_differences():
    res = dimer_curve(EMT(), 29, 29, r_min=0.5, r_max=6.0, n=551)  # 0.01 Å spacing
    json.dumps(res)
    r, e, f = (np.asarray(res[k]) for k in ("r", "energy_eV", "force_eV_per_A"))
    assert e[-1] == 0.0 and res["E_ref_eV"] == pytest.approx(res["E_atoms_eV"], abs=1e-12)  # EMT cutoff < 6 Å
    f_fd = -np.gradient(e, r)
    assert np.all(np.abs(f - f_fd)[1:-1] <= 2e-3 * np.abs(f[1:-1]) + 2e-3)
    assert f[0] > 100.0 and e.min() < -1.0 and np.any(f < -0.1)  # a wall, a well, attraction beyond it
    flags = softening_flags(r, e, force=f)
    assert not (flags["softening"] or flags["non_monotonic"] or flags["no_wall"] or flags["multiple_minima"])


def test_dimer_curve_tiny_model_reaches_separated_limit(tiny_si):
    res = dimer_curve(tiny_si, 14, 14, r_min=0.8, r_max=6.0, n=53)  # r_max beyond the 3.5 Å cutoff
    r, e, f = (np.asarray(res[k]) for k in ("r", "energy_eV", "force_eV_per_A"))
    assert res["E_ref_eV"] == pytest.approx(res["E_atoms_eV"], abs=1e-10) and res["E_atoms_eV"] < -1.0
    assert np.all(e[r >= 3.5] == pytest.approx(0.0, abs=1e-10))
    f_fd = -np.gradient(e, r)  # 0.1 Å spacing: a coarse grid, so a loose but meaningful tolerance
    inner = slice(1, -1)
    assert np.max(np.abs(f - f_fd)[inner]) <= 0.05 * np.max(np.abs(f)) and np.max(np.abs(f)) > 1e-2


def test_compression_curve_emt_pressure():
    res = compression_curve(EMT(), bulk("Cu", "fcc", a=3.6))
    json.dumps(res)
    v, e, p, p_gpa = (np.asarray(res[k]) for k in ("volume_per_atom_A3", "energy_per_atom_eV", "pressure_eV_per_A3", "pressure_GPa"))
    assert np.allclose(v, 3.6**3 / 4 * np.asarray(res["scales"]) ** 3)
    assert p_gpa[0] > 100.0 and p_gpa[-1] < 0.0  # compressed → positive pressure; stretched → negative
    assert np.allclose(p_gpa, p * 160.21766, rtol=1e-6)
    p_fd = -np.gradient(e, v)  # P = −dE/dV
    assert np.max(np.abs(p - p_fd)[1:-1]) <= 0.01 * np.max(np.abs(p))
    assert res["scale_at_min_energy"] == pytest.approx(1.0, abs=0.02)


# ------------------------------------------------------------------------- softening flags

SIGMA, EPS = 2.2, 1.0


def lj(r):
    x = (SIGMA / r) ** 6
    return 4 * EPS * (x * x - x), 4 * EPS * (12 * x * x - 6 * x) / r  # E, −dE/dr


def soft_core(r, r_c=1.8, p=6):
    """LJ at the soft-core distance ρ = (rᵖ + r_cᵖ)^(1/p): finite at r = 0, force → 0 there."""
    rho = (r**p + r_c**p) ** (1 / p)
    e, f_rho = lj(rho)
    return e, f_rho * (r / rho) ** (p - 1)


def with_gaussian(r, depth, r0, width):
    """LJ minus a Gaussian dip of ``depth`` eV at ``r0``."""
    e, f = lj(r)
    gauss = depth * np.exp(-(((r - r0) / width) ** 2))
    return e - gauss, f - gauss * 2 * (r - r0) / width**2


R = np.linspace(1.4, 8.0, 331)  # 0.02 Å


def test_lennard_jones_wall_is_clean():
    for force in (None, lj(R)[1]):
        out = softening_flags(R, lj(R)[0], r_data_min=2.0, force=force)
        json.dumps(out)
        assert out["r_eq"] == pytest.approx(2 ** (1 / 6) * SIGMA, abs=0.011) and out["E_min"] == pytest.approx(-EPS, abs=1e-3)
        assert not (out["softening"] or out["non_monotonic"] or out["no_wall"] or out["multiple_minima"])
        assert out["r_at_F_max"] == R[0] and out["force_drop"] == 0.0
        assert out["softening_inside_data"] is None and out["r_eq_below_data_min"] is False


def test_soft_core_wall_is_flagged_softening():
    e, f = soft_core(R)
    wall = R < 2.4  # the minimum is at ρ = 2^(1/6)σ, i.e. r = ((2^(1/6)σ)⁶ − r_c⁶)^(1/6) ≈ 2.40 Å
    r_peak, drop = R[np.argmax(np.where(wall, f, -np.inf))], np.max(f[wall]) - f[0]  # analytic answers
    # The one-sided difference at the first point is the slope at its midpoint with the next one.
    drop_fd = np.max(f[wall]) - soft_core(np.array([0.5 * (R[0] + R[1])]))[1][0]
    assert drop > 1.0
    for force, expected_drop in ((None, drop_fd), (f, drop)):
        out = softening_flags(R, e, r_data_min=1.2, force=force)
        assert out["softening"] and out["force_max_interior"] and not out["non_monotonic"]
        assert not out["no_wall"] and not out["multiple_minima"]
        assert out["r_softening"] == pytest.approx(r_peak, abs=0.025) and out["r_at_F_max"] == out["r_softening"]
        assert out["force_drop"] == pytest.approx(expected_drop, rel=0.02)
        assert out["softening_inside_data"] is True  # data reach 1.2 Å: the model was trained there
    assert softening_flags(R, e, r_data_min=2.2)["softening_inside_data"] is False  # an extrapolation defect


def test_holes_are_flagged():
    # A shallow hole inside the wall (its bottom stays above the bond well): non-monotonic wall.
    e, f = with_gaussian(R, depth=25.0, r0=1.8, width=0.06)
    assert e[np.argmin(np.abs(R - 1.8))] > -EPS  # the well stays the global minimum
    out = softening_flags(R, e, r_data_min=1.9)
    assert out["non_monotonic"] and out["softening"] and out["multiple_minima"]
    assert 1.7 < out["r_non_monotonic"] < 1.95 and out["non_monotonic_inside_data"] is False
    assert out["r_eq"] == pytest.approx(2 ** (1 / 6) * SIGMA, abs=0.03)
    # A hole deeper than the well becomes r_eq itself; the extra minimum and the data range expose it.
    e, f = with_gaussian(R, depth=200.0, r0=1.6, width=0.1)
    out = softening_flags(R, e, r_data_min=2.0, force=f)
    assert out["r_eq"] < 1.7 and out["multiple_minima"] and out["r_eq_below_data_min"] is True
    # Collapse: E falls all the way to the shortest distance.
    out = softening_flags(R, lj(R)[0] - 1e6 * np.exp(-3 * R))
    assert out["no_wall"] and out["n_wall_points"] == 0


# ---------------------------------------------------------------------- shortest distance


def test_shortest_distance():
    from scalarjax.data import Configuration

    fcc = bulk("Ag", "fcc", a=4.09)  # one atom: the nearest neighbour is a periodic self-image
    assert shortest_distance(fcc) == pytest.approx(4.09 / np.sqrt(2), rel=1e-12)
    rng = np.random.default_rng(0)
    molecule = Atoms("C6", positions=rng.normal(size=(6, 3)) * 1.5)  # open boundaries, no cell
    d = molecule.get_all_distances()[np.triu_indices(6, 1)].min()
    far = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 7.3]])  # beyond the first cutoff: it must grow
    assert shortest_distance(far) == pytest.approx(7.3)
    frames = [fcc, Configuration.from_atoms(molecule), far, Atoms("Ar")]
    assert shortest_distance(frames) == pytest.approx(min(d, 4.09 / np.sqrt(2)), rel=1e-12)
    rattled = bulk("Ag", "fcc", a=4.09, cubic=True).repeat(2)
    rattled.rattle(0.1, seed=1)
    assert shortest_distance(rattled) == pytest.approx(rattled.get_all_distances(mic=True)[np.triu_indices(32, 1)].min())


# -------------------------------------------------------------------------------------- RDF


def test_rdf_ideal_gas():
    n, box, n_frames, r_max = 150, 12.0, 40, 9.0  # r_max beyond half the cell: images matter
    rng = np.random.default_rng(7)
    frames = [Atoms(numbers=np.full(n, 18), positions=rng.uniform(0, box, (n, 3)), cell=np.eye(3) * box, pbc=True) for _ in range(n_frames)]
    res = rdf(frames, r_max=r_max, nbins=60)
    json.dumps(res)
    r, g = np.asarray(res["r"]), np.asarray(res["g"])
    expected = (n - 1) / n  # ρ = N/V normalisation, no self-image below the cell edge
    edges = np.linspace(0, r_max, 61)
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)

    def pooled(sel):  # count-weighted mean of g over the selected bins
        return np.sum(g[sel] * shell[sel]) / np.sum(shell[sel])

    # ~7·10⁵ independent pairs: σ ≈ 0.12 %, so the 0.67 % of a (N−1)/N-vs-1 slip would show.
    sel = r > 1.0
    assert abs(pooled(sel) / expected - 1) < 4e-3
    assert abs(pooled(r > box / 2) / expected - 1) < 5e-3  # beyond the minimum-image range
    # Per-bin statistics: ordered pairs count each unordered pair twice → variance 2·expected.
    expected_counts = n_frames * n * (n - 1) / box**3 * shell
    counts = g * n_frames * n * n / box**3 * shell
    z = (counts - expected_counts) / np.sqrt(2 * expected_counts)
    assert np.max(np.abs(z[sel])) < 4.5
    assert res["rho"] == pytest.approx(n / box**3) and res["n_frames"] == n_frames


@pytest.mark.parametrize("cubic", [False, True])
def test_rdf_fcc_lattice(cubic):
    a = 4.09
    res = rdf(bulk("Ag", "fcc", a=a, cubic=cubic), r_max=6.0, nbins=600)  # 1 or 4 atoms, r_max ≫ cell/2
    r, g, coordination = (np.asarray(res[k]) for k in ("r", "g", "coordination"))
    shells = a * np.sqrt([0.5, 1.0, 1.5, 2.0])
    assert np.allclose(r[g > 0], shells, atol=0.005)  # only the four shells, each in its bin
    assert res["first_peak_r"] == pytest.approx(a / np.sqrt(2), abs=0.005)
    assert res["closest_approach"] == pytest.approx(a / np.sqrt(2), rel=1e-12)
    rho = res["rho"]
    assert rho == pytest.approx(4 / a**3)
    for r_cut, n_expected in ((3.5, 12), (4.5, 18), (5.4, 42), (5.95, 54)):  # shells of 12, 6, 24, 12
        inside = r < r_cut
        assert 4 * np.pi * rho * np.sum(r[inside] ** 2 * g[inside] * 0.01) == pytest.approx(n_expected, rel=1e-4)
        assert coordination[inside][-1] == pytest.approx(n_expected, abs=1e-9)


def test_rdf_pairs_and_diamond_first_peak():
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    unlike = rdf(nacl, r_max=5.0, nbins=500, pair=(11, 17))
    like = rdf(nacl, r_max=5.0, nbins=500, pair=(11, 11))
    assert unlike["first_peak_r"] == pytest.approx(2.82, abs=0.006) and like["first_peak_r"] == pytest.approx(3.988, abs=0.006)
    r = np.asarray(unlike["r"])
    k = np.searchsorted(r, 3.3)
    assert unlike["coordination"][k] == pytest.approx(6) and like["coordination"][k] == 0.0
    assert rdf(nacl, r_max=5.0, nbins=500, pair=(17, 11))["g"] == unlike["g"]  # g_AB = g_BA here
    # Diamond: the second shell (12 at 3.84 Å) has the higher g peak; the first (4 at 2.35 Å) is found.
    si = rdf(bulk("Si", "diamond", a=5.43), r_max=4.5, nbins=450)
    g_si = np.asarray(si["g"])
    assert si["r"][int(np.argmax(g_si))] == pytest.approx(3.84, abs=0.01)
    assert si["first_peak_r"] == pytest.approx(5.43 * np.sqrt(3) / 4, abs=0.006)
    assert si["coordination"][300] == pytest.approx(4)  # r = 3.0 Å


def test_first_peak_ignores_short_range_noise():
    """A liquid-like g with noise and one stray close pair at 0.31 Å: 0.02 neighbours per atom (one
    pair among 100 atoms), yet g ≈ 17 there because the shell volume is tiny."""
    rho = 0.05
    r = (np.arange(400) + 0.5) * 0.02
    core = r > 2.5
    g = np.where(core, 1 + 1.5 * np.exp(-(((r - 3.0) / 0.25) ** 2)) - 0.4 * np.exp(-(((r - 3.9) / 0.3) ** 2)), 0.0)
    g[core] *= 1 - np.exp(-(r[core] - 2.5) / 0.1)  # smooth onset at the core radius
    g += np.random.default_rng(3).normal(0, 0.04, len(r)) * core
    stray = np.abs(r - 0.31) < 0.01
    g[stray] = 0.02 / (rho * 4 / 3 * np.pi * (0.32**3 - 0.30**3))
    assert g[stray][0] > 10
    assert first_peak(r, g, smooth=0.0) == pytest.approx(0.31, abs=0.01)  # the naive answer
    assert first_peak(r, g, rho=rho) == pytest.approx(3.0, abs=0.06)


# ------------------------------------------------------------------------------------ plots


def test_plots_overlay_labelled_results(tmp_path, si_phonons):
    pytest.importorskip("matplotlib")
    _, ph = si_phonons
    dimer = {"emt": dimer_curve(EMT(), 29, 29, n=23), "emt again": dimer_curve(EMT(), 29, 29, n=12)}
    comp = compression_curve(EMT(), bulk("Cu", "fcc", a=3.6), scales=np.linspace(0.9, 1.05, 4))
    g = rdf(bulk("Ag", "fcc", a=4.09), r_max=5.0, nbins=100)
    paths = [
        plot_dimer_curves(dimer, tmp_path / "dimer.png", r_data_min=2.2),
        plot_compression_curves({"a": comp, "b": comp}, tmp_path / "eos.png"),
        plot_phonon_bands({"base": ph, "same": ph}, tmp_path / "bands.png", reference_THz={"PBE": SI_DFT_PBE_GAMMA_OPTICAL_THZ}),
        plot_rdfs(g, tmp_path / "rdf.png"),  # a single, unlabelled result
    ]
    for p in paths:
        assert p.stat().st_size > 5_000 and p.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        plot_rdfs({"dimer": dimer["emt"]}, tmp_path / "wrong.png")  # a dimer result is not an RDF


def test_onset_interpolates_where_g_first_reaches_a_level():
    from scalarjax.diagnostics import onset

    r = np.linspace(0.0, 4.0, 41)
    g = np.clip(r - 1.0, 0.0, None)  # 0 up to 1 Å, then a ramp of slope 1
    assert onset(r, g, 0.1) == pytest.approx(1.1) and onset(r, g, 0.5) == pytest.approx(1.5)
    assert onset(r, g, 10.0) is None


def _rattled(std, n, seed0=0):
    from ase.build import bulk

    frames = []
    for k in range(n):
        a = bulk("Ag", "fcc", a=4.09, cubic=True).repeat((2, 2, 2))
        a.rattle(std, seed=seed0 + k)
        frames.append(a)
    return frames


def test_liquid_structure_detects_a_soft_core():
    """Same frames: no over-approach, equal onsets. Broader (softer) pair distribution: g reaches
    0.1 earlier and neighbours enter the reference's core edge (over-approach > 0)."""
    from scalarjax.diagnostics import liquid_structure

    ref = _rattled(0.08, 6)
    same = liquid_structure(ref, ref, r_max=4.0, nbins=160, n_boot=50)
    assert same["over_approach"] == 0.0
    assert same["model"]["r_g_0.1"]["value"] == same["reference"]["r_g_0.1"]["value"]
    lo, hi = same["model"]["r_g_0.1"]["ci95"]
    assert lo <= same["model"]["r_g_0.1"]["value"] <= hi
    soft = liquid_structure(_rattled(0.25, 6, 100), ref, r_max=4.0, nbins=160, n_boot=50)
    assert soft["model"]["r_g_0.1"]["value"] < soft["reference"]["r_g_0.1"]["value"] - 0.2
    assert soft["over_approach"] > 0.1
    assert soft["reference"]["first_peak_r"]["value"] == pytest.approx(4.09 / np.sqrt(2), abs=0.06)


def test_liquid_state_point_uses_the_data_temperature_and_density(tmp_path):
    """Reference frames of the temperature nearest the preset's only, at their own density; the
    model's cell is scaled to it."""
    from physics_utils import write_mlearn_aimd_json

    from scalarjax.diagnostics.report import PRESETS, liquid_cell, liquid_state_point, reference_frames

    path = tmp_path / "si.json"
    write_mlearn_aimd_json(path, [(300, 5.43), (2530, 5.47), (2530, 5.47), (3374, 5.50)])
    _, aimd = reference_frames(str(path), PRESETS["si"])
    state = liquid_state_point(aimd, PRESETS["si"])  # preset liquid: 2500 K
    assert state["temperature_K"] == 2530 and len(state["frames"]) == 2 and state["matched"]
    assert state["available_K"] == [300, 2530, 3374]
    assert state["volume_per_atom_A3"] == pytest.approx(5.47**3 / 8)
    cell = liquid_cell(PRESETS["si"], state["volume_per_atom_A3"])
    assert len(cell) == 64 and cell.get_volume() / 64 == pytest.approx(5.47**3 / 8)
    fallback = liquid_state_point([], PRESETS["si"])
    assert not fallback["matched"] and fallback["temperature_K"] == 2500.0


def test_liquid_md_on_the_jax_engine(tiny_si, monkeypatch):
    """The liquid g(r) diagnostic on the jax MD engine samples as the ASE path does (equilibration,
    then the start frame and one frame every ``rdf_every`` steps, in chunks the engine accepts); the
    engine itself is tested in test_md_engine.py, so a stand-in records the calls here. ``auto`` is
    ASE on the CPU; an unknown engine is one line."""
    import scalarjax.simulation.engine as engine
    from scalarjax.diagnostics.report import PRESETS, Budget, _rdf, md_engine_for
    from scalarjax.errors import InputError

    calls = []

    class Recorder:
        def __init__(self, potential, atoms, *, ensemble, temperature_K, chunk_steps, **kw):
            assert potential is tiny_si.potential and ensemble == "nvt" and temperature_K == 1500.0
            assert np.any(atoms.get_momenta()) and chunk_steps == 100  # thermalised before the start
            self.chunk = chunk_steps

        def advance(self, n):
            assert 0 < n <= self.chunk
            calls.append(n)

        def snapshot(self, atoms):
            return atoms.copy()

    monkeypatch.setattr(engine, "Engine", Recorder)
    budget = Budget(rdf_equilibrate_steps=250, rdf_sample_steps=60, rdf_every=20)
    state = {"temperature_K": 1500.0, "volume_per_atom_A3": 20.44, "matched": False, "frames": []}
    res = _rdf(tiny_si, PRESETS["si"], budget, 0, state, "jax")
    assert calls == [100, 100, 50, 20, 20, 20]
    assert res["md_engine"] == "jax" and res["n_frames"] == 4 and res["n_atoms"] == 64
    assert res["volume_per_atom_A3"] == pytest.approx(20.44) and np.all(np.isfinite(res["g"]))
    assert md_engine_for("auto") == "ase"
    with pytest.raises(InputError, match="md engine 'lammps'"):
        md_engine_for("lammps")

"""Radial distribution function g(r) of periodic frames (MD trajectories, data sets).

    g_AB(r) = Σ_frames n_AB(r) / Σ_frames [ N_A ρ_B V_shell(r) ],   ρ_B = N_B / V,
    V_shell = 4π/3 (r₂³ − r₁³)  (exact shell volume of the bin [r₁, r₂))

with ``n_AB`` the number of ordered (A centre, B neighbour) pairs at distance in the bin, counted
over all periodic images (so ``r_max`` may exceed half the cell; an atom's own images count, as
they are real neighbours in the crystal). ρ_B = N_B/V is the density of the periodic system, so
the running coordination number ``n(r) = Σ_bins ρ_B g V_shell`` is exactly the mean number of B
neighbours of an A atom within r (12 for the first fcc shell) even for a one-atom cell. For an
ideal gas of N atoms in a cell of edge L, g → (N − 1)/N (not 1) for r < L: an atom is not its own
neighbour below the cell size — an O(1/N) effect.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ._common import as_atoms_list, floats, opt_float, pair_distances


def _smooth(g: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian smoothing (σ in bins) with reflecting ends; the identity for σ < 0.5 bin."""
    if sigma_bins < 0.5:
        return g.copy()
    half = int(np.ceil(4 * sigma_bins))
    x = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (x / sigma_bins) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(g, half, mode="reflect")
    return np.convolve(padded, kernel, mode="valid")


def first_peak(
    r: np.ndarray, g: np.ndarray, rho: Optional[float] = None, smooth: float = 0.05, min_neighbours: float = 0.1
) -> Optional[float]:
    """Position (Å, a bin centre) of the first maximum of g above 1: the first coordination shell.

    Robust to the two ways a naive "first local maximum after the first nonzero bin" goes wrong:

    * with the neighbour density ``rho`` (1/Å³) given, the search starts where the running
      coordination number ``4πρ∫r²g dr`` first reaches ``min_neighbours``. A stray close pair
      in a sparsely populated short-r shell gives a huge g from a tiny shell volume but only
      ~2/N neighbours per atom; a coordination shell holds several. Without ``rho`` the search
      starts at the first nonzero bin;
    * g is smoothed by a Gaussian of ``smooth`` Å (a no-op when bins are coarser than 2σ) and a
      maximum must not be lower than any neighbour within ±2σ (at least ±1 bin), so bin-to-bin
      noise does not make a peak.

    Uniform bins starting at 0 are assumed (as :func:`rdf` makes). ``None`` if there is no maximum.
    """
    r, g = np.asarray(r, dtype=np.float64), np.asarray(g, dtype=np.float64)
    if len(r) < 3 or not np.any(g > 0):
        return None
    dr = r[1] - r[0]
    if rho is None:
        start = int(np.flatnonzero(g > 0)[0])
    else:
        shell = 4.0 / 3.0 * np.pi * ((r + dr / 2) ** 3 - np.maximum(r - dr / 2, 0.0) ** 3)
        running = np.cumsum(rho * g * shell)
        reached = np.flatnonzero(running >= min_neighbours)
        if not len(reached):
            return None
        start = int(reached[0])
    sigma_bins = smooth / dr
    gs = _smooth(g, sigma_bins)
    w = max(1, int(round(2 * sigma_bins)))
    for k in range(start, len(gs) - 1):
        if gs[k] <= 1.0:
            continue
        lo, hi = max(0, k - w), min(len(gs), k + w + 1)
        if gs[k] >= gs[lo:hi].max() and gs[k] > gs[k + 1]:
            return float(r[k])
    return None


def _pair_selection(atoms, r_max: float, pair: Optional[Sequence[int]]) -> tuple[np.ndarray, int, int]:
    """One periodic frame → distances (Å) of its selected (A centre, B neighbour) pairs within
    ``r_max``, over all periodic images, and the counts N_A, N_B (all atoms when ``pair`` is None)."""
    if not np.all(atoms.get_pbc()):
        raise ValueError("rdf needs fully periodic frames (g(r) is normalised by the cell volume)")
    z = atoms.get_atomic_numbers()
    i, j, d = pair_distances(atoms, r_max)
    if pair is None:
        return d, len(atoms), len(atoms)
    z1, z2 = int(pair[0]), int(pair[1])
    keep = (z[i] == z1) & (z[j] == z2)
    return d[keep], int(np.sum(z == z1)), int(np.sum(z == z2))


def rdf(
    frames: Any,
    r_max: float,
    nbins: int = 200,
    pair: Optional[Sequence[int]] = None,
    smooth: float = 0.05,
) -> dict:
    """g(r) averaged over periodic ``frames`` (ase.Atoms / Configuration or an iterable of them).

    ``pair=(z1, z2)``: centres of element z1, neighbours of element z2 (g_AB = g_BA); ``None``:
    all atoms. Bins of width ``r_max / nbins`` on [0, r_max]. Returns ``r`` (bin centres, Å),
    ``g``, ``coordination`` (mean number of B neighbours of an A atom within each bin's upper edge;
    equal to ``4πρ∫r²g dr`` = ``ρ Σ g V_shell`` when all frames share one density), ``rho``
    (mean density of neighbour atoms, 1/Å³), ``first_peak_r`` (see :func:`first_peak`: the first
    maximum above 1 of g smoothed over ``smooth`` Å, once 0.1 neighbour per atom is reached), ``closest_approach`` (the shortest selected pair distance seen, Å; ``None`` if none within
    r_max), ``n_frames``, ``pair``.
    """
    frames = as_atoms_list(frames)
    if not frames:
        raise ValueError("rdf needs at least one frame")
    edges = np.linspace(0.0, float(r_max), int(nbins) + 1)
    counts = np.zeros(int(nbins))
    norm = 0.0  # Σ_frames N_A ρ_B
    rho_sum = 0.0
    n_a_sum = 0
    closest = np.inf
    for atoms in frames:
        d, n_a, n_b = _pair_selection(atoms, r_max, pair)
        volume = atoms.get_volume()
        counts += np.histogram(d, bins=edges)[0]
        norm += n_a * n_b / volume
        rho_sum += n_b / volume
        n_a_sum += n_a
        if len(d):
            closest = min(closest, float(d.min()))
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    if norm == 0.0:
        raise ValueError(f"no atoms of the pair {pair} in the frames")
    g = counts / (norm * shell)
    r = 0.5 * (edges[1:] + edges[:-1])
    coordination = np.cumsum(counts) / n_a_sum  # B neighbours per A centre within each bin's upper edge
    return {
        "r": floats(r),
        "g": floats(g),
        "coordination": floats(coordination),
        "rho": float(rho_sum / len(frames)),
        "first_peak_r": first_peak(r, g, rho_sum / len(frames), smooth),
        "closest_approach": opt_float(closest),
        "n_frames": len(frames),
        "pair": None if pair is None else [int(pair[0]), int(pair[1])],
        "r_max": float(r_max),
    }


def onset(r: np.ndarray, g: np.ndarray, level: float) -> Optional[float]:
    """The first r (Å) where g reaches ``level``, linearly interpolated between bin centres;
    ``None`` if it never does. Unlike the closest approach seen, it does not shrink with the
    number of frames: it is a property of the distribution, not of its extreme sample."""
    r, g = np.asarray(r, dtype=np.float64), np.asarray(g, dtype=np.float64)
    hit = np.flatnonzero(g >= level)
    if not len(hit):
        return None
    k = int(hit[0])
    if k == 0:
        return float(r[0])
    return float(r[k - 1] + (level - g[k - 1]) * (r[k] - r[k - 1]) / (g[k] - g[k - 1]))


def _frame_histograms(frames, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: pair counts ``[F, bins]``, ``N²/V`` ``[F]`` and ``N/V`` ``[F]`` (all atoms)."""
    counts, norm, rho = [], [], []
    for atoms in as_atoms_list(frames):
        if not np.all(atoms.get_pbc()):
            raise ValueError("liquid structure needs fully periodic frames")
        _, _, d = pair_distances(atoms, float(edges[-1]))
        counts.append(np.histogram(d, bins=edges)[0])
        norm.append(len(atoms) ** 2 / atoms.get_volume())
        rho.append(len(atoms) / atoms.get_volume())
    return np.asarray(counts, float), np.asarray(norm), np.asarray(rho)


def _liquid_numbers(counts, norm, rho, edges, r_cut: Optional[float]) -> dict:
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    r = 0.5 * (edges[1:] + edges[:-1])
    g = counts.sum(0) / (norm.sum() * shell)
    n_atoms = norm * rho**-1  # N per frame
    coordination = np.cumsum(counts.sum(0)) / n_atoms.sum()  # neighbours per atom within each bin's upper edge
    out = {"r_g_0.1": onset(r, g, 0.1), "r_g_0.5": onset(r, g, 0.5), "first_peak_r": first_peak(r, g, float(np.mean(rho)))}
    if r_cut is not None:
        out["neighbours_within_r_cut"] = float(np.interp(r_cut, edges[1:], coordination))
    return out, r, g


def liquid_structure(model_frames, reference_frames, r_max: float = 6.0, nbins: int = 240, n_boot: int = 500, seed: int = 0) -> dict:
    """A model's liquid g(r) against reference (AIMD) frames of the same state point.

    Reported for the model and the reference, each with a 95% bootstrap interval over its frames
    (frames resampled with replacement; consecutive MD frames are correlated, so the interval is
    a lower bound on the uncertainty):

    - ``r_g_0.1``, ``r_g_0.5`` (Å): where g first reaches 0.1 and 0.5 (:func:`onset`) — the
      core's edge, where a too-soft repulsive wall shows first;
    - ``first_peak_r`` (Å): the first coordination shell (:func:`first_peak`);
    - ``neighbours_within_r_cut``: neighbours per atom closer than ``r_cut`` = the reference's
      r_g_0.5, for both; their difference ``over_approach`` = 4πρ ∫₀^{r_cut} r² (g_model − g_ref) dr
      counts the neighbours per atom that the model lets inside the reference's core edge (0 for
      a perfect model, > 0 for a soft wall).

    Both sets of frames should be at one temperature and density; the caller checks that.
    """
    edges = np.linspace(0.0, float(r_max), int(nbins) + 1)
    data = {"model": _frame_histograms(model_frames, edges), "reference": _frame_histograms(reference_frames, edges)}
    ref_point, _, _ = _liquid_numbers(*data["reference"], edges, None)
    r_cut = ref_point["r_g_0.5"]
    result: dict = {"r_cut": r_cut, "n_frames": {k: len(v[0]) for k, v in data.items()}}
    rng = np.random.default_rng(seed)
    for name, (counts, norm, rho) in data.items():
        point, r, g = _liquid_numbers(counts, norm, rho, edges, r_cut)
        boots = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(counts), len(counts))
            boots.append(_liquid_numbers(counts[idx], norm[idx], rho[idx], edges, r_cut)[0])
        result[name] = {k: {"value": opt_float(v), "ci95": _ci([b[k] for b in boots])} for k, v in point.items()}
        result[name]["density_per_A3"] = float(np.mean(rho))
        result[name]["g"] = floats(g)
    result["r"] = floats(r)
    over = result["model"].get("neighbours_within_r_cut", {}).get("value")
    ref = result["reference"].get("neighbours_within_r_cut", {}).get("value")
    result["over_approach"] = None if over is None or ref is None else over - ref
    return result


def _ci(values) -> Optional[list]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) < 10:
        return None
    return floats(np.percentile(v, [2.5, 97.5]))


def plot_rdfs(results: Mapping, path, r_data_min: Optional[float] = None):
    """g(r) of one ``rdf`` result or ``{label: result}`` overlaid; returns the path written."""
    from ._plot import figure, labelled, legend, save

    runs = labelled(results, "g")
    fig, axes = figure(1, 1, figsize=(6.0, 4.0))
    ax = axes[0, 0]
    for label, res in runs.items():
        ax.plot(res["r"], res["g"], lw=1.0, label=label or None)
    ax.axhline(1.0, color="0.7", lw=0.8)
    if r_data_min is not None:
        ax.axvline(r_data_min, color="0.4", ls="--", lw=0.8, label="shortest distance in data")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.set_xlim(left=0.0)
    legend(ax, list(runs) + ([r_data_min] if r_data_min is not None else []))
    return save(fig, path)

"""Configurations → padded ``jraph.GraphsTuple`` batches with a small set of static shapes.

Graph layout (all numpy on the host, moved to the device by the jitted consumer):

* ``nodes``: ``positions [N, 3]`` Å, ``species [N]`` int32 index into the model's element table,
  ``forces [N, 3]`` eV/Å (label; zeros where absent);
* ``edges``: ``shifts [E, 3]`` integer cell shifts (edge vector ``x_r − x_s + shifts · cell``);
* ``globals``: ``cell [G, 3, 3]`` Å, ``pbc [G, 3]``, ``energy [G]`` eV, ``stress [G, 6]`` eV/Å³
  (Voigt, ASE sign), ``weight``, per-property weights and ``has_energy / has_forces / has_stress``
  masks (1.0 where the label exists), ``n_atoms [G]``.

Padding contract (what every consumer may rely on and every backbone must keep):

1. Padding is appended by ``jraph.pad_with_graphs``: real nodes/edges/graphs come first, then one
   graph holding all padding nodes and edges, then empty graphs. ``jraph.get_*_padding_mask``
   give the masks.
2. Padded edges connect a padding node to itself with zero shift. The potential replaces their
   vectors by a constant beyond ``r_max`` before any norm is taken, so they carry no gradient
   and no NaN; backbones multiply edge weights by the edge mask.
3. Padded nodes' energies are multiplied by the node mask before the per-graph sum, so they
   contribute exactly zero to energies, forces and stress, and get zero force.
4. Padded graphs have a zero cell; their volume is treated as 1 for the stress division and
   their stress is zero.

Buckets: node and edge counts are rounded up to the grid ``{4, 5, 6, 7} × 2^k`` (steps of at most
25%), so a data set compiles once per distinct (nodes, edges) bucket pair.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import jraph
import numpy as np

from scalarjax.data.configuration import Configuration
from scalarjax.elements import ElementTable  # noqa: F401  (re-exported)
from scalarjax.errors import InputError
from scalarjax.graph.neighbors import neighbor_list


def bucket_size(n: int, minimum: int = 4) -> int:
    """Smallest size ≥ n on the grid {4, 5, 6, 7} × 2^k."""
    n = max(int(n), minimum)
    k = max(int(np.floor(np.log2(n))) - 2, 0)
    while True:
        for m in (4, 5, 6, 7):
            if m * 2**k >= n:
                return m * 2**k
        k += 1


def local_frame(positions: np.ndarray, cell: np.ndarray, pbc, senders: np.ndarray, receivers: np.ndarray, shifts: np.ndarray):
    """Positions of small magnitude with the same edge vectors, computed in float64 on the host.

    The model may run in float32, where ``x_r − x_s`` of two atoms at x = 10⁸ Å is pure rounding
    (float32 resolves 8 Å there). Periodic directions are wrapped into the cell,
    ``x' = x + n·L`` with integer ``n = −floor(frac)``, and the shifts follow,
    ``S' = S − n_r + n_s``, so every ``r_e = x'_r − x'_s + S'·L`` is unchanged; then the centre of
    the bounding box is subtracted (a translation). Energies, forces and stress are invariant to
    both, and the float32 error of an edge vector is now relative to the size of the
    structure, not to its distance from the origin. Returns ``(positions [N, 3], shifts [E, 3])``.
    """
    pos = np.asarray(positions, np.float64)
    pbc = np.asarray(pbc, bool)
    if pbc.any():
        from ase.geometry import complete_cell

        frac = np.linalg.solve(complete_cell(cell).T, pos.T).T
        n = np.where(pbc[None, :], -np.floor(frac), 0.0)
        pos = pos + n @ np.asarray(cell, np.float64)
        shifts = shifts - n[receivers] + n[senders]
    centre = 0.5 * (pos.min(axis=0) + pos.max(axis=0))
    return pos - centre, shifts


def configuration_to_graph(config: Configuration, elements: ElementTable, r_max: float) -> jraph.GraphsTuple:
    """One configuration → an unpadded single-graph ``GraphsTuple`` (numpy); positions in the
    :func:`local_frame` (wrapped and centred, same edge vectors)."""
    species = elements.index(config.species, config.source or "configuration")
    senders, receivers, shifts = neighbor_list(config.positions, config.cell, config.pbc, r_max, config.source or "configuration")
    positions, shifts = local_frame(config.positions, config.cell, config.pbc, senders, receivers, shifts)
    n = config.n_atoms
    periodic = any(config.pbc)
    if periodic and config.stress is not None and config.volume < 1e-9:
        raise InputError(
            f"{config.source or 'configuration'}: a stress label but the cell has no volume "
            f"(pbc {list(config.pbc)}, cell {config.cell.tolist()}); stress needs three cell vectors"
        )

    def lab(x, shape):
        return (np.zeros(shape), 0.0) if x is None else (np.asarray(x, np.float64).reshape(shape), 1.0)

    energy, has_e = lab(config.energy, ())
    forces, has_f = lab(config.forces, (n, 3))
    stress, has_s = lab(config.stress, (6,))
    return jraph.GraphsTuple(
        nodes={"positions": positions, "species": species, "forces": forces},
        edges={"shifts": shifts},
        globals={
            "cell": config.cell[None].astype(np.float64),
            "pbc": np.asarray(config.pbc, bool)[None],
            "energy": np.asarray([energy]),
            "stress": stress[None],
            "weight": np.asarray([config.weight]),
            "energy_weight": np.asarray([config.energy_weight]),
            "forces_weight": np.asarray([config.forces_weight]),
            "stress_weight": np.asarray([config.stress_weight]),
            "has_energy": np.asarray([has_e]),
            "has_forces": np.asarray([has_f]),
            "has_stress": np.asarray([has_s if periodic else 0.0]),
            "n_atoms": np.asarray([float(n)]),
        },
        senders=senders,
        receivers=receivers,
        n_node=np.asarray([n], np.int32),
        n_edge=np.asarray([len(senders)], np.int32),
    )


@dataclasses.dataclass(frozen=True)
class PadSize:
    """Padded shape of a batch: total nodes, edges and graphs after ``jraph.pad_with_graphs`` (padding
    included, so ``n_node`` ≥ real nodes + 1 and ``n_graph`` ≥ real graphs + 1). Each distinct value compiles once."""

    n_node: int
    n_edge: int
    n_graph: int


def pad_size_for(graphs: Sequence[jraph.GraphsTuple], n_graph: int | None = None) -> PadSize:
    """Bucketed padding for a list of graphs batched together (room for ≥1 padding node)."""
    nodes = sum(int(g.n_node.sum()) for g in graphs)
    edges = sum(int(g.n_edge.sum()) for g in graphs)
    return PadSize(bucket_size(nodes + 1), bucket_size(edges), (n_graph or len(graphs)) + 1)


def batch_graphs(graphs: Sequence[jraph.GraphsTuple], size: PadSize | None = None) -> jraph.GraphsTuple:
    """Batch and pad (to ``size`` or to the bucket of the batch)."""
    size = size or pad_size_for(graphs)
    batched = jraph.batch_np(list(graphs))
    return jraph.pad_with_graphs(batched, size.n_node, size.n_edge, size.n_graph)


def max_pad_size(graphs: Sequence[jraph.GraphsTuple], batch_size: int) -> PadSize:
    """One padded shape that fits *any* batch of ``batch_size`` of these graphs (the largest
    node and edge counts summed), so a shuffled data set compiles exactly once."""
    nodes = sorted((int(g.n_node.sum()) for g in graphs), reverse=True)[:batch_size]
    edges = sorted((int(g.n_edge.sum()) for g in graphs), reverse=True)[:batch_size]
    up = lambda n, m: -(-n // m) * m  # exact bound, rounded to a multiple of m (not the 25% grid)
    return PadSize(up(sum(nodes) + 1, 8), up(sum(edges), 64), batch_size + 1)


def fixed_pad_sizes(graphs: Sequence[jraph.GraphsTuple], batch_size: int, max_shapes: int = 2, min_gain: float = 0.05) -> tuple:
    """At most ``max_shapes`` fixed padded shapes for shuffled batches of these graphs, smallest
    first; :func:`batches` pads each batch to the first that fits. The last is
    :func:`max_pad_size` (fits any batch). A smaller one, at a quantile ``q`` of the node and edge
    counts of simulated shuffled batches (200 epochs), is added when it cuts the expected padded
    edges per batch by at least ``min_gain``: with a data set of mixed sizes a few large batches
    would otherwise set the shape for all (mlearn Si, batch 4: 20% of the edges padding with one
    shape, 8% with two, at q = 0.95). One more compilation, at most."""
    full = max_pad_size(graphs, batch_size)
    if max_shapes < 2 or len(graphs) <= batch_size:
        return (full,)
    n = np.array([int(g.n_node.sum()) for g in graphs])
    e = np.array([int(g.n_edge.sum()) for g in graphs])
    rng = np.random.default_rng(0)
    sums = []
    for _ in range(200):
        o = rng.permutation(len(graphs))
        sums += [(n[o[i : i + batch_size]].sum(), e[o[i : i + batch_size]].sum()) for i in range(0, len(o), batch_size)]
    nodes, edges = np.asarray(sums).T
    up = lambda x, m: int(-(-int(x) // m) * m)
    best, best_cost = None, float(full.n_edge)
    for q in (0.8, 0.9, 0.95, 0.98):
        small = PadSize(up(np.quantile(nodes, q) + 1, 8), up(np.quantile(edges, q), 64), batch_size + 1)
        fits = (nodes + 1 <= small.n_node) & (edges <= small.n_edge)
        cost = float(np.where(fits, small.n_edge, full.n_edge).mean())
        if cost < best_cost:
            best, best_cost = small, cost
    if best is None or best_cost > (1.0 - min_gain) * full.n_edge or best == full:
        return (full,)
    return (best, full)


def fitting_size(sizes: Sequence[PadSize], n_node: int, n_edge: int) -> PadSize:
    """The first of ``sizes`` (smallest first) that holds ``n_node`` real nodes (+1 padding node)
    and ``n_edge`` edges; the last when none does (it is sized to fit any batch)."""
    return next((s for s in sizes if n_node + 1 <= s.n_node and n_edge <= s.n_edge), sizes[-1])


def batches(
    graphs: Sequence[jraph.GraphsTuple], batch_size: int, shuffle: bool = False, seed: int = 0, size=None
) -> Iterable[jraph.GraphsTuple]:
    """Padded batches of ``batch_size`` graphs; the graph axis is always ``batch_size + 1``.

    ``size``: one fixed padded shape for every batch (e.g. :func:`max_pad_size`), or a few, smallest
    first (:func:`fixed_pad_sizes`), each batch taking the first that fits; else each batch is
    padded to its own bucket."""
    sizes = (size,) if isinstance(size, PadSize) else tuple(size or ())
    order = np.random.default_rng(seed).permutation(len(graphs)) if shuffle else np.arange(len(graphs))
    for start in range(0, len(order), batch_size):
        chunk = [graphs[i] for i in order[start : start + batch_size]]
        if sizes:
            pad = fitting_size(sizes, sum(int(g.n_node.sum()) for g in chunk), sum(int(g.n_edge.sum()) for g in chunk))
        else:
            pad = pad_size_for(chunk, batch_size)
        yield batch_graphs(chunk, pad)


class ConfigurationsToGraphs:
    """Mixin of everything that evaluates a model (``Potential``, ``ExportedPotential``): with its
    ``elements`` (:class:`~scalarjax.elements.ElementTable`) and ``config.r_max`` (Å) it turns
    configurations into graphs, so callers never thread the species table and cutoff by hand."""

    def graph(self, config: Configuration) -> jraph.GraphsTuple:
        """One configuration → its unpadded graph (edges to every image within ``r_max``, matscipy)."""
        return configuration_to_graph(config, self.elements, self.config.r_max)

    def graphs(self, configs: Iterable[Configuration]) -> list:
        """:meth:`graph` of each configuration (pad and batch them with :func:`batch_graphs`)."""
        return [self.graph(c) for c in configs]

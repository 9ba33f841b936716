"""ASE calculator.

``implemented_properties``: energy and free_energy (eV), forces (eV/Å), stress (eV/Å³, ASE's
sign and Voigt order [xx, yy, zz, yz, xz, xy]; periodic systems only). One model evaluation per
change of the atoms (ASE's cache). The padded shapes have headroom and grow geometrically, so an
MD run compiles once or twice, not at every step.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
from ase.calculators.calculator import Calculator as ASECalculator
from ase.calculators.calculator import all_changes
from ase.data import atomic_numbers as ASE_NUMBERS

from scalarjax.config import ModelConfig, load_model_config
from scalarjax.data.configuration import Configuration, full_to_voigt
from scalarjax.errors import InputError
from scalarjax.graph.batch import PadSize, batch_graphs, bucket_size
from scalarjax.potential import Potential

GROWTH = 1.5  # geometric growth factor when the capacity is exceeded
SKIN = 0.25  # Å: edges are allocated for the pairs within r_max + SKIN (a neighbour shell just outside
# r_max, e.g. fcc Ag's third shell at 5.01 Å for r_max = 5 Å, enters under thermal motion) ...
MARGIN = 1.1  # ... and for at least 1.1 × the pairs within r_max (density fluctuations of a liquid).
# Padded edges cost as much as real ones (docs/performance-notes.md): the former 0.5 Å skin times a
# 1.25 headroom padded 64-atom diamond Si (1792 pairs) to 3072 edges, because its fourth shell
# (5.47 Å) lies in that skin; now 2048. A system that outgrows the capacity recompiles once.


def _atomic_numbers(species: Any) -> tuple[int, ...]:
    """Symbols or atomic numbers → atomic numbers; one symbol (``"Si"``) is one element, not 'S', 'i'."""
    if isinstance(species, (str, int, np.integer)):
        species = [species]
    out = []
    for s in species:
        if isinstance(s, str):
            if s not in ASE_NUMBERS or ASE_NUMBERS[s] == 0:
                raise InputError(f"species: unknown element symbol {s!r}")
            out.append(ASE_NUMBERS[s])
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 1 <= int(s) <= 118:
            out.append(int(s))
        else:
            raise InputError(f"species: {s!r} is neither an element symbol nor an atomic number (an integer in 1..118)")
    return tuple(out)


class Calculator(ASECalculator):
    """ASE calculator around a :class:`~scalarjax.potential.Potential` (or an exported one): energy and
    free_energy (eV), forces ``[N, 3]`` (eV/Å), stress ``[6]`` (eV/Å³, Voigt, ASE's sign; periodic
    cells only). Build it with :meth:`from_config`, :meth:`from_run` or :meth:`from_export`."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: Potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.capacity: Optional[PadSize] = None

    @classmethod
    def from_config(cls, config: Any = None, species: Sequence[Any] = (), seed: int = 0, **kwargs) -> Calculator:
        """An untrained model. ``config``: None, a ``ModelConfig``, a dict of overrides or a YAML path;
        ``species``: element symbols or atomic numbers the model knows (added to the config's)."""
        cfg = load_model_config(config)
        zs = tuple(sorted(set(cfg.atomic_numbers) | set(_atomic_numbers(species))))
        if not zs:
            raise InputError("species: empty, and the config names no atomic_numbers; give the model's elements, e.g. species=['Si']")
        if zs != cfg.atomic_numbers:
            if cfg.atomic_energies:
                raise InputError("species= adds elements to a config that already fixes atomic_energies")
            cfg = load_model_config(cfg, atomic_numbers=zs)
        return cls(Potential(cfg, seed=seed), **kwargs)

    @classmethod
    def from_run(cls, run_dir, dtype: Optional[str] = None, **kwargs) -> Calculator:
        """A trained run: best EMA parameters, its statistics (E0s, scale, avg_num_neighbors) and dtype
        (``dtype="float64"`` evaluates a float32 run in double precision; needs JAX's x64 mode)."""
        from scalarjax.run import load_run

        return cls(load_run(run_dir, dtype), **kwargs)

    @classmethod
    def from_export(cls, path, **kwargs) -> Calculator:
        """A model exported with ``scalarjax export`` (``jax.export`` StableHLO, ``scalarjax.export``):
        runs with JAX alone, without Flax or the model code; the export's dtype and species."""
        from scalarjax.export import ExportedPotential

        return cls(ExportedPotential(path), **kwargs)

    @property
    def config(self) -> ModelConfig:
        return self.potential.config

    def _pad_size(self, n_node: int, n_edge: int, config: Optional[Configuration] = None) -> PadSize:
        """Padded sizes for ``n_node`` atoms and ``n_edge`` edges: kept while they fit; otherwise the
        pairs within r_max + SKIN (at least MARGIN × ``n_edge``), and at least GROWTH × the old capacity."""
        cap = self.capacity
        if cap is None or n_node + 1 > cap.n_node or n_edge > cap.n_edge:
            edges = int(MARGIN * n_edge)
            if config is not None:  # Verlet-skin estimate: the pairs that can enter r_max soon
                from scalarjax.graph.neighbors import neighbor_list

                edges = max(edges, len(neighbor_list(config.positions, config.cell, config.pbc, self.config.r_max + SKIN)[0]))
            grow = 1.0 if cap is None else GROWTH
            nodes = max(n_node + 1, int((cap.n_node if cap else 0) * grow))
            edges = max(edges, int((cap.n_edge if cap else 0) * grow))
            self.capacity = PadSize(bucket_size(nodes), bucket_size(edges), 2)
        return self.capacity

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        config = Configuration.from_atoms(self.atoms, source="atoms")
        graph = self.potential.graph(config)
        size = self._pad_size(int(graph.n_node[0]), int(graph.n_edge[0]), config)
        periodic = bool(np.any(self.atoms.pbc))
        if periodic and config.volume < 1e-9:
            # e.g. pbc (T, T, F) with a zero third cell vector: the stress (1/V) ∂E/∂ε has no V.
            if "stress" in properties:
                raise InputError(
                    f"stress is undefined for a cell without volume (pbc {list(config.pbc)}, cell "
                    f"{config.cell.tolist()}); give every direction a cell vector (vacuum along non-periodic ones)"
                )
            periodic = False
        out = jax.device_get(self.potential(batch_graphs([graph], size), compute_stress=periodic))
        n = config.n_atoms
        energy = float(out["energy"][0])
        if not (np.isfinite(energy) and np.isfinite(out["forces"][:n]).all()):
            raise FloatingPointError(f"the model returned a non-finite energy or forces ({energy}) for finite positions")
        self.results = {"energy": energy, "free_energy": energy, "forces": np.asarray(out["forces"][:n], np.float64)}
        if periodic:
            self.results["stress"] = full_to_voigt(np.asarray(out["stress"][0], np.float64))

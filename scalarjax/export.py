"""Exported models: the jitted E/F/S function serialised with ``jax.export`` (StableHLO).

A ``.jaxexport`` file is a zip archive with two members:

* ``function.bin``: ``jax.export.Exported.serialize()`` of
  ``(positions [N, 3], species [N] int32, senders [E] int32, receivers [E] int32, shifts [E, 3],
  cell [G, 3, 3], pbc [G, 3] bool, n_node [G] int32, n_edge [G] int32)
  → (energy [G] eV, forces [N, 3] eV/Å, stress [G, 3, 3] eV/Å³)``,
  a padded jraph-style batch (padding contract of ``scalarjax.graph.batch``) with the trained
  parameters baked in as constants, lowered for the CPU and CUDA platforms;
* ``metadata.json``: species (atomic numbers, in the order of the species index), r_max (Å),
  units, dtype, the JAX/jaxlib versions and ``jax.export`` calling-convention version it was
  written with, the platforms and the shape mode.

Shapes are **symbolic** (``N``, ``E``, ``G`` are ``jax.export`` dimension variables): one file
serves every system size; the caller pads to buckets as the live calculator does (so a new size
compiles once) and each concrete shape is compiled on first use. Padded buckets would freeze the
largest system an export can take; symbolic shapes need no such limit. The price: the live model
sums messages over edge chunks and runs the symmetric contraction over node chunks on large graphs
(a static chunk count), which a symbolic size cannot have, so an exported model evaluates in one
shot and needs more memory on cells of tens of thousands of atoms (medium MACE: ~1.3 MB per atom).

Loading needs only JAX and numpy (:func:`load_export`); ``scalarjax.Calculator.from_export``
adds the neighbour list (matscipy) and ASE. Neither Flax nor the model code is imported.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import zipfile
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scalarjax.graph.batch import ConfigurationsToGraphs

FORMAT = "scalarjax-jaxexport/1"
UNITS = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å³ (ASE sign: positive under tension)", "length": "Å"}
INPUTS = ("positions", "species", "senders", "receivers", "shifts", "cell", "pbc", "n_node", "n_edge")


class ExportError(ValueError):
    """An export file that cannot be used here (one line: the file and the reason)."""


def _versions() -> dict:
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}


def export_potential(potential, path, platforms: Sequence[str] = ("cpu", "cuda")) -> dict:
    """Serialise a :class:`scalarjax.Potential` (its current parameters) to ``path``; returns the metadata."""
    from jax import export

    from scalarjax.potential import make_potential

    dtype = potential.dtype
    fn = make_potential(potential.model.apply, potential.config.r_max, dtype, compute_stress=True)
    params = potential.params

    def flat(positions, species, senders, receivers, shifts, cell, pbc, n_node, n_edge):
        import jraph

        graph = jraph.GraphsTuple(
            nodes={"positions": positions, "species": species},
            edges={"shifts": shifts},
            globals={"cell": cell, "pbc": pbc},
            senders=senders,
            receivers=receivers,
            n_node=n_node,
            n_edge=n_edge,
        )
        out = fn(params, graph)
        return out["energy"], out["forces"], out["stress"]

    n, e, g = export.symbolic_shape("N, E, G")
    i32 = jnp.int32
    args = [
        jax.ShapeDtypeStruct((n, 3), dtype),
        jax.ShapeDtypeStruct((n,), i32),
        jax.ShapeDtypeStruct((e,), i32),
        jax.ShapeDtypeStruct((e,), i32),
        jax.ShapeDtypeStruct((e, 3), dtype),
        jax.ShapeDtypeStruct((g, 3, 3), dtype),
        jax.ShapeDtypeStruct((g, 3), jnp.bool_),
        jax.ShapeDtypeStruct((g,), i32),
        jax.ShapeDtypeStruct((g,), i32),
    ]
    exported = export.export(jax.jit(flat), platforms=tuple(platforms))(*args)
    cfg = potential.config
    meta = {
        "format": FORMAT,
        "atomic_numbers": list(cfg.atomic_numbers),
        "r_max": float(cfg.r_max),
        "dtype": str(np.dtype(dtype)),
        "units": UNITS,
        "inputs": list(INPUTS),
        "shapes": "symbolic: N nodes, E edges, G graphs (padded jraph batch, padding contract of scalarjax.graph.batch)",
        "platforms": list(exported.platforms),
        "calling_convention_version": int(exported.calling_convention_version),
        **_versions(),
        "backbone": cfg.backbone.kind,
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
    }
    _write_atomically(pathlib.Path(path), exported.serialize(), meta)
    return meta


def _write_atomically(path: pathlib.Path, blob: bytes, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr("metadata.json", json.dumps(meta, indent=1))
            z.writestr("function.bin", bytes(blob))
        os.replace(tmp, path)  # a reader never sees a half-written file
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path) -> dict:
    """The ``metadata.json`` of an export file (module docstring), without deserialising the function.
    Raises :class:`ExportError` for a file that cannot be read, holds no JSON ``metadata.json`` or has another ``FORMAT``."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise ExportError(f"{path}: not a scalarjax export ({err})") from None
    if meta.get("format") != FORMAT:
        raise ExportError(f"{path}: unknown format {meta.get('format')!r} (this scalarjax reads {FORMAT})")
    return meta


def load_export(path) -> tuple[Callable, dict]:
    """``(function, metadata)`` of an export file; ``function(*INPUTS) → (energy, forces, stress)``.

    Raises :class:`ExportError` (one line) for a file written by a JAX whose calling convention
    this JAX cannot run, or that it cannot deserialise, and for a float64 export without x64."""
    from jax import export

    meta = read_metadata(path)
    version = meta.get("calling_convention_version")
    lo, hi = export.minimum_supported_calling_convention_version, export.maximum_supported_calling_convention_version
    wrote = f"written by jax {meta.get('jax', '?')} (calling convention {version})"
    if not isinstance(version, int) or not lo <= version <= hi:
        raise ExportError(
            f"{path}: {wrote}; this jax {jax.__version__} runs calling conventions {lo}..{hi} — "
            f"re-export the run with this JAX or install a compatible one"
        )
    try:
        with zipfile.ZipFile(path) as z:
            exported = export.deserialize(bytearray(z.read("function.bin")))
    except Exception as err:  # flatbuffer / MLIR errors are long; the versions are what the user needs
        raise ExportError(f"{path}: {wrote} cannot be read by jax {jax.__version__}: {str(err).splitlines()[0][:200]}") from None
    platform = jax.default_backend()
    platform = {"gpu": "cuda"}.get(platform, platform)
    if platform not in exported.platforms:
        raise ExportError(f"{path}: exported for {list(exported.platforms)}, not for this {platform} backend")
    if meta["dtype"] == "float64" and not jax.config.jax_enable_x64:
        raise ExportError(f"{path}: a float64 export needs JAX's x64 mode (jax.config.update('jax_enable_x64', True))")
    return exported.call, meta


def export_run(run_dir, out, dtype: str | None = None, platforms: Sequence[str] = ("cpu", "cuda")) -> dict:
    """``scalarjax export RUN_DIR -o OUT``: the run's best EMA parameters, statistics and dtype."""
    from scalarjax.run import load_run

    return export_potential(load_run(run_dir, dtype), out, platforms)


class ExportedPotential(ConfigurationsToGraphs):
    """An export file behind the interface the ASE calculator uses (``elements``, ``config.r_max``,
    ``dtype``, ``potential(graph, compute_stress) → {"energy", "forces", ["stress"]}``), built from
    JAX and numpy only: no Flax, no model code."""

    def __init__(self, path):
        import types

        from scalarjax.elements import ElementTable

        call, meta = load_export(path)
        self.path = str(path)
        self.metadata = meta
        self.dtype = np.dtype(meta["dtype"])
        self.elements = ElementTable(tuple(meta["atomic_numbers"]))
        self.config = types.SimpleNamespace(r_max=meta["r_max"], dtype=meta["dtype"], atomic_numbers=self.elements.atomic_numbers)
        self._fn = jax.jit(call)  # compiled once per padded shape

    @property
    def compile_count(self) -> int:
        return self._fn._cache_size()

    def __call__(self, graph, compute_stress: bool = True) -> dict:
        f, i = self.dtype, np.int32
        g = graph.globals
        args = (
            np.asarray(graph.nodes["positions"], f),
            np.asarray(graph.nodes["species"], i),
            np.asarray(graph.senders, i),
            np.asarray(graph.receivers, i),
            np.asarray(graph.edges["shifts"], f),
            np.asarray(g["cell"], f),
            np.asarray(g["pbc"], bool),
            np.asarray(graph.n_node, i),
            np.asarray(graph.n_edge, i),
        )
        energy, forces, stress = self._fn(*args)
        out = {"energy": energy, "forces": forces}
        if compute_stress:
            out["stress"] = stress
        return out

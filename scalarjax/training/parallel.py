"""Data-parallel training on several devices and hosts: ``jax.jit`` + ``Mesh`` + ``NamedSharding``.

One mesh axis, ``"data"``, over D devices (``training.devices: all | N``; every process's devices
when ``jax.distributed`` runs several processes). Parameters, optimiser state and EMA are
replicated (``P()``); the batch is split along graphs:

* a global batch of B graphs (``data.batch_size``) is cut into D sub-batches of b = B/D graphs,
  each padded on its own (jraph padding contract, ``scalarjax.graph.batch``) to one common shape
  (``n_node``, ``n_edge``, b + 1 graphs), and stacked on a leading device axis: every leaf of the
  ``GraphsTuple`` has shape ``[D, ...]`` and is sharded ``P("data")``;
* the potential is ``vmap``-ed over that axis, so each device evaluates its own sub-batch;
* the loss is the weighted mean over the *global* batch. Each loss term of
  :func:`scalarjax.training.loss.loss_terms` is a ratio ``L_t = Σ_i w_i ℓ_i / Σ_i w_i`` over the
  labelled entries i of a batch; with ``n_t,d = Σ_{i∈d} w_i`` (the ``n_*`` terms) the global
  term is ``L_t = Σ_d L_t,d · n_t,d / Σ_d n_t,d`` — exactly the 1-device loss of the same B
  graphs (up to float rounding), so the global batch size, the loss and the gradient mean the
  same thing on any device count. XLA inserts the all-reduce of the gradient.

Multi-host: :func:`initialize_distributed` calls ``jax.distributed.initialize`` from the
environment; every process reads the data files and computes the same statistics and batch
order (same seed), then assembles and transfers only the sub-batches of its own devices
(``jax.make_array_from_process_local_data``). Only process 0 writes the run directory's files;
checkpoints are written by orbax, which every process calls and which writes replicated arrays
once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scalarjax.graph.batch import PadSize, batch_graphs, batches, fitting_size, fixed_pad_sizes, pad_size_for
from scalarjax.training.loss import LossWeights, loss_terms
from scalarjax.training.optim import make_train_step

AXIS = "data"
TIMEOUT_ENV = "SCALARJAX_DISTRIBUTED_TIMEOUT"  # seconds to wait for the coordinator and the other processes
DEFAULT_TIMEOUT_S = 300


def _index(array: np.ndarray, idx) -> np.ndarray:
    """``array[idx]``: the callback of ``jax.make_array_from_callback`` for a host array."""
    return array[idx]


class ParallelSetupError(ValueError):
    """A user error in the device / process set-up (one line, raised before anything is written)."""


# ---------------------------------------------------------------- multi-host start-up


def _int_env(name: str) -> Optional[int]:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ParallelSetupError(f"environment variable {name}={v!r}: expected an integer") from None


def distributed_request() -> Optional[dict]:
    """The ``jax.distributed.initialize`` arguments the environment asks for, or None (one process).

    * ``JAX_COORDINATOR_ADDRESS=host:port`` (JAX's own variable) with ``JAX_NUM_PROCESSES`` and
      ``JAX_PROCESS_ID``: explicit, any launcher;
    * else SLURM (``srun`` with more than one task: ``SLURM_NTASKS`` > 1) or Open MPI
      (``OMPI_COMM_WORLD_SIZE`` > 1): JAX's own cluster detection fills everything in;
    * ``SCALARJAX_DISTRIBUTED=0`` switches all of this off.
    """
    if os.environ.get("SCALARJAX_DISTRIBUTED") == "0":
        return None
    timeout = _int_env(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        n, pid = _int_env("JAX_NUM_PROCESSES"), _int_env("JAX_PROCESS_ID")
        if n is None or pid is None:
            raise ParallelSetupError("JAX_COORDINATOR_ADDRESS is set: also set JAX_NUM_PROCESSES and JAX_PROCESS_ID")
        if not 0 <= pid < n:
            raise ParallelSetupError(f"JAX_PROCESS_ID={pid} is not in 0..JAX_NUM_PROCESSES-1={n - 1}")
        return {
            "coordinator_address": os.environ["JAX_COORDINATOR_ADDRESS"],
            "num_processes": n,
            "process_id": pid,
            "initialization_timeout": timeout,
        }
    if (_int_env("SLURM_NTASKS") or 1) > 1 and "SLURM_PROCID" in os.environ:
        return {"cluster_detection_method": "slurm", "initialization_timeout": timeout}
    if (_int_env("OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return {"cluster_detection_method": "ompi", "initialization_timeout": timeout}
    return None


def _wait_for_coordinator(address: str, timeout_s: float, pid: int, n: int) -> None:
    import socket
    import time

    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port)
    except ValueError:
        raise ParallelSetupError(f"JAX_COORDINATOR_ADDRESS={address!r}: expected HOST:PORT") from None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ParallelSetupError(
                    f"jax.distributed: the coordinator {address} did not answer within {timeout_s:g} s (process {pid} of {n}; "
                    f"is process 0 running there? {TIMEOUT_ENV} sets the wait): {err}"
                ) from None
            time.sleep(0.25)


def initialize_distributed() -> bool:
    """Start ``jax.distributed`` if the environment asks for several processes (see
    :func:`distributed_request`); must run before JAX's backends start. True if it runs."""
    if jax.distributed.is_initialized():
        return True
    kwargs = distributed_request()
    if kwargs is None:
        return False
    where = kwargs.get("coordinator_address", kwargs.get("cluster_detection_method"))
    if kwargs.get("process_id", 0) != 0:
        # JAX aborts the whole process (absl LOG(FATAL)) when the coordinator does not answer in
        # time; probing its port first turns the common case into a one-line error.
        _wait_for_coordinator(
            kwargs["coordinator_address"], kwargs["initialization_timeout"], kwargs["process_id"], kwargs["num_processes"]
        )
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as err:  # JAX raises a long gRPC error (DEADLINE_EXCEEDED, UNAVAILABLE)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ParallelSetupError(
            f"jax.distributed could not start (coordinator {where}, process "
            f"{kwargs.get('process_id', '?')} of {kwargs.get('num_processes', '?')}, timeout "
            f"{kwargs['initialization_timeout']} s; {TIMEOUT_ENV} changes it): {first[:200]}"
        ) from None
    return True


# ---------------------------------------------------------------- devices


def resolve_devices(spec, batch_size: int) -> list:
    """``training.devices`` (``"all"`` or a count) → the mesh's devices; clear errors for counts
    that are not available or that do not divide the global batch size."""
    available = jax.devices()
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            n = len(available)
        else:
            try:
                n = int(spec)
            except ValueError:
                raise ParallelSetupError(f"training.devices: {spec!r} is neither 'all' nor a device count") from None
    else:
        n = int(spec)
    if n < 1:
        raise ParallelSetupError(f"training.devices: {n} (need at least 1)")
    if n > len(available):
        raise ParallelSetupError(
            f"training.devices: {n} requested, but only {len(available)} {available[0].platform} device(s) are available"
        )
    if jax.process_count() > 1 and n != len(available):
        raise ParallelSetupError(
            f"training.devices: {n}, but {jax.process_count()} processes need all {len(available)} devices (use 'all')"
        )
    if batch_size % n:
        raise ParallelSetupError(
            f"data.batch_size: {batch_size} is not divisible by the {n} devices (training.devices); use a multiple of {n}"
        )
    return available[:n]


# ---------------------------------------------------------------- the data-parallel plan


def global_terms(weights: LossWeights):
    """``(pred [D, ...], batch [D, ...], w) → terms`` of the global batch (see the module docstring)."""
    per_device = jax.vmap(lambda p, g: loss_terms(p, g, weights))

    def terms_fn(pred, batch, w):
        t = per_device(pred, batch)
        out = {}
        for k in ("energy", "forces", "stress"):
            if k in t:
                n = t["n_" + k]
                total = jnp.sum(n)
                out[k] = jnp.sum(t[k] * n) / jnp.where(total > 0, total, 1.0)
                out["n_" + k] = total
        out["total"] = w.energy * out["energy"] + w.forces * out["forces"] + (w.stress * out["stress"] if "stress" in out else 0.0)
        return out

    return terms_fn


@dataclasses.dataclass
class DataParallel:
    """How a run is spread over devices. ``trivial``: one device, one process (the plain path)."""

    devices: list
    mesh: Mesh

    @property
    def n(self) -> int:
        return len(self.devices)

    @property
    def trivial(self) -> bool:
        return self.n == 1 and jax.process_count() == 1

    @property
    def is_primary(self) -> bool:
        """Process 0: the one that writes the run directory's files (not the orbax checkpoints)."""
        return jax.process_index() == 0

    def barrier(self, name: str) -> None:
        """Wait until every process reaches ``barrier(name)`` (a no-op in one process), through the
        ``jax.distributed`` coordination service, for as long as :data:`TIMEOUT_ENV` allows.

        Called before the first cross-process collective: XLA's CPU (gloo) collectives wait a fixed
        30 s for every process to join their first all-reduce (orbax's first barrier is one), and
        processes that read, trace and compile at different speeds on a loaded machine drift
        further apart than that."""
        if jax.process_count() == 1:
            return
        import orbax.checkpoint as ocp

        ocp.multihost.get_barrier_sync_fn()(key=f"scalarjax/{name}", timeout_ms=1000 * (_int_env(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def sharded(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(AXIS))

    def _local_slots(self) -> list[int]:
        me = jax.process_index()
        slots = [i for i, d in enumerate(self.devices) if d.process_index == me]
        if slots != list(range(slots[0], slots[0] + len(slots))):
            raise RuntimeError(f"process {me}: its devices are not contiguous in the mesh ({slots})")
        return slots

    def replicate(self, tree):
        """Copies of ``tree`` on every device of the mesh (the same values on every process)."""
        if self.trivial:
            return tree
        sh = self.replicated
        return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sh, functools.partial(_index, np.asarray(x))), tree)

    def local(self, tree):
        """A replicated tree as single-device arrays on this process (no copy): for evaluation,
        which every process runs on its own and only process 0 reports."""
        if self.trivial:
            return tree
        return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 else x, tree)

    def for_evaluation(self, potential_fn):
        if self.trivial:
            return potential_fn
        return lambda params, graph: potential_fn(self.local(params), graph)

    def train_step(self, potential_fn, weights: LossWeights, optimizer, ema_decay: float, warmup_steps: int):
        """The jitted ``(state, batch [D, ...], energy_weight) → (state, metrics)``; state donated."""
        if self.trivial:
            return make_train_step(potential_fn, weights, optimizer, ema_decay, warmup_steps)
        step = make_train_step(
            jax.vmap(potential_fn, in_axes=(None, 0)),
            weights,
            optimizer,
            ema_decay,
            warmup_steps,
            terms_fn=global_terms(weights),
            jit=False,
        )
        rep = self.replicated
        return jax.jit(step, in_shardings=(rep, self.sharded, rep), out_shardings=(rep, rep), donate_argnums=(0,))

    def pad_size(self, graphs: Sequence[jraph.GraphsTuple], batch_size: int, max_shapes: int = 2) -> tuple:
        """Per-device padded shapes (:func:`~scalarjax.graph.batch.fixed_pad_sizes`, smallest first) for
        sub-batches of ``batch_size / D`` graphs; the last fits any sub-batch."""
        return fixed_pad_sizes(graphs, batch_size // self.n, max_shapes)

    def batches(
        self, graphs: Sequence[jraph.GraphsTuple], batch_size: int, shuffle: bool = False, seed: int = 0, size=None
    ) -> Iterable[jraph.GraphsTuple]:
        """Global batches as in :func:`scalarjax.graph.batch.batches` (same order for the same seed),
        each a ``GraphsTuple`` of ``[D, ...]`` arrays sharded over the mesh. A short last batch
        leaves the last devices with fewer (or only padding) graphs, which add nothing to the loss."""
        if self.trivial:
            yield from batches(graphs, batch_size, shuffle, seed, size)
            return
        b = batch_size // self.n
        slots = self._local_slots()
        order = np.random.default_rng(seed).permutation(len(graphs)) if shuffle else np.arange(len(graphs))
        for start in range(0, len(order), batch_size):
            chunk = [graphs[i] for i in order[start : start + batch_size]]
            parts = [chunk[d * b : (d + 1) * b] for d in range(self.n)]
            if size is None:  # one shape for all sub-batches: the largest bucket (same on every process)
                sizes = [pad_size_for(p, b) for p in parts]
                pad = PadSize(max(s.n_node for s in sizes), max(s.n_edge for s in sizes), b + 1)
            else:  # the first fixed shape every sub-batch fits
                fixed = (size,) if isinstance(size, PadSize) else tuple(size)
                need = [(sum(int(g.n_node.sum()) for g in p), sum(int(g.n_edge.sum()) for g in p)) for p in parts]
                pad = max((fitting_size(fixed, nn_, ne) for nn_, ne in need), key=fixed.index)
            local = [batch_graphs(parts[d], pad) if parts[d] else _empty_batch(graphs[0], pad) for d in slots]
            stacked = jax.tree.map(lambda *xs: np.stack(xs), *local)
            yield jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.sharded, x, (self.n,) + x.shape[1:]), stacked)


def _empty_batch(like: jraph.GraphsTuple, pad: PadSize) -> jraph.GraphsTuple:
    """A sub-batch of padding only (all masks zero), shaped like the others."""
    zero = jax.tree.map(lambda x: np.zeros((0,) + x.shape[1:], x.dtype), like)
    zero = zero._replace(n_node=np.zeros(0, np.int32), n_edge=np.zeros(0, np.int32))
    return jraph.pad_with_graphs(zero, pad.n_node, pad.n_edge, pad.n_graph)


def setup(devices, batch_size: int) -> DataParallel:
    """Start ``jax.distributed`` if asked for, pick the devices and build the mesh. Every check
    runs here, before the trainer writes anything."""
    initialize_distributed()
    devs = resolve_devices(devices, batch_size)
    return DataParallel(devs, Mesh(np.asarray(devs), (AXIS,)))

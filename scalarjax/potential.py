"""Energy, forces and stress of padded batches by automatic differentiation.

For graph g with atoms x_i, cell rows L (Å) and a symmetric strain ε_g applied as
x → x(1 + ε_g), L → L(1 + ε_g), every edge vector becomes r_e (1 + ε_g) with
r_e = x_r − x_s + S_e L. With E_g the graph's energy (eV):

    F_i = −∂E/∂x_i                                  [N, 3] eV/Å
    σ_g = (1/V_g) ∂E_g/∂ε_g |_{ε=0}                  [G, 3, 3] eV/Å³ (ASE's sign: positive under tension)

Forces and stress come from one reverse pass over (x, ε). Non-periodic graphs get zero stress
and ``has_stress = 0``; padded atoms get zero force (see :mod:`scalarjax.graph.batch`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import jraph

from scalarjax.graph.batch import ConfigurationsToGraphs
from scalarjax.graph.inputs import GraphInputs


def edge_vectors(positions, cell, shifts, senders, receivers, edge_graph):
    """``r_e = x_r − x_s + S_e · L_g`` : ``[E, 3]`` Å."""
    return positions[receivers] - positions[senders] + jnp.einsum("ei,eij->ej", shifts, cell[edge_graph])


def graph_index(graph: jraph.GraphsTuple) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Graph id of every node ``[N]`` and edge ``[E]``."""
    n_graph = graph.n_node.shape[0]
    node_graph = jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=graph.nodes["species"].shape[0])
    return node_graph, node_graph[graph.senders]


def make_energy_fn(apply_fn: Callable, r_max: float, dtype) -> Callable:
    """``(params, graph, positions, strain) → per-graph energies [G]`` (eV); the differentiable core.

    ``apply_fn``: ``(params, GraphInputs) → per-atom energies [N]`` (eV), e.g. ``build_model(cfg).apply``;
    ``positions`` ``[N, 3]`` Å and ``strain`` ``[G, 3, 3]`` (only its symmetric part acts) are the differentiation variables.
    """

    def energy_fn(params, graph: jraph.GraphsTuple, positions, strain):
        n_graph = graph.n_node.shape[0]
        node_mask = jraph.get_node_padding_mask(graph).astype(dtype)
        edge_mask = jraph.get_edge_padding_mask(graph)
        node_graph, edge_graph = graph_index(graph)
        cell = graph.globals["cell"].astype(dtype)
        vec = edge_vectors(positions, cell, graph.edges["shifts"].astype(dtype), graph.senders, graph.receivers, edge_graph)
        sym = 0.5 * (strain + jnp.swapaxes(strain, -1, -2))
        vec = vec + jnp.einsum("ei,eij->ej", vec, sym[edge_graph])
        # Padded edges get a constant vector beyond the cutoff: no norm of zero, no gradient.
        far = jnp.asarray([0.0, 0.0, 2.0 * r_max], dtype)
        vec = jnp.where(edge_mask[:, None], vec, far)
        inputs = GraphInputs(
            species=graph.nodes["species"],
            vectors=vec,
            senders=graph.senders,
            receivers=graph.receivers,
            edge_mask=edge_mask.astype(dtype),
            node_mask=node_mask,
        )
        node_e = apply_fn(params, inputs)
        return jax.ops.segment_sum(node_e * node_mask, node_graph, num_segments=n_graph)

    return energy_fn


def make_potential(apply_fn: Callable, r_max: float, dtype, compute_stress: bool = True) -> Callable:
    """``(params, graph) → {"energy" [G] eV, "forces" [N, 3] eV/Å, "stress" [G, 3, 3] eV/Å³}`` (not jitted;
    equations and ASE's stress sign in the module docstring). ``apply_fn``: ``(params, GraphInputs) →
    per-atom energies [N]`` (eV). Without ``compute_stress`` there is no ``"stress"`` key."""
    energy_fn = make_energy_fn(apply_fn, r_max, dtype)

    def potential(params, graph: jraph.GraphsTuple) -> dict:
        positions = graph.nodes["positions"].astype(dtype)
        n_graph = graph.n_node.shape[0]
        strain = jnp.zeros((n_graph, 3, 3), dtype)

        def total(pos, eps):
            e = energy_fn(params, graph, pos, eps)
            return jnp.sum(e), e

        argnums = (0, 1) if compute_stress else (0,)
        (_, energy), grads = jax.value_and_grad(total, argnums=argnums, has_aux=True)(positions, strain)
        out = {"energy": energy, "forces": -grads[0]}
        if compute_stress:
            volume = jnp.abs(jnp.linalg.det(graph.globals["cell"].astype(dtype)))
            periodic = jnp.any(graph.globals["pbc"], axis=-1) & (volume > 0)
            safe_v = jnp.where(periodic, volume, 1.0)
            out["stress"] = jnp.where(periodic[:, None, None], grads[1] / safe_v[:, None, None], 0.0)
        return out

    return potential


class Potential(ConfigurationsToGraphs):
    """A model, its parameters and the jitted ``(params, padded graph) → E, F, σ`` function.

    ``compile_count`` is the number of distinct input shapes compiled so far (the recompilation
    counter used by tests and benchmarks).
    """

    def __init__(self, config, params=None, seed: int = 0):
        from scalarjax.elements import ElementTable
        from scalarjax.model import build_model, init_params

        self.config = config
        self.model = build_model(config)
        self.elements = ElementTable(config.atomic_numbers)
        self.dtype = jnp.dtype(config.dtype)
        self.params = params if params is not None else init_params(self.model, seed)
        self._fns = {}

    def function(self, compute_stress: bool = True) -> Callable:
        if compute_stress not in self._fns:
            fn = make_potential(self.model.apply, self.config.r_max, self.dtype, compute_stress)
            self._fns[compute_stress] = jax.jit(fn)
        return self._fns[compute_stress]

    def __call__(self, graph: jraph.GraphsTuple, compute_stress: bool = True) -> dict:
        return self.function(compute_stress)(self.params, graph)

    @property
    def compile_count(self) -> int:
        return sum(f._cache_size() for f in self._fns.values())

    def num_params(self) -> int:
        return int(sum(x.size for x in jax.tree.leaves(self.params)))

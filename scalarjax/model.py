"""The one place that turns a :class:`~scalarjax.config.ModelConfig` into a model.

Per-atom energy (eV):   E_i = E0[s_i] + shift + scale · backbone_i

``backbone_i`` vanishes for an atom with no neighbours, so an isolated atom has energy
``E0 + shift`` and zero force (MACE's per-atom ``shift`` is a constant added to every E0; it is
kept separate only so that data statistics stay readable).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scalarjax.backbones.allegro import Allegro
from scalarjax.backbones.mace import MACE
from scalarjax.backbones.nequip import NequIP
from scalarjax.config import ModelConfig
from scalarjax.graph.inputs import GraphInputs

# backbone kind (:data:`scalarjax.config.BACKBONE_CONFIGS`) → its Flax module
BACKBONE_CLASSES = {"mace": MACE, "nequip": NequIP, "allegro": Allegro}


class AtomicEnergyModel(nn.Module):
    """:class:`~scalarjax.graph.inputs.GraphInputs` → per-atom energies ``[N]``, eV."""

    config: ModelConfig

    @nn.compact
    def __call__(self, graph: GraphInputs) -> jnp.ndarray:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        num_species = len(cfg.atomic_numbers)
        backbone = BACKBONE_CLASSES[cfg.backbone.kind](
            config=cfg, num_species=num_species, transforms=cfg.scalar_transforms, name="backbone"
        )
        x = backbone(graph)
        e0 = jnp.asarray(cfg.atomic_energies or (0.0,) * num_species, dtype)[graph.species]
        return e0 + cfg.shift + cfg.scale * x


def build_model(config: ModelConfig) -> AtomicEnergyModel:
    """The Flax model of ``config``: ``model.apply(params, graph: GraphInputs)`` → per-atom energies
    ``[N]``, eV (module docstring). Raises ``ValueError`` without ``atomic_numbers`` and ``InputError``
    for float64 without JAX's x64 mode."""
    if not config.atomic_numbers:
        raise ValueError("model.atomic_numbers is empty: give the elements the model should know (species=...)")
    config.check_dtype()
    return AtomicEnergyModel(config)


def dummy_inputs(config: ModelConfig) -> GraphInputs:
    """Tiny inputs for ``init`` (shapes do not matter: parameters are shape-independent of N, E)."""
    dtype = jnp.dtype(config.dtype)
    idx = jnp.asarray([0, 1], jnp.int32)
    return GraphInputs(
        species=jnp.zeros((2,), jnp.int32),
        vectors=jnp.asarray([[1.0, 0.2, 0.3], [-1.0, -0.2, -0.3]], dtype),
        senders=idx,
        receivers=idx[::-1],
        edge_mask=jnp.ones((2,), dtype),
        node_mask=jnp.ones((2,), dtype),
    )


def init_params(model: AtomicEnergyModel, seed: int = 0):
    """The model's initial parameters for ``seed`` (a Flax variables dict), by a jitted ``init`` (eager
    ``init`` is much slower for MACE; see docs/performance-notes.md)."""
    return jax.jit(model.init)(jax.random.PRNGKey(seed), dummy_inputs(model.config))


def abstract_params(model: AtomicEnergyModel):
    """Shapes and dtypes of the parameters (``jax.ShapeDtypeStruct`` pytree) without compiling or
    running ``init``: the restore target for checkpoints (``init_params`` costs an XLA compilation)."""
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy_inputs(model.config)))

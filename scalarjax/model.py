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

from scalarjax.backbones.mace import MACE
from scalarjax.backbones.nequip import NequIP
from scalarjax.config import ModelConfig

BACKBONE_CLASSES = {"mace": MACE, "nequip": NequIP}


class AtomicEnergyModel(nn.Module):
    """``(species, vectors, senders, receivers, edge_mask, node_mask) → [N]`` per-atom energies, eV."""

    config: ModelConfig

    @nn.compact
    def __call__(self, species, vectors, senders, receivers, edge_mask, node_mask) -> jnp.ndarray:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        num_species = len(cfg.atomic_numbers)
        x = BACKBONE_CLASSES[cfg.backbone](cfg, num_species, cfg.scalar_transforms, name="backbone")(
            species, vectors, senders, receivers, edge_mask, node_mask
        )
        e0 = jnp.asarray(cfg.atomic_energies or (0.0,) * num_species, dtype)[species]
        return e0 + cfg.shift + cfg.scale * x


def build_model(config: ModelConfig) -> AtomicEnergyModel:
    if not config.atomic_numbers:
        raise ValueError("model.atomic_numbers is empty: give the elements the model should know (species=...)")
    config.check_dtype()
    return AtomicEnergyModel(config)


def dummy_inputs(config: ModelConfig):
    """Tiny inputs for ``init`` (shapes do not matter: parameters are shape-independent of N, E)."""
    dtype = jnp.dtype(config.dtype)
    species = jnp.zeros((2,), jnp.int32)
    vectors = jnp.asarray([[1.0, 0.2, 0.3], [-1.0, -0.2, -0.3]], dtype)
    idx = jnp.asarray([0, 1], jnp.int32)
    return species, vectors, idx, idx[::-1], jnp.ones((2,), dtype), jnp.ones((2,), dtype)


def init_params(model: AtomicEnergyModel, seed: int = 0):
    """Jitted ``init`` (several times faster than eager for the medium model)."""
    return jax.jit(model.init)(jax.random.PRNGKey(seed), *dummy_inputs(model.config))


def abstract_params(model: AtomicEnergyModel):
    """Shapes and dtypes of the parameters (``jax.ShapeDtypeStruct`` pytree) without compiling or
    running ``init``: the restore target for checkpoints (``init_params`` costs an XLA compilation)."""
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *dummy_inputs(model.config)))

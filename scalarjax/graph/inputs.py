"""What a backbone sees of a padded graph: one typed pytree instead of six positional arrays."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class GraphInputs(NamedTuple):
    """The model's input (a JAX pytree: it passes through ``jit``, ``grad`` and ``vmap``; a NamedTuple
    so that importing it needs neither Flax nor the model code, as exported models require).

    Shapes: N nodes and E edges of the padded batch (see the padding contract in
    :mod:`scalarjax.graph.batch`).

    - ``species`` ``[N]`` int: index of each atom's element in the model's ``atomic_numbers``;
    - ``vectors`` ``[E, 3]`` Å: ``r_receiver − r_sender`` (+ the cell shift); padded edges carry a
      constant vector beyond ``r_max``, so no length is zero and no gradient flows through them;
    - ``senders``, ``receivers`` ``[E]`` int: the edge j → i is (sender j, receiver i);
    - ``edge_mask`` ``[E]``, ``node_mask`` ``[N]``: 1.0 for real edges / atoms, 0.0 for padding
      (the model's float dtype).
    """

    species: jnp.ndarray
    vectors: jnp.ndarray
    senders: jnp.ndarray
    receivers: jnp.ndarray
    edge_mask: jnp.ndarray
    node_mask: jnp.ndarray

"""Fine-tuning from an existing run (``training.init_from``), optionally with new scalar transforms.

``training.init_from: RUN_DIR`` starts training from a trained or imported run (``scalarjax
import-mace``): the model is the run's model (architecture *and* statistics: E0s, scale, shift,
avg_num_neighbors are kept, not re-fitted to the new data, so step 0 is the run's model) plus the
``model.scalar_transforms`` of the new configuration; the YAML's ``model.dtype`` applies. With
``identity_init: true`` on each transform (PAN: γ = 0; PGS: W = 0) the fine-tuned model at step 0
reproduces the run's energies, forces and stresses exactly.

``training.trainable``: ``all`` trains every parameter; ``new`` only the parameters the run does not
have (the added transforms) and the readouts (``readout_t``): gradients of the frozen parameters
are zeroed before the optimiser (so they do not enter gradient clipping or Adam's moments) and
their updates after it (so weight decay does not move them either).

Everything here is a helper called from :func:`scalarjax.training.trainer.train`: the base model
and its statistics, the initial parameters and the optimiser restriction.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import optax
import yaml

from scalarjax.errors import InputError, RunDirError

TRAINABLE = ("all", "new")
KEEP_FROM_NEW_CONFIG = ("scalar_transforms", "dtype")


def _key(path) -> tuple:
    return tuple(str(getattr(k, "key", k)) for k in path)


def base_run(run_dir):
    """``(RunConfig, statistics dict)`` of the run to start from."""
    from scalarjax.training.config import load_run_config

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "best").is_dir():
        raise RunDirError(f"training.init_from: {run_dir} is not a run directory (needs config.yaml and best/)")
    with open(run_dir / "config.yaml") as f:
        cfg = load_run_config(raw=yaml.safe_load(f))
    stats_path = run_dir / "statistics.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    return cfg, stats


def model_with_statistics(cfg, train) -> tuple:
    """As :func:`scalarjax.training.trainer.model_with_statistics`, but the model and its statistics are
    those of ``training.init_from`` (+ this config's scalar transforms and dtype)."""
    from scalarjax.config import ModelConfig, load_model_config
    from scalarjax.elements import ElementTable
    from scalarjax.graph.batch import configuration_to_graph

    tc = cfg.training
    if tc.trainable not in TRAINABLE:
        raise InputError(f"training.trainable: {tc.trainable!r} is not one of {TRAINABLE}")
    base_cfg, base_stats = base_run(tc.init_from)
    base = base_cfg.model
    mine, theirs, default = cfg.model.flat(), base.flat(), ModelConfig(backbone=cfg.model.backbone.kind).flat()
    for key, value in mine.items():
        if key not in KEEP_FROM_NEW_CONFIG and value != default[key] and value != theirs.get(key):
            raise InputError(
                f"model.{key}: {value!r} differs from the run being fine-tuned ({tc.init_from}: "
                f"{theirs.get(key)!r}); with training.init_from only scalar_transforms and dtype may be set"
            )
    new_zs = sorted({int(z) for c in train for z in c.species} - set(base.atomic_numbers))
    if new_zs:
        raise InputError(f"data.train: element(s) {new_zs} are not in the model of {tc.init_from} (it knows {list(base.atomic_numbers)})")
    model = load_model_config(base, scalar_transforms=list(cfg.model.scalar_transforms), dtype=cfg.model.dtype)
    elements = ElementTable(model.atomic_numbers)
    graphs = [configuration_to_graph(c, elements, model.r_max) for c in train]
    stats = {
        "atomic_numbers": list(model.atomic_numbers),
        "e0s": list(model.atomic_energies),
        "avg_num_neighbors": model.avg_num_neighbors,
        "scale": model.scale,
        "shift": model.shift,
        "init_from": str(tc.init_from),
        "base_statistics": base_stats,
    }
    return model, graphs, stats


def initial_params(params, tc):
    """``(params, mask)``: ``params`` with every leaf the base run has replaced by the run's value (cast
    to this model's dtype); ``mask`` (pytree of bools, True = trainable) for ``trainable: new``, else None."""
    if not tc.init_from:
        if tc.trainable != "all":
            raise InputError("training.trainable: 'new' needs training.init_from (there is nothing old to freeze)")
        return params, None
    from scalarjax.run import load_run

    base = {_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(load_run(tc.init_from).params)[0]}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    out, used = [], set()
    for path, v in leaves:
        k = _key(path)
        if k in base:
            if base[k].shape != v.shape:
                raise InputError(f"training.init_from: parameter {'/'.join(k)} has shape {base[k].shape} in the run, {v.shape} here")
            out.append(jnp.asarray(base[k], v.dtype))
            used.add(k)
        else:
            out.append(v)
    unused = sorted("/".join(k) for k in set(base) - used)
    if unused:
        raise InputError(f"training.init_from: the run has parameters this model lacks, e.g. {unused[:3]}")
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), out)
    if tc.trainable == "all":
        return params, None
    mask = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(params), [_key(p) not in base or any(s.startswith("readout_") for s in _key(p)) for p, _ in leaves]
    )
    return params, mask


def restrict(optimizer: optax.GradientTransformation, mask) -> optax.GradientTransformation:
    """Train only the leaves where ``mask`` is True (``mask=None``: the optimiser unchanged).

    The returned transformation keeps the optimiser's own state object (so ``set_lr`` still finds
    ``hyperparams``): frozen gradients are zeroed before the inner update, frozen updates after it.
    """
    if mask is None:
        return optimizer

    def zero_frozen(tree):
        return jax.tree.map(lambda x, m: x if m else jnp.zeros_like(x), tree, mask)

    def update(updates, state, params=None):
        updates, state = optimizer.update(zero_frozen(updates), state, params)
        return zero_frozen(updates), state

    return optax.GradientTransformation(optimizer.init, update)

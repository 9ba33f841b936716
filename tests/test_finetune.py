"""Fine-tuning from a run (``training.init_from``): identity-initialised PAN/PGS reproduce the base
model at step 0; ``trainable: new`` moves only the added transforms and the readouts."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scalarjax.data.configuration import Configuration
from scalarjax.training import finetune
from scalarjax.training.config import load_run_config

FIXTURES = pathlib.Path(__file__).parent / "data" / "mace_torch"
TRANSFORMS = [
    {"kind": "pan", "neighbor_weights": True, "hidden": 4, "identity_init": True},
    {"kind": "pgs", "edge_modes": 4, "readout_modes": 3, "identity_init": True},
]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """The imported residual-first mace-torch fixture (H, C, O, Si; float64) as the run to fine-tune."""
    from scalarjax.interop.mace_torch import import_mace

    return import_mace(FIXTURES / "residual_first_l3.npz", tmp_path_factory.mktemp("base") / "run", "float64")


def _cells(n=4, seed=0):
    ref = json.loads((FIXTURES / "reference.json").read_text())["structures"]["mixed_cell"]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pos = np.asarray(ref["positions"]) + rng.normal(0, 0.05, (len(ref["numbers"]), 3))
        out.append(
            Configuration(
                species=np.asarray(ref["numbers"]),
                positions=pos,
                cell=np.asarray(ref["cell"]),
                pbc=(True,) * 3,
                energy=float(rng.normal(-10, 1)),
                forces=rng.normal(0, 0.5, pos.shape),
                stress=rng.normal(0, 0.01, 6),
            )
        )
    return out


def _graph(pot, configs):
    from scalarjax.graph.batch import batch_graphs, configuration_to_graph

    return batch_graphs([configuration_to_graph(c, pot.elements, pot.config.r_max) for c in configs])


def _raw(run_dir, **training):
    return {"model": {"scalar_transforms": TRANSFORMS, "dtype": "float64"}, "training": {"init_from": str(run_dir), **training}}


def test_identity_init_reproduces_the_base_model_exactly(base_run):
    from scalarjax.potential import Potential
    from scalarjax.training.evaluate import load_run

    base = load_run(base_run)
    cfg = load_run_config(raw=_raw(base_run))
    model, _, stats = finetune.model_with_statistics(cfg, [])
    assert len(model.scalar_transforms) == 2 and stats["e0s"] == list(base.config.atomic_energies)
    pot = Potential(model)
    pot.params, mask = finetune.initial_params(pot.params, cfg.training)
    assert mask is None
    graph = _graph(base, _cells(2))
    out_base, out_ft = base(graph), pot(graph)
    for k in ("energy", "forces", "stress"):
        np.testing.assert_allclose(out_ft[k], out_base[k], rtol=1e-12, atol=1e-12)
    # The transforms are live: moving their (new) parameters off identity changes the energies.
    base_keys = {finetune._key(p) for p, _ in jax.tree_util.tree_flatten_with_path(base.params)[0]}
    moved = jax.tree_util.tree_map_with_path(lambda p, v: v if finetune._key(p) in base_keys else v + 0.3, pot.params)
    assert np.abs(np.asarray(pot.function()(moved, graph)["energy"] - out_base["energy"])).max() > 1e-6


def test_restrict_freezes_leaves_and_keeps_set_lr():
    from scalarjax.training.config import TrainingConfig
    from scalarjax.training.optim import init_state, make_optimizer, set_lr

    params = {"a": jnp.ones((3, 2)), "b": jnp.ones((2, 2))}
    mask = {"a": False, "b": True}
    opt = finetune.restrict(make_optimizer(TrainingConfig(lr=0.1, weight_decay=0.1)), mask)
    state = set_lr(init_state(params, opt), 0.05)
    grads = {"a": jnp.full((3, 2), 5.0), "b": jnp.full((2, 2), 5.0)}
    updates, _ = opt.update(grads, state.opt_state, params)
    new = optax.apply_updates(params, updates)
    assert np.array_equal(new["a"], params["a"]) and not np.allclose(new["b"], params["b"])


def test_trainable_new_trains_only_transforms_and_readouts(base_run, tmp_path):
    from scalarjax.demo import write_extxyz
    from scalarjax.training.evaluate import load_run
    from scalarjax.training.trainer import train

    data = tmp_path / "cells.xyz"
    write_extxyz(data, _cells(4))
    raw = _raw(base_run, trainable="new", max_epochs=1, lr=0.01, ema_decay=0.0)
    raw["data"] = {"train": str(data), "batch_size": 2, "valid_fraction": 0.25}
    raw["output"] = {"run_dir": str(tmp_path / "ft")}
    run = train(load_run_config(raw=raw), progress=False)
    base = {finetune._key(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(load_run(base_run).params)[0]}
    tuned = {finetune._key(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(load_run(run).params)[0]}
    new = [k for k in tuned if k not in base]
    readouts = [k for k in base if any(s.startswith("readout_") for s in k)]
    frozen = [k for k in base if k not in readouts]
    assert new and readouts and frozen
    assert all(np.array_equal(tuned[k], base[k]) for k in frozen)
    assert any(not np.array_equal(tuned[k], base[k]) for k in readouts)
    assert any(np.abs(tuned[k]).max() > 0 for k in new)  # identity-initialised (zeros) transforms moved
    stats = json.loads((run / "statistics.json").read_text())
    assert stats["init_from"] == str(base_run) and stats["e0s"] == list(load_run(base_run).config.atomic_energies)


def test_finetune_config_errors(base_run):
    cfg = load_run_config(raw={"model": {"max_ell": 1}, "training": {"init_from": str(base_run)}})
    with pytest.raises(ValueError, match="model.max_ell"):
        finetune.model_with_statistics(cfg, [])
    cfg = load_run_config(raw=_raw(base_run))
    fe = Configuration(species=np.array([26]), positions=np.zeros((1, 3)), energy=-1.0)
    with pytest.raises(ValueError, match=r"element\(s\) \[26\]"):
        finetune.model_with_statistics(cfg, [fe])
    with pytest.raises(ValueError, match="needs training.init_from"):
        finetune.initial_params({}, load_run_config(raw={"training": {"trainable": "new"}}).training)
    with pytest.raises(ValueError, match="not a run directory"):
        finetune.model_with_statistics(load_run_config(raw={"training": {"init_from": str(FIXTURES)}}), [])

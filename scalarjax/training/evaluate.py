"""Load a trained run (config, statistics, best EMA parameters) and evaluate it."""

from __future__ import annotations

import pathlib

import yaml

from scalarjax.data.io import read_configurations
from scalarjax.graph.batch import configuration_to_graph
from scalarjax.potential import Potential
from scalarjax.training.config import load_run_config
from scalarjax.training.metrics import error_metrics, predict


def load_run(run_dir, dtype=None) -> Potential:
    """The best (EMA) parameters of a run, with its model statistics and dtype.

    ``dtype``: evaluate in another precision than the run was trained in (e.g. ``"float64"`` for
    energy-conservation work; needs JAX's x64 mode); the parameters are cast.
    """
    import jax

    from scalarjax.config import load_model_config
    from scalarjax.errors import RunDirError
    from scalarjax.model import abstract_params, build_model
    from scalarjax.training.run_dir import check_model_matches, load_params

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
    try:
        with open(run_dir / "config.yaml") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise RunDirError(f"{run_dir / 'config.yaml'}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{run_dir / 'config.yaml'}: expected a mapping of sections, got {type(raw).__name__}")
    cfg = load_run_config(raw=raw)
    check_model_matches(run_dir, cfg.model)  # a hand-edited config.yaml must match the checkpoint
    model = cfg.model if dtype is None or dtype == cfg.model.dtype else load_model_config(cfg.model, dtype=dtype)
    # Restore onto the parameters' abstract shapes and dtype (orbax casts): no init compilation
    # (tens of seconds for MACE), and a float64 run loads as float32 without JAX's x64 mode.
    params = load_params(run_dir / "best", abstract_params(build_model(model)))
    return Potential(model, params=jax.tree_util.tree_map(jax.numpy.asarray, params))


def evaluate_run(run_dir, data_path, batch_size: int = 8, parity_png=None, keys=None) -> dict:
    pot = load_run(run_dir)
    configs = read_configurations(data_path) if keys is None else read_configurations(data_path, keys=keys)
    graphs = [configuration_to_graph(c, pot.elements, pot.config.r_max) for c in configs]
    stress = any(c.stress is not None for c in configs)
    preds = predict(pot.function(stress), pot.params, graphs, batch_size, stress)
    if parity_png:
        from scalarjax.training.plots import parity

        parity(configs, preds, parity_png, str(data_path))
    return error_metrics(configs, preds)

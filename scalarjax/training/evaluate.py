"""Evaluate a trained run on a data file (loading: :func:`scalarjax.run.load_run`, re-exported here)."""

from __future__ import annotations

from scalarjax.data.io import read_configurations
from scalarjax.run import load_run  # noqa: F401  (also imported from here by earlier code)
from scalarjax.training.metrics import error_metrics, predict


def evaluate_run(run_dir, data_path, batch_size: int = 8, parity_png=None, keys=None) -> dict:
    """:func:`~scalarjax.training.metrics.error_metrics` of the run's best parameters on ``data_path``
    (meV/atom, meV/Å, meV/Å³; stress when any configuration has one). ``keys``: label keys for the
    reader; ``parity_png``: also write a parity plot there."""
    pot = load_run(run_dir)
    configs = read_configurations(data_path) if keys is None else read_configurations(data_path, keys=keys)
    graphs = pot.graphs(configs)
    stress = any(c.stress is not None for c in configs)
    preds = predict(pot.function(stress), pot.params, graphs, batch_size, stress)
    if parity_png:
        from scalarjax.training.plots import parity

        parity(configs, preds, parity_png, str(data_path))
    return error_metrics(configs, preds)

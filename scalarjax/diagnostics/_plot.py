"""Plot plumbing shared by the diagnostics' ``plot_*`` helpers.

matplotlib is imported lazily and only through ``matplotlib.figure.Figure``: saving a bare
``Figure`` renders with the Agg canvas, so no pyplot state is created and the process-wide
backend is never switched (a notebook or GUI session that imports scalarjax keeps its own).
"""

from __future__ import annotations

import pathlib
from typing import Mapping


def labelled(results: Mapping, signature_key: str) -> dict:
    """``{label: result}`` from either one result (a dict holding ``signature_key``) or such a mapping."""
    if isinstance(results, Mapping) and signature_key in results:
        return {"": results}
    if not isinstance(results, Mapping) or not results:
        raise ValueError("expected a result dict or a non-empty {label: result} mapping")
    for label, res in results.items():
        if not isinstance(res, Mapping) or signature_key not in res:
            raise ValueError(f"result {label!r} has no {signature_key!r}: not a result of the matching diagnostic")
    return dict(results)


def figure(nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), **subplot_kw):
    """A pyplot-free figure and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save(fig, path) -> pathlib.Path:
    """Write ``fig`` to ``path`` at 150 dpi (the format from the suffix), creating its directory; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def legend(ax, labels) -> None:
    """A small legend on ``ax``, only when some curve has a label (one unlabelled result needs none)."""
    if any(labels):
        ax.legend(fontsize="small")

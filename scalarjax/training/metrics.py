"""Errors of a model on labelled configurations: MAE and RMSE, overall and per config_type.

Energy per atom in meV/atom, forces in meV/Å (per component), stress in meV/Å³ (per Voigt
component, off-diagonals once).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jraph
import numpy as np

from scalarjax.data.configuration import Configuration, full_to_voigt
from scalarjax.graph.batch import batches


def predict(potential_fn, params, graphs, batch_size: int, compute_stress: bool = True) -> list[dict]:
    """Per-configuration predictions (numpy) in the order of ``graphs``."""
    out = []
    for batch in batches(graphs, batch_size):
        pred = jax.device_get(potential_fn(params, batch))
        n_real = int(np.sum(np.asarray(jraph.get_graph_padding_mask(batch))))
        start = 0
        for g in range(n_real):
            n = int(batch.n_node[g])
            item = {"energy": float(pred["energy"][g]), "forces": np.asarray(pred["forces"][start : start + n])}
            if "stress" in pred:
                item["stress"] = full_to_voigt(np.asarray(pred["stress"][g]))
            out.append(item)
            start += n
    return out


def _stats(errors: list) -> dict:
    if not errors:
        return {"mae": None, "rmse": None, "n": 0}
    e = np.concatenate([np.ravel(x) for x in errors])
    return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2))), "n": int(e.size)}


def error_metrics(configs: Sequence[Configuration], preds: Sequence[dict]) -> dict:
    """``{"all" | config_type: {"energy_meV_per_atom" | "forces_meV_per_A" | "stress_meV_per_A3": {mae, rmse, n}}}``
    over the labelled entries (module docstring; stress of periodic configurations only; ``None`` and
    ``n = 0`` without labels). ``preds``: :func:`predict`'s, in the order of ``configs``."""
    groups = {"all": list(range(len(configs)))}
    for i, c in enumerate(configs):
        groups.setdefault(c.config_type, []).append(i)
    result = {}
    for name, idx in groups.items():
        e, f, s = [], [], []
        for i in idx:
            c, p = configs[i], preds[i]
            if c.energy is not None:
                e.append(1e3 * (p["energy"] - c.energy) / c.n_atoms)
            if c.forces is not None:
                f.append(1e3 * (p["forces"] - c.forces))
            if c.stress is not None and "stress" in p and any(c.pbc):
                s.append(1e3 * (p["stress"] - c.stress))
        result[name] = {"energy_meV_per_atom": _stats(e), "forces_meV_per_A": _stats(f), "stress_meV_per_A3": _stats(s)}
    return result


def structure_errors(configs: Sequence[Configuration], preds: Sequence[dict]) -> dict:
    """Per-structure errors, for paired and bootstrap statistics over structures.

    Returns lists (one entry per configuration, ``None`` where a label is missing):
    ``config_type``, ``n_atoms``, ``energy_meV_per_atom`` (signed, (E_pred − E_ref)/n),
    ``forces_mae_meV_per_A`` and ``forces_sq_meV2_per_A2`` (mean |ΔF| and mean ΔF² over the 3n
    components), ``stress_mae_meV_per_A3`` (mean |Δσ| over the 6 Voigt components).
    """
    out = {
        k: []
        for k in ("config_type", "n_atoms", "energy_meV_per_atom", "forces_mae_meV_per_A", "forces_sq_meV2_per_A2", "stress_mae_meV_per_A3")
    }
    r = lambda x: float(f"{x:.5g}")
    for c, p in zip(configs, preds):
        out["config_type"].append(c.config_type)
        out["n_atoms"].append(int(c.n_atoms))
        out["energy_meV_per_atom"].append(r(1e3 * (p["energy"] - c.energy) / c.n_atoms) if c.energy is not None else None)
        df = 1e3 * (np.asarray(p["forces"]) - c.forces) if c.forces is not None else None
        out["forces_mae_meV_per_A"].append(r(np.mean(np.abs(df))) if df is not None else None)
        out["forces_sq_meV2_per_A2"].append(r(np.mean(df**2)) if df is not None else None)
        has_s = c.stress is not None and "stress" in p and any(c.pbc)
        out["stress_mae_meV_per_A3"].append(r(np.mean(np.abs(1e3 * (p["stress"] - c.stress)))) if has_s else None)
    return out


def format_table(metrics: dict) -> str:
    """An :func:`error_metrics` result as a text table: MAE and RMSE of E, F, S per config_type ("-": no labels)."""
    lines = [
        f"{'config_type':16s} {'E MAE':>9s} {'E RMSE':>9s} {'F MAE':>9s} {'F RMSE':>9s} {'S MAE':>9s} {'S RMSE':>9s}",
        f"{'':16s} {'meV/atom':>9s} {'meV/atom':>9s} {'meV/Å':>9s} {'meV/Å':>9s} {'meV/Å³':>9s} {'meV/Å³':>9s}",
    ]
    fmt = lambda v: f"{v:9.2f}" if v is not None else f"{'-':>9s}"
    for name, m in metrics.items():
        e, f, s = m["energy_meV_per_atom"], m["forces_meV_per_A"], m["stress_meV_per_A3"]
        lines.append(f"{name:16s} {fmt(e['mae'])} {fmt(e['rmse'])} {fmt(f['mae'])} {fmt(f['rmse'])} {fmt(s['mae'])} {fmt(s['rmse'])}")
    return "\n".join(lines)

"""PNG plots of a run: learning curve and parity plots (matplotlib, optional: skipped if absent)."""

from __future__ import annotations

import json

import numpy as np


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def learning_curve(metrics_jsonl, out_png) -> bool:
    """Train loss and the valid/test MAEs (meV/atom, meV/Å, meV/Å³) per epoch from ``metrics.jsonl``
    → ``out_png``. False (nothing written) without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    rows = [json.loads(line) for line in open(metrics_jsonl)]
    epochs = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.semilogy(epochs, [r["train_loss"] for r in rows])
    a.set_xlabel("epoch"), a.set_ylabel("train loss")
    for split, style in (("valid", "-"), ("test", "--")):
        for i, (key, label) in enumerate(
            (("energy_meV_per_atom", "E (meV/atom)"), ("forces_meV_per_A", "F (meV/Å)"), ("stress_meV_per_A3", "S (meV/Å³)"))
        ):
            pts = [(r["epoch"], r[split][key]["mae"]) for r in rows if r.get(split, {}).get(key, {}).get("mae") is not None]
            if pts:
                b.semilogy(*zip(*pts), style, color=f"C{i}", label=f"{split} {label}")
    b.set_xlabel("epoch"), b.set_ylabel("MAE"), b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return True


def parity(configs, preds, out_png, title: str = "") -> bool:
    """Model vs reference scatter: energy (eV/atom), force components (eV/Å), stress components
    (eV/Å³, Voigt) → ``out_png``. False (nothing written) without matplotlib or labels."""
    plt = _pyplot()
    if plt is None:
        return False
    panels = []
    e = [(c.energy / c.n_atoms, p["energy"] / c.n_atoms) for c, p in zip(configs, preds) if c.energy is not None]
    if e:
        panels.append(("energy (eV/atom)", np.array(e)))
    f = [np.stack([c.forces.ravel(), p["forces"].ravel()], 1) for c, p in zip(configs, preds) if c.forces is not None]
    if f:
        panels.append(("force components (eV/Å)", np.concatenate(f)))
    s = [np.stack([c.stress, p["stress"]], 1) for c, p in zip(configs, preds) if c.stress is not None and "stress" in p]
    if s:
        panels.append(("stress components (eV/Å³)", np.concatenate(s)))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.5), squeeze=False)
    for ax, (label, xy) in zip(axes[0], panels):
        ax.scatter(xy[:, 0], xy[:, 1], s=3)
        lim = [xy.min(), xy.max()]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}"), ax.set_ylabel("model")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return True

"""The data of a run: reading ``cfg.data`` into train / valid / test configurations, the held-out
split and the duplicate check between sets."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from scalarjax.data.io import LabelKeys, read_configurations
from scalarjax.errors import InputError
from scalarjax.training.config import RunConfig


def _frame_key(c) -> bytes:
    return c.species.tobytes() + np.round(c.positions, 8).tobytes() + np.round(c.cell, 8).tobytes()


def warn_duplicates(train, other, name: str) -> int:
    """Warn when configurations of ``other`` also occur in ``train`` (same species, positions and cell
    to 1e-8 Å): a validation or test error on them measures memory, not generalisation."""
    seen = {_frame_key(c): c for c in train}
    dups = [(c, seen[_frame_key(c)]) for c in other if _frame_key(c) in seen]
    if dups:
        (a, b), more = dups[0], len(dups) - 1
        warnings.warn(
            f"{len(dups)} {name} configuration(s) also in the training set, e.g. {a.source} = {b.source}"
            f"{f' (and {more} more)' if more else ''}; their {name} errors are not a measure of generalisation"
        )
    return len(dups)


def read_split(cfg: RunConfig):
    """``(train, valid, test)`` lists of configurations from ``cfg.data``: valid from its file, else
    ``valid_fraction`` of train (at least one) held out with ``split_seed``; train cut to ``max_train``
    and weighted by ``config_type_weights``. Warns on duplicates across sets; :class:`InputError` for
    no training file, an empty training set or a training configuration without any label."""
    d = cfg.data
    if not d.train:
        raise InputError("data.train: no training file given")
    keys = LabelKeys(energy_key=d.energy_key, forces_key=d.forces_key, stress_key=d.stress_key, virial_key=d.virial_key, required=())
    read = lambda p: read_configurations(p, keys=keys) if not str(p).endswith((".json", ".npz")) else read_configurations(p)
    train = read(d.train)
    rng = np.random.default_rng(d.split_seed)
    if d.valid:
        valid = read(d.valid)
    else:
        order = rng.permutation(len(train))
        n_valid = max(1, int(round(d.valid_fraction * len(train))))
        valid = [train[i] for i in order[:n_valid]]
        train = [train[i] for i in order[n_valid:]]
    if d.max_train is not None:
        train = train[: d.max_train]
    if not train:
        raise InputError(f"{d.train}: no training configurations left after holding out {len(valid)} for validation")
    test = read(d.test) if d.test else []
    warn_duplicates(train, valid, "validation")
    warn_duplicates(train, test, "test")
    for c in train:
        if c.energy is None and c.forces is None and c.stress is None:
            raise InputError(f"{c.source}: training configuration has no label at all")
    if d.config_type_weights:
        train = [dataclasses.replace(c, weight=c.weight * float(d.config_type_weights.get(c.config_type, 1.0))) for c in train]
    return train, valid, test

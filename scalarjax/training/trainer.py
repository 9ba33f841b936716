"""The training loop: data → statistics → model → jitted steps → checkpoints → metrics.

Run directory layout::

    RUN_DIR/config.yaml          resolved configuration (model statistics filled in)
    RUN_DIR/statistics.json      E0s, avg_num_neighbors, scale, shift, split sizes
    RUN_DIR/metrics.jsonl        one line per epoch
    RUN_DIR/checkpoints/         orbax: train state (params, optimiser, EMA) + loop state, latest N
    RUN_DIR/best/                orbax: EMA parameters with the best validation score
    RUN_DIR/final_metrics.json   errors of the best parameters on valid (and test) sets; under
                             "last_ema" the same for the EMA parameters at the end of the run
RUN_DIR/structure_errors.json  per-structure errors (best and last EMA) on valid and test
    RUN_DIR/learning_curve.png, parity_valid.png, parity_test.png
    RUN_DIR/fingerprint.json     model (with statistics) and data (file SHA-256, split settings) the
                                 parameters belong to: decides resume / refuse (training/run_dir.py)

Every file is written under a temporary name and renamed (best/ by two renames), so a run killed
at any moment can be loaded and resumed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import yaml

from scalarjax.config import load_model_config
from scalarjax.data.io import LabelKeys, read_configurations
from scalarjax.errors import InputError, UserError
from scalarjax.fileio import atomic_path, recover_dir, write_json, write_text
from scalarjax.graph.batch import ElementTable, configuration_to_graph
from scalarjax.potential import Potential, make_potential
from scalarjax.progress import bar
from scalarjax.training import finetune, parallel, plots
from scalarjax.training.config import RunConfig, to_dict, validate_run_config
from scalarjax.training.loss import LossWeights
from scalarjax.training.metrics import error_metrics, format_table, predict, structure_errors
from scalarjax.training.optim import init_state, make_optimizer, set_lr
from scalarjax.training.run_dir import (  # noqa: F401
    decide_resume,
    fingerprint,
    load_params,
    restore_latest,
    save_params,
    truncate_metrics,
    write_fingerprint,
)
from scalarjax.training.statistics import compute_avg_num_neighbors, compute_e0s, compute_scale_shift


class TrainingDiverged(UserError, RuntimeError):
    """Too many non-finite steps: a setting (learning rate, data) to change, reported in one line."""


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


def model_with_statistics(cfg: RunConfig, train) -> tuple:
    zs = tuple(sorted({int(z) for c in train for z in c.species} | set(cfg.model.atomic_numbers)))
    r_max = cfg.model.r_max
    elements = ElementTable(zs)
    graphs = [configuration_to_graph(c, elements, r_max) for c in train]
    e0s = cfg.model.atomic_energies or compute_e0s(train, zs)
    avg = compute_avg_num_neighbors(graphs)
    scale, mean_residual = compute_scale_shift(train, zs, e0s)
    model = load_model_config(cfg.model, atomic_numbers=zs, atomic_energies=e0s, avg_num_neighbors=avg, scale=scale, shift=0.0)
    stats = {
        "atomic_numbers": zs,
        "e0s": e0s,
        "avg_num_neighbors": avg,
        "scale": scale,
        "shift": 0.0,
        "mean_per_atom_residual_eV": mean_residual,
    }
    return model, graphs, stats


def _checkpoint_manager(run_dir: pathlib.Path, keep: int) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(run_dir.absolute() / "checkpoints", options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def selection_weights(tc) -> LossWeights:
    """The weights of the validation score that picks ``best/``.

    ``select_over: stage_two``: the first-stage weights (scores compete within stage two only).
    ``select_over: run``: the run's final objective, i.e. the stage-two energy weight when stage two
    is on. With the first-stage weights an epoch before stage two (energy barely fitted, forces a
    little better) can win over the whole run: seen on aspirin, E 347 vs 7 meV/atom.
    """
    energy = tc.stage_two_energy_weight if tc.select_over == "run" and tc.stage_two_start > 0 else tc.energy_weight
    return LossWeights(energy, tc.forces_weight, tc.stress_weight, tc.huber_delta)


def _score(metrics: dict, w: LossWeights) -> float:
    m = metrics["all"]
    s = 0.0
    for key, weight, unit in (
        ("energy_meV_per_atom", w.energy, 1e-3),
        ("forces_meV_per_A", w.forces, 1e-3),
        ("stress_meV_per_A3", w.stress, 1e-3),
    ):
        if m[key]["rmse"] is not None:
            s += weight * (m[key]["rmse"] * unit) ** 2
    return s


def train(cfg: RunConfig, progress: bool | None = None) -> pathlib.Path:
    tc = cfg.training
    progress = sys.stderr.isatty() if progress is None else progress
    validate_run_config(cfg)
    par = parallel.setup(tc.devices, cfg.data.batch_size)  # jax.distributed + device mesh; checked before any write
    run_dir = pathlib.Path(cfg.output.run_dir)
    train_set, valid_set, test_set = read_split(cfg)
    if tc.init_from:  # fine-tuning: the base run's model and statistics (+ new transforms)
        model_cfg, train_graphs, stats = finetune.model_with_statistics(cfg, train_set)
    else:
        model_cfg, train_graphs, stats = model_with_statistics(cfg, train_set)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    # Decide fresh / resume / refuse before anything in the run directory is written.
    fp = fingerprint(cfg)
    resume = decide_resume(run_dir, fp, dataclasses.asdict(cfg.data))
    stats.update(n_train=len(train_set), n_valid=len(valid_set), n_test=len(test_set))
    if par.is_primary:  # only process 0 writes the run directory (orbax coordinates the checkpoints)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "statistics.json", stats)
        write_fingerprint(run_dir, fp)

    pot = Potential(model_cfg, seed=tc.seed)
    pot.params, trainable_mask = finetune.initial_params(pot.params, tc)
    elements = pot.elements
    valid_graphs = [configuration_to_graph(c, elements, model_cfg.r_max) for c in valid_set]
    test_graphs = [configuration_to_graph(c, elements, model_cfg.r_max) for c in test_set] if tc.test_every > 0 else []
    compute_stress = any(c.stress is not None for c in train_set)
    potential_fn = par.for_evaluation(pot.function(compute_stress))
    weights = LossWeights(tc.energy_weight, tc.forces_weight, tc.stress_weight, tc.huber_delta)
    select_weights = selection_weights(tc)
    optimizer = finetune.restrict(make_optimizer(tc), trainable_mask)
    steps_per_epoch = math.ceil(len(train_graphs) / cfg.data.batch_size)
    raw_fn = make_potential(pot.model.apply, model_cfg.r_max, pot.dtype, compute_stress)
    step_fn = par.train_step(raw_fn, weights, optimizer, tc.ema_decay, int(tc.warmup_epochs * steps_per_epoch))
    state = par.replicate(init_state(pot.params, optimizer))
    train_pad = par.pad_size(train_graphs, cfg.data.batch_size) if cfg.data.fixed_padding else None

    manager = _checkpoint_manager(run_dir, cfg.output.keep_checkpoints)
    loop = {"epoch": 0, "lr": tc.lr, "best_score": None, "bad_epochs": 0, "energy_weight": tc.energy_weight, "stage_two": False}
    if resume:
        restored = restore_latest(manager, state)
        state, loop = restored["state"], dict(restored["loop"])
        print(f"resumed from {run_dir}/checkpoints at epoch {loop['epoch']}")
    if par.is_primary:
        truncate_metrics(run_dir / "metrics.jsonl", loop["epoch"])  # an epoch killed before its checkpoint is logged once
    t_start = time.perf_counter()
    log = open(run_dir / "metrics.jsonl" if par.is_primary else os.devnull, "a")
    while loop["epoch"] < tc.max_epochs:
        epoch = loop["epoch"]
        if tc.stage_two_start > 0 and not loop["stage_two"] and epoch >= tc.stage_two_start * tc.max_epochs:
            loop.update(stage_two=True, energy_weight=tc.stage_two_energy_weight, lr=loop["lr"] * tc.stage_two_lr_factor)
            if tc.select_over == "stage_two":
                loop["best_score"] = None
        if tc.scheduler == "cosine":
            loop["lr"] = (
                tc.lr * 0.5 * (1 + math.cos(math.pi * epoch / tc.max_epochs)) * (tc.stage_two_lr_factor if loop["stage_two"] else 1.0)
            )
        state = set_lr(state, loop["lr"])
        t0 = time.perf_counter()
        ew = np.asarray(loop["energy_weight"], pot.dtype)
        collected = []
        epoch_batches = par.batches(train_graphs, cfg.data.batch_size, shuffle=True, seed=tc.seed * 100003 + epoch, size=train_pad)
        for batch in bar(epoch_batches, steps_per_epoch, f"epoch {epoch + 1}/{tc.max_epochs}", progress, unit="step"):
            state, m = step_fn(state, batch, ew)
            collected.append(m)
        collected = jax.device_get(collected)  # one host transfer per epoch
        skipped = int(sum(int(m["skipped"]) for m in collected))
        finite = [m for m in collected if not m["skipped"]]
        train_loss = float(np.mean([m["loss"] for m in finite])) if finite else float("nan")
        if skipped:
            warnings.warn(f"epoch {epoch + 1}: {skipped} step(s) with a non-finite loss or gradient were skipped")
        if skipped > tc.max_nan_steps or not finite:
            raise TrainingDiverged(
                f"training diverged: {skipped} non-finite steps in epoch {epoch + 1}; "
                f"the last good checkpoint is in {run_dir}/checkpoints (lower training.lr?)"
            )
        loop["epoch"] = epoch + 1
        record = {"epoch": epoch + 1, "lr": loop["lr"], "train_loss": train_loss, "skipped": skipped, "seconds": None}
        if valid_graphs and ((epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.max_epochs):
            vm = error_metrics(valid_set, predict(potential_fn, state.ema, valid_graphs, cfg.data.valid_batch_size, compute_stress))
            score = _score(vm, select_weights)
            record["valid"] = vm["all"]
            record["valid_score"] = score
            if loop["best_score"] is None or score < loop["best_score"]:
                loop["best_score"], loop["bad_epochs"] = score, 0
                save_params(run_dir / "best", state.ema)
            else:
                loop["bad_epochs"] += 1
                if tc.scheduler == "plateau" and loop["bad_epochs"] >= tc.plateau_patience:
                    loop["lr"] *= tc.plateau_factor
                    loop["bad_epochs"] = 0
        record["seconds"] = round(time.perf_counter() - t0, 2)
        if test_graphs and ((epoch + 1) % tc.test_every == 0 or epoch + 1 == tc.max_epochs):
            record["test"] = error_metrics(
                test_set, predict(potential_fn, state.ema, test_graphs, cfg.data.valid_batch_size, compute_stress)
            )["all"]
        record["compiles"] = pot.compile_count + step_fn._cache_size()
        log.write(json.dumps(record) + "\n")
        log.flush()
        manager.save(loop["epoch"], args=ocp.args.Composite(state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)))
        v = record.get("valid", {})
        fmt = lambda k: f"{v[k]['mae']:.2f}" if v.get(k, {}).get("mae") is not None else "-"
        print(
            f"epoch {epoch + 1:4d}  lr {loop['lr']:.2e}  loss {train_loss:.4g}  valid MAE E {fmt('energy_meV_per_atom')} meV/atom  "
            f"F {fmt('forces_meV_per_A')} meV/Å  S {fmt('stress_meV_per_A3')} meV/Å³  {record['seconds']:.1f} s",
            flush=True,
        )
        if tc.time_limit_s and time.perf_counter() - t_start > tc.time_limit_s:
            print(f"time limit of {tc.time_limit_s} s reached")
            break
    manager.wait_until_finished()
    log.close()

    recover_dir(run_dir / "best")
    best = load_params(run_dir / "best", state.ema) if (run_dir / "best").exists() else state.ema
    final = {"last_ema": {}}
    per_structure = {}
    if par.is_primary:
        with atomic_path(run_dir / "learning_curve.png") as tmp:
            plots.learning_curve(run_dir / "metrics.jsonl", tmp)
    for name, configs in (("valid", valid_set), ("test", test_set)):
        if configs:
            graphs = [configuration_to_graph(c, elements, model_cfg.r_max) for c in configs]
            preds = predict(potential_fn, best, graphs, cfg.data.valid_batch_size, compute_stress)
            final[name] = error_metrics(configs, preds)
            per_structure[name] = structure_errors(configs, preds)
            if par.is_primary:
                with atomic_path(run_dir / f"parity_{name}.png") as tmp:
                    plots.parity(configs, preds, tmp, f"{name} set, best EMA parameters")
            print(f"\n{name} ({len(configs)} configurations), best EMA parameters:\n{format_table(final[name])}")
            # The EMA parameters at the end of the run, next to the selected ones (both are reported).
            last = predict(potential_fn, state.ema, graphs, cfg.data.valid_batch_size, compute_stress)
            final["last_ema"][name] = error_metrics(configs, last)
            per_structure[f"{name}_last_ema"] = structure_errors(configs, last)
    if par.is_primary:
        write_json(run_dir / "final_metrics.json", final)
        write_json(run_dir / "structure_errors.json", per_structure, indent=None)
    return run_dir

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
                                 parameters belong to: decides resume / refuse (scalarjax/run.py)

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
from typing import Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
import yaml

from scalarjax.config import load_model_config
from scalarjax.elements import ElementTable
from scalarjax.errors import UserError
from scalarjax.fileio import atomic_path, recover_dir, write_json, write_text
from scalarjax.graph.batch import configuration_to_graph
from scalarjax.potential import Potential, make_potential
from scalarjax.progress import bar
from scalarjax.run import (  # noqa: F401
    decide_resume,
    fingerprint,
    load_params,
    restore_latest,
    save_params,
    truncate_metrics,
    write_fingerprint,
)
from scalarjax.training import finetune, parallel, plots
from scalarjax.training.config import RunConfig, to_dict, validate_run_config
from scalarjax.training.loss import LossWeights
from scalarjax.training.metrics import error_metrics, format_table, predict, structure_errors
from scalarjax.training.optim import init_state, make_optimizer, set_lr
from scalarjax.training.split import read_split, warn_duplicates  # noqa: F401  (re-exported)
from scalarjax.training.statistics import compute_avg_num_neighbors, compute_e0s, compute_scale_shift


class TrainingDiverged(UserError, RuntimeError):
    """Too many non-finite steps: a setting (learning rate, data) to change, reported in one line."""


def model_with_statistics(cfg: RunConfig, train) -> tuple:
    """``(model config, train graphs, statistics)``: ``cfg.model`` with the elements of ``train`` added,
    E0s (eV; the config's if given), ``avg_num_neighbors`` and ``scale`` (eV) fitted on ``train``
    (:mod:`~scalarjax.training.statistics`) and ``shift`` 0; the statistics as written to statistics.json."""
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
    little better) can win over the whole run (an observed case: docs/performance-notes.md).
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


@dataclasses.dataclass
class LoopState:
    """The loop's state between epochs, saved (as JSON) with every checkpoint so a run resumes exactly.

    ``lr``: the learning rate of the next epoch; ``best_score``: the best validation score so far
    (:func:`_score`, eV² units); ``bad_epochs``: epochs since it improved (plateau scheduler);
    ``energy_weight``: the loss's current energy weight (raised in stage two)."""

    epoch: int
    lr: float
    energy_weight: float
    best_score: Optional[float] = None
    bad_epochs: int = 0
    stage_two: bool = False

    def start_epoch(self, tc) -> None:
        """Stage two switch and the cosine schedule for epoch ``self.epoch`` (both fixed by the epoch)."""
        if tc.stage_two_start > 0 and not self.stage_two and self.epoch >= tc.stage_two_start * tc.max_epochs:
            self.stage_two, self.energy_weight, self.lr = True, tc.stage_two_energy_weight, self.lr * tc.stage_two_lr_factor
            if tc.select_over == "stage_two":
                self.best_score = None
        if tc.scheduler == "cosine":
            stage = tc.stage_two_lr_factor if self.stage_two else 1.0
            self.lr = tc.lr * 0.5 * (1 + math.cos(math.pi * self.epoch / tc.max_epochs)) * stage

    def select(self, score: float, tc) -> bool:
        """Record a validation ``score``; True when it is the best so far (then ``best/`` is saved).
        Otherwise counts a bad epoch, and the plateau scheduler lowers ``lr`` after ``plateau_patience``."""
        if self.best_score is None or score < self.best_score:
            self.best_score, self.bad_epochs = score, 0
            return True
        self.bad_epochs += 1
        if tc.scheduler == "plateau" and self.bad_epochs >= tc.plateau_patience:
            self.lr *= tc.plateau_factor
            self.bad_epochs = 0
        return False


@dataclasses.dataclass
class Run:
    """Everything one training run holds: its data, model, jitted functions and train state."""

    cfg: RunConfig
    run_dir: pathlib.Path
    par: parallel.DataParallel
    sets: dict  # name → list[Configuration]: train, valid, test
    graphs: dict  # name → list of graphs (test only with training.test_every)
    pot: Potential
    potential_fn: Callable
    step_fn: Callable
    state: object
    compute_stress: bool
    train_pad: object
    resume: bool

    def predict(self, params, name: str) -> list:
        return predict(self.potential_fn, params, self.graphs[name], self.cfg.data.valid_batch_size, self.compute_stress)


def _prepare(cfg: RunConfig) -> tuple:
    """Read and split the data, fit the statistics, and decide fresh / resume / refuse *before*
    anything in the run directory is written; then write config.yaml, statistics.json and the
    fingerprint (process 0 only). Returns ``(cfg with the fitted model, par, sets, train graphs, resume)``."""
    tc = cfg.training
    validate_run_config(cfg)
    par = parallel.setup(tc.devices, cfg.data.batch_size)  # jax.distributed + device mesh; checked before any write
    run_dir = pathlib.Path(cfg.output.run_dir)
    train_set, valid_set, test_set = read_split(cfg)
    if tc.init_from:  # fine-tuning: the base run's model and statistics (+ new transforms)
        model_cfg, train_graphs, stats = finetune.model_with_statistics(cfg, train_set)
    else:
        model_cfg, train_graphs, stats = model_with_statistics(cfg, train_set)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    fp = fingerprint(cfg)
    resume = decide_resume(run_dir, fp, dataclasses.asdict(cfg.data))
    stats.update(n_train=len(train_set), n_valid=len(valid_set), n_test=len(test_set))
    if par.is_primary:  # only process 0 writes the run directory (orbax coordinates the checkpoints)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "statistics.json", stats)
        write_fingerprint(run_dir, fp)
    return cfg, par, {"train": train_set, "valid": valid_set, "test": test_set}, train_graphs, resume


def _build(cfg: RunConfig, par, sets: dict, train_graphs, resume: bool) -> Run:
    """The model (initial or fine-tuning parameters), the jitted train step and evaluation, the state."""
    tc, model_cfg = cfg.training, cfg.model
    pot = Potential(model_cfg, seed=tc.seed)
    pot.params, trainable_mask = finetune.initial_params(pot.params, tc)
    graphs = {"train": train_graphs, "valid": pot.graphs(sets["valid"]), "test": pot.graphs(sets["test"]) if tc.test_every > 0 else []}
    compute_stress = any(c.stress is not None for c in sets["train"])
    weights = LossWeights(tc.energy_weight, tc.forces_weight, tc.stress_weight, tc.huber_delta)
    optimizer = finetune.restrict(make_optimizer(tc), trainable_mask)
    steps_per_epoch = math.ceil(len(train_graphs) / cfg.data.batch_size)
    raw_fn = make_potential(pot.model.apply, model_cfg.r_max, pot.dtype, compute_stress)
    step_fn = par.train_step(raw_fn, weights, optimizer, tc.ema_decay, int(tc.warmup_epochs * steps_per_epoch))
    return Run(
        cfg=cfg,
        run_dir=pathlib.Path(cfg.output.run_dir),
        par=par,
        sets=sets,
        graphs=graphs,
        pot=pot,
        potential_fn=par.for_evaluation(pot.function(compute_stress)),
        step_fn=step_fn,
        state=par.replicate(init_state(pot.params, optimizer)),
        compute_stress=compute_stress,
        train_pad=par.pad_size(train_graphs, cfg.data.batch_size, cfg.data.padding_shapes) if cfg.data.fixed_padding else None,
        resume=resume,
    )


def _train_epoch(run: Run, loop: LoopState, progress: bool) -> tuple[float, int]:
    """One pass over the shuffled training set; ``(mean loss of the finite steps, skipped steps)``.
    Raises :class:`TrainingDiverged` when too many steps were non-finite."""
    cfg, tc, epoch = run.cfg, run.cfg.training, loop.epoch
    run.state = set_lr(run.state, loop.lr)
    ew = np.asarray(loop.energy_weight, run.pot.dtype)
    steps = math.ceil(len(run.graphs["train"]) / cfg.data.batch_size)
    collected = []
    epoch_batches = run.par.batches(
        run.graphs["train"], cfg.data.batch_size, shuffle=True, seed=tc.seed * 100003 + epoch, size=run.train_pad
    )
    for batch in bar(epoch_batches, steps, f"epoch {epoch + 1}/{tc.max_epochs}", progress, unit="step"):
        run.state, m = run.step_fn(run.state, batch, ew)
        collected.append(m)
    collected = jax.device_get(collected)  # one host transfer per epoch
    skipped = int(sum(int(m["skipped"]) for m in collected))
    finite = [m for m in collected if not m["skipped"]]
    if skipped:
        warnings.warn(f"epoch {epoch + 1}: {skipped} step(s) with a non-finite loss or gradient were skipped")
    if skipped > tc.max_nan_steps or not finite:
        raise TrainingDiverged(
            f"training diverged: {skipped} non-finite steps in epoch {epoch + 1}; "
            f"the last good checkpoint is in {run.run_dir}/checkpoints (lower training.lr?)"
        )
    return float(np.mean([m["loss"] for m in finite])), skipped


def _evaluate_epoch(run: Run, loop: LoopState, record: dict) -> None:
    """Validation (every ``eval_every`` epochs and the last): score, selection of ``best/``; test
    errors every ``test_every`` epochs. Fills ``record``; ``loop.epoch`` is the epoch just finished."""
    tc, done = run.cfg.training, loop.epoch
    if run.graphs["valid"] and (done % tc.eval_every == 0 or done == tc.max_epochs):
        vm = error_metrics(run.sets["valid"], run.predict(run.state.ema, "valid"))
        record["valid"], record["valid_score"] = vm["all"], _score(vm, selection_weights(tc))
        if loop.select(record["valid_score"], tc):
            save_params(run.run_dir / "best", run.state.ema)
    if run.graphs["test"] and (done % tc.test_every == 0 or done == tc.max_epochs):
        record["test"] = error_metrics(run.sets["test"], run.predict(run.state.ema, "test"))["all"]


def _print_epoch(record: dict, loop: LoopState) -> None:
    v = record.get("valid", {})
    fmt = lambda k: f"{v[k]['mae']:.2f}" if v.get(k, {}).get("mae") is not None else "-"
    print(
        f"epoch {record['epoch']:4d}  lr {loop.lr:.2e}  loss {record['train_loss']:.4g}  valid MAE E {fmt('energy_meV_per_atom')} "
        f"meV/atom  F {fmt('forces_meV_per_A')} meV/Å  S {fmt('stress_meV_per_A3')} meV/Å³  {record['seconds']:.1f} s",
        flush=True,
    )


def _loop(run: Run, progress: bool) -> None:
    """Epochs until ``max_epochs`` (or ``time_limit_s``), resuming from the latest checkpoint;
    one metrics.jsonl line and one checkpoint per epoch."""
    tc = run.cfg.training
    run.par.barrier("checkpoints")  # the processes meet before orbax's first (collective) barrier
    manager = _checkpoint_manager(run.run_dir, run.cfg.output.keep_checkpoints)
    loop = LoopState(epoch=0, lr=tc.lr, energy_weight=tc.energy_weight)
    if run.resume:
        restored = restore_latest(manager, run.state)
        run.state, loop = restored["state"], LoopState(**restored["loop"])
        print(f"resumed from {run.run_dir}/checkpoints at epoch {loop.epoch}")
    if run.par.is_primary:
        truncate_metrics(run.run_dir / "metrics.jsonl", loop.epoch)  # an epoch killed before its checkpoint is logged once
    t_start = time.perf_counter()
    with open(run.run_dir / "metrics.jsonl" if run.par.is_primary else os.devnull, "a") as log:
        while loop.epoch < tc.max_epochs:
            loop.start_epoch(tc)
            t0 = time.perf_counter()
            train_loss, skipped = _train_epoch(run, loop, progress)
            loop.epoch += 1
            record = {"epoch": loop.epoch, "lr": loop.lr, "train_loss": train_loss, "skipped": skipped, "seconds": None}
            _evaluate_epoch(run, loop, record)
            record["seconds"] = round(time.perf_counter() - t0, 2)
            record["compiles"] = run.pot.compile_count + run.step_fn._cache_size()
            log.write(json.dumps(record) + "\n")
            log.flush()
            state_args = ocp.args.Composite(state=ocp.args.StandardSave(run.state), loop=ocp.args.JsonSave(dataclasses.asdict(loop)))
            manager.save(loop.epoch, args=state_args)
            _print_epoch(record, loop)
            if tc.time_limit_s and time.perf_counter() - t_start > tc.time_limit_s:
                print(f"time limit of {tc.time_limit_s} s reached")
                break
        manager.wait_until_finished()


def _final_report(run: Run) -> None:
    """Errors of the selected (``best/``) and of the last EMA parameters on the valid and test sets:
    final_metrics.json, structure_errors.json, parity plots, the learning curve."""
    recover_dir(run.run_dir / "best")
    best = load_params(run.run_dir / "best", run.state.ema) if (run.run_dir / "best").exists() else run.state.ema
    final, per_structure = {"last_ema": {}}, {}
    if run.par.is_primary:
        with atomic_path(run.run_dir / "learning_curve.png") as tmp:
            plots.learning_curve(run.run_dir / "metrics.jsonl", tmp)
    for name in ("valid", "test"):
        configs = run.sets[name]
        if not configs:
            continue
        if not run.graphs[name]:
            run.graphs[name] = run.pot.graphs(configs)
        preds = run.predict(best, name)
        final[name], per_structure[name] = error_metrics(configs, preds), structure_errors(configs, preds)
        if run.par.is_primary:
            with atomic_path(run.run_dir / f"parity_{name}.png") as tmp:
                plots.parity(configs, preds, tmp, f"{name} set, best EMA parameters")
        print(f"\n{name} ({len(configs)} configurations), best EMA parameters:\n{format_table(final[name])}")
        # The EMA parameters at the end of the run, next to the selected ones (both are reported).
        last = run.predict(run.state.ema, name)
        final["last_ema"][name], per_structure[f"{name}_last_ema"] = error_metrics(configs, last), structure_errors(configs, last)
    if run.par.is_primary:
        write_json(run.run_dir / "final_metrics.json", final)
        write_json(run.run_dir / "structure_errors.json", per_structure, indent=None)


def train(cfg: RunConfig, progress: bool | None = None) -> pathlib.Path:
    """Train (or resume, or fine-tune) the run ``cfg`` describes; returns its run directory.

    Data → statistics → run directory decision (:func:`_prepare`), model and jitted step
    (:func:`_build`), epochs with validation-based selection and checkpoints (:func:`_loop`),
    errors of the selected and last parameters (:func:`_final_report`)."""
    progress = sys.stderr.isatty() if progress is None else progress
    run = _build(*_prepare(cfg))
    _loop(run, progress)
    _final_report(run)
    return run.run_dir

"""Typed run configuration (YAML → frozen dataclasses), with ``--set a.b=value`` overrides.

A run YAML has four sections, each optional::

    model:    {...}   # scalarjax.config.ModelConfig (statistics are filled in from the data)
    data:     {train: PATH, valid: PATH?, test: PATH?, valid_fraction: 0.1, ...}
    training: {max_epochs: 100, lr: 0.01, ...}
    output:   {run_dir: runs/NAME}

Relative data paths are resolved against ``$SCALARJAX_DATA`` (or the shared data directory) when
the file exists there, else against the YAML's directory. Unknown keys and wrong types are errors
naming the key's path.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Optional

import yaml

from scalarjax.config import ModelConfig, backbone_mapping, model_config_from_dict, set_model_key
from scalarjax.configtools import from_dict, read_yaml
from scalarjax.errors import ConfigKeyError, ConfigTypeError, InputError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section: the train/valid/test files (valid: else ``valid_fraction`` of train,
    held out with ``split_seed``), label keys of the files, per-config_type weights, batch sizes and padding."""

    train: str = ""
    valid: Optional[str] = None
    test: Optional[str] = None
    valid_fraction: float = 0.1
    split_seed: int = 0
    max_train: Optional[int] = None  # use only the first N training configurations (after shuffling)
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str = "virial"
    config_type_weights: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 4
    valid_batch_size: int = 8
    # Fixed padded shapes for the training batches, chosen once from the data set: the largest
    # possible batch, plus a smaller one most batches fit when that saves ≥5% of the padded edges
    # (at most padding_shapes, so at most that many compilations). False: per-batch buckets.
    fixed_padding: bool = True
    padding_shapes: int = 2


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` section: optimiser and schedule, loss weights (``*_weight``, ``huber_delta``),
    stage two, EMA, selection of ``best/``, limits, fine-tuning and devices (allowed values:
    :func:`validate_run_config`; the loss: :mod:`scalarjax.training.loss`)."""

    max_epochs: int = 50
    lr: float = 0.01
    optimizer: str = "adam"  # adam | amsgrad | adamw
    weight_decay: float = 5e-7
    warmup_epochs: float = 0.0
    scheduler: str = "plateau"  # plateau | cosine | constant
    plateau_patience: int = 5
    plateau_factor: float = 0.8
    clip_norm: float = 10.0
    ema_decay: float = 0.99  # 0 disables the EMA
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float = 1.0
    huber_delta: float = 0.0
    stage_two_start: float = 0.0  # fraction of max_epochs after which stage two begins (0: off)
    stage_two_energy_weight: float = 1000.0
    stage_two_lr_factor: float = 0.1
    # Which validation scores compete for ``best/``: "stage_two" (the best score is reset when
    # stage two starts, so only stage-two epochs compete, as mace-torch's SWA stage does) or "run"
    # (every evaluated epoch of the whole run, one fixed score; the campaign's protocol).
    select_over: str = "stage_two"
    seed: int = 0
    max_nan_steps: int = 10
    eval_every: int = 1
    test_every: int = 0  # >0: also log test-set metrics every N epochs (learning curves only; never used to select)
    time_limit_s: Optional[float] = None
    # Fine-tuning (scalarjax.training.finetune): start from this run's model, statistics and parameters
    # (+ this config's model.scalar_transforms); trainable: all | new (only added transforms and readouts).
    init_from: Optional[str] = None
    trainable: str = "all"
    # Data-parallel devices: "all" (every device JAX sees; all processes' under jax.distributed) or
    # a count N; data.batch_size is the global batch, split into N equal parts (see training/parallel.py).
    devices: Any = "all"


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """The ``output:`` section: the run directory and how many epoch checkpoints it keeps."""

    run_dir: str = "runs/default"
    keep_checkpoints: int = 2


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole run: the four sections of the module docstring (build it with :func:`load_run_config`)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig, "output": OutputConfig}


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``raw`` with every ``SECTION.KEY=VALUE`` (VALUE parsed as YAML) applied; a backbone setting
    (``model.max_ell=2``) goes under ``model.backbone`` when that is already a mapping, and
    ``model.backbone.KEY=VALUE`` names it there explicitly."""
    raw = {k: dict(v or {}) for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[:2] == ["model", "backbone"] and len(parts) == 3:
            nested = backbone_mapping(raw.setdefault("model", {}).get("backbone") or "mace")
            raw["model"]["backbone"] = {**nested, parts[2]: _parse_value(value)}
            continue
        if len(parts) != 2 or parts[0] not in SECTIONS:
            raise ConfigKeyError(f"--set {key!r}: expected one of {sorted(SECTIONS)} followed by .KEY")
        if parts[0] == "model":
            set_model_key(raw.setdefault("model", {}), parts[1], _parse_value(value))
        else:
            raw.setdefault(parts[0], {})[parts[1]] = _parse_value(value)
    return raw


# Keys that earlier versions wrote into run directories' config.yaml and that no longer mean anything:
# accepted and dropped, so those run directories keep loading.
RETIRED_KEYS = {"data": {"e0s"}}  # E0s: isolated atoms where present, else least squares (statistics.compute_e0s)


def _section(cls, data: dict, path: str):
    data = {k: v for k, v in data.items() if k not in RETIRED_KEYS.get(path, ())}
    return model_config_from_dict(data, path) if cls is ModelConfig else from_dict(cls, data, path)


def load_run_config(path: Optional[str] = None, overrides: list[str] = (), raw: Optional[dict] = None) -> RunConfig:
    """The :class:`RunConfig` of the YAML at ``path`` (or of the mapping ``raw``; neither: defaults) with
    ``--set`` ``overrides`` applied (:func:`apply_overrides`), data paths resolved
    (:func:`resolve_data_path`, relative to ``path``'s directory, else the working directory) and
    values checked (:func:`validate_run_config`). Errors name the key's path."""
    base_dir = pathlib.Path(path).parent if path else pathlib.Path.cwd()
    if raw is None:
        raw = {}
        if path:
            raw = read_yaml(path)
            if not isinstance(raw, dict):
                raise ConfigTypeError(f"{path}: expected a mapping of sections (model, data, training, output), got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigKeyError(f"unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    raw = apply_overrides(raw, list(overrides))
    for name in SECTIONS:
        if not isinstance(raw.get(name) or {}, dict):
            raise ConfigTypeError(f"{name}: expected a mapping of keys, got {raw[name]!r}")
    sections = {name: _section(cls, raw.get(name, {}) or {}, name) for name, cls in SECTIONS.items()}
    data = sections["data"]
    resolved = {k: resolve_data_path(getattr(data, k), base_dir) for k in ("train", "valid", "test")}
    sections["data"] = dataclasses.replace(data, **resolved)
    cfg = RunConfig(**sections)
    validate_run_config(cfg)
    return cfg


OPTIMIZERS = ("adam", "amsgrad", "adamw")
SCHEDULERS = ("plateau", "cosine", "constant")
SELECT_OVER = ("stage_two", "run")


def validate_run_config(cfg: RunConfig) -> None:
    """Values that would train nothing, train silently wrong or crash later: one
    :class:`~scalarjax.errors.InputError` naming the key, its value and what is allowed."""
    import math

    def need(ok: bool, key: str, value, rule: str):
        if not ok:
            raise InputError(f"{key}: {value!r} {rule}")

    finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)
    t, d, o = cfg.training, cfg.data, cfg.output
    need(finite(t.lr) and t.lr > 0, "training.lr", t.lr, "must be a positive number")
    need(t.optimizer in OPTIMIZERS, "training.optimizer", t.optimizer, f"is not one of {OPTIMIZERS}")
    need(t.scheduler in SCHEDULERS, "training.scheduler", t.scheduler, f"is not one of {SCHEDULERS}")
    need(t.select_over in SELECT_OVER, "training.select_over", t.select_over, f"is not one of {SELECT_OVER}")
    need(t.max_epochs >= 1, "training.max_epochs", t.max_epochs, "must be at least 1")
    need(0 <= t.ema_decay < 1, "training.ema_decay", t.ema_decay, "must be in [0, 1) (0 disables the EMA)")
    need(t.eval_every >= 1, "training.eval_every", t.eval_every, "must be at least 1")
    need(t.test_every >= 0, "training.test_every", t.test_every, "must be 0 (off) or positive")
    need(t.warmup_epochs >= 0, "training.warmup_epochs", t.warmup_epochs, "must be ≥ 0")
    need(t.plateau_patience >= 1, "training.plateau_patience", t.plateau_patience, "must be at least 1")
    need(0 < t.plateau_factor <= 1, "training.plateau_factor", t.plateau_factor, "must be in (0, 1]")
    need(t.clip_norm >= 0, "training.clip_norm", t.clip_norm, "must be ≥ 0 (0 disables clipping)")
    need(t.weight_decay >= 0, "training.weight_decay", t.weight_decay, "must be ≥ 0")
    for key in ("energy_weight", "forces_weight", "stress_weight", "stage_two_energy_weight", "huber_delta"):
        need(finite(getattr(t, key)) and getattr(t, key) >= 0, f"training.{key}", getattr(t, key), "must be a number ≥ 0")
    need(0 <= t.stage_two_start < 1, "training.stage_two_start", t.stage_two_start, "must be in [0, 1) (0: off)")
    need(t.stage_two_lr_factor > 0, "training.stage_two_lr_factor", t.stage_two_lr_factor, "must be positive")
    need(t.max_nan_steps >= 0, "training.max_nan_steps", t.max_nan_steps, "must be ≥ 0")
    need(t.time_limit_s is None or t.time_limit_s > 0, "training.time_limit_s", t.time_limit_s, "must be positive (or null)")
    need(0 <= d.valid_fraction < 1, "data.valid_fraction", d.valid_fraction, "must be in [0, 1) (or give data.valid)")
    need(d.max_train is None or d.max_train >= 1, "data.max_train", d.max_train, "must be at least 1 (or null for all)")
    need(d.batch_size >= 1, "data.batch_size", d.batch_size, "must be at least 1")
    need(d.valid_batch_size >= 1, "data.valid_batch_size", d.valid_batch_size, "must be at least 1")
    need(d.padding_shapes >= 1, "data.padding_shapes", d.padding_shapes, "must be at least 1")
    need(
        isinstance(d.config_type_weights, dict), "data.config_type_weights", d.config_type_weights, "must be a mapping config_type: weight"
    )
    for k, w in d.config_type_weights.items():
        need(finite(w) and not isinstance(w, bool) and w >= 0, f"data.config_type_weights.{k}", w, "must be a number ≥ 0")
    need(o.keep_checkpoints >= 1, "output.keep_checkpoints", o.keep_checkpoints, "must be at least 1 (a run must be resumable)")
    need(bool(o.run_dir), "output.run_dir", o.run_dir, "must name a directory")


def resolve_data_path(p: Optional[str], base_dir: pathlib.Path) -> Optional[str]:
    """``p`` with ``$VARS`` expanded; a relative path is taken under ``$SCALARJAX_DATA`` or the shared data
    directory (:func:`scalarjax.data.io.data_dir`) where it exists there, else under ``base_dir``. Empty stays empty."""
    if not p:
        return p
    path = pathlib.Path(os.path.expandvars(p))
    if path.is_absolute():
        return str(path)
    env = os.environ.get("SCALARJAX_DATA")
    if env and (pathlib.Path(env) / path).exists():
        return str(pathlib.Path(env) / path)
    from scalarjax.data.io import data_dir

    if (data_dir() / path).exists():
        return str(data_dir() / path)
    return str(base_dir / path)


def to_dict(cfg: RunConfig) -> dict:
    """Plain data of ``cfg`` (as written to a run's ``config.yaml``); the model as :meth:`ModelConfig.to_dict`."""
    return {**dataclasses.asdict(cfg), "model": cfg.model.to_dict()}

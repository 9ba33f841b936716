"""The run directory: loading a run, its identity (fingerprint), the resume decision, crash-safe checkpoints.

One module owns the format for the trainer, ``evaluate``, the calculator, ``export`` and fine-tuning
(the layout is listed in :mod:`scalarjax.training.trainer`).

Resume policy (decided *before* anything in the directory is written):

* a new or empty directory: a fresh run;
* a directory whose ``fingerprint.json`` matches the model (with its data statistics) and the data
  (file contents and split settings) of this configuration: resume from the latest checkpoint
  (training settings such as ``max_epochs`` may change: that is how a run is extended);
* anything else (another model or data, or a run without a fingerprint): refused with a
  :class:`~scalarjax.errors.RunDirError` saying what changed and how to start fresh
  (a new ``output.run_dir``) or fine-tune (``training.init_from``).

``best/`` (orbax, EMA parameters) is replaced with :func:`save_params`: written complete under
``best.tmp``, renamed to ``best.new``, then swapped in (:func:`scalarjax.fileio.replace_dir`), so a
SIGKILL at any moment leaves a loadable copy. The fingerprint also guards loading: a hand-edited
``config.yaml`` whose model differs from the one the checkpoint was trained with is an error.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
from typing import Any, Optional

import numpy as np

from scalarjax.errors import RunDirError
from scalarjax.fileio import check_inside, recover_dir, replace_dir, write_json

FINGERPRINT = "fingerprint.json"
RUN_FILES = ("config.yaml", "statistics.json", FINGERPRINT, "metrics.jsonl", "final_metrics.json", "checkpoints", "best")
# Model settings that may differ between training and loading (the parameters are cast).
LOAD_MAY_DIFFER = ("dtype",)
DATA_KEYS = ("valid_fraction", "split_seed", "max_train", "energy_key", "forces_key", "stress_key", "virial_key", "config_type_weights")


def _sha256_file(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(cfg) -> dict:
    """What a run's parameters depend on: the model (with its statistics) and the data.

    ``cfg``: a :class:`~scalarjax.training.config.RunConfig` whose model statistics are filled in.
    Data files are identified by the SHA-256 of their bytes (a moved file is the same data)."""
    model = cfg.model.to_dict()
    data = {k: getattr(cfg.data, k) for k in DATA_KEYS}
    data.update({f"{k}_sha256": _sha256_file(getattr(cfg.data, k)) for k in ("train", "valid", "test")})
    return {"model": model, "data": data, "sha256": {"model": _digest(model), "data": _digest(data)}}


def canonical_model(model: dict) -> dict:
    """A stored model mapping as today's code writes it (older runs wrote the backbone's settings
    flat), so that comparisons see what changed, not how it was written; unreadable: as given."""
    from scalarjax.config import load_model_config
    from scalarjax.errors import UserError

    try:
        return load_model_config(model).to_dict()
    except (UserError, TypeError, ValueError, KeyError):
        return model


def _changes(old: dict, new: dict, section: str, ignore=()) -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        if k in ignore:
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):  # name the nested key that changed
            out += _changes(a, b, f"{section}.{k}", ignore)
            continue
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            show = lambda v: (str(v)[:12] + "…") if k.endswith("sha256") and v else v
            out.append(f"{section}.{k}: {show(a)} -> {show(b)}")
    return out


def read_fingerprint(run_dir) -> Optional[dict]:
    """The run's stored :func:`fingerprint` (``model``, ``data``, ``sha256``), ``None`` when it has no
    ``fingerprint.json``; :class:`RunDirError` when the file is not JSON or lacks ``model``/``data``."""
    path = pathlib.Path(run_dir) / FINGERPRINT
    if not path.exists():
        return None
    try:
        with open(path) as f:
            fp = json.load(f)
        fp["model"], fp["data"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunDirError(f"{path}: unreadable ({err}); the run directory is damaged") from None
    return fp


def how_to_start_fresh(run_dir) -> str:
    """The advice appended to a refused resume: a new ``output.run_dir``, or fine-tuning with ``training.init_from``."""
    return (
        f"to start fresh, choose a new output.run_dir (--set output.run_dir=runs/NEW) or delete {run_dir}; "
        f"to fine-tune its parameters, use a new output.run_dir with --set training.init_from={run_dir}"
    )


def has_checkpoint(run_dir) -> bool:
    """Whether ``run_dir/checkpoints/`` holds an entry named by a step number (an orbax step directory)."""
    ckpt = pathlib.Path(run_dir) / "checkpoints"
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def _legacy_changes(run_dir: pathlib.Path, fp: dict, data_section: Optional[dict]) -> Optional[list]:
    """A run from before fingerprints: what differs between its ``config.yaml`` (model; data paths and
    split settings) and this configuration; ``None`` when it has no readable config.yaml."""
    import yaml

    try:
        old = yaml.safe_load((run_dir / "config.yaml").read_text())
        old_model, old_data = old["model"], old["data"]
    except Exception:
        return None
    changed = _changes(canonical_model(old_model), fp["model"], "model")
    if data_section is not None:
        keys = ("train", "valid", "test", *DATA_KEYS)
        changed += _changes({k: old_data.get(k) for k in keys}, {k: data_section.get(k) for k in keys}, "data")
    return changed


def decide_resume(run_dir, fp: dict, data_section: Optional[dict] = None) -> bool:
    """``True``: resume from ``checkpoints/``; ``False``: a fresh run. Raises :class:`RunDirError` when
    the directory holds another run. Writes nothing.

    A run from before fingerprints (``config.yaml`` but no ``fingerprint.json``) is resumed, with a
    warning, only when its config.yaml has the same model and the same data paths and split settings
    (``data_section``: this configuration's ``data`` as a dict); its files' contents cannot be checked."""
    import warnings

    run_dir = pathlib.Path(run_dir)
    if not run_dir.exists():
        return False
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_symlink():
            raise RunDirError(f"{p}: is a symlink; a run directory's files are written in place, refusing to follow it")
    stored = read_fingerprint(run_dir)
    if stored is None:
        present = [n for n in RUN_FILES if (run_dir / n).exists()]
        if not present:
            return False
        changed = _legacy_changes(run_dir, fp, data_section)
        if changed == [] and has_checkpoint(run_dir):
            warnings.warn(
                f"{run_dir}: a run without {FINGERPRINT} (older scalarjax); resuming it because its config.yaml has this "
                f"model and these data files and split settings (their contents cannot be checked)"
            )
            return True
        detail = f"changed: {'; '.join(changed)}" if changed else "no readable config.yaml or no checkpoint"
        raise RunDirError(
            f"{run_dir} holds a run without {FINGERPRINT} ({detail}): cannot tell whether it used this model "
            f"and data; {how_to_start_fresh(run_dir)}"
        )
    changed = _changes(canonical_model(stored["model"]), fp["model"], "model") + _changes(stored["data"], fp["data"], "data")
    if changed:
        raise RunDirError(f"{run_dir} holds a run of another model or data ({'; '.join(changed)}); {how_to_start_fresh(run_dir)}")
    return has_checkpoint(run_dir)


def check_model_matches(run_dir, model_cfg) -> None:
    """A loaded ``config.yaml`` must describe the model the checkpoint was trained with (r_max,
    elements, E0s, ... everything but the dtype), as recorded in ``fingerprint.json``."""
    stored = read_fingerprint(run_dir)
    if stored is None:
        return  # a run from before fingerprints: the shape check in load_params still applies
    changed = _changes(canonical_model(stored["model"]), model_cfg.to_dict(), "model", ignore=LOAD_MAY_DIFFER)
    if changed:
        raise RunDirError(
            f"{pathlib.Path(run_dir) / 'config.yaml'}: differs from the model the checkpoint was trained with "
            f"({'; '.join(changed)}); restore those values (they are in {FINGERPRINT}) or train a new run"
        )


def truncate_metrics(path, last_epoch: int) -> None:
    """Keep the records of epochs ``≤ last_epoch`` (a run killed after logging an epoch but before its
    checkpoint repeats that epoch on resume; it must be logged once). Unparseable lines are dropped."""
    path = pathlib.Path(path)
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("epoch"), int) and rec["epoch"] <= last_epoch:
            keep.append(line)
    from scalarjax.fileio import write_text

    write_text(path, "".join(l + "\n" for l in keep))


def write_fingerprint(run_dir, fp: dict) -> None:
    """Atomically write ``fp`` (a :func:`fingerprint`) as ``run_dir/fingerprint.json``."""
    write_json(pathlib.Path(run_dir) / FINGERPRINT, fp)


# --- parameter checkpoints (best/) -------------------------------------------------------------


def save_params(path, params) -> None:
    """Replace the orbax parameter checkpoint at ``path`` so that a kill at any moment leaves one
    complete copy: write ``path.tmp`` (orbax), rename it to ``path.new``, swap it in."""
    import os

    import jax
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    tmp, new = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".new")
    # Under jax.distributed every process takes part in orbax's save; only process 0 renames.
    primary = jax.process_index() == 0
    if primary:
        recover_dir(path)
        for stale in [new, *path.parent.glob(path.name + ".tmp*")]:
            shutil.rmtree(stale, ignore_errors=True)
    _barrier(f"save_params:{path}:start")
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp, params)
    ckpt.wait_until_finished()
    ckpt.close()
    if primary:
        os.replace(tmp, new)
        replace_dir(new, path)
    _barrier(f"save_params:{path}:end")


def _barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _existing(path: pathlib.Path) -> pathlib.Path:
    """``path``, or the complete copy a crash during :func:`save_params` left beside it."""
    for cand in (path, path.with_name(path.name + ".new"), path.with_name(path.name + ".old")):
        if cand.is_dir():
            return cand
    raise RunDirError(f"{path}: no such checkpoint (was the run trained to its first evaluation?)")


def _shape_tree(tree):
    import jax

    return jax.tree.map(lambda x: tuple(np.shape(x)), tree)


def load_params(path, like):
    """Restore the parameters at ``path`` onto the structure of ``like``; a checkpoint of other shapes
    or a damaged one is a :class:`RunDirError` naming the path."""
    import jax
    import orbax.checkpoint as ocp

    path = _existing(pathlib.Path(path).absolute())
    ckpt = ocp.StandardCheckpointer()
    try:
        meta = ckpt.metadata(path)
        tree = getattr(meta.item_metadata, "tree", meta.item_metadata)
        stored = jax.tree.map(lambda m: tuple(m.shape), tree)
        if tree is None or not jax.tree.leaves(stored, is_leaf=lambda x: isinstance(x, tuple)):
            raise ValueError("no readable array metadata")
    except Exception as err:  # orbax/tensorstore raise many types for damaged files
        raise RunDirError(
            f"{path}: damaged checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"retrain, or restore the run directory from a copy"
        ) from None
    want = _shape_tree(like)
    if jax.tree.structure(stored) != jax.tree.structure(want) or stored != want:
        diff = _first_difference(stored, want)
        raise RunDirError(f"{path}: parameters of another model ({diff}); config.yaml does not match this checkpoint")
    try:
        return ckpt.restore(path, like)
    except Exception as err:
        raise RunDirError(
            f"{path}: damaged checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"retrain, or restore the run directory from a copy"
        ) from None


def _first_difference(stored, want) -> str:
    import jax

    a = dict((jax.tree_util.keystr(k), v) for k, v in jax.tree_util.tree_leaves_with_path(stored, is_leaf=lambda x: isinstance(x, tuple)))
    b = dict((jax.tree_util.keystr(k), v) for k, v in jax.tree_util.tree_leaves_with_path(want, is_leaf=lambda x: isinstance(x, tuple)))
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k}: checkpoint {a.get(k)}, config {b.get(k)}"
    return "different structure"


def restore_latest(manager, state_like):
    """The newest restorable step of an orbax ``CheckpointManager`` (a damaged newest step falls back to
    an older one with a warning); :class:`RunDirError` when none can be read."""
    import warnings

    import orbax.checkpoint as ocp

    steps = sorted(manager.all_steps(), reverse=True)
    errors = []
    for step in steps:
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(state_like), loop=ocp.args.JsonRestore())
            )
        except Exception as err:
            errors.append(f"step {step}: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
            continue
        if errors:
            warnings.warn(f"{manager.directory}: skipped damaged checkpoint(s) ({'; '.join(errors)}); resuming from step {step}")
        return restored
    raise RunDirError(
        f"{manager.directory}: no readable checkpoint ({'; '.join(errors) or 'none found'}); "
        f"{how_to_start_fresh(pathlib.Path(str(manager.directory)).parent)}"
    )


__all__ = [
    "fingerprint",
    "decide_resume",
    "check_model_matches",
    "truncate_metrics",
    "write_fingerprint",
    "save_params",
    "load_params",
    "restore_latest",
    "check_inside",
]


def load_run(run_dir, dtype=None):
    """A run's model with its best (EMA) parameters and statistics: a :class:`~scalarjax.potential.Potential`.

    ``dtype``: evaluate in another precision than the run was trained in (e.g. ``"float64"`` for
    energy-conservation work; needs JAX's x64 mode); the parameters are cast. Only the ``model``
    section of config.yaml is read; it must match the checkpoint's shapes (a hand-edited file is refused).
    """
    import jax
    import yaml

    from scalarjax.config import load_model_config
    from scalarjax.model import abstract_params, build_model
    from scalarjax.potential import Potential

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
    saved = load_model_config(raw.get("model") or {})
    check_model_matches(run_dir, saved)  # a hand-edited config.yaml must match the checkpoint
    model = saved if dtype is None or dtype == saved.dtype else load_model_config(saved, dtype=dtype)
    # Restore onto the parameters' abstract shapes and dtype (orbax casts): no init compilation
    # (tens of seconds for MACE), and a float64 run loads as float32 without JAX's x64 mode.
    params = load_params(run_dir / "best", abstract_params(build_model(model)))
    return Potential(model, params=jax.tree_util.tree_map(jax.numpy.asarray, params))

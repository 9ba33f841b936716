"""Typed model configuration and the one place that turns overrides / YAML into it.

Names follow MACE: ``r_max`` (Å), ``num_bessel``, ``num_polynomial_cutoff`` (p of the envelope),
``max_ell``, ``hidden_irreps``, ``correlation``, ``num_interactions``, ``mlp_irreps``,
``radial_mlp`` (hidden widths), ``avg_num_neighbors``. The defaults are MACE's "medium" model.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from typing import Any, Mapping, Optional

import jax

DTYPES = ("float32", "float64")
BACKBONES = ("mace",)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = "mace"
    r_max: float = 5.0
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    max_ell: int = 3
    hidden_irreps: str = "64x0e+64x1o"
    correlation: int = 3
    num_interactions: int = 2
    mlp_irreps: str = "16x0e"
    radial_mlp: tuple[int, ...] = (64, 64, 64)
    avg_num_neighbors: float = 1.0
    # Statistics of the data (set by training; defaults give an untrained model).
    atomic_numbers: tuple[int, ...] = ()
    atomic_energies: tuple[float, ...] = ()  # E0 per element of ``atomic_numbers``, eV
    scale: float = 1.0  # eV
    shift: float = 0.0  # eV per atom
    dtype: str = "float32"

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone: unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {self.dtype!r} is not one of {DTYPES}")
        if not 1 <= self.correlation <= 4:
            raise ValueError(f"model.correlation: {self.correlation} is outside 1..4")
        if self.r_max <= 0 or self.num_bessel < 1 or self.num_interactions < 1 or self.max_ell < 0:
            raise ValueError("model: r_max, num_bessel, num_interactions must be positive and max_ell ≥ 0")
        object.__setattr__(self, "radial_mlp", tuple(int(w) for w in self.radial_mlp))
        object.__setattr__(self, "atomic_numbers", tuple(sorted(int(z) for z in self.atomic_numbers)))
        object.__setattr__(self, "atomic_energies", tuple(float(e) for e in self.atomic_energies))
        if self.atomic_energies and len(self.atomic_energies) != len(self.atomic_numbers):
            raise ValueError("model.atomic_energies: need one E0 per element of atomic_numbers")

    def check_dtype(self) -> None:
        """float64 needs ``jax_enable_x64``: the library never flips that global flag itself."""
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                "dtype float64 requested but JAX's x64 mode is off; enable it before using scalarjax "
                "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1)"
            )


def _coerce(value: Any, typ: Any, path: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[...]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{path}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(typ)
        return tuple(_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value))
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{path}: expected an integer, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{path}: expected true or false, got {value!r}")
        return value
    if typ is str:
        if not isinstance(value, str):
            raise TypeError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: Mapping[str, Any], path: str = "model"):
    """Build a frozen dataclass from a mapping; unknown keys and wrong types name their path."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"{path}: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{path}.{k}") for k, v in data.items()})


def load_model_config(config: Optional[Any] = None, **overrides) -> ModelConfig:
    """``config``: None (defaults), a ``ModelConfig``, a dict of overrides, or a YAML path.

    A YAML file may hold the model settings at top level or under a ``model:`` key.
    """
    if config is None:
        base: dict = {}
    elif isinstance(config, ModelConfig):
        base = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        base = dict(config)
    elif isinstance(config, (str, pathlib.Path)):
        import yaml

        with open(config) as f:
            loaded = yaml.safe_load(f) or {}
        base = dict(loaded.get("model", loaded))
    else:
        raise TypeError(f"config must be None, a ModelConfig, a dict or a YAML path, not {type(config).__name__}")
    base.update(overrides)
    return from_dict(ModelConfig, base)

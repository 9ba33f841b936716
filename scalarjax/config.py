"""Typed model configuration and the one place that turns overrides / YAML into it.

Shared by every backbone: ``r_max`` (Å), ``num_bessel``, ``num_polynomial_cutoff`` (p of the
envelope), ``radial_mlp`` (hidden widths of the radial MLP), ``avg_num_neighbors``, the data
statistics and ``dtype``.

Backbone-specific settings keep the names of the reference implementation and default to ``None``,
resolved per backbone in :data:`BACKBONE_DEFAULTS`; giving one to the other backbone is an error.

- ``mace`` (MACE's "medium" model): ``max_ell``, ``hidden_irreps``, ``correlation``,
  ``num_interactions``, ``mlp_irreps``, ``residual_first`` (mace-torch's ``interaction_first``:
  ``false`` = ``RealAgnosticInteractionBlock``, no skip from the embedding, so an isolated atom's
  energy is exactly its E0; ``true`` = ``RealAgnosticResidualInteractionBlock``, mace-torch 0.3's
  default, whose skip gives each species a learnable constant energy).
- ``nequip`` (nequip's names): ``num_layers``, ``l_max``, ``parity`` (also carry odd-parity
  features), ``num_features``, ``resnet`` (residual update where a layer's irreps are unchanged).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping, Optional

import jax

from scalarjax.configtools import _coerce, from_dict, read_yaml  # noqa: F401  (re-exported)
from scalarjax.errors import ConfigTypeError, InputError

DTYPES = ("float32", "float64")
BACKBONES = ("mace", "nequip")

# Per backbone: defaults of its own settings and of the shared ones whose default differs.
# NequIP: nequip's "full" example (4 layers, l_max 2, 32 features, parity, 2x64 radial MLP, p = 6)
# with r_max 5 Å like MACE.
BACKBONE_DEFAULTS = {
    "mace": dict(
        max_ell=3,
        hidden_irreps="64x0e+64x1o",
        correlation=3,
        num_interactions=2,
        mlp_irreps="16x0e",
        residual_first=False,
        radial_mlp=(64, 64, 64),
        num_polynomial_cutoff=5,
    ),
    "nequip": dict(num_layers=4, l_max=2, parity=True, num_features=32, resnet=True, radial_mlp=(64, 64), num_polynomial_cutoff=6),
}
SHARED_WITH_DEFAULTS = ("radial_mlp", "num_polynomial_cutoff")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = "mace"
    r_max: float = 5.0
    num_bessel: int = 8
    num_polynomial_cutoff: Optional[int] = None
    radial_mlp: Optional[tuple[int, ...]] = None
    avg_num_neighbors: float = 1.0
    # MACE
    max_ell: Optional[int] = None
    hidden_irreps: Optional[str] = None
    correlation: Optional[int] = None
    num_interactions: Optional[int] = None
    mlp_irreps: Optional[str] = None
    residual_first: Optional[bool] = None
    # NequIP
    num_layers: Optional[int] = None
    l_max: Optional[int] = None
    parity: Optional[bool] = None
    num_features: Optional[int] = None
    resnet: Optional[bool] = None
    # Statistics of the data (set by training; defaults give an untrained model).
    atomic_numbers: tuple[int, ...] = ()
    atomic_energies: tuple[float, ...] = ()  # E0 per element of ``atomic_numbers``, eV
    scale: float = 1.0  # eV
    shift: float = 0.0  # eV per atom
    dtype: str = "float32"
    # ℓ=0 scalar-pathway transforms, applied in order: [{kind: pan, ...}, {kind: pgs, ...}]
    scalar_transforms: tuple = ()

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise InputError(f"model.backbone: unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.dtype not in DTYPES:
            raise InputError(f"model.dtype: {self.dtype!r} is not one of {DTYPES}")
        own = BACKBONE_DEFAULTS[self.backbone]
        for other, defaults in BACKBONE_DEFAULTS.items():
            for key in defaults:
                if key in own or key in SHARED_WITH_DEFAULTS:
                    continue
                if getattr(self, key) is not None:
                    raise InputError(f"model.{key}: a {other} setting, but model.backbone is {self.backbone!r}")
        for key, value in own.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if not self.r_max > 0 or self.num_bessel < 1:
            raise InputError(f"model: r_max ({self.r_max}) and num_bessel ({self.num_bessel}) must be positive")
        if not self.avg_num_neighbors > 0:
            raise InputError(f"model.avg_num_neighbors: {self.avg_num_neighbors!r} must be positive (it divides the messages)")
        if not self.scale > 0:
            raise InputError(f"model.scale: {self.scale!r} must be positive")
        if self.backbone == "mace":
            if not 1 <= self.correlation <= 4:
                raise InputError(f"model.correlation: {self.correlation} is outside 1..4")
            if self.num_interactions < 1 or self.max_ell < 0:
                raise InputError("model: num_interactions must be positive and max_ell ≥ 0")
            for key in ("hidden_irreps", "mlp_irreps"):
                _check_scalars(getattr(self, key), f"model.{key}")
        else:
            if self.num_layers < 1 or self.l_max < 0 or self.num_features < 1:
                raise InputError("model: num_layers and num_features must be positive and l_max ≥ 0")
        object.__setattr__(self, "radial_mlp", tuple(int(w) for w in self.radial_mlp))
        from scalarjax.scalar import transform_from_dict

        if not isinstance(self.scalar_transforms, (list, tuple)):
            raise ConfigTypeError(f"model.scalar_transforms: expected a list, got {self.scalar_transforms!r}")
        object.__setattr__(
            self,
            "scalar_transforms",
            tuple(transform_from_dict(t, f"model.scalar_transforms[{i}]") for i, t in enumerate(self.scalar_transforms)),
        )
        for z in self.atomic_numbers:
            if isinstance(z, bool) or not float(z).is_integer() or not 1 <= int(z) <= 118:
                raise InputError(f"model.atomic_numbers: {z!r} is not an atomic number (an integer in 1..118)")
        object.__setattr__(self, "atomic_numbers", tuple(sorted(int(z) for z in self.atomic_numbers)))
        object.__setattr__(self, "atomic_energies", tuple(float(e) for e in self.atomic_energies))
        if self.atomic_energies and len(self.atomic_energies) != len(self.atomic_numbers):
            raise InputError("model.atomic_energies: need one E0 per element of atomic_numbers")

    def to_dict(self) -> dict:
        """Plain data (YAML/JSON-able); transforms as ``{kind: ..., ...}`` mappings."""
        from scalarjax.scalar import transform_to_dict

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["scalar_transforms"] = [transform_to_dict(t) for t in self.scalar_transforms]
        d["radial_mlp"] = list(self.radial_mlp)
        for key in ("atomic_numbers", "atomic_energies"):
            d[key] = list(d[key])
        return d

    def check_dtype(self) -> None:
        """float64 needs ``jax_enable_x64``: the library never flips that global flag itself."""
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise InputError(
                "dtype float64 requested but JAX's x64 mode is off; enable it before using scalarjax "
                "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1)"
            )


def _check_scalars(irreps: str, key: str) -> None:
    """The readouts act on the ℓ=0 even channels: irreps without ``0e`` cannot give an energy."""
    import e3nn_jax as e3nn

    try:
        parsed = e3nn.Irreps(irreps)
    except Exception as err:  # e3nn raises ValueError/AssertionError for bad strings
        raise InputError(f"{key}: {irreps!r} is not an irreps string ({err})") from None
    if parsed.count("0e") == 0:
        raise InputError(f"{key}: {irreps!r} has no scalar (0e) channels; the energy readout needs some, e.g. '32x0e+32x1o'")


def load_model_config(config: Optional[Any] = None, **overrides) -> ModelConfig:
    """``config``: None (defaults), a ``ModelConfig``, a dict of overrides, or a YAML path.

    A YAML file may hold the model settings at top level or under a ``model:`` key.
    """
    if config is None:
        base: dict = {}
    elif isinstance(config, ModelConfig):
        base = config.to_dict()
    elif isinstance(config, Mapping):
        base = dict(config)
    elif isinstance(config, (str, pathlib.Path)):
        loaded = read_yaml(config)
        if not isinstance(loaded, Mapping):
            raise ConfigTypeError(f"{config}: expected a mapping of model settings, got {type(loaded).__name__}")
        base = dict(loaded.get("model", loaded))
    else:
        raise TypeError(f"config must be None, a ModelConfig, a dict or a YAML path, not {type(config).__name__}")
    base.update(overrides)
    return from_dict(ModelConfig, base)

"""Typed model configuration: the settings every backbone shares plus one typed config per backbone.

``ModelConfig`` holds what every backbone shares: ``r_max`` (Å), ``num_bessel``,
``num_polynomial_cutoff`` (p of the envelope), ``radial_mlp`` (hidden widths of the radial MLP),
``avg_num_neighbors``, the data statistics (elements, E0s, scale, shift), ``dtype`` and the ℓ=0
``scalar_transforms``; ``backbone`` is a :class:`BackboneConfig`, tagged by ``kind`` like the
transforms. ``radial_mlp`` and ``num_polynomial_cutoff`` default (``None``) to the backbone's own
defaults.

- :class:`MACEConfig` (``kind: mace``, MACE's "medium" model): ``max_ell``, ``hidden_irreps``,
  ``correlation``, ``num_interactions``, ``mlp_irreps``, ``residual_first`` (mace-torch's
  ``interaction_first``: ``false`` = ``RealAgnosticInteractionBlock``, no skip from the embedding,
  so an isolated atom's energy is exactly its E0; ``true`` = ``RealAgnosticResidualInteractionBlock``,
  mace-torch 0.3's default, whose skip gives each species a learnable constant energy).
- :class:`NequIPConfig` (``kind: nequip``, nequip's names): ``num_layers``, ``l_max``, ``parity``
  (also carry odd-parity features), ``num_features``, ``resnet`` (residual update where a layer's
  irreps are unchanged).

YAML, either form::

    model: {r_max: 5.0, backbone: {kind: nequip, num_layers: 3}}
    model: {r_max: 5.0, backbone: nequip, num_layers: 3}        # flat keys go to the active backbone

A backbone setting given to another backbone is an error naming the key. Resolved configs are
written in the first (nested) form; run directories written with flat keys keep loading.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from typing import Any, ClassVar, Mapping, Optional

import jax

from scalarjax.configtools import _coerce, from_dict, read_yaml, split_kind  # noqa: F401  (re-exported)
from scalarjax.errors import ConfigKeyError, ConfigTypeError, InputError

DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Base of every backbone's typed settings. ``kind`` names it in YAML; ``radial_defaults`` are
    its defaults for the shared radial settings that :class:`ModelConfig` leaves at ``None``."""

    kind: ClassVar[str] = ""
    radial_defaults: ClassVar[dict] = {}

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class MACEConfig(BackboneConfig):
    """MACE (Batatia et al. 2022); defaults: mace-torch's "medium" model."""

    kind: ClassVar[str] = "mace"
    radial_defaults: ClassVar[dict] = {"radial_mlp": (64, 64, 64), "num_polynomial_cutoff": 5}
    max_ell: int = 3  # ℓ_max of the edge spherical harmonics and of the messages
    hidden_irreps: str = "64x0e+64x1o"  # node features between interactions (equal channels per irrep)
    correlation: int = 3  # body order − 1 of the symmetric contraction (1..4)
    num_interactions: int = 2
    mlp_irreps: str = "16x0e"  # hidden width of the last readout's MLP
    residual_first: bool = False  # mace-torch's interaction_first: a residual first block

    def __post_init__(self):
        if not 1 <= self.correlation <= 4:
            raise InputError(f"model.correlation: {self.correlation} is outside 1..4")
        if self.num_interactions < 1 or self.max_ell < 0:
            raise InputError("model: num_interactions must be positive and max_ell ≥ 0")
        for key in ("hidden_irreps", "mlp_irreps"):
            _check_scalars(getattr(self, key), f"model.{key}")


@dataclasses.dataclass(frozen=True)
class NequIPConfig(BackboneConfig):
    """NequIP (Batzner et al. 2022); defaults: nequip's "full" example (4 layers, l_max 2, 32 features,
    parity, 2×64 radial MLP, p = 6) with r_max 5 Å like MACE."""

    kind: ClassVar[str] = "nequip"
    radial_defaults: ClassVar[dict] = {"radial_mlp": (64, 64), "num_polynomial_cutoff": 6}
    num_layers: int = 4
    l_max: int = 2
    parity: bool = True  # also carry odd-parity features
    num_features: int = 32
    resnet: bool = True  # residual update where a layer's irreps are unchanged

    def __post_init__(self):
        if self.num_layers < 1 or self.l_max < 0 or self.num_features < 1:
            raise InputError("model: num_layers and num_features must be positive and l_max ≥ 0")


@dataclasses.dataclass(frozen=True)
class AllegroConfig(BackboneConfig):
    """Allegro (Musaelian et al. 2023), strictly local; nequip-allegro's names. Defaults: the
    reference's model builder (``FullAllegroEnergyModel``: 2 layers, 64 scalar and 16 tensor features,
    one hidden layer of 64 in the two-body and latent MLPs, 32 in the readout; 8 Bessel functions and
    p = 6 of its ``TwoBodyBesselScalarEmbed``), with l_max 2 (required there; our NequIP's) and
    r_max 5 Å like every backbone. ``model.radial_mlp`` is the hidden widths of the two-body MLP."""

    kind: ClassVar[str] = "allegro"
    radial_defaults: ClassVar[dict] = {"radial_mlp": (64,), "num_polynomial_cutoff": 6}
    num_layers: int = 2
    l_max: int = 2
    parity: bool = True  # both parities in the tensor features (changes nothing for 2 layers)
    num_scalar_features: int = 64  # F, the edge scalar latent (even: half per species embedding)
    num_tensor_features: int = 16  # U, channels per irrep of the tensor features
    latent_mlp: tuple[int, ...] = (64,)  # hidden widths of each layer's latent MLP
    readout_mlp: tuple[int, ...] = (32,)  # hidden widths of the edge-energy MLP

    def __post_init__(self):
        if self.num_layers < 1 or self.l_max < 0 or self.num_tensor_features < 1:
            raise InputError("model: num_layers and num_tensor_features must be positive and l_max ≥ 0")
        if self.num_scalar_features < 2 or self.num_scalar_features % 2:
            raise InputError(f"model.num_scalar_features: {self.num_scalar_features} must be even and ≥ 2 (half per species embedding)")


BACKBONE_CONFIGS: dict[str, type] = {"mace": MACEConfig, "nequip": NequIPConfig, "allegro": AllegroConfig}
BACKBONES = tuple(BACKBONE_CONFIGS)


def backbone_fields(kind: str) -> tuple[str, ...]:
    """Names of the settings of backbone ``kind`` (``"mace"``, ``"nequip"``); ``KeyError`` for another kind."""
    return tuple(f.name for f in dataclasses.fields(BACKBONE_CONFIGS[kind]))


def _owners(key: str) -> list[str]:
    return [kind for kind in BACKBONES if key in backbone_fields(kind)]


def backbone_mapping(value: Any) -> Any:
    """A backbone given as a name, a ``{kind: ...}`` mapping or a :class:`BackboneConfig` → a new
    ``{kind: ..., **settings}`` dict; anything else is returned as is (for the caller to reject)."""
    if isinstance(value, BackboneConfig):
        return value.to_dict()
    if isinstance(value, str):
        return {"kind": value}
    return dict(value) if isinstance(value, Mapping) else value


def backbone_from_dict(data: Any, path: str = "model") -> BackboneConfig:
    """``"mace"``, ``{kind: mace, max_ell: 2, ...}`` or a :class:`BackboneConfig` → the typed config.
    A key of another backbone names that backbone; wrong types name ``{path}.{key}``."""
    if isinstance(data, BackboneConfig):
        return data
    cls, data = split_kind(backbone_mapping(data), BACKBONE_CONFIGS, f"{path}.backbone", "backbone")
    kind, hints = cls.kind, typing.get_type_hints(cls)
    for key in data:
        if key not in hints or key in ("kind", "radial_defaults"):
            others = [k for k in _owners(key) if k != kind]
            if others:
                raise InputError(f"{path}.{key}: a {'/'.join(others)} setting, but {path}.backbone is {kind!r}")
            raise ConfigKeyError(f"{path}.backbone: unknown key {key!r} for {kind}; known: {list(backbone_fields(kind))}")
    return cls(**{k: _coerce(v, hints[k], f"{path}.{k}") for k, v in data.items()})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A model: the shared settings below plus ``backbone`` (a :class:`BackboneConfig`; a name or a
    ``{kind: ...}`` mapping is converted). Change it with ``dataclasses.replace``."""

    backbone: BackboneConfig = dataclasses.field(default_factory=MACEConfig)
    r_max: float = 5.0  # Å
    num_bessel: int = 8
    num_polynomial_cutoff: Optional[int] = None  # None: the backbone's default
    radial_mlp: Optional[tuple[int, ...]] = None  # None: the backbone's default
    avg_num_neighbors: float = 1.0
    # Statistics of the data (set by training; defaults give an untrained model).
    atomic_numbers: tuple[int, ...] = ()
    atomic_energies: tuple[float, ...] = ()  # E0 per element of ``atomic_numbers``, eV
    scale: float = 1.0  # eV
    shift: float = 0.0  # eV per atom
    dtype: str = "float32"
    # ℓ=0 scalar-pathway transforms, applied in order: [{kind: pan, ...}, {kind: pgs, ...}]
    scalar_transforms: tuple = ()

    def __post_init__(self):
        set_ = lambda key, value: object.__setattr__(self, key, value)
        set_("backbone", backbone_from_dict(self.backbone))
        if self.dtype not in DTYPES:
            raise InputError(f"model.dtype: {self.dtype!r} is not one of {DTYPES}")
        for key, value in self.backbone.radial_defaults.items():
            if getattr(self, key) is None:
                set_(key, value)
        if not self.r_max > 0 or self.num_bessel < 1:
            raise InputError(f"model: r_max ({self.r_max}) and num_bessel ({self.num_bessel}) must be positive")
        if not self.avg_num_neighbors > 0:
            raise InputError(f"model.avg_num_neighbors: {self.avg_num_neighbors!r} must be positive (it divides the messages)")
        if not self.scale > 0:
            raise InputError(f"model.scale: {self.scale!r} must be positive")
        set_("radial_mlp", tuple(int(w) for w in self.radial_mlp))
        from scalarjax.scalar import transform_from_dict

        if not isinstance(self.scalar_transforms, (list, tuple)):
            raise ConfigTypeError(f"model.scalar_transforms: expected a list, got {self.scalar_transforms!r}")
        transforms = (transform_from_dict(t, f"model.scalar_transforms[{i}]") for i, t in enumerate(self.scalar_transforms))
        set_("scalar_transforms", tuple(transforms))
        for z in self.atomic_numbers:
            if isinstance(z, bool) or not float(z).is_integer() or not 1 <= int(z) <= 118:
                raise InputError(f"model.atomic_numbers: {z!r} is not an atomic number (an integer in 1..118)")
        set_("atomic_numbers", tuple(sorted(int(z) for z in self.atomic_numbers)))
        set_("atomic_energies", tuple(float(e) for e in self.atomic_energies))
        if self.atomic_energies and len(self.atomic_energies) != len(self.atomic_numbers):
            raise InputError("model.atomic_energies: need one E0 per element of atomic_numbers")

    def to_dict(self) -> dict:
        """Plain data (YAML/JSON-able): the backbone and the transforms as ``{kind: ..., ...}`` mappings."""
        from scalarjax.scalar import transform_to_dict

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["backbone"] = self.backbone.to_dict()
        d["scalar_transforms"] = [transform_to_dict(t) for t in self.scalar_transforms]
        d["radial_mlp"] = list(self.radial_mlp)
        for key in ("atomic_numbers", "atomic_energies"):
            d[key] = list(d[key])
        return d

    def flat(self) -> dict:
        """Every setting under its own name, the backbone's included (``backbone``: its kind)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "backbone": self.backbone.kind, **dataclasses.asdict(self.backbone)}

    def check_dtype(self) -> None:
        """float64 needs ``jax_enable_x64``: the library never flips that global flag itself."""
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise InputError(
                "dtype float64 requested but JAX's x64 mode is off; enable it before using scalarjax "
                "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1)"
            )


def set_model_key(model: dict, key: str, value: Any) -> None:
    """Set ``key`` in a raw model mapping: a backbone setting goes under ``backbone`` when that is
    already a mapping (an override of a resolved, nested config), else at top level."""
    nested = model.get("backbone")
    if isinstance(nested, Mapping) and _owners(key):
        model["backbone"] = {**nested, key: value}
    else:
        model[key] = value


def model_config_from_dict(data: Mapping[str, Any], path: str = "model") -> ModelConfig:
    """A raw model mapping (nested or flat backbone settings, see the module docstring) → :class:`ModelConfig`."""
    data = dict(data)
    backbone = backbone_mapping(data.pop("backbone", MACEConfig.kind))
    if not isinstance(backbone, dict):
        raise ConfigTypeError(f"{path}.backbone: expected a backbone name or a mapping with a 'kind' key, got {backbone!r}")
    shared = {f.name for f in dataclasses.fields(ModelConfig)}
    for key in [k for k in data if k not in shared]:
        if data[key] is None and _owners(key):  # earlier versions wrote every backbone's keys, unset ones as null
            del data[key]
            continue
        if not _owners(key):
            raise ConfigKeyError(f"{path}: unknown key(s) [{key!r}]; known: {sorted(shared)} and the backbone's settings")
        if key in backbone and backbone[key] != data[key]:
            raise InputError(f"{path}.{key}: given twice ({data[key]!r}, and {backbone[key]!r} under {path}.backbone)")
        backbone[key] = data.pop(key)
    return from_dict(ModelConfig, {**data, "backbone": backbone_from_dict(backbone, path)}, path)


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
    for key, value in overrides.items():
        set_model_key(base, key, value)
    return model_config_from_dict(base)

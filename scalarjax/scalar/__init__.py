"""ℓ=0 scalar-pathway transforms and the hook points every backbone exposes (see :mod:`.pathway`)."""

from scalarjax.scalar.pan import PAN  # noqa: F401
from scalarjax.scalar.pathway import (  # noqa: F401
    TRANSFORMS,
    HookContext,
    ScalarTransform,
    register_transform,
    transform_from_dict,
    transform_to_dict,
)
from scalarjax.scalar.pgs import PGS  # noqa: F401

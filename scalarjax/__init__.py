"""scalarjax: jit-compiled equivariant interatomic potentials in JAX (MACE, NequIP) with
composable scalar-pathway modules (PAN, PGS)."""

from scalarjax import _runtime  # noqa: F401  (XLA CPU flags; must run before JAX starts its backend)

__all__ = ["Calculator", "ModelConfig", "Potential", "load_model_config"]
__version__ = "0.1.0"

_LAZY = {
    "Calculator": "scalarjax.calculator",
    "ModelConfig": "scalarjax.config",
    "Potential": "scalarjax.potential",
    "load_model_config": "scalarjax.config",
}


def __getattr__(name: str):
    """The public names, imported on first use: ``import scalarjax`` alone does not start JAX, so
    the ``scalarjax`` command can re-execute itself with its allocator before doing any work."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalarjax' has no attribute {name!r}")

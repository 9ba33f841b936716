"""scalarjax: jit-compiled equivariant interatomic potentials in JAX (MACE, NequIP) with
composable scalar-pathway modules (PAN, PGS)."""

from scalarjax import _runtime  # noqa: F401  (XLA CPU flags; must run before JAX starts its backend)
from scalarjax.calculator import Calculator
from scalarjax.config import ModelConfig, load_model_config
from scalarjax.potential import Potential

__all__ = ["Calculator", "ModelConfig", "Potential", "load_model_config"]
__version__ = "0.1.0"

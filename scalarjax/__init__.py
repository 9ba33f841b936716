"""scalarjax: jit-compiled equivariant interatomic potentials in JAX (MACE, NequIP) with
composable scalar-pathway modules (PAN, PGS)."""

__version__ = "0.1.0"

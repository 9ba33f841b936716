"""Molecular dynamics and relaxations with the scalarjax calculator (ASE integrators and optimisers)."""

from scalarjax.simulation.md import nve_drift, run_md  # noqa: F401
from scalarjax.simulation.relax import relax  # noqa: F401

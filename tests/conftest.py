"""Shared pytest fixtures (keep minimal)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference-data directory (``$SCALARJAX_DATA`` or ``../shared/data``); skips if absent."""
    from scalarjax.data.io import data_dir

    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path} (set SCALARJAX_DATA)")
    return path


# One XLA compilation cache per test session, created empty: programs that several tests, repeated
# train() calls or the notebook kernels (subprocesses inherit the variable) compile identically are
# compiled once. It lives for this session only, so nothing carries over between CI runs.
import atexit  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="scalarjax-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# The suite's models are tiny, so XLA's compile time, not run time, dominates it: LLVM's expensive
# passes off (XLA's backend optimisation level 0) cut the suite's wall time by ~40% on 2 cores. Only
# the generated code's speed changes, never what it computes. Subprocesses (CLI, notebooks) inherit it.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# The physics tests run in float64; the library itself never flips this flag.
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


# The longest tests (notebook kernels, multi-process training, CLI runs) start first: with two
# workers (pytest-xdist hands out the first tests round-robin), no long test is left to run alone at the end.
SLOW_FIRST = (
    "test_notebooks.py",
    "test_parallel.py",
    "test_simulation.py::test_diagnose_command_compares_runs",
    "test_robustness.py::test_sigkill",
    "test_training.py::test_resume_is_exact_and_run_loads",
    "test_finetune.py",
)


def pytest_collection_modifyitems(config, items):
    rank = lambda item: next((i for i, key in enumerate(SLOW_FIRST) if key in item.nodeid), len(SLOW_FIRST))
    items.sort(key=rank)  # stable: the rest keeps its order


@pytest.fixture(autouse=True)
def _nan_inf_tripwire(request):
    """Every jitted computation's outputs are checked for NaN/inf (``jax_debug_nans``/``_infs``): a
    non-finite value anywhere fails the test where it arises instead of surfacing as a wrong number
    later. Tests that feed non-finite values on purpose opt out with ``@pytest.mark.nonfinite``."""
    if request.node.get_closest_marker("nonfinite"):
        yield
        return
    with jax.debug_nans(True), jax.debug_infs(True):
        yield


# A tiny MACE (fast to compile) that still exercises every path: two species, max_ell 2,
# correlation 3, two interactions, non-trivial E0s and shift.
TINY = {
    "r_max": 3.5,
    "num_bessel": 4,
    "max_ell": 2,
    "hidden_irreps": "8x0e+8x1o",
    "correlation": 3,
    "num_interactions": 2,
    "mlp_irreps": "4x0e",
    "radial_mlp": (8, 8),
    "avg_num_neighbors": 8.0,
    "atomic_numbers": (8, 14),
    "atomic_energies": (-2.0, -3.5),
    "shift": 0.25,
    "scale": 1.7,
    "dtype": "float64",
}


# A tiny NequIP with the same statistics: three gated layers, l_max 2, residual updates.
TINY_NEQUIP = {
    **{k: v for k, v in TINY.items() if k not in ("max_ell", "hidden_irreps", "correlation", "num_interactions", "mlp_irreps")},
    "backbone": "nequip",
    "num_layers": 3,
    "l_max": 2,
    "num_features": 8,
}
# A tiny Allegro: two layers, l_max 2 (11 and 3 product paths), 8 scalar and 4 tensor features.
TINY_ALLEGRO = {
    **{k: v for k, v in TINY_NEQUIP.items() if k not in ("num_layers", "l_max", "num_features")},
    "backbone": "allegro",
    "radial_mlp": (8,),
    "num_layers": 2,
    "l_max": 2,
    "num_scalar_features": 8,
    "num_tensor_features": 4,
    "latent_mlp": (8,),
    "readout_mlp": (8,),
}
TINY_BY_BACKBONE = {"mace": TINY, "nequip": TINY_NEQUIP, "allegro": TINY_ALLEGRO}

# Both scalar-pathway transforms with every option on and visibly non-identity weights at init.
TINY_TRANSFORMS = (
    {"kind": "pan", "neighbor_weights": True, "init_scale": 0.5, "hidden": 4},
    {"kind": "pgs", "edge_modes": 4, "readout_modes": 3, "init_scale": 0.5},
)
TINY_VARIANTS = {
    **TINY_BY_BACKBONE,
    **{f"{name}+pan+pgs": {**cfg, "scalar_transforms": TINY_TRANSFORMS} for name, cfg in TINY_BY_BACKBONE.items()},
}


@pytest.fixture(scope="session", params=list(TINY_VARIANTS))
def tiny_potential(request):
    """A tiny float64 model of every backbone, with and without PAN+PGS: the physics tests run for each."""
    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    return Potential(load_model_config(TINY_VARIANTS[request.param]), seed=1)

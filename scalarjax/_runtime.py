"""Process-level settings scalarjax applies on import (CPU speed; each can be switched off).

1. glibc's allocator (``SCALARJAX_NO_MALLOPT=1`` to skip). XLA's CPU runtime allocates a fresh
   scratch buffer of 10–200 MB on every call of a compiled function. glibc serves such sizes with
   ``mmap`` and returns them with ``munmap``, so every call page-faults its scratch memory in again
   (2–3× slower from ~64 atoms up, much of it in the kernel). ``mallopt(M_MMAP_MAX, 0)`` serves
   them from the heap instead and a large ``M_TRIM_THRESHOLD`` keeps freed heap memory mapped, so
   the next call reuses it. Cost: the process keeps its peak heap size. (The equivalent
   ``GLIBC_TUNABLES`` must be set before the process starts; ``glibc.malloc.mmap_threshold`` above
   32 MiB is silently ignored by glibc, which is why that tunable does not help here.)
2. ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` (``SCALARJAX_NO_XLA_FLAGS=1`` to skip):
   XLA's CPU "YNN" fusion makes some of the reductions in a MACE backward pass pathologically
   slow; excluding reductions from it restores normal speed. Appended to the user's ``XLA_FLAGS``
   unless they already set it; only effective if JAX's backend has not started yet.

Both tune XLA's *CPU* runtime. When a GPU plugin of JAX is installed (``jax_plugins.xla_cuda*`` /
``xla_rocm*``, what ``pip install "scalarjax[cuda12]"`` brings) and ``JAX_PLATFORMS`` does not
force the CPU, neither is applied (``GPU_PLUGIN`` names the plugin; ``SCALARJAX_CPU_TUNING=1``
applies them anyway): the hot path is then on the GPU, and the process should keep glibc's
default of returning large host blocks to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def _gpu_plugin() -> str | None:
    """The name of an installed JAX GPU plugin (without importing JAX), unless JAX is forced onto the CPU."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not any(p in platforms for p in ("cuda", "gpu", "rocm")):
        return None
    import importlib.util
    import pkgutil

    try:
        spec = importlib.util.find_spec("jax_plugins")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for module in pkgutil.iter_modules(list(spec.submodule_search_locations)):
        if module.name.startswith(("xla_cuda", "xla_rocm")):
            return module.name
    return None


GPU_PLUGIN = _gpu_plugin()
_CPU_TUNING = GPU_PLUGIN is None or os.environ.get("SCALARJAX_CPU_TUNING") == "1"

if _CPU_TUNING and os.environ.get("SCALARJAX_NO_XLA_FLAGS") != "1":
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" {_FLAG}=-reduce").strip()


def _tune_glibc_malloc() -> bool:
    if not _CPU_TUNING or not sys.platform.startswith("linux") or os.environ.get("SCALARJAX_NO_MALLOPT") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False  # not glibc (musl has no effective mallopt)
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except OSError:
        return False


MALLOC_TUNED = _tune_glibc_malloc()

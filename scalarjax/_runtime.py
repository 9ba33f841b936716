"""Process-level settings scalarjax applies on import (CPU speed; each can be switched off).

1. glibc's allocator (``SCALARJAX_NO_MALLOPT=1`` to skip). XLA's CPU runtime allocates a fresh
   scratch buffer of 10–200 MB on every call of a compiled function. glibc serves such sizes with
   ``mmap`` and returns them with ``munmap``, so every call page-faults its scratch memory in again
   (2–3× slower from ~64 atoms up, much of it in the kernel). ``mallopt(M_MMAP_MAX, 0)`` serves
   them from the heap instead and a large ``M_TRIM_THRESHOLD`` keeps freed heap memory mapped, so
   the next call reuses it. ``M_ARENA_MAX = 1`` is needed too: XLA's worker threads otherwise get
   arenas of their own, whose 64 MiB heaps are mapped and unmapped regardless of the other two
   settings (measured, medium MACE on 64 Si atoms: 5.5 M page faults in a benchmark without it,
   0.29 M with it). Cost: the process keeps its peak heap size. (The equivalent
   ``GLIBC_TUNABLES`` must be set before the process starts; ``glibc.malloc.mmap_threshold`` above
   32 MiB is silently ignored by glibc, which is why that tunable does not help here.)
3. A real allocator for the launcher (``SCALARJAX_ALLOCATOR=none`` to skip, ``=PATH`` for another
   ``.so``). Even tuned, glibc is slower than mimalloc or tcmalloc for XLA's allocation pattern (a
   further 10–20% per call and 30% of the compile time). An allocator must be loaded before the
   process starts, so the ``scalarjax`` command re-executes itself once with ``LD_PRELOAD`` set to
   :func:`allocator_library` (mimalloc from the ``cmeel-mimalloc`` wheel, a dependency on Linux;
   else a system tcmalloc), and ``python -m scalarjax.launch SCRIPT`` does the same for a script.
   ``import scalarjax`` in a running interpreter cannot do this and relies on 1.
4. JAX's persistent compilation cache for the command and the launcher (:func:`use_compilation_cache`;
   ``JAX_COMPILATION_CACHE_DIR`` chooses the folder, ``SCALARJAX_COMPILATION_CACHE=none`` skips it):
   the second process that compiles a shape loads it in ~0.1 s instead of 5–9 s (medium MACE).
2. XLA flags (``SCALARJAX_NO_XLA_FLAGS=1`` to skip), each appended to the user's ``XLA_FLAGS``
   unless they already set it; only effective if JAX's backend has not started yet.
   ``--xla_cpu_experimental_ynn_fusion_type=-reduce``: XLA's CPU "YNN" fusion makes some of the
   reductions in a MACE backward pass pathologically slow; excluding reductions from it restores
   normal speed. ``--xla_backend_optimization_level=1`` (LLVM -O1 instead of -O2 for the CPU
   kernels): medium MACE compiles ~17% faster (mean of 12 first calls 5.6 vs 6.8 s) and runs no
   slower (E+F(+S), aspirin ×1/×10 and Si 64, float32/64, two alternating runs each); -O0 ran
   4× slower.

All three tune XLA's *CPU* runtime. When a GPU plugin of JAX is installed (``jax_plugins.xla_cuda*`` /
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

_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "-reduce", "--xla_backend_optimization_level": "1"}
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8


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
    for _flag, _value in _FLAGS.items():
        if _flag not in flags:  # the user's own setting wins
            flags = f"{flags} {_flag}={_value}".strip()
    os.environ["XLA_FLAGS"] = flags


def _tune_glibc_malloc() -> bool:
    if not _CPU_TUNING or not sys.platform.startswith("linux") or os.environ.get("SCALARJAX_NO_MALLOPT") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False  # not glibc (musl has no effective mallopt)
        settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
        return all([bool(libc.mallopt(option, value)) for option, value in settings])
    except OSError:
        return False


MALLOC_TUNED = _tune_glibc_malloc()


_SYSTEM_ALLOCATORS = ("tcmalloc_minimal", "tcmalloc")  # jemalloc measured no faster than tuned glibc here


def _wheel_mimalloc() -> str | None:
    """``libmimalloc.so`` of the installed ``cmeel-mimalloc`` wheel, if any."""
    from importlib import metadata

    try:
        files = metadata.files("cmeel-mimalloc") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmimalloc.so"):
            path = str(f.locate())
            if os.path.exists(path):
                return os.path.realpath(path)
    return None


def allocator_library() -> str | None:
    """Path of the malloc replacement that :func:`exec_with_allocator` preloads, or ``None``.

    ``$SCALARJAX_ALLOCATOR`` (a path; ``none`` switches it off), else mimalloc from the
    ``cmeel-mimalloc`` wheel, else a system tcmalloc. ``None`` off Linux and where the CPU tuning
    does not apply (a GPU plugin is installed, see above)."""
    choice = os.environ.get("SCALARJAX_ALLOCATOR", "")
    if choice.lower() == "none" or not _CPU_TUNING or not sys.platform.startswith("linux"):
        return None
    if choice:
        return choice if os.path.exists(choice) else None
    found = _wheel_mimalloc()
    for name in _SYSTEM_ALLOCATORS if found is None else ():
        found = ctypes.util.find_library(name)
        if found:
            break
    return found


def allocator_env(env: dict | None = None) -> dict:
    """A copy of ``env`` (default ``os.environ``) whose ``LD_PRELOAD`` starts with :func:`allocator_library`."""
    env = dict(os.environ if env is None else env)
    lib = allocator_library()
    preload = env.get("LD_PRELOAD", "")
    if lib and lib not in preload.split(":"):
        env["LD_PRELOAD"] = f"{lib}:{preload}" if preload else lib
    return env


def exec_with_allocator(args: list[str]) -> None:
    """Replace this process by ``python ARGS`` with the allocator preloaded; return if it is already
    loaded, there is none, or the exec fails (the caller then goes on with glibc)."""
    env = allocator_env()
    if env.get("LD_PRELOAD", "") == os.environ.get("LD_PRELOAD", ""):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *args], env)
    except OSError:
        return


def use_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at ``$JAX_COMPILATION_CACHE_DIR``, by default
    ``$XDG_CACHE_HOME/scalarjax/xla`` (``~/.cache/...``), unless ``SCALARJAX_COMPILATION_CACHE=none``.
    Sets the environment variable JAX reads when it is imported (and which child processes inherit),
    so call it before JAX is imported; returns the folder, or None when switched off."""
    if os.environ.get("SCALARJAX_COMPILATION_CACHE", "").lower() == "none":
        return None
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(base, "scalarjax", "xla")
    return os.environ["JAX_COMPILATION_CACHE_DIR"]

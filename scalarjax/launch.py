"""Run a Python script or module with scalarjax's CPU allocator preloaded.

    python -m scalarjax.launch SCRIPT.py [ARGS ...]
    python -m scalarjax.launch -m MODULE [ARGS ...]

The same as ``python SCRIPT.py ARGS`` (or ``python -m MODULE``), with ``LD_PRELOAD`` set to
:func:`scalarjax._runtime.allocator_library`, which an interpreter cannot do for itself once it
runs, and JAX's persistent compilation cache on (``scalarjax._runtime.use_compilation_cache``).
The ``scalarjax`` command does both on its own; this is for scripts that use the library
(an ASE MD driver, a benchmark). Where there is no allocator (not Linux, a GPU plugin,
``SCALARJAX_ALLOCATOR=none``) the script runs as it would with plain ``python``.
"""

from __future__ import annotations

import runpy
import sys

from scalarjax import _runtime

USAGE = "usage: python -m scalarjax.launch SCRIPT.py [ARGS ...] | -m MODULE [ARGS ...]"


def main(argv: list[str] | None = None) -> int:
    """Re-execute ``python ARGV`` with the allocator; without one, run it in this interpreter."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or (args[0] == "-m" and len(args) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    _runtime.use_compilation_cache()
    _runtime.exec_with_allocator(args)
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())

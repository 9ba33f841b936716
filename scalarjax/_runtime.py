"""Process-level settings scalarjax applies on import, before JAX initialises its CPU backend.

``--xla_cpu_experimental_ynn_fusion_type=-reduce``: XLA's CPU "YNN" fusion makes some of the
reductions in a MACE backward pass pathologically slow (one [1792, 3, 64] reduce took ~50 ms on
jaxlib 0.10.2); excluding reductions from it restores normal speed. It is appended to any
``XLA_FLAGS`` the user set, and skipped when ``SCALARJAX_NO_XLA_FLAGS=1`` or when the user already
chose a value for the flag. It only takes effect if JAX's backend has not started yet (import
scalarjax before running JAX code to get it).
"""

import os

_FLAG = "--xla_cpu_experimental_ynn_fusion_type"

if os.environ.get("SCALARJAX_NO_XLA_FLAGS") != "1":
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" {_FLAG}=-reduce").strip()

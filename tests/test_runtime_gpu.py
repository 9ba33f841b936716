"""The CPU-only runtime settings of ``scalarjax._runtime`` are skipped where a JAX GPU plugin is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = "import json, os, scalarjax._runtime as r; print(json.dumps([r.GPU_PLUGIN, r.MALLOC_TUNED, os.environ.get('XLA_FLAGS', '')]))"


def probe(tmp_path, fake_plugin: bool, **env):
    path = [ROOT]
    if fake_plugin:  # what jax-cuda13-pjrt installs: the namespace package jax_plugins with xla_cuda13 in it
        (tmp_path / "jax_plugins" / "xla_cuda13").mkdir(parents=True, exist_ok=True)
        (tmp_path / "jax_plugins" / "xla_cuda13" / "__init__.py").write_text("")
        path.append(str(tmp_path))
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "SCALARJAX_CPU_TUNING")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**base, "PYTHONPATH": os.pathsep.join(path), **env}, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_cpu_settings_skipped_with_gpu_plugin(tmp_path):
    plugin, tuned, flags = probe(tmp_path, fake_plugin=False)
    assert plugin is None and "ynn_fusion_type" in flags
    plugin, tuned, flags = probe(tmp_path, fake_plugin=True)
    assert plugin == "xla_cuda13" and tuned is False and "ynn_fusion_type" not in flags
    plugin, tuned, flags = probe(tmp_path, fake_plugin=True, JAX_PLATFORMS="cpu")  # GPU installed, CPU forced
    assert plugin is None and "ynn_fusion_type" in flags
    plugin, tuned, flags = probe(tmp_path, fake_plugin=True, SCALARJAX_CPU_TUNING="1")
    assert plugin == "xla_cuda13" and "ynn_fusion_type" in flags

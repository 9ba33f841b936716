"""``scalarjax._runtime``: the CPU-only settings are skipped where a JAX GPU plugin is installed, and
the launcher (``scalarjax`` command, ``python -m scalarjax.launch``) really loads its allocator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


MAPPED = "import os; maps = open('/proc/self/maps').read(); print(os.path.basename(os.environ.get('LD_PRELOAD', '-')), 'malloc' in maps)"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's")


def _clean_env(**env):
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "SCALARJAX_ALLOCATOR", "JAX_PLATFORMS", "JAX_COMPILATION_CACHE_DIR", "SCALARJAX_COMPILATION_CACHE")
    }
    return {**base, "PYTHONPATH": ROOT, **env}


def _py(args, **env):
    """stdout of ``python ARGS`` in a clean environment, split into words."""
    return subprocess.run([sys.executable, *args], env=_clean_env(**env), capture_output=True, text=True, check=True).stdout.split()


@linux_only
def test_launcher_preloads_the_allocator(tmp_path):
    lib = _py(["-c", "import scalarjax._runtime as r; print(r.allocator_library())"])[0]
    if lib == "None":
        pytest.skip("no allocator installed (cmeel-mimalloc or a system tcmalloc)")
    script = tmp_path / "probe.py"
    script.write_text("import sys\n" + MAPPED.replace("print(", "print(sys.argv[1:], "))
    launch = ["-m", "scalarjax.launch", str(script), "a", "--b"]
    assert _py(launch) == ["['a',", "'--b']", os.path.basename(lib), "True"]
    assert _py(launch, SCALARJAX_ALLOCATOR="none") == ["['a',", "'--b']", "-", "False"]  # off: plain python
    exec_once = f"import scalarjax._runtime as r; r.exec_with_allocator(['-c', {MAPPED!r}]); print('not replaced')"
    assert _py(["-c", exec_once]) == [os.path.basename(lib), "True"]


def test_no_allocator_with_gpu_plugin_or_when_switched_off(tmp_path):
    (tmp_path / "jax_plugins" / "xla_cuda13").mkdir(parents=True)
    (tmp_path / "jax_plugins" / "xla_cuda13" / "__init__.py").write_text("")
    code = ["-c", "import scalarjax._runtime as r; print(r.allocator_library(), r.allocator_env({}).get('LD_PRELOAD'))"]
    assert _py(code, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)])) == ["None", "None"]
    assert _py(code, SCALARJAX_ALLOCATOR="none") == ["None", "None"]


def test_launch_usage_is_one_line():
    out = subprocess.run([sys.executable, "-m", "scalarjax.launch"], env=_clean_env(), capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("usage: python -m scalarjax.launch")


def test_import_does_not_start_jax():
    code = "import sys, scalarjax; assert 'jax' not in sys.modules; scalarjax.Potential; assert 'jax' in sys.modules; print('ok')"
    assert _py(["-c", code]) == ["ok"]


def test_compilation_cache_folder(tmp_path):
    code = ["-c", "import os, scalarjax._runtime as r; print(r.use_compilation_cache(), os.environ.get('JAX_COMPILATION_CACHE_DIR'))"]
    assert _py(code, XDG_CACHE_HOME=str(tmp_path)) == [str(tmp_path / "scalarjax" / "xla")] * 2
    assert _py(code, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine")) == [str(tmp_path / "mine")] * 2  # the user's choice stays
    assert _py(code, SCALARJAX_COMPILATION_CACHE="none") == ["None", "None"]

"""Exported models (``scalarjax.export``): live and exported E, F, S agree; the export runs in a fresh
process that never imports Flax or the model code; unusable files give one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Four species (aspirin's H, C, O and Si), small enough to lower twice (cpu, cuda) quickly.
SMALL = {
    "r_max": 4.0,
    "num_bessel": 4,
    "max_ell": 2,
    "hidden_irreps": "4x0e+4x1o",
    "correlation": 2,
    "num_interactions": 2,
    "mlp_irreps": "4x0e",
    "radial_mlp": [8],
    "avg_num_neighbors": 8.0,
    "atomic_numbers": [1, 6, 8, 14],
    "atomic_energies": [-1.0, -2.0, -3.0, -4.0],
    "shift": 0.1,
    "scale": 1.3,
}

FRESH = """
import json, sys
import ase.io
import jax
if sys.argv[2] == "float64":
    jax.config.update("jax_enable_x64", True)
from scalarjax import Calculator
calc = Calculator.from_export(sys.argv[1])
out = {}
for path in sys.argv[3:]:
    atoms = ase.io.read(path)
    atoms.calc = calc
    out[path] = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces().tolist()}
    if atoms.pbc.any():
        out[path]["stress"] = atoms.get_stress().tolist()
out["modules"] = sorted(m for m in ("flax", "e3nn_jax", "optax", "orbax", "scalarjax.model", "scalarjax.backbones") if m in sys.modules)
out["compiles"] = calc.potential.compile_count
print("RESULT" + json.dumps(out))
"""


def structures(shared_data, tmp_path):
    import ase.io
    from ase.build import bulk

    aspirin = ase.io.read(shared_data / "rmd17" / "aspirin_train.xyz", 0)
    si = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1))
    si.rattle(0.05, seed=1)
    si.set_cell(si.cell[:] @ (np.eye(3) + [[0.01, 0.02, 0], [0.02, -0.01, 0], [0, 0, 0.005]]), scale_atoms=True)  # strained
    paths = []
    for name, atoms in (("aspirin", aspirin), ("si16", si)):
        atoms = atoms.copy()
        atoms.calc = None
        p = tmp_path / f"{name}.xyz"
        ase.io.write(p, atoms, format="extxyz")
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_export_matches_live_model_in_fresh_process(shared_data, tmp_path, dtype, tol):
    import ase.io

    from scalarjax import Calculator
    from scalarjax.config import load_model_config
    from scalarjax.export import export_potential
    from scalarjax.potential import Potential

    pot = Potential(load_model_config({**SMALL, "dtype": dtype}), seed=2)
    path = tmp_path / "model.jaxexport"
    if dtype == "float32":
        meta = export_potential(pot, path)
    else:  # through the command line, from a run directory (config.yaml + best/ as the trainer writes them)
        import yaml

        from scalarjax.cli import main
        from scalarjax.training.config import RunConfig, to_dict
        from scalarjax.training.trainer import save_params

        run = tmp_path / "run"
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump(to_dict(RunConfig(model=pot.config)), sort_keys=False))
        save_params(run / "best", pot.params)
        assert main(["export", str(run), "-o", str(path)]) == 0
        assert main(["export", str(tmp_path), "-o", str(tmp_path / "no.jaxexport")]) == 2  # not a run: one line
        pot = Calculator.from_run(run).potential
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    assert meta["platforms"] == ["cpu", "cuda"] and meta["dtype"] == dtype and meta["atomic_numbers"] == [1, 6, 8, 14]
    paths = structures(shared_data, tmp_path)

    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", FRESH, str(path), dtype, *paths], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert got.pop("modules") == []  # neither Flax nor the model code
    assert 1 <= got.pop("compiles") <= 2  # one per padded shape

    live = Calculator(pot)
    for p in paths:
        atoms = ase.io.read(p)
        atoms.calc = live
        ref = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.any():
            ref["stress"] = atoms.get_stress()
        assert set(ref) == set(got[p])
        for key, value in ref.items():
            a, b = np.asarray(value, np.float64), np.asarray(got[p][key], np.float64)
            rel = np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30)
            assert rel <= tol, (p, key, rel)
            assert np.max(np.abs(a)) > 0  # a comparison of zeros proves nothing


def test_unusable_exports_are_one_line(tmp_path):
    from scalarjax import Calculator
    from scalarjax.export import FORMAT, ExportError

    def forge(name, meta, blob=b"\x00" * 64):
        p = tmp_path / name
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("metadata.json", json.dumps(meta))
            z.writestr("function.bin", blob)
        return p

    base = {"format": FORMAT, "atomic_numbers": [14], "r_max": 4.0, "dtype": "float32"}
    cases = [
        (
            forge("old.jaxexport", {**base, "jax": "0.4.1", "calling_convention_version": 1}),
            r"written by jax 0\.4\.1 \(calling convention 1\); this jax .* runs calling conventions",
        ),
        (
            forge("corrupt.jaxexport", {**base, "jax": "0.99.0", "calling_convention_version": 10}),
            r"written by jax 0\.99\.0 \(calling convention 10\) cannot be read by jax",
        ),
        (forge("other.jaxexport", {**base, "format": "something-else/3"}), r"unknown format 'something-else/3'"),
    ]
    (tmp_path / "not_a_zip.jaxexport").write_text("hello")
    cases.append((tmp_path / "not_a_zip.jaxexport", r"not a scalarjax export"))
    for path, message in cases:
        with pytest.raises(ExportError, match=message) as info:
            Calculator.from_export(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)

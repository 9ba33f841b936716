"""Behaviour pinned across refactors (fixtures from ``tests/data/make_compat_fixtures.py``).

* Fixed parameters and structures give the same energies, forces and stresses as the commit that
  wrote the fixtures (float64, 1e-12 relative), for MACE and NequIP with and without PAN+PGS.
* Run directories written by that commit (flat model keys in config.yaml) still load, resume-check
  and evaluate to the metrics they gave then.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from ase import Atoms
from physics_utils import evaluate

from scalarjax.config import load_model_config
from scalarjax.model import abstract_params, build_model
from scalarjax.potential import Potential

COMPAT = pathlib.Path(__file__).parent / "data" / "compat"


@pytest.fixture(scope="module")
def golden():
    with np.load(COMPAT / "golden.npz") as f:
        return dict(f)


def _structures(golden):
    out = []
    for i in range(2):
        k = f"structure_{i}"
        out.append(
            Atoms(numbers=golden[f"{k}/numbers"], positions=golden[f"{k}/positions"], cell=golden[f"{k}/cell"], pbc=golden[f"{k}/pbc"])
        )
    return out


# the variants the fixtures were written for (backbones added later have no fixture)
@pytest.mark.parametrize("variant", list(json.loads((COMPAT / "golden.json").read_text())["variants"]))
def test_same_energy_forces_stress_as_the_fixture_commit(golden, variant):
    meta = json.loads((COMPAT / "golden.json").read_text())
    config = load_model_config(meta["variants"][variant])
    like = abstract_params(build_model(config))  # the parameter tree today's code builds, without init
    stored = {k.split("/params/", 1)[1]: v for k, v in golden.items() if k.startswith(f"{variant}/params/")}
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(like)]
    assert sorted(paths) == sorted(stored), "parameter names changed: old run directories would not load"
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), [np.asarray(stored[p]) for p in paths])
    pot = Potential(config, params=params)
    energies, forces, stresses = evaluate(pot, _structures(golden))
    np.testing.assert_allclose(energies, golden[f"{variant}/energy"], rtol=1e-12, atol=0)
    for i, (f, s) in enumerate(zip(forces, stresses)):
        scale = np.abs(golden[f"{variant}/forces_{i}"]).max()
        np.testing.assert_allclose(f, golden[f"{variant}/forces_{i}"], rtol=0, atol=1e-12 * scale)
        if s is not None:
            np.testing.assert_allclose(s, golden[f"{variant}/stress_{i}"], rtol=0, atol=1e-12 * np.abs(s).max())


@pytest.mark.parametrize("name", ["mace_panpgs", "nequip"])
def test_old_run_directories_load_and_evaluate_the_same(tmp_path, name):
    from scalarjax.run import decide_resume, fingerprint
    from scalarjax.training.config import load_run_config
    from scalarjax.training.evaluate import evaluate_run

    run_dir = tmp_path / name
    shutil.copytree(COMPAT / "runs" / name, run_dir)
    expected = json.loads((run_dir / "expected_evaluation.json").read_text())
    got = evaluate_run(run_dir, COMPAT / "runs" / "ag.xyz", batch_size=4)
    for kind, metrics in expected.items():
        for quantity, m in metrics.items():
            assert got[kind][quantity]["n"] == m["n"]
            assert got[kind][quantity]["mae"] == pytest.approx(m["mae"], rel=1e-9), (kind, quantity)
    # The old config.yaml read by today's code is the same model and data: the run would resume.
    import yaml

    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw["data"]["train"] = str(COMPAT / "runs" / "ag.xyz")
    cfg = load_run_config(raw=raw)
    stored = json.loads((run_dir / "fingerprint.json").read_text())
    (run_dir / "checkpoints" / "2").mkdir(parents=True)
    assert decide_resume(run_dir, fingerprint(cfg)) is True
    assert fingerprint(cfg)["data"] == stored["data"]

"""Nothing silent, nothing lost: bad input is one clear error, run directories survive reuse, edits,
symlinks and SIGKILL, and float32 results do not depend on where the structure sits in space."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk, fcc111
from conftest import TINY

from scalarjax.errors import InputError, RunDirError, UserError

TINY32 = {**TINY, "dtype": "float32", "num_interactions": 1, "correlation": 2}


@pytest.fixture(scope="module")
def calc32():
    from scalarjax import Calculator

    return Calculator.from_config(TINY32, seed=0)


def _run_dir(path: pathlib.Path, model_cfg=TINY32, with_fingerprint=True):
    """A run directory as the trainer writes it (config.yaml, fingerprint.json, best/), without training."""
    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential
    from scalarjax.run import fingerprint, save_params, write_fingerprint
    from scalarjax.training.config import RunConfig, to_dict

    pot = Potential(load_model_config(model_cfg), seed=0)
    cfg = RunConfig(model=pot.config)
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    if with_fingerprint:
        write_fingerprint(path, fingerprint(cfg))
    save_params(path / "best", pot.params)
    return path


def _cli(argv, capsys):
    from scalarjax.cli import main

    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


# 1. non-finite positions and cells are refused at every entry point ------------------------------


@pytest.mark.parametrize("where", ["position", "cell"])
def test_non_finite_input_is_refused(calc32, where, tmp_path):
    atoms = bulk("Si", "diamond", a=5.43)
    if where == "position":
        atoms.positions[1, 0] = np.nan
    else:
        atoms.cell[0, 0] = np.inf
    atoms.calc = calc32
    with pytest.raises(InputError, match="non-finite"):
        atoms.get_potential_energy()
    # the readers behind train / evaluate name the file and frame
    from scalarjax.data.io import read_configurations

    atoms.calc = None
    path = tmp_path / "bad.xyz"
    import ase.io

    good = bulk("Si", "diamond", a=5.43)
    ase.io.write(path, [good, atoms], format="extxyz")
    with pytest.raises(InputError, match=r"bad.xyz:1: non-finite"):
        read_configurations(path)


def test_md_and_relax_refuse_nan_structures(tmp_path, capsys):
    import ase.io

    run = _run_dir(tmp_path / "run")
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.positions[3] = np.nan
    ase.io.write(tmp_path / "nan.xyz", atoms)
    for cmd in (["relax", run, "--structure", tmp_path / "nan.xyz"], ["md", run, "--structure", tmp_path / "nan.xyz", "--steps", "2"]):
        code, out = _cli(cmd, capsys)
        assert code == 2 and "non-finite" in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert not (run / "relaxed.xyz").exists() and not (run / "md" / "summary.json").exists()


# 2. float32 edge vectors do not depend on the magnitude of the coordinates ------------------------


def test_float32_results_do_not_depend_on_absolute_position(calc32):
    dimer = Atoms("SiO", positions=[[0.0, 0.0, 0.0], [1.6, 0.3, 0.1]])
    dimer.calc = calc32
    e0, f0 = dimer.get_potential_energy(), dimer.get_forces()
    far = dimer.copy()
    far.positions += 1e8
    far.calc = calc32
    assert far.get_potential_energy() == pytest.approx(e0, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(far.get_forces(), f0, rtol=1e-4, atol=1e-5)

    cell = bulk("Si", "diamond", a=5.43, cubic=True)
    cell.rattle(0.05, seed=1)
    cell.calc = calc32
    e1, s1 = cell.get_potential_energy(), cell.get_stress()
    moved = cell.copy()
    moved.positions += np.array([1e7, -3e7, 2e7])  # unwrapped, far away
    moved.calc = calc32
    assert moved.get_potential_energy() == pytest.approx(e1, rel=1e-5)
    np.testing.assert_allclose(moved.get_stress(), s1, rtol=1e-4, atol=1e-6)


# 3. stress of a cell without volume is an error, not six zeros -----------------------------------


def test_mixed_pbc_without_volume_has_no_stress(calc32):
    slab = fcc111("Al", size=(2, 2, 3), a=4.05, vacuum=None)
    slab.set_atomic_numbers([14] * len(slab))
    slab.pbc = (True, True, False)
    slab.cell[2] = 0.0
    slab.calc = calc32
    assert np.isfinite(slab.get_potential_energy()) and np.isfinite(slab.get_forces()).all()
    with pytest.raises(InputError, match="stress is undefined"):
        slab.get_stress()
    vac = slab.copy()
    vac.cell[2] = [0, 0, 30.0]
    vac.center(axis=2)
    vac.calc = calc32
    s = vac.get_stress()
    assert np.isfinite(s).all() and np.abs(s).max() > 0


# 4. training settings that train nothing or silently something else -------------------------------


@pytest.mark.parametrize(
    "override,key",
    [
        ("training.lr=-0.01", "training.lr"),
        ("training.scheduler=cosin", "training.scheduler"),
        ("training.batch_size=0", "training: unknown key"),
        ("data.batch_size=0", "data.batch_size"),
        ("training.eval_every=0", "training.eval_every"),
        ("output.keep_checkpoints=0", "output.keep_checkpoints"),
        ("training.ema_decay=1.0", "training.ema_decay"),
        ("data.valid_fraction=1.0", "data.valid_fraction"),
        ("data.valid_fraction=-0.1", "data.valid_fraction"),
        ("data.max_train=0", "data.max_train"),
        ("data.config_type_weights=[1,2]", "data.config_type_weights"),
        ("model.avg_num_neighbors=0", "model.avg_num_neighbors"),
        ("model.hidden_irreps=8x1o", "model.hidden_irreps"),
        ("model.atomic_numbers=[500]", "model.atomic_numbers"),
    ],
)
def test_run_config_values_are_checked(override, key):
    from scalarjax.training.config import load_run_config

    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_run_config(raw={}, overrides=[override])


@pytest.mark.parametrize(
    "species,message",
    [("Si", None), ([0], "atomic number"), ([500], "atomic number"), ([14.7], "atomic number"), ([], "empty"), (["Xx"], "unknown element")],
)
def test_calculator_species(species, message):
    from scalarjax import Calculator

    cfg = {k: v for k, v in TINY32.items() if k not in ("atomic_numbers", "atomic_energies")}
    if message is None:
        assert Calculator.from_config(cfg, species=species).config.atomic_numbers == (14,)
    else:
        with pytest.raises(InputError, match=message):
            Calculator.from_config(cfg, species=species)


# 5, 8. run directories: resume only the same model and data; a hand-edited config.yaml is caught ---


def _small_data(path, n=6, seed=0):
    from ase.calculators.emt import EMT

    from scalarjax.data.configuration import Configuration
    from scalarjax.demo import write_extxyz

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Ag", "fcc", a=4.09, cubic=True)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        out.append(Configuration.from_atoms(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(), config_type="bulk"))
    write_extxyz(path, out)
    return path


TRAIN_MODEL = {
    "max_ell": 1,
    "hidden_irreps": "4x0e+4x1o",
    "correlation": 2,
    "num_interactions": 1,
    "radial_mlp": [4],
    "num_bessel": 4,
    "r_max": 3.5,
    "mlp_irreps": "2x0e",
    "dtype": "float64",
}


def _cfg(data, run_dir, model=None, init_from=None, **training):
    from scalarjax.training.config import load_run_config

    raw = {
        "model": {**TRAIN_MODEL, **(model or {})},
        "data": {"train": str(data), "batch_size": 2, "valid_fraction": 0.34},
        "training": {"max_epochs": 1, "lr": 0.005, "seed": 0, "init_from": init_from, **training},
        "output": {"run_dir": str(run_dir), "keep_checkpoints": 1},
    }
    return load_run_config(raw=raw)


def test_run_dir_reuse_resumes_or_refuses_before_writing(tmp_path):
    from scalarjax.training.evaluate import load_run
    from scalarjax.training.trainer import train

    data = _small_data(tmp_path / "ag.xyz")
    run = tmp_path / "run"
    train(_cfg(data, run), progress=False)
    snapshot = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    # another r_max, another data set, another width: refused, nothing in the directory touched
    other = _small_data(tmp_path / "ag2.xyz", seed=1)
    for cfg, what in (
        (_cfg(data, run, {"r_max": 3.0}), "model.r_max"),
        (_cfg(other, run), "data.train_sha256"),
        (_cfg(data, run, {"hidden_irreps": "8x0e+8x1o"}), "model.backbone.hidden_irreps"),
    ):
        with pytest.raises(RunDirError, match=what) as err:
            train(cfg, progress=False)
        assert "output.run_dir" in str(err.value) and "init_from" in str(err.value)
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == snapshot

    # the same model and data with more epochs: resumes, and each epoch is logged once
    with open(run / "metrics.jsonl", "a") as f:  # as if killed after logging epoch 2 but before its checkpoint
        f.write(json.dumps({"epoch": 2, "train_loss": 1.0}) + "\n")
    train(_cfg(data, run, max_epochs=2), progress=False)
    epochs = [json.loads(l)["epoch"] for l in open(run / "metrics.jsonl")]
    assert epochs == [1, 2]

    # fine-tuning: a new directory starting from its best parameters (tiny lr: they stay the same)
    import jax

    tuned = train(_cfg(data, tmp_path / "tuned", lr=1e-12, ema_decay=0.0, init_from=str(run)), progress=False)
    a_, b_ = (load_run(d).params for d in (run, tuned))

    assert all(np.allclose(x, y, atol=1e-9) for x, y in zip(jax.tree.leaves(a_), jax.tree.leaves(b_)))

    # a run without a fingerprint (older scalarjax, or foreign) is not resumed blindly: only when its
    # config.yaml has the same model, data files and split settings (with a warning)
    import dataclasses

    from scalarjax.run import decide_resume, fingerprint

    (run / "fingerprint.json").rename(run / "fp.bak")
    with pytest.raises(RunDirError, match=r"without fingerprint\.json \(changed: .*model\.r_max"):
        train(_cfg(data, run, {"r_max": 3.0}), progress=False)
    with pytest.raises(RunDirError, match=r"without fingerprint\.json \(changed: .*data\.train"):
        train(_cfg(other, run), progress=False)
    from scalarjax.training.trainer import model_with_statistics, read_split

    same_cfg = _cfg(data, run)
    same_cfg = dataclasses.replace(same_cfg, model=model_with_statistics(same_cfg, read_split(same_cfg)[0])[0])
    with pytest.warns(UserWarning, match="without fingerprint"):
        assert decide_resume(run, fingerprint(same_cfg), dataclasses.asdict(same_cfg.data)) is True
    (run / "fp.bak").rename(run / "fingerprint.json")

    # 8: a hand-edited config.yaml (r_max; elements) is refused when the run is loaded
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["model"]["r_max"] = 3.0
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(RunDirError, match=r"model\.r_max: 3\.5 -> 3\.0"):
        load_run(run)
    raw["model"]["r_max"] = 3.5
    raw["model"]["atomic_numbers"] = [29, 47]
    raw["model"]["atomic_energies"] = [-1.0, -1.0]
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(RunDirError, match="atomic_numbers"):
        load_run(run)
    (run / "fingerprint.json").unlink()  # a run from before fingerprints: the shapes still must match
    with pytest.raises(RunDirError, match="parameters of another model"):
        load_run(run)


# 6. SIGKILL at random moments of the checkpoint writer never loses the run ------------------------

WRITER = textwrap.dedent("""
    import pathlib, sys
    import numpy as np, yaml
    from scalarjax.fileio import write_text
    from scalarjax.run import save_params
    from scalarjax.training.trainer import _checkpoint_manager
    import orbax.checkpoint as ocp

    run = pathlib.Path(sys.argv[1])
    run.mkdir(exist_ok=True)
    manager = _checkpoint_manager(run, 1)
    i = int(manager.latest_step() or 0)
    print("ready", flush=True)
    while True:
        i += 1
        tree = {"w": np.full((64, 64), float(i)), "b": {"c": np.full(16, float(i))}}
        write_text(run / "config.yaml", yaml.safe_dump({"iteration": i, "pad": list(range(200))}))
        save_params(run / "best", tree)
        manager.save(i, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), loop=ocp.args.JsonSave({"epoch": i})))
""")


@pytest.mark.slow
def test_sigkill_of_the_checkpoint_writer_never_loses_the_run(tmp_path):
    import orbax.checkpoint as ocp

    from scalarjax.run import load_params, restore_latest
    from scalarjax.training.trainer import _checkpoint_manager

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    run = tmp_path / "run"
    like = {"w": np.zeros((64, 64)), "b": {"c": np.zeros(16)}}
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parent.parent), "JAX_PLATFORMS": "cpu"}
    kills, seen = 0, set()
    while kills < 20:
        proc = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        try:
            proc.wait(timeout=float(rng.uniform(0.0, 1.5)))
        except subprocess.TimeoutExpired:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if not (run / "config.yaml").exists() and kills == 1:
            continue  # killed before the very first write: nothing to load yet
        config = yaml.safe_load((run / "config.yaml").read_text())
        best = load_params(run / "best", like)
        assert np.all(np.asarray(best["w"]) == best["w"][0, 0]) and np.all(np.asarray(best["b"]["c"]) == best["w"][0, 0])
        if (run / "checkpoints").exists() and _checkpoint_manager(run, 1).all_steps():
            restored = restore_latest(_checkpoint_manager(run, 1), like)
            assert float(restored["state"]["w"][0, 0]) == restored["loop"]["epoch"]
        seen.add(config["iteration"])
    assert len(seen) >= 5  # the writer got far enough between kills to be killed in many places
    del ocp


# 7. outputs never follow a symlink out of their directory; previous outputs are kept ------------


def test_md_relax_outputs_never_follow_symlinks_or_clobber(tmp_path, capsys):
    import ase.io

    run = _run_dir(tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    (run / "md").symlink_to(outside, target_is_directory=True)
    (run / "relaxed.xyz").symlink_to(victim)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.02, seed=0)
    ase.io.write(tmp_path / "si.xyz", atoms)
    code, out = _cli(["md", run, "--structure", tmp_path / "si.xyz", "--steps", "2", "--log-interval", "1"], capsys)
    assert code == 2 and "outside" in out.err and len(out.err.strip().splitlines()) == 1, out.err
    (run / "md").unlink()
    for _ in range(2):
        code, out = _cli(["md", run, "--structure", tmp_path / "si.xyz", "--steps", "2", "--log-interval", "1"], capsys)
        assert code == 0, out.err
    assert (run / "md" / "summary.json").exists() and (run / "md-2" / "summary.json").exists()
    assert "writing to" in out.out
    code, out = _cli(["relax", run, "--structure", tmp_path / "si.xyz", "--steps", "3", "--fmax", "10"], capsys)
    assert code == 0, out.err
    assert victim.read_text() == "keep me" and os.listdir(outside) == ["precious.txt"]
    assert ase.io.read(run / "relaxed-2.xyz").get_chemical_symbols()[0] == "Si"
    code, out = _cli(["relax", run, "--structure", tmp_path / "si.xyz", "--steps", "3", "--out", run / "relaxed-2.xyz"], capsys)
    assert code == 2 and "--overwrite" in out.err


# 9. md settings that run backwards or do not move ------------------------------------------------


@pytest.mark.parametrize("flag,value", [("--steps", "-1"), ("--timestep", "0"), ("--temperature", "-100"), ("--log-interval", "0")])
def test_md_settings_are_checked(tmp_path, capsys, flag, value):
    code, out = _cli(["md", tmp_path / "no_run", "--structure", tmp_path / "none.xyz", flag, value], capsys)
    assert code == 2 and flag in out.err and len(out.err.strip().splitlines()) == 1, out.err


def test_relax_fmax_is_checked(tmp_path, capsys):
    code, out = _cli(["relax", tmp_path / "no_run", "--structure", tmp_path / "none.xyz", "--fmax", "-1"], capsys)
    assert code == 2 and "--fmax" in out.err


# Weak handling: one line naming the file, frame or key ----------------------------------------------


def test_bad_files_are_named(tmp_path):
    from scalarjax.data.io import read_configurations

    (tmp_path / "e.xyz").write_text('1\nenergy=abc pbc="F F F"\nSi 0 0 0\n')
    (tmp_path / "cut.xyz").write_text("3\nenergy=1.0\nSi 0 0 0\nSi 0 0\n")
    (tmp_path / "broken.json").write_text('[{"structure": ')
    (tmp_path / "noise.xyz").write_bytes(np.random.default_rng(0).bytes(300))
    for name in ("e.xyz", "cut.xyz", "broken.json", "noise.xyz"):
        with pytest.raises(InputError, match=name):
            read_configurations(tmp_path / name)


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("training: {lr: -1}\n")
    code, out = _cli(["train", tmp_path / "c.yaml"], capsys)
    assert code == 2 and out.err.strip() == "scalarjax: error: training.lr: -1.0 must be a positive number"
    code, out = _cli(["train", tmp_path / "missing.yaml"], capsys)
    assert code == 2 and "missing.yaml" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = _cli(["evaluate", tmp_path, "--data", tmp_path / "c.yaml"], capsys)
    assert code == 2 and "not a run directory" in out.err


@pytest.mark.parametrize("part", ["data", "metadata"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, part):
    from scalarjax.training.evaluate import load_run

    run = _run_dir(tmp_path / "run")
    files = [p for p in (run / "best").rglob("*") if p.is_file()]
    if part == "data":  # the array chunks only: tensorstore's DATA_LOSS
        for p in files:
            if p.parent.name == "d":
                p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))
    else:
        for p in files:
            if p.name in ("_METADATA", "_CHECKPOINT_METADATA"):
                p.write_text("{not json")
    with pytest.raises(RunDirError, match="damaged checkpoint"):
        load_run(run)


def test_duplicates_and_undetermined_e0s_warn(tmp_path):
    from scalarjax.data.configuration import Configuration
    from scalarjax.training.statistics import compute_e0s
    from scalarjax.training.trainer import warn_duplicates

    mols = [
        Configuration(
            species=[6, 1, 1, 1, 1], positions=np.random.default_rng(i).normal(size=(5, 3)) * 2, energy=-1000.0 - i, source=f"m:{i}"
        )
        for i in range(4)
    ]
    with pytest.warns(UserWarning, match=r"E0s by least squares are not determined.*model\.atomic_energies"):
        compute_e0s(mols, (1, 6))
    with pytest.warns(UserWarning, match=r"1 validation configuration\(s\) also in the training set, e\.g\. m:2 = m:2"):
        assert warn_duplicates(mols[:3], mols[2:], "validation") == 1


def test_broken_yaml_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("training: {lr: [\n")
    code, out = _cli(["train", tmp_path / "c.yaml"], capsys)
    assert code == 2 and "c.yaml: not valid YAML" in out.err and len(out.err.strip().splitlines()) == 1, out.err

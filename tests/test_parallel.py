"""Data-parallel and multi-process training (``scalarjax.training.parallel``) on this CPU.

* 1 vs 2 devices (``--xla_force_host_platform_device_count=2`` in a subprocess): same losses and
  the same parameters, optimiser state and EMA in float64; a checkpoint written on 2 devices
  resumes on 1 and ends where the 1-device run ends;
* two processes on 127.0.0.1 (``jax.distributed``, gloo CPU collectives) against one process;
* bad set-ups: one clear line, nothing written.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml

from scalarjax.demo import write_extxyz

# Smaller than test_training's model: these tests compile the training step in several processes.
MICRO = {
    "max_ell": 1,
    "hidden_irreps": "4x0e+4x1o",
    "correlation": 1,
    "num_interactions": 1,
    "radial_mlp": [4],
    "num_bessel": 4,
    "r_max": 3.5,
    "mlp_irreps": "2x0e",
    "dtype": "float64",
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_", "OMPI_"))
    }
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_ENABLE_X64"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    sys.path.insert(0, os.path.dirname(__file__))
    from test_training import small_ag

    path = tmp_path_factory.mktemp("pardata") / "ag.xyz"
    write_extxyz(path, small_ag(12))
    return path


def raw_config(data_file, run_dir, **training):
    # 9 training graphs, batch 4: steps of 4, 4 and 1 graphs; on 2 devices the last step leaves
    # device 1 with padding only.
    return {
        "model": MICRO,
        "data": {"train": str(data_file), "batch_size": 4, "valid_fraction": 0.25},
        "training": {"max_epochs": 2, "lr": 0.005, "seed": 3, **training},
        "output": {"run_dir": str(run_dir)},
    }


def restore_state(run_dir, step, like=None):
    """The train state of a checkpoint (``like``: a target tree on this process's devices, needed
    for a checkpoint written on another device count)."""
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager((run_dir / "checkpoints").absolute())
    if like is None:
        return manager.restore(step)["state"]
    return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(like)))["state"]


def state_leaves(run_dir, step, like=None):
    return [np.asarray(x) for x in jax.tree.leaves(restore_state(run_dir, step, like))]


def assert_same_state(a, b, rtol=1e-11):
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(x)))))


def losses(run_dir):
    return [json.loads(line)["train_loss"] for line in open(run_dir / "metrics.jsonl")]


TWO_DEVICES = """
import json, sys
import jax
from scalarjax.training.config import load_run_config
from scalarjax.training.parallel import ParallelSetupError
from scalarjax.training.trainer import train
raw = json.loads(sys.argv[1])
assert jax.device_count() == 2, jax.devices()
# the reference: 1 device, 2 epochs; then epoch 1 on 2 devices, resumed on 1 device for epoch 2
for name, devices, epochs in (("one", 1, 2), ("resumed", 2, 1), ("resumed", 1, 2)):
    cfg = json.loads(json.dumps(raw).replace("RUN", name))
    cfg["training"].update(devices=devices, max_epochs=epochs)
    train(load_run_config(raw=cfg), progress=False)
bad = json.loads(json.dumps(raw).replace("RUN", "bad"))
bad["data"]["batch_size"] = 3
bad["training"]["devices"] = "all"
try:
    train(load_run_config(raw=bad), progress=False)
    print("NO ERROR")
except ParallelSetupError as err:
    print("ERROR:", err)
"""


@pytest.fixture(scope="module")
def runs(data_file, tmp_path_factory):
    """One process with 2 CPU devices: the 1-device reference run and the 2 → 1 device run. (One
    process, so that XLA's compilation cache serves the programs they share.)"""
    root = tmp_path_factory.mktemp("runs")
    raw = raw_config(data_file, root / "RUN")
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, json.dumps(raw)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = {step: restore_state(root / "one", step) for step in (1, 2)}
    return root, ref, proc.stdout


def test_one_vs_two_devices_and_resume_on_one(runs):
    root, ref, stdout = runs
    one, run = root / "one", root / "resumed"
    # epoch 1 (three steps of 4, 4 and 1 graphs) on 2 devices = on 1 device: loss, params, optimiser state, EMA
    assert losses(run)[0] == pytest.approx(losses(one)[0], rel=1e-12)
    assert_same_state([np.asarray(x) for x in jax.tree.leaves(ref[1])], state_leaves(run, 1, like=ref[1]))
    # its checkpoint resumed on 1 device: epoch 2 ends where the 1-device run ends
    assert "resumed from" in stdout
    assert losses(run)[1] == pytest.approx(losses(one)[1], rel=1e-12)
    assert_same_state([np.asarray(x) for x in jax.tree.leaves(ref[2])], state_leaves(run, 2, like=ref[2]))
    # bad batch size: one line naming the key, and nothing written
    assert "ERROR: data.batch_size: 3 is not divisible by the 2 devices" in stdout
    assert not (root / "bad").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Process 1 of the two-process run: the `scalarjax train` command (in-process, no allocator re-exec),
# late by LAG_S seconds after jax.distributed has started, before the model is built, as a process
# on a loaded machine can be. XLA's gloo collectives give the first all-reduce a fixed 30 s for every
# process to join; the trainer's coordination-service barrier has to absorb the lag.
LAG_S = 35
LATE_PROCESS = f"""
import sys, time
import scalarjax.training.trainer as trainer
build = trainer._build
def late_build(*args, **kwargs):
    print("process 1: {LAG_S} s late", flush=True)
    time.sleep({LAG_S})
    return build(*args, **kwargs)
trainer._build = late_build
from scalarjax.cli import main
sys.exit(main(["train", sys.argv[1]]))
"""


def test_two_processes_match_one(data_file, runs, tmp_path):
    root, ref, _ = runs
    one = root / "one"
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(raw_config(data_file, tmp_path / "two", max_epochs=1)))
    env = _env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2", SCALARJAX_DISTRIBUTED_TIMEOUT="300")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    commands = ([sys.executable, "-m", "scalarjax.cli", "train"], [sys.executable, "-c", LATE_PROCESS])
    procs = [
        subprocess.Popen(
            [*commands[i], str(cfg_path)],
            env={**env, "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert f"process 1: {LAG_S} s late" in outs[1]
    two = tmp_path / "two"
    assert len(losses(two)) == 1  # metrics written once (process 0 only), not once per process
    assert losses(two)[0] == pytest.approx(losses(one)[0], rel=1e-12)
    assert_same_state([np.asarray(x) for x in jax.tree.leaves(ref[1])], state_leaves(two, 1, like=ref[1]))


def test_bad_device_setups(data_file, tmp_path):
    from scalarjax.training.config import load_run_config
    from scalarjax.training.parallel import ParallelSetupError
    from scalarjax.training.trainer import train

    for devices, message in (
        (5, r"training.devices: 5 requested, but only 1 cpu device\(s\) are available"),
        ("two", r"training.devices: 'two' is neither 'all' nor a device count"),
        (0, r"training.devices: 0 \(need at least 1\)"),
    ):
        with pytest.raises(ParallelSetupError, match=message):
            train(load_run_config(raw=raw_config(data_file, tmp_path / "bad", devices=devices)), progress=False)
        assert not (tmp_path / "bad").exists()


def test_unreachable_coordinator_is_one_line(data_file, tmp_path):
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(raw_config(data_file, tmp_path / "never")))
    env = _env(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1", SCALARJAX_DISTRIBUTED_TIMEOUT="2"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "scalarjax.cli", "train", str(cfg_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "coordinator 127.0.0.1:" in lines[0] and "did not answer within 2 s" in lines[0], proc.stderr
    assert not (tmp_path / "never").exists()

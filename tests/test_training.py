"""Training: statistics, loss masks, NaN handling, exact resume, run loading, config errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from scalarjax.data.configuration import Configuration
from scalarjax.demo import write_extxyz
from scalarjax.training.config import load_run_config
from scalarjax.training.statistics import compute_e0s

TINY_MODEL = {
    "max_ell": 1,
    "hidden_irreps": "8x0e+8x1o",
    "correlation": 2,
    "radial_mlp": [8],
    "num_bessel": 4,
    "r_max": 3.5,
    "mlp_irreps": "4x0e",
    "dtype": "float64",
}


def small_ag(n=12, seed=0):
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = bulk("Ag", "fcc", a=4.09, cubic=True)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        out.append(
            Configuration.from_atoms(
                atoms,
                energy=atoms.get_potential_energy(),
                forces=atoms.get_forces(),
                stress=atoms.get_stress() if i % 2 else None,
                config_type="bulk",
            )
        )
    return out


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ag.xyz"
    write_extxyz(path, small_ag())
    return path


def run_config(data_file, run_dir, **training):
    raw = {
        "model": TINY_MODEL,
        "data": {"train": str(data_file), "batch_size": 4, "valid_fraction": 0.25},
        "training": {"max_epochs": 2, "lr": 0.005, "seed": 3, **training},
        "output": {"run_dir": str(run_dir)},
    }
    return load_run_config(raw=raw)


def test_e0s_isolated_and_least_squares():
    a = Configuration(species=[1, 8, 8], positions=np.eye(3), energy=-10.0)
    b = Configuration(species=[1, 1, 8], positions=np.eye(3), energy=-7.0)
    iso = Configuration(species=[8], positions=np.zeros((1, 3)), energy=-4.5)
    assert compute_e0s([a, b], (1, 8)) == pytest.approx((-4 / 3, -13 / 3))
    e0 = compute_e0s([a, b, iso], (1, 8))
    assert e0[1] == -4.5 and e0[0] == pytest.approx(-6 / 5)  # H by least squares with O fixed: rows 1·H=-1, 2·H=-2.5


def test_loss_masks_missing_labels():
    from scalarjax.graph.batch import ElementTable, batch_graphs, configuration_to_graph
    from scalarjax.training.loss import LossWeights, loss_terms

    cs = small_ag(2)  # first has no stress, second has
    el = ElementTable((47,))
    batch = batch_graphs([configuration_to_graph(c, el, 3.5) for c in cs])
    n = batch.nodes["species"].shape[0]
    pred = {
        "energy": jnp.asarray(batch.globals["energy"]) + 1.0,
        "forces": jnp.asarray(batch.nodes["forces"]),
        "stress": jnp.zeros((3, 3, 3)),
    }
    terms = loss_terms(pred, batch, LossWeights())
    assert float(terms["n_stress"]) == 1.0  # only the labelled, real graph
    assert float(terms["forces"]) == 0.0
    assert float(terms["energy"]) == pytest.approx(1 / 16)  # (1 eV / 4 atoms)²
    s = cs[1].stress
    expected = (np.sum(s[:3] ** 2) + 2 * np.sum(s[3:] ** 2)) / 9
    assert float(terms["stress"]) == pytest.approx(expected)
    batch0 = batch._replace(globals={**batch.globals, "has_stress": np.zeros_like(batch.globals["has_stress"])})
    assert float(loss_terms(pred, batch0, LossWeights())["stress"]) == 0.0  # no label: exactly zero, not NaN
    assert n > 8


@pytest.mark.nonfinite
def test_nan_step_is_skipped():
    from scalarjax.config import load_model_config
    from scalarjax.graph.batch import batch_graphs, configuration_to_graph
    from scalarjax.potential import Potential, make_potential
    from scalarjax.training.config import TrainingConfig
    from scalarjax.training.loss import LossWeights
    from scalarjax.training.optim import init_state, make_optimizer, make_train_step

    pot = Potential(load_model_config(TINY_MODEL, atomic_numbers=(47,)))
    tc = TrainingConfig()
    opt = make_optimizer(tc)
    step = make_train_step(make_potential(pot.model.apply, 3.5, jnp.float64, True), LossWeights(), opt, 0.99, 0)
    batch = batch_graphs([configuration_to_graph(c, pot.elements, 3.5) for c in small_ag(2)])
    bad = batch._replace(globals={**batch.globals, "energy": np.full_like(batch.globals["energy"], np.nan)})
    state = init_state(pot.params, opt)
    before = jax.tree.map(np.array, state.params)
    state, m = step(state, bad, np.float64(1.0))
    assert int(m["skipped"]) == 1 and int(state.step) == 0
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)))
    state, m = step(state, batch, np.float64(1.0))
    assert int(m["skipped"]) == 0 and int(state.step) == 1


def test_amsgrad_matches_torch_definition():
    """AMSGrad keeps the max of the raw second moment (torch.optim.Adam(amsgrad=True), MACE); optax's
    max of the bias-corrected moment keeps the first, large gradients in the denominator for good."""
    import optax

    from scalarjax.training.optim import amsgrad

    rng = np.random.default_rng(0)
    grads = [rng.normal(size=5) * 100.0 * 0.5**k for k in range(30)]  # large first gradients, then small
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    m = v = vmax = np.zeros(5)
    ref = []
    for t, g in enumerate(grads, start=1):  # torch's _single_tensor_adam with amsgrad=True
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        ref.append(-lr / (1 - b1**t) * m / (np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps))

    def run(opt):
        state, out = opt.init(jnp.zeros(5)), []
        for g in grads:
            u, state = opt.update(jnp.asarray(g), state)
            out.append(np.asarray(u))
        return np.array(out)

    ours = run(amsgrad(lr))
    np.testing.assert_allclose(ours, np.array(ref), rtol=2e-4, atol=1e-9)
    late = np.abs(run(optax.amsgrad(lr))[-1]) / np.abs(ours[-1])
    assert np.all(late < 0.5), late  # the definitions differ where it matters: late steps


def test_resume_is_exact_and_run_loads(data_file, tmp_path):
    import orbax.checkpoint as ocp

    from scalarjax import Calculator
    from scalarjax.training.trainer import train

    full = train(run_config(data_file, tmp_path / "full"), progress=False)
    part = tmp_path / "part"
    train(run_config(data_file, part, max_epochs=1), progress=False)
    train(run_config(data_file, part, max_epochs=2), progress=False)  # resumes at epoch 1
    restore = lambda d: ocp.CheckpointManager((d / "checkpoints").absolute()).restore(2)
    a, b = restore(full)["state"], restore(part)["state"]
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) > 10
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))  # params, optimiser state and EMA
    lines = [json.loads(l) for l in open(full / "metrics.jsonl")]
    assert [l["epoch"] for l in lines] == [1, 2] and all(np.isfinite(l["train_loss"]) for l in lines)

    calc = Calculator.from_run(full)
    stats = json.load(open(full / "statistics.json"))
    assert calc.config.atomic_energies == pytest.approx(stats["e0s"]) and calc.config.dtype == "float64"
    atoms = bulk("Ag", "fcc", a=4.09, cubic=True)
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


@pytest.mark.nonfinite
def test_divergence_stops_with_clear_message(data_file, tmp_path):
    from scalarjax.training.trainer import TrainingDiverged, train

    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(run_config(data_file, tmp_path / "nan", lr=1e25, max_nan_steps=0, clip_norm=0.0, max_epochs=3), progress=False)


def test_run_config_errors(tmp_path):
    with pytest.raises(KeyError, match=r"training: unknown key\(s\) \['lr_max'\]"):
        load_run_config(raw={"training": {"lr_max": 1.0}})
    with pytest.raises(TypeError, match=r"training\.max_epochs"):
        load_run_config(raw={"training": {"max_epochs": "ten"}})
    with pytest.raises(KeyError, match="unknown section"):
        load_run_config(raw={"trainer": {}})
    cfg = load_run_config(raw={}, overrides=["training.lr=0.001", "model.max_ell=2"])
    assert cfg.training.lr == 0.001 and cfg.model.backbone.max_ell == 2
    # data.e0s (written by earlier versions into every run's config.yaml, never read) still loads
    assert load_run_config(raw={"data": {"e0s": "auto", "batch_size": 2}}).data.batch_size == 2
    with pytest.raises(KeyError, match=r"data: unknown key\(s\) \['e0'\]"):
        load_run_config(raw={"data": {"e0": "auto"}})


@pytest.mark.parametrize("name", ["mlearn_si", "mlearn_li", "rmd17_aspirin"])
def test_recipes_parse(name):
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "experiments" / "configs" / f"{name}.yaml"
    cfg = load_run_config(str(path))
    assert cfg.data.train.endswith((".json", ".xyz")) and cfg.training.max_epochs > 0

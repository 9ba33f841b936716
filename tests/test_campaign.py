"""The scalar-pathway campaign's protocol guarantees (issue 13).

Pairing: for one seed, every variant starts from the same backbone parameters, so a paired
comparison over seeds compares the transforms and nothing else. Also: the campaign plan is
consistent, and its report's statistics behave on known inputs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys

import jax
import numpy as np
import pytest
from conftest import TINY_BY_BACKBONE, TINY_TRANSFORMS
from flax.traverse_util import flatten_dict

from scalarjax.config import load_model_config
from scalarjax.potential import Potential

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _flat(pot):
    return flatten_dict(jax.device_get(pot.params))


@pytest.mark.parametrize("backbone", sorted(TINY_BY_BACKBONE))
def test_variants_of_one_seed_share_the_backbone_parameters(backbone):
    """Every parameter of the base model exists, bit for bit, in the +PAN+PGS model of the same seed
    (every PAN/PGS option on; the transforms' own parameters are the only new ones); another seed
    differs. Same configs and seed as conftest's ``tiny_potential``, so the compiled inits are shared."""
    cfg = TINY_BY_BACKBONE[backbone]
    base = _flat(Potential(load_model_config(cfg), seed=1))
    other = _flat(Potential(load_model_config(cfg, scalar_transforms=TINY_TRANSFORMS), seed=1))
    assert set(base) < set(other)
    for path, value in base.items():
        np.testing.assert_array_equal(other[path], value, err_msg="/".join(path))
    new = set(other) - set(base)
    assert {t["kind"] for t in TINY_TRANSFORMS} == {k for k in ("pan", "pgs") if any(k in "/".join(p) for p in new)}
    reseeded = _flat(Potential(load_model_config(cfg), seed=2))
    assert any(not np.array_equal(reseeded[p], v) for p, v in base.items())


def test_plan_is_consistent():
    campaign = _load("campaign")
    plan = campaign.load_plan()
    for phase in plan["phases"]:
        specs = campaign.run_specs(plan, phase)
        assert len({s.key for s in specs}) == len(specs)
        for s in specs:
            assert s.dataset in plan["datasets"] and s.size in plan["sizes"]
            path, sets = campaign.overrides(plan, s)
            assert pathlib.Path(path).exists()
            from scalarjax.training.config import load_run_config

            cfg = load_run_config(path, sets)  # every override parses and types check
            assert cfg.training.select_over == "run" and cfg.training.scheduler != "plateau"
        # seed-major order: a seed's runs all come before the next seed's
        seeds = [s.seed for s in specs]
        assert seeds == sorted(seeds)


def _fake(variant, seed, f_mae, n=6, valid=None):
    """A finished run: test F MAE ``f_mae`` (E 1.0); ``valid``: optional validation MAEs {"F": .., "E": ..}."""
    errs = {
        "config_type": ["x"] * n,
        "n_atoms": [2] * n,
        "energy_meV_per_atom": [1.0] * n,
        "forces_mae_meV_per_A": [f_mae] * n,
        "forces_sq_meV2_per_A2": [f_mae**2] * n,
        "stress_mae_meV_per_A3": [None] * n,
    }
    m = {"energy_meV_per_atom": {"mae": 1.0}, "forces_meV_per_A": {"mae": f_mae}, "stress_meV_per_A3": {"mae": None}}
    return {
        "phase": "p",
        "dataset": "d",
        "size": "s",
        "variant": variant,
        "seed": seed,
        "n_params": 10,
        "epochs": 1,
        "wall_s": 60.0,
        "best": {"test": {"all": m}} if valid is None else {"test": {"all": m}, "valid": {"all": _valid_block(valid)}},
        "last_ema": {"test": {"all": m}},
        "structure_errors": {"test": errs, "test_last_ema": errs},
    }


def _valid_block(valid):
    return {
        "energy_meV_per_atom": {"mae": valid["E"]},
        "forces_meV_per_A": {"mae": valid["F"]},
        "stress_meV_per_A3": {"mae": None},
    }


def test_report_statistics_on_known_inputs():
    report = _load("campaign_report")
    # Holm: sorted p (0.01, 0.02, 0.04) x (3, 2, 1) = 0.03, 0.04, 0.04 (monotone)
    adj = report.holm({"a": 0.04, "b": 0.01, "c": 0.02})
    assert adj == pytest.approx({"b": 0.03, "c": 0.04, "a": 0.04})
    m, lo, hi, p = report.t_interval(np.array([0.1, 0.2, 0.3]))
    assert m == pytest.approx(0.2) and lo < 0.2 < hi and p == pytest.approx(0.0742, abs=1e-3)  # t = 2*sqrt(3), 2 dof
    # a variant that is exactly 20% better on forces for every seed: Δ = -20%, zero-width interval;
    # a variant equal to base: Δ = 0 and p = 1
    results = [_fake("base", s, 10.0 + s) for s in range(3)] + [_fake("better", s, 0.8 * (10.0 + s)) for s in range(3)]
    results += [_fake("same", s, 10.0 + s) for s in range(3)]
    out = report.analyse(results)["p"]["d/s"]
    f = out["better"]["best"]["F"]["paired"]
    assert f["delta_pct"] == pytest.approx(-20.0) and f["ci95"] == pytest.approx([-20.0, -20.0])
    assert f["bootstrap_structures_ci95"] == pytest.approx([-20.0, -20.0])
    assert out["same"]["best"]["F"]["paired"]["p"] == 1.0
    assert "p_holm" in f and "S" not in out["better"]["best"]
    assert "| better |" in report.markdown({"p": {"d/s": out}}, "F")


def test_report_power_rules_of_issue_13():
    """Seeds are added (up to 10) where the paired SD of force Δ% exceeds 6%; the CI aims at ±8 points."""
    report = _load("campaign_report")
    # t(0.975, 4) = 2.776: SD 6.4% over 5 seeds gives a half-width of 2.776 * 6.4 / sqrt(5) = 7.95
    assert report.seeds_for_half_width(6.4) == 5 and report.seeds_for_half_width(6.5) == 6
    assert report.seeds_for_half_width(30.0) is None and report.seeds_for_half_width(1.0) == 3  # t(0.975, 1) = 12.7: two seeds give ±9.0
    noisy = [0.9, 1.05, 0.8, 1.0]  # log-ratio SD ~11%: over the 6% rule
    results = [_fake("base", s, 10.0) for s in range(4)] + [_fake("noisy", s, 10.0 * k) for s, k in enumerate(noisy)]
    results += [_fake("steady", s, 10.0 * (0.9 + 0.01 * s)) for s in range(4)]
    notes = report.power_notes(report.analyse(results)["p"]["d/s"])
    assert any(n.startswith("noisy:") and "add seeds up to 10" in n for n in notes)
    assert any(n.startswith("steady:") and "no seeds to add" in n for n in notes)


def _with_artifacts(result, **summary):
    result["artifacts"] = {
        "summary": summary,
        "liquid": {
            "temperature_K": 2530.0,
            "volume_per_atom_A3": 20.44,
            "reference": {"r_g_0.1": {"value": 2.05}, "r_g_0.5": {"value": 2.15}},
        },
        "phonons": {"dft_pbe_THz": 15.2},
    }
    return result


def test_report_artifact_section_on_known_inputs():
    """Artifact numbers: mean ± SE per variant over seeds, and the paired difference variant − base
    per seed with its t-interval (a constant shift: zero-width interval; flags: the share of seeds);
    a seed whose artifacts failed is named; cells without artifacts keep their tables unchanged."""
    report = _load("campaign_report")
    base = [_with_artifacts(_fake("base", s, 10.0), short_pair_force_error_eV_per_A=-0.2 - 0.1 * s, dimer_flagged=1.0) for s in range(3)]
    var = [
        _with_artifacts(_fake("pan+pgs", s, 8.0), short_pair_force_error_eV_per_A=-0.1 * s, dimer_flagged=float(s == 0)) for s in range(3)
    ]
    var[2]["artifacts"] = {"error": "artifacts failed (exit 1): boom"}
    plain = [_fake("base", s, 10.0) for s in range(3)] + [_fake("v", s, 8.0) for s in range(3)]
    out = report.analyse(base + var)["p"]["d/s"]
    a = out["pan+pgs"]["artifacts"]
    assert a["seeds"] == [0, 1] and a["failed"] == [2]
    sp = a["numbers"]["short_pair_force_error_eV_per_A"]
    assert sp["mean"] == pytest.approx(-0.05) and sp["se"] == pytest.approx(0.05) and sp["n"] == 2
    assert sp["paired"]["diff_per_seed"] == pytest.approx([0.2, 0.2]) and sp["paired"]["ci95"] == pytest.approx([0.2, 0.2])
    flag = a["numbers"]["dimer_flagged"]
    assert flag["mean"] == 0.5 and flag["paired"]["diff_per_seed"] == [0.0, -1.0]
    b = out["base"]["artifacts"]["numbers"]["short_pair_force_error_eV_per_A"]
    assert b["mean"] == pytest.approx(-0.3) and "paired" not in b
    md = report.markdown({"p": {"d/s": out}}, "F")
    assert "#### Physical artifacts" in md and "+0.2 [+0.2, +0.2] (+0.2, +0.2)" in md
    assert "artifacts failed for seeds [2]" in md and "AIMD liquid at 2530 K" in md
    # the main table is the same with or without artifacts
    plain_out = report.analyse([_fake("base", s, 10.0) for s in range(3)] + [_fake("pan+pgs", s, 8.0) for s in range(3)])["p"]["d/s"]
    table = lambda m: m.split("#### Physical artifacts")[0]
    assert table(md) == table(report.markdown({"p": {"d/s": plain_out}}, "F"))
    assert "artifacts" not in report.analyse(plain)["p"]["d/s"]["v"]


def test_plan_cells_carry_the_artifacts_flag():
    campaign = _load("campaign")
    plan = {
        "variants": {"base": {}, "pan+pgs": {}},
        "phases": {
            "p": {
                "seeds": [0],
                "variants": ["base", "pan+pgs"],
                "cells": [{"dataset": "si", "size": "m", "epochs": 2, "artifacts": True}, {"dataset": "aspirin", "size": "m", "epochs": 2}],
            }
        },
    }
    specs = campaign.run_specs(plan, "p")
    assert [s.artifacts for s in specs] == [True, True, False, False]
    # a run directory that is not one: the child process fails, the error is recorded in one line
    spec = dataclasses.replace(specs[0], phase="nowhere")
    res = campaign.measure_artifacts(spec, "quick")
    assert "not a run directory" in res["error"]


def test_report_pairs_only_runs_of_the_same_library_code():
    """A variant whose run trained with another scalarjax/ tree than base's run of the same seed is
    left out of that seed's pairing and named in the report; the runner refuses a checkout whose
    scalarjax/ is not the phase's pinned code."""
    report = _load("campaign_report")
    results = [_fake("base", s, 10.0) for s in range(3)] + [_fake("v", s, 8.0 if s < 2 else 20.0) for s in range(3)]
    for r in results:
        r["git"] = {"scalarjax_tree": "t_old" if (r["variant"], r["seed"]) == ("v", 2) else "t_new"}
    out = report.analyse(results)["p"]["d/s"]["v"]
    assert out["seeds_unpaired_code"] == [2] and out["best"]["F"]["paired"]["seeds"] == [0, 1]
    assert out["best"]["F"]["paired"]["delta_pct"] == pytest.approx(-20.0)
    assert "ran other code than base" in report.markdown({"p": {"d/s": report.analyse(results)["p"]["d/s"]}}, "F")
    campaign = _load("campaign")
    head = {"scalarjax_tree": campaign.git_state()["scalarjax_tree"]}
    plan = {"phases": {"p": {"code": "HEAD"}, "q": {}}}
    assert campaign.code_pin_error(plan, "p", head) is None and campaign.code_pin_error(plan, "q", head) is None
    assert "git worktree add" in campaign.code_pin_error(plan, "p", {"scalarjax_tree": "0" * 40})


def test_runner_refuses_a_library_imported_from_another_checkout(monkeypatch, tmp_path):
    """The pin checks the checkout's scalarjax/, so the runs must import that very tree: an editable
    install from main would otherwise train a campaign worktree's runs with main's code."""
    campaign = _load("campaign")
    assert campaign.import_location_error() is None  # the tests import this checkout's library
    monkeypatch.setattr(campaign, "ROOT", tmp_path)
    assert f"PYTHONPATH={tmp_path}" in campaign.import_location_error()


def test_selection_over_the_run_scores_with_the_final_objective():
    """select_over: run scores every epoch with the stage-two energy weight, so an early epoch with a
    barely fitted energy cannot win on slightly better forces; stage_two keeps the first-stage weights."""
    from scalarjax.training.config import TrainingConfig
    from scalarjax.training.trainer import _score, selection_weights

    early = {"all": {"energy_meV_per_atom": {"rmse": 350.0}, "forces_meV_per_A": {"rmse": 60.0}, "stress_meV_per_A3": {"rmse": None}}}
    late = {"all": {"energy_meV_per_atom": {"rmse": 7.0}, "forces_meV_per_A": {"rmse": 62.0}, "stress_meV_per_A3": {"rmse": None}}}
    tc = TrainingConfig(energy_weight=1.0, forces_weight=1000.0, stage_two_start=0.7, stage_two_energy_weight=1000.0, select_over="run")
    w = selection_weights(tc)
    assert w.energy == 1000.0 and _score(late, w) < _score(early, w)
    old = selection_weights(TrainingConfig(energy_weight=1.0, forces_weight=1000.0, stage_two_start=0.7, select_over="stage_two"))
    assert old.energy == 1.0 and _score(early, old) < _score(late, old)  # why "run" needs the final weights


def test_report_selection_on_validation():
    """The validation section uses ``best.valid`` only: test and validation errors differ (test says v
    is 20% better on F and w 50% better, validation says v is 10% better in cell d and 30% better in
    cell d2, w 5% worse in both), so taking a test number anywhere would fail. Pairing as for test: a
    seed that ran other code than base is left out. Pooled over cells: the mean of the per-cell mean
    log-ratios, sorted by it."""
    report = _load("campaign_report")
    results = []
    for cell, v_ratio in (("d", 0.9), ("d2", 0.7)):
        for s in range(3):
            base_valid = {"F": 20.0 + s, "E": 2.0 + s}
            runs = [
                _fake("base", s, 10.0, valid=base_valid),
                _fake("v", s, 8.0, valid={"F": v_ratio * base_valid["F"], "E": 1.1 * base_valid["E"]}),
                _fake("w", s, 5.0, valid={"F": 1.05 * base_valid["F"], "E": base_valid["E"]}),
            ]
            for r in runs:
                r["dataset"] = cell
                # in d2, v's seed 2 ran other code (and would spoil the pairing: validation F 100x base's)
                other = (cell, r["variant"], s) == ("d2", "v", 2)
                r["git"] = {"scalarjax_tree": "t_old" if other else "t_new"}
                if other:
                    r["best"]["valid"]["all"]["forces_meV_per_A"]["mae"] = 100 * base_valid["F"]
            results += runs
    out = report.analyse(results)["p"]
    sel = out["d/s"]["v"]["selection_valid"]
    assert sel["seeds"] == [0, 1, 2]
    assert sel["F"]["mean"] == pytest.approx(0.9 * 21.0) and sel["F"]["n"] == 3
    assert sel["F"]["paired"]["delta_pct"] == pytest.approx(-10.0) and sel["F"]["paired"]["ci95"] == pytest.approx([-10.0, -10.0])
    assert sel["E"]["paired"]["delta_pct"] == pytest.approx(10.0)  # test E is equal: 0%
    assert out["d/s"]["v"]["best"]["F"]["paired"]["delta_pct"] == pytest.approx(-20.0)  # the test table is unchanged
    assert out["d/s"]["w"]["selection_valid"]["F"]["paired"]["delta_pct"] == pytest.approx(5.0)
    assert "paired" not in out["d/s"]["base"]["selection_valid"]["F"]
    d2 = out["d2/s"]["v"]["selection_valid"]["F"]["paired"]
    assert d2["seeds"] == [0, 1] and d2["delta_pct"] == pytest.approx(-30.0)
    pooled = report.pooled_selection(out)
    assert [r["variant"] for r in pooled["ranking"]] == ["v", "w"]  # on test, w would rank first
    v = pooled["ranking"][0]
    assert v["valid_F_delta_pct"] == pytest.approx(100 * (np.sqrt(0.9 * 0.7) - 1))
    assert {c: x["n_seeds"] for c, x in v["cells"].items()} == {"d/s": 3, "d2/s": 2}
    assert v["valid_E_delta_pct"] == pytest.approx(10.0)
    assert pooled["ranking"][1]["valid_F_delta_pct"] == pytest.approx(5.0)
    assert report.pooled_selection({"d/s": out["d/s"]}) == {}  # one cell: nothing to pool
    md = report.markdown(report.analyse(results), "F")
    assert md.count("#### Selection on validation") == 2
    assert "| v | 3 | 3 | 18.90 ± 0.52 | 3.30 ± 0.64 | -10.0% [-10.0, -10.0] | +10.0% [+10.0, +10.0] |" in md
    assert "### p: pooled over cells — selection on validation" in md
    assert "| 1 | v | -20.6% | -10.0% (3) | -30.0% (2) | +10.0% |" in md
    assert "| 2 | w | +5.0% | +5.0% (3) | +5.0% (3) | +0.0% |" in md
    # runs without validation errors: no validation table
    assert "#### Selection on validation" not in report.markdown({"p": {"d/s": report.analyse([_fake("base", 0, 1.0)])["p"]["d/s"]}}, "F")


def test_learning_curve_budget_criterion():
    """The budget rule of issue 13: change of the validation force MAE over the last quarter."""
    lc = _load("learning_curve")
    falling = [100.0 / (1 + e) for e in range(40)]  # 1/(1+e): still falling by 25% over the last 10 epochs
    assert lc.last_quarter_change(falling) == pytest.approx(30 / 40 - 1)
    assert abs(lc.last_quarter_change(falling)) > lc.CONVERGED_BELOW
    flat = [50.0 + 0.01 * (e % 2) for e in range(40)]
    assert abs(lc.last_quarter_change(flat)) < lc.CONVERGED_BELOW
    assert lc.last_quarter_change([3.0, 2.0, 1.0]) is None

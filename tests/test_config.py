"""Typed model configs: one config class per backbone, the nested and the flat (older) YAML forms,
overrides routed to the active backbone, clear errors. No model is built here (fast)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from scalarjax.config import MACEConfig, ModelConfig, NequIPConfig, load_model_config
from scalarjax.training.config import load_run_config, to_dict


def test_nested_and_flat_forms_give_the_same_typed_config():
    nested = load_model_config({"r_max": 4.0, "backbone": {"kind": "nequip", "num_layers": 3, "parity": False}})
    flat = load_model_config({"r_max": 4.0, "backbone": "nequip", "num_layers": 3, "parity": False})
    assert nested == flat
    assert nested.backbone == NequIPConfig(num_layers=3, parity=False)
    # the backbone's radial defaults fill the shared settings left at None
    assert (nested.radial_mlp, nested.num_polynomial_cutoff) == ((64, 64), 6)
    assert load_model_config().backbone == MACEConfig() and load_model_config().radial_mlp == (64, 64, 64)
    # the resolved form is nested and round-trips through YAML
    text = yaml.safe_dump(nested.to_dict(), sort_keys=False)
    assert "backbone:\n  kind: nequip\n  num_layers: 3" in text
    assert load_model_config(yaml.safe_load(text)) == nested


def test_changes_by_replace_and_by_override():
    cfg = load_model_config({"backbone": "nequip", "num_features": 16})
    wider = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, num_features=24), r_max=4.5)
    assert (wider.backbone.num_features, wider.r_max, wider.backbone.l_max) == (24, 4.5, 2)
    assert load_model_config(cfg, num_features=24).backbone.num_features == 24  # routed under backbone
    assert load_model_config(cfg, backbone="mace").backbone == MACEConfig()  # another kind: its defaults
    assert dataclasses.replace(ModelConfig(), backbone="nequip").backbone == NequIPConfig()


def test_set_overrides_reach_the_backbone_in_either_form(tmp_path):
    resolved = to_dict(load_run_config(raw={"model": {"backbone": "mace", "correlation": 2}}))
    assert resolved["model"]["backbone"]["correlation"] == 2
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(resolved))
    cfg = load_run_config(str(path), ["model.max_ell=2", "model.backbone.num_interactions=3", "training.lr=0.001"])
    assert (cfg.model.backbone.max_ell, cfg.model.backbone.num_interactions, cfg.model.backbone.correlation) == (2, 3, 2)
    assert load_run_config(raw={}, overrides=["model.backbone=nequip", "model.l_max=1"]).model.backbone == NequIPConfig(l_max=1)


@pytest.mark.parametrize(
    "model, error, match",
    [
        ({"num_layers": 3}, ValueError, r"model\.num_layers: a nequip/allegro setting, but model\.backbone is 'mace'"),
        ({"backbone": {"kind": "nequip", "correlation": 2}}, ValueError, r"model\.correlation: a mace setting"),
        (
            {"backbone": "allegro9"},
            ValueError,
            r"model\.backbone: unknown backbone 'allegro9'; choose one of \('mace', 'nequip', 'allegro'\)",
        ),
        ({"backbone": {"num_layers": 2}}, TypeError, r"model\.backbone: expected a backbone name"),
        ({"backbone": {"kind": "mace", "max_ell": 2}, "max_ell": 3}, ValueError, r"model\.max_ell: given twice"),
        ({"max_ell": "three"}, TypeError, r"model\.max_ell: expected an integer"),
        ({"r_maxx": 5.0}, KeyError, r"model: unknown key\(s\) \['r_maxx'\]"),
        ({"backbone": {"kind": "mace", "foo": 1}}, KeyError, r"model\.backbone: unknown key 'foo' for mace"),
        ({"dtype": "float16"}, ValueError, r"model\.dtype: 'float16' is not one of \('float32', 'float64'\)"),
        ({"correlation": 7}, ValueError, r"model\.correlation: 7 is outside 1\.\.4"),
    ],
)
def test_config_errors_name_the_key(model, error, match):
    with pytest.raises(error, match=match):
        load_model_config(model)


@pytest.mark.parametrize(
    "training, match",
    [
        ({"scheduler": "cosin"}, r"training\.scheduler: 'cosin' is not one of \('plateau', 'cosine', 'constant'\)"),
        ({"optimizer": "sgd"}, r"training\.optimizer: 'sgd' is not one of"),
        ({"select_over": "best"}, r"training\.select_over: 'best' is not one of"),
    ],
)
def test_training_enumerations_are_checked(training, match):
    with pytest.raises(ValueError, match=match):
        load_run_config(raw={"training": training})


def test_older_flat_configs_with_null_keys_of_the_other_backbone_load():
    """Run directories written before the typed configs list every backbone's keys, unset ones null."""
    old = {"backbone": "nequip", "r_max": 3.5, "max_ell": None, "correlation": None, "num_layers": 2, "l_max": 1, "parity": None}
    cfg = load_model_config(old)
    assert cfg.backbone == NequIPConfig(num_layers=2, l_max=1)

"""NequIP-specific checks: the gate keeps parity right, the irreps plan, config validation."""

import numpy as np
import pytest
from conftest import TINY_NEQUIP
from physics_utils import captured_intermediates, evaluate_one, molecule


def _layer_features(pot, atoms):
    """Every layer's output features ``{ir: [N, 2l+1, C]}``."""
    inter = captured_intermediates(pot, atoms)
    return [
        {ir: np.asarray(v[: len(atoms)]) for ir, v in inter[f"layer_{t}"]["__call__"][0].items()}
        for t in range(pot.config.backbone.num_layers)
    ]


@pytest.mark.parametrize("parity", [True, False])
def test_gate_keeps_parity(parity):
    """Under inversion r → −r every feature of irrep (ℓ, p) is multiplied by p; E is invariant, F flips.

    With ``parity`` on, unnatural-parity irreps (0o, 1e) are carried and checked too; a gate that applied
    an even activation to a pseudoscalar, or gated with a pseudoscalar, fails here."""
    import e3nn_jax as e3nn

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    pot = Potential(load_model_config({**TINY_NEQUIP, "num_layers": 6, "l_max": 1, "parity": parity}), seed=3)
    atoms = molecule(5, n=6)
    atoms.positions *= 0.6  # compact: every pair well inside r_max, so no feature is vanishingly small
    inverted = atoms.copy()
    inverted.positions = -atoms.positions
    e, f, _ = evaluate_one(pot, atoms, size=None)
    e2, f2, _ = evaluate_one(pot, inverted, size=None)
    assert e2 == pytest.approx(e, rel=1e-10) and np.allclose(f2, -f, rtol=1e-9, atol=1e-12)
    seen = set()
    for a, b in zip(_layer_features(pot, atoms), _layer_features(pot, inverted)):
        for ir in a:
            p = e3nn.Irrep(ir).p
            scale = np.abs(a[ir]).max()
            assert scale > 1e-8, ir
            np.testing.assert_allclose(b[ir], p * a[ir], rtol=1e-8, atol=1e-9 * scale, err_msg=ir)
            seen.add(ir)
    unnatural = {ir for ir in seen if e3nn.Irrep(ir).p != (-1) ** e3nn.Irrep(ir).l}
    assert unnatural == ({"0o", "1e"} if parity else set()), seen


def test_layer_irreps_pruned():
    from scalarjax.backbones.nequip import layer_irreps

    assert layer_irreps(4, 2, False) == (("0e", "1o", "2e"),) * 3 + (("0e",),)
    # 0o needs three more layers to reach the energy (0o → 1e → 1o → 0e): absent from the 4-layer plan.
    assert layer_irreps(4, 2, True) == (("0e", "1o", "2e"), ("0e", "1o", "1e", "2e", "2o"), ("0e", "1o", "2e"), ("0e",))
    # 0o first appears at layer 2 (1o ⊗ 1e) and needs three more layers: six in all.
    assert "0o" not in sum(layer_irreps(5, 1, True), ()) and "0o" in layer_irreps(6, 1, True)[2]


def test_backbone_settings_are_checked():
    from scalarjax.config import load_model_config

    cfg = load_model_config(backbone="nequip")
    bb = cfg.backbone
    assert (bb.num_layers, bb.l_max, bb.num_features, cfg.radial_mlp, cfg.num_polynomial_cutoff) == (4, 2, 32, (64, 64), 6)
    assert bb.kind == "nequip" and load_model_config().backbone.kind == "mace"
    with pytest.raises(ValueError, match=r"model\.num_layers: a nequip/allegro setting"):
        load_model_config(num_layers=3)
    with pytest.raises(ValueError, match=r"model\.correlation: a mace setting"):
        load_model_config(backbone="nequip", correlation=2)

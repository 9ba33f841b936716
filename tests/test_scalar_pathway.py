"""The scalar-pathway protocol and its guarantees (PAN, PGS and a test-only transform, every backbone).

The physics tests (test_physics.py) already run on every backbone with PAN+PGS attached; here:
identity at init, ℓ>0 messages untouched, composition by config, and the protocol itself.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_BY_BACKBONE, TINY_TRANSFORMS
from flax.traverse_util import flatten_dict, unflatten_dict
from physics_utils import captured_intermediates, evaluate, molecule, triclinic_cell

from scalarjax.config import load_model_config
from scalarjax.potential import Potential
from scalarjax.scalar import ScalarTransform, register_transform


@register_transform
@dataclasses.dataclass(frozen=True)
class Tilt(ScalarTransform):
    """Test-only transform, written as a user would: one module on the readout scalars."""

    kind: ClassVar[str] = "test_tilt"
    strength: float = 0.5

    def readout(self, layer):
        return functools.partial(TiltModule, self)


class TiltModule(nn.Module):
    cfg: Tilt

    @nn.compact
    def __call__(self, x, ctx, layer):
        w = self.param("w", nn.initializers.constant(self.cfg.strength), (x.shape[-1],), x.dtype)
        return x + w * jnp.tanh(x) ** 2


def with_base_params(pot: Potential, base: Potential) -> Potential:
    """``pot`` with every parameter that ``base`` also has replaced by base's value."""
    flat, base_flat = flatten_dict(jax.device_get(pot.params)), flatten_dict(jax.device_get(base.params))
    assert set(base_flat) < set(flat)
    flat.update(base_flat)
    return Potential(pot.config, params=unflatten_dict(flat))


STRUCTS = [triclinic_cell(11), molecule(12, n=5)]


@pytest.fixture(scope="module", params=sorted(TINY_BY_BACKBONE))
def base(request):
    return Potential(load_model_config(TINY_BY_BACKBONE[request.param]), seed=1)


def _outputs(pot):
    return evaluate(pot, STRUCTS, size=None)


def test_identity_init_gives_the_base_model(base):
    identity = [{**t, "identity_init": True} for t in TINY_TRANSFORMS] + [{"kind": "test_tilt", "strength": 0.0}]
    pot = with_base_params(Potential(load_model_config(base.config, scalar_transforms=identity), seed=7), base)
    (e0, f0, s0), (e1, f1, s1) = _outputs(base), _outputs(pot)
    # Identical up to float64 rounding (the two compiled programs may order a sum differently).
    np.testing.assert_allclose(e1, e0, rtol=1e-14, atol=0)
    for a, b in zip(f1, f0):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s1[0], s0[0], rtol=1e-12, atol=1e-14)
    # ...and the default initialisation does change the model (the comparison above is not vacuous).
    active = with_base_params(Potential(load_model_config(base.config, scalar_transforms=TINY_TRANSFORMS), seed=7), base)
    assert abs(_outputs(active)[0][0] - e0[0]) > 1e-6


def _conv_outputs(pot, atoms):
    """Every convolution's aggregated messages ``{ir: [N, 2l+1, C]}`` (Allegro: every environment),
    keyed by module path."""
    aggregations = ("Convolution", "AllegroEnvironment")
    return flatten_dict(captured_intermediates(pot, atoms, lambda m, name: type(m).__name__ in aggregations))


def test_l_greater_than_zero_messages_untouched(base):
    """First layer (same inputs): ℓ>0 messages bit-identical with and without PAN+PGS, ℓ=0 changed.
    (Each transform alone, at every layer: test_aggregate_hook_touches_only_scalars.)"""
    pot = with_base_params(Potential(load_model_config(base.config, scalar_transforms=TINY_TRANSFORMS), seed=3), base)
    atoms = triclinic_cell(13)
    a, b = _conv_outputs(base, atoms), _conv_outputs(pot, atoms)
    first = [k for k in a if k[0].rsplit("_", 1)[-1] == "0"]  # interaction_0 / layer_0 (not layer_10)
    assert first
    for key in first:
        for ir in a[key][0]:
            if ir == "0e":
                assert not np.array_equal(a[key][0][ir], b[key][0][ir])
            else:
                np.testing.assert_array_equal(a[key][0][ir], b[key][0][ir], err_msg=ir)


def test_aggregate_hook_touches_only_scalars():
    """The shared hook, on random inputs with every path type: ℓ>0 outputs bit-identical (any layer)."""
    from scalarjax.nn.radial import bessel_basis, polynomial_cutoff
    from scalarjax.nn.tensor_product import channelwise_tp_plan
    from scalarjax.scalar import pathway, transform_from_dict

    rng = np.random.default_rng(0)
    E, N, C, S = 40, 9, 4, 2
    plan = channelwise_tp_plan(("0e", "1o", "2e"), 2, ("0e", "1o", "2e"))
    h = {ir: jnp.asarray(rng.normal(size=(N, 2 * int(ir[0]) + 1, C))) for ir in ("0e", "1o", "2e")}  # read at senders
    sh = jnp.asarray(rng.normal(size=(E, 9)))
    w = jnp.asarray(rng.normal(size=(E, plan.num_paths, C)))
    species = rng.integers(0, S, N)
    lengths = jnp.asarray(rng.uniform(1.0, 3.0, E))
    envelope = polynomial_cutoff(lengths, 3.5, 5)
    ctx = pathway.HookContext(
        lengths=lengths,
        senders=jnp.asarray(rng.integers(0, N, E)),
        receivers=jnp.asarray(rng.integers(0, N, E)),
        edge_mask=jnp.ones(E),
        node_mask=jnp.ones(N),
        onehot=jax.nn.one_hot(species, S),
        radial=bessel_basis(lengths, 4, 3.5) * envelope[:, None],
        envelope=envelope,
        r_max=3.5,
        avg_num_neighbors=4.0,
        num_bessel=4,
        envelope_p=5,
    )

    class Agg(nn.Module):
        transforms: tuple

        @nn.compact
        def __call__(self):
            return pathway.aggregate(self.transforms, plan, h, sh, w, ctx, 1)

    ref = Agg(())
    ref = ref.apply(ref.init(jax.random.PRNGKey(0)))
    for chosen in ([TINY_TRANSFORMS[0]], [TINY_TRANSFORMS[1]], TINY_TRANSFORMS):
        mod = Agg(tuple(transform_from_dict(t, "t") for t in chosen))
        out = mod.apply(mod.init(jax.random.PRNGKey(0)))
        assert set(out) == set(ref) == {"0e", "1o", "2e"}
        for ir in ("1o", "2e"):
            np.testing.assert_array_equal(out[ir], ref[ir])
        assert np.abs(out["0e"] - ref["0e"]).max() > 1e-3


def test_transforms_compose_from_config(tmp_path):
    """Any order and number, a user-registered kind included; the run config round-trips through YAML."""
    import yaml

    from scalarjax.training.config import load_run_config, to_dict

    raw = {
        "model": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY_BY_BACKBONE["mace"].items()},
            "scalar_transforms": [{"kind": "pgs"}, {"kind": "test_tilt", "strength": 0.2}, {"kind": "pan"}, {"kind": "pan", "hidden": 2}],
        }
    }
    cfg = load_run_config(raw=raw)
    assert [t.kind for t in cfg.model.scalar_transforms] == ["pgs", "test_tilt", "pan", "pan"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_run_config(str(path)).model == cfg.model
    pot = Potential(cfg.model, seed=0)
    names = set(flatten_dict(pot.params["params"], sep="/"))
    assert any("test_tilt1_readout_1" in n for n in names) and any("pan3_scalar_aggregate_0" in n for n in names)
    e, _, _ = evaluate(pot, [molecule(3, n=4)], size=None)
    assert np.isfinite(e[0])


def test_transform_config_errors():
    with pytest.raises(ValueError, match=r"model\.scalar_transforms\[1\]: unknown scalar transform 'pann'"):
        load_model_config(atomic_numbers=(8,), scalar_transforms=[{"kind": "pan"}, {"kind": "pann"}])
    with pytest.raises(KeyError, match=r"model\.scalar_transforms\[0\]: unknown key\(s\) \['hiden'\]"):
        load_model_config(scalar_transforms=[{"kind": "pan", "hiden": 3}])
    with pytest.raises(TypeError, match=r"model\.scalar_transforms\[0\]\.edge_modes"):
        load_model_config(scalar_transforms=[{"kind": "pgs", "edge_modes": "8"}])


def test_flops_command_json(tmp_path, capsys):
    """``scalarjax flops --json``: the four variants with FLOPs, FLOPs per atom and parameters;
    the transforms cost something, and PAN+PGS costs at least as much as either alone."""
    import json

    import ase.io
    import yaml

    from scalarjax.cli import main

    cfg = tmp_path / "model.yaml"
    cfg.write_text(
        yaml.safe_dump({"model": {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_BY_BACKBONE["mace"].items() if k != "dtype"}})
    )
    structure = tmp_path / "m.xyz"
    ase.io.write(structure, molecule(21, n=6))
    assert (
        main(
            [
                "flops",
                str(cfg),
                "--structure",
                str(structure),
                "--json",
                "--set",
                "model.r_max=3.0",
                "--set",
                "model.correlation=2",
                "--set",
                "model.num_interactions=1",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    v = report["variants"]
    assert set(v) == {"base", "pan", "pgs", "pan+pgs"} and report["n_atoms"] == 6 and not report["periodic"]
    for x in v.values():
        assert x["flops"] > 0 and x["flops_per_atom"] == pytest.approx(x["flops"] / 6) and x["params"] > 0
    assert v["pan+pgs"]["flops"] > max(v["pan"]["flops"], v["pgs"]["flops"]) > v["base"]["flops"]
    assert v["pan+pgs"]["params"] > max(v["pan"]["params"], v["pgs"]["params"]) > v["base"]["params"]

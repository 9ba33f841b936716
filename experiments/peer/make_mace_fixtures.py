"""Fixtures for the mace-torch import tests (runs ONLY in the peer venv; see README.md here).

Builds small mace-torch models in float64 with *every* weight redrawn at random (not mace's
initialisation: product weights, radial MLP, linears, skips, readouts, E0s, scale, shift and a
different ``avg_num_neighbors`` per layer), dumps them with scalarjax's torch-side dumper
(``scalarjax/interop/mace_torch_dump.py``, loaded by path: no scalarjax/jax import here) and
computes mace-torch's energies, forces and stresses (``MACECalculator``, float64) on a small
molecule, a rattled and strained periodic Si cell and a periodic 4-element triclinic cell.

    ../peer/venv/bin/python experiments/peer/make_mace_fixtures.py --out tests/data/mace_torch

writes ``{model}.npz`` + ``{model}.json`` per model and ``reference.json`` (structures and
reference outputs). ``tests/test_import_mace.py`` converts the dumps without torch and compares.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

torch.serialization.add_safe_globals([slice])
warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support")

from e3nn import o3  # noqa: E402
from mace import modules  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def load_dumper():
    spec = importlib.util.spec_from_file_location("mace_torch_dump", ROOT / "scalarjax/interop/mace_torch_dump.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(
    zs,
    *,
    model_class="ScaleShiftMACE",
    first="RealAgnosticInteractionBlock",
    r_max=4.0,
    num_bessel=6,
    p=5,
    max_ell=2,
    hidden="8x0e+8x1o",
    correlation=3,
    num_interactions=2,
    mlp="4x0e",
    radial_mlp=(8, 8),
    avg=(7.3, 9.1, 5.2),
    e0s=None,
    scale=1.3,
    shift=0.17,
    seed=0,
    randomize=True,
    dtype=torch.float64,
    interaction="RealAgnosticResidualInteractionBlock",
    heads=("Default",),
    extra=None,
):
    """A mace-torch model as ``mace_run_train`` builds it (arguments as in ``model_script_utils``)."""
    torch.set_default_dtype(dtype)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    e0s = rng.uniform(-3.0, 3.0, len(zs)) if e0s is None else np.asarray(e0s, float)
    if len(heads) > 1:
        e0s = np.tile(e0s, (len(heads), 1))
    kw = dict(
        r_max=r_max,
        num_bessel=num_bessel,
        num_polynomial_cutoff=p,
        max_ell=max_ell,
        interaction_cls=modules.interaction_classes[interaction],
        interaction_cls_first=modules.interaction_classes[first],
        num_interactions=num_interactions,
        num_elements=len(zs),
        hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps(mlp),
        atomic_energies=e0s[None, :] if model_class == "ScaleShiftMACE" and e0s.ndim == 1 else e0s,
        avg_num_neighbors=avg[0],
        atomic_numbers=list(zs),
        correlation=correlation,
        gate=torch.nn.functional.silu,
        radial_MLP=list(radial_mlp),
        radial_type="bessel",
        heads=list(heads),
        use_reduced_cg=False,
        **(extra or {}),
    )
    if model_class == "ScaleShiftMACE":
        model = modules.ScaleShiftMACE(atomic_inter_scale=[scale] * len(heads), atomic_inter_shift=[shift] * len(heads), **kw)
    else:
        model = modules.MACE(**kw)
    for t, inter in enumerate(model.interactions):
        inter.avg_num_neighbors = float(avg[t % len(avg)])
    if randomize:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, prm in model.named_parameters():
                if not prm.requires_grad:  # mace's EmptyParam: structurally zero paths
                    continue
                x = torch.randn(prm.shape, generator=gen, dtype=prm.dtype)
                if "symmetric_contractions" in name:
                    x = x / prm.shape[-2] + 0.05 * torch.randn(prm.shape, generator=gen, dtype=prm.dtype)
                else:
                    x = 0.2 + x  # non-zero mean: no accidental cancellations between paths
                prm.copy_(x)
    return model.to(dtype).eval()


MODELS = {
    # mace_run_train's default layout (first block non-residual), species in a non-sorted order.
    "scaleshift_l2": dict(
        zs=[8, 1, 14, 6],
        model_class="ScaleShiftMACE",
        first="RealAgnosticInteractionBlock",
        max_ell=2,
        hidden="8x0e+8x1o",
        correlation=3,
        num_interactions=2,
        seed=1,
    ),
    # residual first block, plain MACE class, scalars-only hidden, 3 layers, max_ell 3, correlation 2.
    "residual_first_l3": dict(
        zs=[1, 6, 8, 14],
        model_class="MACE",
        first="RealAgnosticResidualInteractionBlock",
        max_ell=3,
        hidden="6x0e",
        correlation=2,
        num_interactions=3,
        mlp="5x0e",
        radial_mlp=(7,),
        num_bessel=5,
        p=6,
        r_max=3.7,
        seed=2,
    ),
}


# Models the import must refuse at the dump step (torch side), with the one-line message it gives.
SMALL = dict(zs=[1, 8], hidden="4x0e+4x1o", max_ell=1, correlation=2, radial_mlp=(4,), mlp="2x0e", randomize=False)
REJECTED = {
    "multi_head": dict(SMALL, heads=("a", "b")),
    "density_interaction": dict(SMALL, interaction="RealAgnosticDensityInteractionBlock"),
    "nonlinear_interaction": dict(SMALL, interaction="RealAgnosticResidualNonLinearInteractionBlock"),
    "zbl_pair_repulsion": dict(SMALL, extra={"pair_repulsion": True}),
    "gaussian_radial": dict(SMALL, extra={"radial_type": "gaussian"}),
    "agnostic_product": dict(SMALL, extra={"use_agnostic_product": True}),
}


def rejections(dumper) -> dict:
    """``{case: one-line error}`` for the architectures above, a non-model pickle and a text file."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = dict(REJECTED)
        for name, spec in cases.items():
            spec = dict(spec)
            if "radial_type" in (spec.get("extra") or {}):
                extra = dict(spec.pop("extra"))
                rt = extra.pop("radial_type")
                spec["extra"] = extra
                model = build(**spec)
                model.radial_embedding = __import__("mace.modules.blocks", fromlist=["x"]).RadialEmbeddingBlock(
                    r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, radial_type=rt
                )
            else:
                try:
                    model = build(**spec)
                except Exception as e:  # noqa: BLE001 - mace itself cannot build it: nothing to test
                    out[name] = f"(mace-torch could not build it: {type(e).__name__})"
                    continue
            path = Path(tmp) / f"{name}.model"
            torch.save(model, path)
            out[name] = _dump_error(dumper, path, Path(tmp))
        torch.save({"weights": torch.zeros(3)}, Path(tmp) / "dict.model")
        out["not_a_model_pickle"] = _dump_error(dumper, Path(tmp) / "dict.model", Path(tmp))
        (Path(tmp) / "text.model").write_text("not a model")
        out["text_file"] = _dump_error(dumper, Path(tmp) / "text.model", Path(tmp))
    return out


def _dump_error(dumper, path, tmp) -> str:
    try:
        dumper.dump_file(str(path), str(tmp / "x.npz"))
    except dumper.Unsupported as e:
        return str(e)
    return "(accepted)"


def structures():
    """Small molecule (H, C, O), rattled+strained Si cell, triclinic 4-element cell."""
    from ase import Atoms
    from ase.build import bulk, molecule

    rng = np.random.default_rng(7)
    mol = molecule("CH3CH2OH")
    mol.positions += rng.normal(0, 0.05, mol.positions.shape)
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.set_cell(si.cell @ (np.eye(3) + rng.normal(0, 0.01, (3, 3))), scale_atoms=True)
    si.positions += rng.normal(0, 0.08, si.positions.shape)
    cell = np.array([[5.6, 0.0, 0.0], [0.7, 5.3, 0.0], [-0.4, 0.5, 5.9]])
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(3)], float) / [2, 2, 3]
    frac = grid + rng.normal(0, 0.03, grid.shape)
    numbers = [1, 6, 8, 14] * 3
    mixed = Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)
    return {"molecule": mol, "si_cell": si, "mixed_cell": mixed}


def reference_outputs(model, atoms_dict, dtype="float64"):
    from mace.calculators import MACECalculator

    calc = MACECalculator(models=model, device="cpu", default_dtype=dtype)
    out = {}
    for name, atoms in atoms_dict.items():
        a = atoms.copy()
        a.calc = calc
        r = {"energy": float(a.get_potential_energy()), "forces": a.get_forces().tolist()}
        if a.pbc.any():
            r["stress"] = a.get_stress().tolist()  # ASE Voigt order, eV/Å³, ASE sign
        out[name] = r
    return out


def atoms_to_json(atoms):
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": np.asarray(atoms.cell).tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "tests/data/mace_torch"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dumper = load_dumper()
    structs = structures()
    ref = {
        "structures": {k: atoms_to_json(v) for k, v in structs.items()},
        "models": {},
        "command": "../peer/venv/bin/python experiments/peer/make_mace_fixtures.py --out tests/data/mace_torch",
    }
    from importlib import metadata

    ref["versions"] = {p: metadata.version(p) for p in ("mace-torch", "e3nn", "torch", "ase")}
    for name, spec in MODELS.items():
        model = build(**spec)
        with tempfile.TemporaryDirectory() as tmp:  # the .model file round trip, as a user would have it
            path = Path(tmp) / f"{name}.model"
            torch.save(model, path)
            dumper.dump_file(str(path), str(out / f"{name}.npz"))
            model = dumper.load_model(str(path))
        ref["models"][name] = {"spec": {k: v for k, v in spec.items()}, "outputs": reference_outputs(model, structs)}
        print(name, {k: round(v["energy"], 6) for k, v in ref["models"][name]["outputs"].items()}, flush=True)
    ref["rejected"] = rejections(dumper)
    for k, v in ref["rejected"].items():
        print("rejected", k, "->", v)
    with open(out / "reference.json", "w") as f:
        json.dump(ref, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    sys.exit(main())

"""Step 1 of the mace-torch import: a torch ``.model`` file → plain arrays + JSON (needs torch).

This file and its sibling :mod:`scalarjax.interop.mace_torch_blocks` (the per-block dumpers, loaded
by path when this file is not imported as part of the package) import only numpy, torch, e3nn and
(indirectly, to unpickle) mace — never scalarjax — so they run unchanged in a separate torch
environment::

    /path/to/torch-venv/bin/python scalarjax/interop/mace_torch_dump.py MODEL_FILE -o DUMP.npz

which writes ``DUMP.npz`` (named float64 arrays) and ``DUMP.json`` (hyper-parameters and the
layout of every array). Step 2, :mod:`scalarjax.interop.mace_torch`, turns the dump into a
scalarjax run directory without torch.

Every weight is dumped as an *effective* matrix: e3nn's raw parameter times the normalisation
constant e3nn applies in the forward pass (``Instruction.path_weight`` of ``o3.Linear`` /
``o3.TensorProduct``, ``1/sqrt(h_in)`` of ``FullyConnectedNet`` layers, the ``cst`` of
``normalize2mom`` activations, the Clebsch–Gordan factor of the species "skip" tensor products),
so that step 2 needs no knowledge of e3nn-torch's conventions:

- ``o3.Linear``: ``y[i_out] += x[i_in] @ W`` per instruction, ``W`` ``[mul_in, mul_out]``.
- radial MLP: ``x_{k+1} = post_k · silu(x_k @ W_k)`` for hidden layers, ``x @ W_last`` at the end.
- channelwise ("uvu") conv TP: instruction ``(ir1, l2 → ir3)`` writes slot ``i_out``:
  ``m[u, M] = path_weight · Σ_{m1,m2} CG_torch[m1, m2, M] · x1[u, m1] · Y[m2] · w[u]``; the
  Clebsch–Gordan blocks ``o3.wigner_3j`` are dumped as ``cg.{l1}.{l2}.{l3}``.
- species skip (``FullyConnectedTensorProduct`` with one-hot attributes): ``y = x @ W[s]``.
- symmetric contraction: for each output irrep L and order ν, ``U`` ``[2L+1, D, …, D, k]`` and the
  weights ``[S, k, C]``; the polynomial is ``Σ_k w[s, k, c] Σ_i U[M, i1..iν, k] A_i1 ⋯ A_iν``.

Anything the converter cannot reproduce exactly raises :class:`Unsupported` with one line naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

if __package__:  # imported as scalarjax.interop.mace_torch_dump (or run with python -m)
    from scalarjax.interop import mace_torch_blocks as blocks
else:  # run as a file, or loaded by path, where scalarjax need not be importable: the sibling file
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "mace_torch_blocks", os.path.join(os.path.dirname(os.path.abspath(__file__)), "mace_torch_blocks.py")
    )
    blocks = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(blocks)

Unsupported = blocks.Unsupported

FORMAT = "scalarjax-mace-torch-dump/1"
SUPPORTED_MODELS = ("MACE", "ScaleShiftMACE")
SUPPORTED_INTERACTIONS = ("RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock")


def load_model(path: str):
    """Unpickle a mace-torch ``.model`` file (a whole pickled ``torch.nn.Module``) on the CPU."""
    torch = blocks.import_torch()
    import warnings

    warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support")
    if not os.path.isfile(path):
        raise Unsupported(f"{path}: no such file")
    try:
        import zipfile

        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist()):
                    raise Unsupported(
                        f"{path}: a TorchScript (compiled) model; pass the plain .model file that "
                        "mace_run_train writes next to the *_compiled.model"
                    )
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Unsupported:
        raise
    except ModuleNotFoundError as e:
        raise Unsupported(f"{path}: unpickling needs module {e.name!r} (install mace-torch>=0.3,<0.4 in this environment)") from e
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a model file"
        raise Unsupported(f"{path}: not a torch model file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if isinstance(model, dict) and "model" in model:
        model = model["model"]
    return model


def dump_model(model) -> tuple[dict, dict]:
    """A mace-torch model → (``{name: float64 array}``, JSON-able hyper-parameters and layout)."""
    model_class = _check_model(model)
    arrays: dict = {}
    max_ell = _radial_and_angular(model, arrays)
    meta = _model_meta(model, model_class, max_ell)
    meta["embedding"] = blocks.linear(model.node_embedding.linear, "embedding", arrays, "node_embedding")
    if len(model.products) != len(model.interactions):
        raise Unsupported("interactions and products differ in number")
    for t, (inter, prod) in enumerate(zip(model.interactions, model.products)):
        meta["layers"].append(_layer(t, inter, prod, arrays, len(meta["atomic_numbers"])))
    meta["readouts"].extend(_readouts(model, arrays))
    _record_versions(meta)
    return arrays, meta


def _check_model(model) -> str:
    """The model's class name, after refusing what the import cannot reproduce: several heads, ZBL
    pair repulsion, joint embeddings."""
    torch = blocks.import_torch()

    model_class = blocks.check_class(model, SUPPORTED_MODELS, "model class")
    if not isinstance(model, torch.nn.Module):
        raise Unsupported("not a torch module")
    heads = list(getattr(model, "heads", None) or ["Default"])
    if len(heads) != 1:
        raise Unsupported(f"multi-head models are not supported (heads: {heads}); export one head first (mace's select_head)")
    for attr, what in (
        ("pair_repulsion", "ZBL pair repulsion"),
        ("joint_embedding", "joint embeddings (embedding_specs)"),
        ("lammps_mliap", None),
    ):
        if what and getattr(model, attr, False):
            raise Unsupported(f"{what} is not supported")
    return model_class


def _radial_and_angular(model, arrays: dict) -> int:
    """Checks the radial basis (Bessel, polynomial cutoff applied before the radial MLP) and the
    spherical harmonics (normalised, component normalisation, natural parity); dumps the Bessel
    frequencies; returns max_ell."""
    from e3nn import o3

    radial = model.radial_embedding
    if getattr(radial, "apply_cutoff", True) is False:
        raise Unsupported("apply_cutoff=False (envelope applied after the radial MLP) is not supported")
    if hasattr(radial, "distance_transform"):
        raise Unsupported(f"distance_transform {type(radial.distance_transform).__name__} is not supported")
    blocks.check_class(radial.bessel_fn, ("BesselBasis",), "radial_type")
    blocks.check_class(radial.cutoff_fn, ("PolynomialCutoff",), "radial cutoff")
    arrays["radial.bessel_weights"] = blocks.to_numpy(radial.bessel_fn.bessel_weights)
    sh = model.spherical_harmonics
    if not (getattr(sh, "normalize", True) and getattr(sh, "normalization", "component") == "component"):
        raise Unsupported("spherical harmonics must be normalize=True, normalization='component'")
    sh_irreps = o3.Irreps(sh.irreps_out)
    max_ell = sh_irreps.lmax
    if sh_irreps != o3.Irreps.spherical_harmonics(max_ell):
        raise Unsupported(f"spherical harmonics {sh_irreps} (use_so3 or other parities) are not supported")
    return max_ell


def _model_meta(model, model_class: str, max_ell: int) -> dict:
    """The model-wide hyper-parameters: species, cutoff and Bessel basis, E0s, scale and shift (1 and
    0 for plain ``MACE``); ``layers`` and ``readouts`` empty, to be filled."""
    radial = model.radial_embedding
    zs = [int(z) for z in model.atomic_numbers.tolist()]
    meta = {
        "format": FORMAT,
        "model_class": model_class,
        "atomic_numbers": zs,
        "r_max": blocks.to_float(model.r_max),
        "cutoff_r_max": blocks.to_float(radial.cutoff_fn.r_max),
        "bessel_r_max": blocks.to_float(radial.bessel_fn.r_max),
        "bessel_prefactor": blocks.to_float(radial.bessel_fn.prefactor),
        "num_bessel": int(radial.bessel_fn.bessel_weights.numel()),
        "num_polynomial_cutoff": int(radial.cutoff_fn.p),
        "max_ell": int(max_ell),
        "num_interactions": len(model.interactions),
        "atomic_energies": blocks.to_numpy(model.atomic_energies_fn.atomic_energies).reshape(-1).tolist(),
        "scale": 1.0,
        "shift": 0.0,
        "layers": [],
        "readouts": [],
    }
    if len(meta["atomic_energies"]) != len(zs):
        raise Unsupported(f"atomic_energies has {len(meta['atomic_energies'])} entries for {len(zs)} species (multi-head E0s?)")
    if model_class == "ScaleShiftMACE":
        scale, shift = blocks.to_numpy(model.scale_shift.scale).reshape(-1), blocks.to_numpy(model.scale_shift.shift).reshape(-1)
        if scale.size != 1 or shift.size != 1:
            raise Unsupported("per-head scale/shift is not supported")
        meta["scale"], meta["shift"] = float(scale[0]), float(shift[0])
    return meta


def _layer(t: int, inter, prod, arrays: dict, num_species: int) -> dict:
    """Interaction block ``t`` and its product block → their layout (arrays dumped into ``arrays``)."""
    from e3nn import o3

    what = f"interactions.{t}"
    cls = blocks.check_class(inter, SUPPORTED_INTERACTIONS, what)
    if getattr(inter, "conv_fusion", None):
        raise Unsupported(f"{what}: fused convolution kernels are not supported")
    if str(o3.Irreps(inter.edge_irreps)) != str(o3.Irreps(inter.node_feats_irreps)):
        raise Unsupported(f"{what}: edge_irreps {inter.edge_irreps} differing from the node features are not supported")
    if getattr(prod, "use_agnostic_product", False):
        raise Unsupported("use_agnostic_product (species-independent product weights) is not supported")
    return {
        "interaction_class": cls,
        "avg_num_neighbors": float(inter.avg_num_neighbors),
        "node_feats_irreps": str(o3.Irreps(inter.node_feats_irreps)),
        "target_irreps": str(o3.Irreps(inter.target_irreps)),
        "hidden_irreps": str(o3.Irreps(inter.hidden_irreps)),
        "linear_up": blocks.linear(inter.linear_up, f"l{t}.linear_up", arrays, f"{what}.linear_up"),
        "radial_mlp": blocks.radial_mlp(inter.conv_tp_weights, f"l{t}.radial", arrays, f"{what}.conv_tp_weights"),
        "conv_tp": blocks.conv_tp(inter.conv_tp, arrays, f"{what}.conv_tp"),
        "conv_tp_irreps_out": str(inter.conv_tp.irreps_out),
        "linear": blocks.linear(inter.linear, f"l{t}.linear", arrays, f"{what}.linear"),
        "skip": blocks.skip_tp(inter.skip_tp, f"l{t}.skip", arrays, num_species, f"{what}.skip_tp"),
        "product": blocks.symmetric_contraction(prod.symmetric_contractions, f"l{t}.product", arrays, f"products.{t}"),
        "product_use_sc": bool(prod.use_sc),
        "product_linear": blocks.linear(prod.linear, f"l{t}.product_linear", arrays, f"products.{t}.linear"),
    }


def _readouts(model, arrays: dict) -> list:
    """One readout per interaction: linear ones, then a one-hidden-layer MLP (silu) after the last."""
    if len(model.readouts) != len(model.interactions):
        raise Unsupported(
            f"{len(model.readouts)} readouts for {len(model.interactions)} interactions "
            "(use_last_readout_only or a single interaction) are not supported"
        )
    out = []
    for t, ro in enumerate(model.readouts):
        if t != len(model.readouts) - 1:
            blocks.check_class(ro, ("LinearReadoutBlock",), f"readouts.{t}")
            out.append({"kind": "linear", "linear": blocks.linear(ro.linear, f"r{t}.linear", arrays, f"readouts.{t}")})
            continue
        blocks.check_class(ro, ("NonLinearReadoutBlock",), f"readouts.{t}")
        acts = list(ro.non_linearity.acts)
        if len(acts) != 1:
            raise Unsupported(f"readouts.{t}: MLP irreps {ro.hidden_irreps} with several blocks are not supported")
        out.append(
            {
                "kind": "mlp",
                "mlp_irreps": str(ro.hidden_irreps),
                "linear_1": blocks.linear(ro.linear_1, f"r{t}.linear_1", arrays, f"readouts.{t}.linear_1"),
                "post": blocks.act_post(acts[0], f"readouts.{t}.non_linearity"),
                "linear_2": blocks.linear(ro.linear_2, f"r{t}.linear_2", arrays, f"readouts.{t}.linear_2"),
            }
        )
    return out


def _record_versions(meta: dict) -> None:
    """``meta["versions"]``: the mace-torch, e3nn and torch versions, where they can be found (provenance only)."""
    try:
        from importlib import metadata

        import mace

        meta["versions"] = {p: metadata.version(p) for p in ("mace-torch", "e3nn", "torch")}
        del mace
    except Exception:  # noqa: BLE001 - provenance only
        pass


def save_dump(arrays: dict, meta: dict, out_npz: str) -> None:
    """Write ``OUT.npz`` + ``OUT.json`` (each via a temporary file and an atomic rename)."""
    out_npz = str(out_npz)
    if not out_npz.endswith(".npz"):
        out_npz += ".npz"
    out_json = out_npz[:-4] + ".json"
    d = os.path.dirname(os.path.abspath(out_npz))
    os.makedirs(d, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=d, suffix=".npz", delete=False) as f:
        np.savez_compressed(f, **{k: np.asarray(v, np.float64) for k, v in arrays.items()})
        tmp_npz = f.name
    with tempfile.NamedTemporaryFile("w", dir=d, suffix=".json", delete=False) as f:
        json.dump(meta, f, indent=1)
        tmp_json = f.name
    umask = os.umask(0)
    os.umask(umask)
    for tmp in (tmp_npz, tmp_json):  # NamedTemporaryFile creates 0600; give the usual permissions
        os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp_npz, out_npz)
    os.replace(tmp_json, out_json)


def dump_file(model_file: str, out_npz: str) -> None:
    """Dump the mace-torch ``.model`` file ``model_file`` (evaluated in float64, whatever its dtype,
    which is recorded as ``source_dtype``) to ``OUT.npz`` + ``OUT.json``."""
    torch = blocks.import_torch()
    model = load_model(model_file)
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    source_dtype = str(params[0].dtype).replace("torch.", "") if params else "unknown"
    with torch.no_grad():
        arrays, meta = dump_model(model.double() if hasattr(model, "double") else model)
    meta["source"] = os.path.basename(model_file)
    meta["source_dtype"] = source_dtype
    save_dump(arrays, meta, out_npz)


def main(argv=None) -> int:
    """Command line: ``mace_torch_dump.py MODEL_FILE -o OUT.npz``; exit status 2 with one line on
    stderr for a model the import cannot reproduce."""
    ap = argparse.ArgumentParser(description="dump a mace-torch .model file for `scalarjax import-mace` (needs torch, mace-torch)")
    ap.add_argument("model_file")
    ap.add_argument("-o", "--out", required=True, help="OUT.npz (OUT.json is written beside it)")
    args = ap.parse_args(argv)
    try:
        dump_file(args.model_file, args.out)
    except Unsupported as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} and its .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

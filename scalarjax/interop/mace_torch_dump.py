"""Step 1 of the mace-torch import: a torch ``.model`` file → plain arrays + JSON (needs torch).

This file imports only numpy, torch, e3nn and (indirectly, to unpickle) mace — never scalarjax —
so it runs unchanged in a separate torch environment::

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
import math
import os
import sys
import tempfile

import numpy as np

FORMAT = "scalarjax-mace-torch-dump/1"
SUPPORTED_MODELS = ("MACE", "ScaleShiftMACE")
SUPPORTED_INTERACTIONS = ("RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock")


class Unsupported(ValueError):
    """The file is not a mace-torch model, or uses an architecture/option the import cannot reproduce."""


def _torch():
    import torch

    # e3nn 0.4.4 (mace-torch 0.3's pin) torch.load()s its own constants, which contain `slice`:
    # torch >= 2.6 refuses that under weights_only=True unless it is allow-listed.
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals([slice])
    return torch


def load_model(path: str):
    """Unpickle a mace-torch ``.model`` file (a whole pickled ``torch.nn.Module``) on the CPU."""
    torch = _torch()
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


def _f(x) -> float:
    return float(x.detach().cpu().double().reshape(-1)[0]) if hasattr(x, "detach") else float(x)


def _a(x) -> np.ndarray:
    return x.detach().cpu().double().numpy().copy()


def _check_class(obj, names, what):
    name = type(obj).__name__
    if name not in names:
        raise Unsupported(f"{what}: {name} is not supported (supported: {', '.join(names)})")
    return name


def _linear(lin, prefix: str, arrays: dict, what: str) -> list:
    """o3.Linear → effective blocks ``{prefix}.{k}`` and their instructions (irreps by slot)."""
    from e3nn import o3

    if not isinstance(lin, o3.Linear):
        raise Unsupported(
            f"{what}: {type(lin).__name__} is not e3nn's o3.Linear (cuequivariance/openequivariance layers are not supported)"
        )
    out = []
    for k, ins, w in lin.weight_views(yield_instruction=True):
        if ins.i_in == -1:
            raise Unsupported(f"{what}: linear layers with biases are not supported")
        name = f"{prefix}.{k}"
        arrays[name] = _a(w) * ins.path_weight
        out.append(
            {
                "i_in": ins.i_in,
                "ir_in": str(lin.irreps_in[ins.i_in].ir),
                "i_out": ins.i_out,
                "ir_out": str(lin.irreps_out[ins.i_out].ir),
                "array": name,
            }
        )
    return out


def _act_post(act, what: str) -> float:
    """normalize2mom(silu) → its multiplicative constant (1 when e3nn treats it as the identity)."""
    torch = _torch()
    f = getattr(act, "f", None)
    if f is not torch.nn.functional.silu:
        raise Unsupported(f"{what}: activation {getattr(f, '__name__', f)!r} is not supported (only silu)")
    return 1.0 if getattr(act, "_is_id", False) else float(act.cst)


def _radial_mlp(net, prefix: str, arrays: dict, what: str) -> dict:
    torch = _torch()
    layers = [m for m in net.children()]
    ws, posts = [], []
    for i, layer in enumerate(layers):
        w = _a(layer.weight)
        if layer.act is not None:
            arrays[f"{prefix}.w{i}"] = w / math.sqrt(layer.h_in * layer.var_in)
            posts.append(_act_post(layer.act, what) * math.sqrt(layer.var_out))
            if i == len(layers) - 1:
                raise Unsupported(f"{what}: an activation on the radial MLP's output is not supported")
        else:
            if i != len(layers) - 1:
                raise Unsupported(f"{what}: a radial MLP hidden layer without activation is not supported")
            arrays[f"{prefix}.w{i}"] = w / math.sqrt(layer.h_in * layer.var_in / layer.var_out)
        ws.append(f"{prefix}.w{i}")
    del torch
    return {"weights": ws, "post": posts, "widths": [int(layers[0].h_in)] + [int(l.h_out) for l in layers]}


def _cg(arrays: dict, l1: int, l2: int, l3: int) -> str:
    from e3nn import o3

    key = f"cg.{l1}.{l2}.{l3}"
    if key not in arrays:
        arrays[key] = _a(o3.wigner_3j(l1, l2, l3))
    return key


def _conv_tp(tp, arrays: dict, what: str) -> list:
    from e3nn import o3

    if not isinstance(tp, o3.TensorProduct) or type(tp).__name__ not in ("TensorProduct",):
        raise Unsupported(f"{what}: {type(tp).__name__} is not e3nn's o3.TensorProduct (fused/accelerated kernels are not supported)")
    out, offset = [], 0
    for ins in tp.instructions:
        ir1, mul_ir2, ir3 = tp.irreps_in1[ins.i_in1].ir, tp.irreps_in2[ins.i_in2], tp.irreps_out[ins.i_out].ir
        if ins.connection_mode != "uvu" or not ins.has_weight or mul_ir2.mul != 1:
            raise Unsupported(f"{what}: tensor-product instruction mode {ins.connection_mode!r} is not supported (only 'uvu')")
        if mul_ir2.ir.p != (-1) ** mul_ir2.ir.l:
            raise Unsupported(f"{what}: edge attributes {mul_ir2.ir} are not spherical harmonics of natural parity")
        size = int(np.prod(ins.path_shape))
        out.append(
            {
                "ir1": str(ir1),
                "l2": mul_ir2.ir.l,
                "ir3": str(ir3),
                "i_out": ins.i_out,
                "offset": offset,
                "size": size,
                "path_weight": float(ins.path_weight),
                "cg": _cg(arrays, ir1.l, mul_ir2.ir.l, ir3.l),
            }
        )
        offset += size
    if offset != tp.weight_numel:
        raise Unsupported(f"{what}: unexpected tensor-product weight layout")
    return out


def _skip_tp(tp, prefix: str, arrays: dict, num_species: int, what: str) -> dict:
    """FullyConnectedTensorProduct(x, one-hot) → ``{ir: name of [S, C_in, C_out]}`` effective blocks."""
    from e3nn import o3

    if not isinstance(tp, o3.FullyConnectedTensorProduct):
        raise Unsupported(f"{what}: {type(tp).__name__} is not e3nn's FullyConnectedTensorProduct")
    if tp.irreps_in2 != o3.Irreps(f"{num_species}x0e"):
        raise Unsupported(f"{what}: node attributes {tp.irreps_in2} are not a one-hot of {num_species} species")
    out = {}
    for _, ins, w in tp.weight_views(yield_instruction=True):
        ir1, ir3 = tp.irreps_in1[ins.i_in1].ir, tp.irreps_out[ins.i_out].ir
        if ins.connection_mode != "uvw" or ir1 != ir3:
            raise Unsupported(f"{what}: unexpected skip tensor-product instruction {ins}")
        cg = _a(o3.wigner_3j(ir1.l, 0, ir1.l))[:, 0, :]
        c = cg[0, 0]
        if np.abs(cg - c * np.eye(ir1.dim)).max() > 1e-12:
            raise Unsupported(f"{what}: Clebsch-Gordan (l, 0, l) is not proportional to the identity")
        key = str(ir3)
        if key in out:
            raise Unsupported(f"{what}: several skip paths into {key} are not supported")
        name = f"{prefix}.{key}"
        arrays[name] = np.transpose(_a(w), (1, 0, 2)) * (ins.path_weight * c)  # [S, C_in, C_out]
        out[key] = name
    return out


def _symmetric_contraction(sc, prefix: str, arrays: dict, what: str) -> dict:
    name = type(sc).__name__
    if name != "SymmetricContraction" or not hasattr(sc, "contractions"):
        raise Unsupported(f"{what}: {name} is not mace's SymmetricContraction (cuequivariance kernels are not supported)")
    irreps_out = [str(mul_ir.ir) for mul_ir in sc.irreps_out]
    out = {"irreps_in": str(sc.irreps_in), "irreps_out": irreps_out, "outputs": {}}
    for L, c in zip(irreps_out, sc.contractions):
        entry = []
        for nu in range(1, c.correlation + 1):
            U = _a(c.U_tensors(nu))
            if U.ndim == nu + 1:  # L = 0: mace drops the M axis
                U = U[None]
            w = c.weights_max if nu == c.correlation else c.weights[c.correlation - 1 - nu]
            arrays[f"{prefix}.{L}.U{nu}"] = U
            arrays[f"{prefix}.{L}.w{nu}"] = _a(w)
            entry.append({"nu": nu, "U": f"{prefix}.{L}.U{nu}", "w": f"{prefix}.{L}.w{nu}"})
        out["outputs"][L] = entry
    return out


def dump_model(model) -> tuple[dict, dict]:
    """A mace-torch model → (``{name: float64 array}``, JSON-able hyper-parameters and layout)."""
    torch = _torch()
    from e3nn import o3

    model_class = _check_class(model, SUPPORTED_MODELS, "model class")
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
    arrays: dict = {}
    zs = [int(z) for z in model.atomic_numbers.tolist()]
    S = len(zs)

    # Radial basis and cutoff.
    radial = model.radial_embedding
    if getattr(radial, "apply_cutoff", True) is False:
        raise Unsupported("apply_cutoff=False (envelope applied after the radial MLP) is not supported")
    if hasattr(radial, "distance_transform"):
        raise Unsupported(f"distance_transform {type(radial.distance_transform).__name__} is not supported")
    _check_class(radial.bessel_fn, ("BesselBasis",), "radial_type")
    _check_class(radial.cutoff_fn, ("PolynomialCutoff",), "radial cutoff")
    arrays["radial.bessel_weights"] = _a(radial.bessel_fn.bessel_weights)
    sh = model.spherical_harmonics
    if not (getattr(sh, "normalize", True) and getattr(sh, "normalization", "component") == "component"):
        raise Unsupported("spherical harmonics must be normalize=True, normalization='component'")
    sh_irreps = o3.Irreps(sh.irreps_out)
    max_ell = sh_irreps.lmax
    if sh_irreps != o3.Irreps.spherical_harmonics(max_ell):
        raise Unsupported(f"spherical harmonics {sh_irreps} (use_so3 or other parities) are not supported")

    meta = {
        "format": FORMAT,
        "model_class": model_class,
        "atomic_numbers": zs,
        "r_max": _f(model.r_max),
        "cutoff_r_max": _f(radial.cutoff_fn.r_max),
        "bessel_r_max": _f(radial.bessel_fn.r_max),
        "bessel_prefactor": _f(radial.bessel_fn.prefactor),
        "num_bessel": int(radial.bessel_fn.bessel_weights.numel()),
        "num_polynomial_cutoff": int(radial.cutoff_fn.p),
        "max_ell": int(max_ell),
        "num_interactions": len(model.interactions),
        "atomic_energies": _a(model.atomic_energies_fn.atomic_energies).reshape(-1).tolist(),
        "scale": 1.0,
        "shift": 0.0,
        "layers": [],
        "readouts": [],
    }
    if len(meta["atomic_energies"]) != S:
        raise Unsupported(f"atomic_energies has {len(meta['atomic_energies'])} entries for {S} species (multi-head E0s?)")
    if model_class == "ScaleShiftMACE":
        scale, shift = _a(model.scale_shift.scale).reshape(-1), _a(model.scale_shift.shift).reshape(-1)
        if scale.size != 1 or shift.size != 1:
            raise Unsupported("per-head scale/shift is not supported")
        meta["scale"], meta["shift"] = float(scale[0]), float(shift[0])

    # Embedding.
    emb = _linear(model.node_embedding.linear, "embedding", arrays, "node_embedding")
    meta["embedding"] = emb

    if len(model.products) != len(model.interactions):
        raise Unsupported("interactions and products differ in number")
    for t, (inter, prod) in enumerate(zip(model.interactions, model.products)):
        what = f"interactions.{t}"
        cls = _check_class(inter, SUPPORTED_INTERACTIONS, what)
        if getattr(inter, "conv_fusion", None):
            raise Unsupported(f"{what}: fused convolution kernels are not supported")
        if str(o3.Irreps(inter.edge_irreps)) != str(o3.Irreps(inter.node_feats_irreps)):
            raise Unsupported(f"{what}: edge_irreps {inter.edge_irreps} differing from the node features are not supported")
        if getattr(prod, "use_agnostic_product", False):
            raise Unsupported("use_agnostic_product (species-independent product weights) is not supported")
        layer = {
            "interaction_class": cls,
            "avg_num_neighbors": float(inter.avg_num_neighbors),
            "node_feats_irreps": str(o3.Irreps(inter.node_feats_irreps)),
            "target_irreps": str(o3.Irreps(inter.target_irreps)),
            "hidden_irreps": str(o3.Irreps(inter.hidden_irreps)),
            "linear_up": _linear(inter.linear_up, f"l{t}.linear_up", arrays, f"{what}.linear_up"),
            "radial_mlp": _radial_mlp(inter.conv_tp_weights, f"l{t}.radial", arrays, f"{what}.conv_tp_weights"),
            "conv_tp": _conv_tp(inter.conv_tp, arrays, f"{what}.conv_tp"),
            "conv_tp_irreps_out": str(inter.conv_tp.irreps_out),
            "linear": _linear(inter.linear, f"l{t}.linear", arrays, f"{what}.linear"),
            "skip": _skip_tp(inter.skip_tp, f"l{t}.skip", arrays, S, f"{what}.skip_tp"),
            "product": _symmetric_contraction(prod.symmetric_contractions, f"l{t}.product", arrays, f"products.{t}"),
            "product_use_sc": bool(prod.use_sc),
            "product_linear": _linear(prod.linear, f"l{t}.product_linear", arrays, f"products.{t}.linear"),
        }
        meta["layers"].append(layer)

    if len(model.readouts) != len(model.interactions):
        raise Unsupported(
            f"{len(model.readouts)} readouts for {len(model.interactions)} interactions "
            "(use_last_readout_only or a single interaction) are not supported"
        )
    for t, ro in enumerate(model.readouts):
        name = type(ro).__name__
        last = t == len(model.readouts) - 1
        if not last:
            _check_class(ro, ("LinearReadoutBlock",), f"readouts.{t}")
            meta["readouts"].append({"kind": "linear", "linear": _linear(ro.linear, f"r{t}.linear", arrays, f"readouts.{t}")})
        else:
            _check_class(ro, ("NonLinearReadoutBlock",), f"readouts.{t}")
            acts = list(ro.non_linearity.acts)
            if len(acts) != 1:
                raise Unsupported(f"readouts.{t}: MLP irreps {ro.hidden_irreps} with several blocks are not supported")
            meta["readouts"].append(
                {
                    "kind": "mlp",
                    "mlp_irreps": str(ro.hidden_irreps),
                    "linear_1": _linear(ro.linear_1, f"r{t}.linear_1", arrays, f"readouts.{t}.linear_1"),
                    "post": _act_post(acts[0], f"readouts.{t}.non_linearity"),
                    "linear_2": _linear(ro.linear_2, f"r{t}.linear_2", arrays, f"readouts.{t}.linear_2"),
                }
            )
        del name
    try:
        from importlib import metadata

        import mace

        meta["versions"] = {p: metadata.version(p) for p in ("mace-torch", "e3nn", "torch")}
        del mace
    except Exception:  # noqa: BLE001 - provenance only
        pass
    return arrays, meta


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
    torch = _torch()
    model = load_model(model_file)
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    source_dtype = str(params[0].dtype).replace("torch.", "") if params else "unknown"
    with torch.no_grad():
        arrays, meta = dump_model(model.double() if hasattr(model, "double") else model)
    meta["source"] = os.path.basename(model_file)
    meta["source_dtype"] = source_dtype
    save_dump(arrays, meta, out_npz)


def main(argv=None) -> int:
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

"""The blocks of a mace-torch model → effective float64 arrays (step 1 of the import, needs torch).

Used by :mod:`scalarjax.interop.mace_torch_dump` (whose docstring gives the conventions of every
array); like that file, this one imports only numpy, torch and e3nn — never scalarjax — so both
run unchanged in a separate torch environment. Each function checks that a block is the e3nn /
mace class and layout the converter reproduces, writes its weights into ``arrays`` (with e3nn's
forward-pass normalisation constants folded in) and returns the JSON-able layout; anything else
raises :class:`Unsupported` with one line naming it.
"""

from __future__ import annotations

import math

import numpy as np


class Unsupported(ValueError):
    """The file is not a mace-torch model, or uses an architecture/option the import cannot reproduce."""


def import_torch():
    """torch, with ``slice`` allow-listed for ``torch.load(weights_only=True)``."""
    import torch

    # e3nn 0.4.4 (mace-torch 0.3's pin) torch.load()s its own constants, which contain `slice`:
    # torch >= 2.6 refuses that under weights_only=True unless it is allow-listed.
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals([slice])
    return torch


def to_float(x) -> float:
    """A Python float from a torch scalar (or 1-element tensor) or a number."""
    return float(x.detach().cpu().double().reshape(-1)[0]) if hasattr(x, "detach") else float(x)


def to_numpy(x) -> np.ndarray:
    """A float64 NumPy copy of a torch tensor (detached, on the CPU)."""
    return x.detach().cpu().double().numpy().copy()


def check_class(obj, names, what):
    """``type(obj).__name__``, if it is one of ``names``; else :class:`Unsupported` naming ``what``."""
    name = type(obj).__name__
    if name not in names:
        raise Unsupported(f"{what}: {name} is not supported (supported: {', '.join(names)})")
    return name


def linear(lin, prefix: str, arrays: dict, what: str) -> list:
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
        arrays[name] = to_numpy(w) * ins.path_weight
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


def act_post(act, what: str) -> float:
    """normalize2mom(silu) → its multiplicative constant (1 when e3nn treats it as the identity)."""
    torch = import_torch()
    f = getattr(act, "f", None)
    if f is not torch.nn.functional.silu:
        raise Unsupported(f"{what}: activation {getattr(f, '__name__', f)!r} is not supported (only silu)")
    return 1.0 if getattr(act, "_is_id", False) else float(act.cst)


def radial_mlp(net, prefix: str, arrays: dict, what: str) -> dict:
    """e3nn ``FullyConnectedNet`` (the radial MLP) → effective weights ``{prefix}.w{i}`` and the layout
    ``{"weights", "post", "widths"}``: hidden layers ``x ↦ post · silu(x @ W)``, the last ``x @ W``."""
    torch = import_torch()
    layers = [m for m in net.children()]
    ws, posts = [], []
    for i, layer in enumerate(layers):
        w = to_numpy(layer.weight)
        if layer.act is not None:
            arrays[f"{prefix}.w{i}"] = w / math.sqrt(layer.h_in * layer.var_in)
            posts.append(act_post(layer.act, what) * math.sqrt(layer.var_out))
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
        arrays[key] = to_numpy(o3.wigner_3j(l1, l2, l3))
    return key


def conv_tp(tp, arrays: dict, what: str) -> list:
    """Channelwise ("uvu") ``o3.TensorProduct`` → its instructions (irreps, slot, offset and size in
    the radial MLP's output, ``path_weight``, the Clebsch–Gordan block's array name)."""
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


def skip_tp(tp, prefix: str, arrays: dict, num_species: int, what: str) -> dict:
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
        cg = to_numpy(o3.wigner_3j(ir1.l, 0, ir1.l))[:, 0, :]
        c = cg[0, 0]
        if np.abs(cg - c * np.eye(ir1.dim)).max() > 1e-12:
            raise Unsupported(f"{what}: Clebsch-Gordan (l, 0, l) is not proportional to the identity")
        key = str(ir3)
        if key in out:
            raise Unsupported(f"{what}: several skip paths into {key} are not supported")
        name = f"{prefix}.{key}"
        arrays[name] = np.transpose(to_numpy(w), (1, 0, 2)) * (ins.path_weight * c)  # [S, C_in, C_out]
        out[key] = name
    return out


def symmetric_contraction(sc, prefix: str, arrays: dict, what: str) -> dict:
    """mace's ``SymmetricContraction`` → per output irrep L and order ν the coupling basis ``U``
    ``[2L+1, D, …, D, k]`` and the species weights ``[S, k, C]`` (names ``{prefix}.{L}.U{ν}`` / ``.w{ν}``)."""
    name = type(sc).__name__
    if name != "SymmetricContraction" or not hasattr(sc, "contractions"):
        raise Unsupported(f"{what}: {name} is not mace's SymmetricContraction (cuequivariance kernels are not supported)")
    irreps_out = [str(mul_ir.ir) for mul_ir in sc.irreps_out]
    out = {"irreps_in": str(sc.irreps_in), "irreps_out": irreps_out, "outputs": {}}
    for L, c in zip(irreps_out, sc.contractions):
        entry = []
        for nu in range(1, c.correlation + 1):
            U = to_numpy(c.U_tensors(nu))
            if U.ndim == nu + 1:  # L = 0: mace drops the M axis
                U = U[None]
            w = c.weights_max if nu == c.correlation else c.weights[c.correlation - 1 - nu]
            arrays[f"{prefix}.{L}.U{nu}"] = U
            arrays[f"{prefix}.{L}.w{nu}"] = to_numpy(w)
            entry.append({"nu": nu, "U": f"{prefix}.{L}.U{nu}", "w": f"{prefix}.{L}.w{nu}"})
        out["outputs"][L] = entry
    return out

"""Step 2 of the mace-torch import, the weights: a dump's effective weights → scalarjax MACE parameters.

:mod:`scalarjax.interop.mace_torch` checks the dump's architecture and builds the ``ModelConfig``;
this module fills that model's parameter tree leaf by leaf, with shape checks. Every leaf is the
dump's effective weight times ``sqrt(fan_in)`` (scalarjax applies ``1/sqrt(fan_in)`` in the forward
pass), with the constants in which the two implementations differ folded into the next linear map
(why each fold is exact: :mod:`scalarjax.interop.mace_torch`):

- radial MLP: hidden layer k's ``post_k`` (e3nn-torch's Monte-Carlo ``normalize2mom`` constant)
  over scalarjax's exact ``EXACT_SILU_CST``, into layer k+1; likewise in the last readout's MLP;
- convolution output linear: per path ``path_weight · s / sqrt(2 l3 + 1)`` (s: the Clebsch–Gordan
  sign between e3nn-torch and e3nn-jax) and ``avg[0] / avg[t]`` (scalarjax has one
  ``avg_num_neighbors``), blocks permuted to scalarjax's path order;
- symmetric contraction: ``w_jax = R w_torch`` with ``J R = T`` solved by least squares;
- species-indexed weights re-ordered to ascending atomic number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from scalarjax.interop.mace_torch_dump import Unsupported

EXACT_SILU_CST = 1.6765324703310907  # scalarjax.nn.linear.normalized_silu


@dataclass(frozen=True)
class Architecture:
    """What the architecture checks of a dump established, as far as the weight mapping needs it."""

    order: np.ndarray  # scalarjax's species index i ↔ mace's one-hot index order[i] (ascending Z)
    channels: int  # C: the channels of every hidden irrep
    max_ell: int
    correlation: int
    avg_num_neighbors: list  # per layer; scalarjax has avg[0] and folds avg[0] / avg[t] into layer t
    residual_first: bool  # the first interaction is residual (else its skip is a species selector on A)
    src64: bool  # float64 source model: tighter bound on the product projection's residual

    @property
    def target(self) -> dict:
        """``{ir: C}`` for the natural-parity irreps ``0e, 1o, …`` up to max_ell (the convolution's output)."""
        from scalarjax.nn.features import natural_irreps

        return {ir: self.channels for ir in natural_irreps(self.max_ell)}


def map_weights(arrays: dict, meta: dict, arch: Architecture, template, dtype) -> tuple:
    """Every effective weight of a dump → its leaf of ``template`` (the model's abstract parameter
    tree) → (the parameter pytree in ``dtype``, the report: Clebsch–Gordan signs, e3nn-torch's silu
    constants, the product projections with their residuals, the per-layer avg_num_neighbors).

    :class:`Unsupported` for a weight scalarjax lacks, a shape that differs or a leaf left unfilled.
    """
    report = {"cg_signs": {}, "silu_cst_torch": [], "product_projection": [], "per_layer_avg_num_neighbors": arch.avg_num_neighbors}
    m = _Mapper(arrays, arch, _Params(template), report)
    m.embedding(meta["embedding"])
    for t, L in enumerate(meta["layers"]):
        m.interaction(t, L)
        m.product(t, L)
    m.readouts(meta["readouts"])
    return m.params.tree(dtype), report


class _Params:
    """The scalarjax parameter tree, filled leaf by leaf with shape checks; reports unfilled leaves."""

    def __init__(self, template):
        import jax

        self.flat = {
            tuple(getattr(k, "key", k) for k in path): tuple(v.shape) for path, v in jax.tree_util.tree_flatten_with_path(template)[0]
        }
        self.filled: dict = {}
        self.template = template

    def set(self, path: tuple, value: np.ndarray):
        path = ("params", "backbone") + tuple(path)
        if path not in self.flat:
            raise Unsupported(f"the mace model has a weight scalarjax's MACE lacks: {'/'.join(path[2:])}")
        if self.flat[path] != np.shape(value):
            raise Unsupported(f"{'/'.join(path[2:])}: shape {np.shape(value)} from mace-torch, scalarjax expects {self.flat[path]}")
        if path in self.filled:
            raise AssertionError(f"{path} filled twice")
        self.filled[path] = np.asarray(value, np.float64)

    def tree(self, dtype):
        import jax

        missing = sorted("/".join(map(str, p[2:])) for p in self.flat if p not in self.filled)
        if missing:
            raise Unsupported(f"scalarjax parameters with no mace-torch counterpart: {missing[:5]}")
        leaves = [
            self.filled[tuple(getattr(k, "key", k) for k in path)].astype(dtype)
            for path, _ in jax.tree_util.tree_flatten_with_path(self.template)[0]
        ]
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(self.template), leaves)


def _by_irrep(instructions: list, arrays: dict, what: str) -> dict:
    """o3.Linear between simplified irreps → ``{ir: effective [C_in, C_out]}``."""
    out = {}
    for ins in instructions:
        if ins["ir_in"] != ins["ir_out"] or ins["ir_out"] in out:
            raise Unsupported(f"{what}: expected one linear block per irrep, got {ins['ir_in']} → {ins['ir_out']} twice")
        out[ins["ir_out"]] = arrays[ins["array"]]
    return out


@dataclass
class _Mapper:
    """Fills ``params`` from the dump's ``arrays``, block by block, and records in ``report``."""

    arrays: dict
    arch: Architecture
    params: _Params
    report: dict

    def embedding(self, emb: list) -> None:
        """Species one-hot (S of them, mace's order) → C scalars: fan-in S."""
        if len(emb) != 1:
            raise Unsupported("node embedding: expected one linear block")
        order = self.arch.order
        self.params.set(("embedding", "w"), self.arrays[emb[0]["array"]][order] * np.sqrt(len(order)))

    def interaction(self, t: int, L: dict) -> None:
        """Interaction ``t``: linear_up, the convolution (radial MLP, output linear) and the species skip."""
        pre = (f"interaction_{t}", "conv")
        for ir, w in _by_irrep(L["linear_up"], self.arrays, f"interactions.{t}.linear_up").items():
            self.params.set(pre + ("linear_up", f"w_{ir}"), w * np.sqrt(w.shape[0]))
        rm = L["radial_mlp"]
        ws = [self.arrays[n] for n in rm["weights"]]
        self.report["silu_cst_torch"].extend(rm["post"])
        paths = self._conv_paths(t, L)
        self._radial_mlp(pre, ws, rm["post"], paths)
        self._conv_linear(t, pre, L["linear"], paths)
        self._skip(t, L["skip"])

    def _conv_paths(self, t: int, L: dict) -> list:
        """The convolution's paths in scalarjax's plan order, each with its e3nn instruction, matched
        by ``(ir1, l2, ir3)``: ``[(plan path, instruction)]``."""
        from scalarjax.nn.features import irreps_to_channels
        from scalarjax.nn.tensor_product import channelwise_tp_plan

        h_irreps = tuple(sorted(irreps_to_channels(L["node_feats_irreps"])))
        plan = channelwise_tp_plan(h_irreps, self.arch.max_ell, tuple(self.arch.target))
        by_key = {}
        for ins in L["conv_tp"]:
            key = (ins["ir1"], int(ins["l2"]), ins["ir3"])
            if key in by_key or ins["size"] != self.arch.channels:
                raise Unsupported(f"interactions.{t}.conv_tp: unexpected instruction {key}")
            by_key[key] = ins
        if set(by_key) != {(p.ir1, p.l2, p.ir3) for p in plan.paths}:
            raise Unsupported(f"interactions.{t}.conv_tp: paths {sorted(by_key)} differ from MACE's")
        return [(p, by_key[(p.ir1, p.l2, p.ir3)]) for p in plan.paths]

    def _radial_mlp(self, pre: tuple, ws: list, post: list, paths: list) -> None:
        """Radial MLP: the last layer's columns (C per path) permuted to scalarjax's path order;
        hidden layer k's output constant ``post_k`` folded into layer k+1 over the exact silu constant."""
        C = self.arch.channels
        cols = np.concatenate([np.arange(ins["offset"], ins["offset"] + C) for _, ins in paths])
        ws = ws[:-1] + [ws[-1][:, cols]]
        posts = [1.0] + list(post)
        for i, w in enumerate(ws):
            self.params.set(pre + ("radial_mlp", f"w_{i}"), w * np.sqrt(w.shape[0]) * posts[i] / (EXACT_SILU_CST if i else 1.0))

    def _conv_linear(self, t: int, pre: tuple, linear: list, paths: list) -> None:
        """Output linear of the convolution, per target irrep ir3: ``[P_ir3, C, C]``, one block per path
        (fan-in P_ir3·C), each times ``path_weight · s / sqrt(2 l3 + 1) · avg[0] / avg[t]``."""
        import e3nn_jax as e3nn

        lin = {}
        for ins in linear:
            if ins["ir_in"] != ins["ir_out"]:
                raise Unsupported(f"interactions.{t}.linear: block {ins['ir_in']} → {ins['ir_out']}")
            lin[ins["i_in"]] = self.arrays[ins["array"]]
        avg = self.arch.avg_num_neighbors
        blocks: dict = {}
        for p, ins in paths:
            s = self._cg_sign(p, ins)
            factor = ins["path_weight"] * s / np.sqrt(2 * e3nn.Irrep(p.ir3).l + 1)
            if ins["i_out"] not in lin:
                raise Unsupported(f"interactions.{t}.linear: no block for tensor-product output {ins['i_out']}")
            blocks.setdefault(p.ir3, []).append(lin[ins["i_out"]] * factor * avg[0] / avg[t])
        for ir3, bl in blocks.items():
            self.params.set(pre + (f"linear_{ir3}",), np.stack(bl) * np.sqrt(len(bl) * self.arch.channels))

    def _cg_sign(self, p, ins: dict) -> float:
        """The sign s with ``CG_jax = s · CG_torch`` for the path's ``(l1, l2, l3)``, recorded in the report."""
        import e3nn_jax as e3nn

        l1, l3 = e3nn.Irrep(p.ir1).l, e3nn.Irrep(p.ir3).l
        cg_j, cg_t = np.asarray(e3nn.clebsch_gordan(l1, p.l2, l3)), self.arrays[ins["cg"]]
        s = float(np.sign(np.sum(cg_j * cg_t)))
        # 1e-6: a float32 model's dump holds float32 CG entries (rounded at ~6e-8); another
        # convention would differ by O(0.1). Only the sign s is used below.
        if s == 0 or np.abs(cg_j - s * cg_t).max() > 1e-6:
            raise Unsupported(f"Clebsch-Gordan ({l1},{p.l2},{l3}) of e3nn-torch and e3nn-jax differ by more than a sign")
        self.report["cg_signs"][f"{l1},{p.l2},{l3}"] = s
        return s

    def _skip(self, t: int, skip: dict) -> None:
        """Species skip ``[S, C_in, C_out]`` (fan-in C_in): the residual on h, or the first block's
        species selector on A when that block is not residual."""
        skip_name = "skip" if (t > 0 or self.arch.residual_first) else "species_linear"
        for ir, name in skip.items():
            w = self.arrays[name][self.arch.order]
            self.params.set((f"interaction_{t}", skip_name, f"w_{ir}"), w * np.sqrt(w.shape[1]))

    def product(self, t: int, L: dict) -> None:
        """Product ``t``: the symmetric contraction projected onto e3nn-jax's coupling basis, per
        output irrep all orders ν concatenated along the path axis; then its linear."""
        import e3nn_jax as e3nn

        from scalarjax.nn.symmetric_contraction import monomial_coefficients

        prod = L["product"]
        coupling = [str(e3nn.Irrep(ir)) for _, ir in e3nn.Irreps(prod["irreps_in"])]
        keys = tuple(sorted(self.arch.target, key=e3nn.Irrep))
        if tuple(coupling) != keys:
            raise Unsupported(f"products.{t}: input irreps {prod['irreps_in']} are not {self.arch.channels}x({'+'.join(keys)})")
        out_irreps = tuple(prod["irreps_out"])
        D = e3nn.Irreps("+".join(keys)).dim
        coeffs = monomial_coefficients(keys, self.arch.correlation, out_irreps)
        for Lo in out_irreps:
            wblocks = [self._project(t, Lo, entry, D, coeffs) for entry in prod["outputs"][Lo]]
            self.params.set((f"product_{t}", f"w_{Lo}"), np.concatenate([w for w in wblocks if w is not None], axis=1))
        for ir, w in _by_irrep(L["product_linear"], self.arrays, f"products.{t}.linear").items():
            self.params.set((f"product_linear_{t}", f"w_{ir}"), w * np.sqrt(w.shape[0]))

    def _project(self, t: int, Lo: str, entry: dict, D: int, coeffs: dict) -> Optional[np.ndarray]:
        """mace's weights of one (L, ν) ``[S, k, C]`` on its coupling basis U → e3nn-jax's ``[S, P, C]``.

        Both bases are written as coefficients of the polynomial on sorted monomials of A (T from U,
        J from e3nn-jax); ``J R = T`` is solved by least squares and ``w_jax = R w_torch``. The
        relative residual ``|J R − T| / |T|`` goes to the report and must be ~0 (the spans agree).
        ``None`` when e3nn-jax has no path of this order (then mace must have none either).
        """
        from scalarjax.nn.symmetric_contraction import symmetrize_to_monomials

        nu = int(entry["nu"])
        U, wt = self.arrays[entry["U"]], self.arrays[entry["w"]][self.arch.order]  # [M, D..., k], [S, k, Ct]
        k = U.shape[-1]
        Tm = symmetrize_to_monomials(np.moveaxis(U, 0, -2), D, nu)  # [n_mono, M, k]
        J = coeffs[(Lo, nu)]  # [n_mono, P, M]
        A = np.transpose(J, (0, 2, 1)).reshape(-1, J.shape[1])  # [n_mono·M, P]
        B = Tm.reshape(-1, k)
        if J.shape[1] == 0:
            if np.abs(B).max(initial=0.0) > 0:
                raise Unsupported(f"products.{t}: mace has {Lo} paths of order {nu} that e3nn-jax's basis lacks")
            return None
        R, *_ = np.linalg.lstsq(A, B, rcond=None)
        res = float(np.linalg.norm(A @ R - B) / max(np.linalg.norm(B), 1e-300))
        self.report["product_projection"].append(
            {"layer": t, "L": Lo, "nu": nu, "torch_paths": int(k), "jax_paths": int(J.shape[1]), "relative_residual": res}
        )
        if res > (1e-9 if self.arch.src64 else 1e-5):
            raise Unsupported(f"products.{t}: mace's {Lo} order-{nu} basis is not in e3nn-jax's span (residual {res:.2e})")
        return np.einsum("pk,skc->spc", R, wt)

    def readouts(self, readouts: list) -> None:
        """Linear readouts; the last one's MLP with its silu constant folded into the second linear."""
        for t, ro in enumerate(readouts):
            if ro["kind"] == "linear":
                (w,) = _by_irrep(ro["linear"], self.arrays, f"readouts.{t}").values()
                self.params.set((f"readout_{t}", "MLP_0", "w_0"), w * np.sqrt(w.shape[0]))
            else:
                (w1,) = _by_irrep(ro["linear_1"], self.arrays, f"readouts.{t}.linear_1").values()
                (w2,) = _by_irrep(ro["linear_2"], self.arrays, f"readouts.{t}.linear_2").values()
                self.params.set((f"readout_{t}", "MLP_0", "w_0"), w1 * np.sqrt(w1.shape[0]))
                self.params.set((f"readout_{t}", "MLP_0", "w_1"), w2 * np.sqrt(w2.shape[0]) * ro["post"] / EXACT_SILU_CST)
                self.report["silu_cst_torch"].append(ro["post"])

"""Exact import of mace-torch models (step 2: dump → scalarjax run directory; no torch needed).

Step 1 (:mod:`scalarjax.interop.mace_torch_dump`, needs torch + mace-torch) writes the model's
effective weights and hyper-parameters as ``DUMP.npz`` + ``DUMP.json``. This module maps them onto
scalarjax's MACE (:mod:`scalarjax.backbones.mace`), which computes the same function:

- *Normalisations.* e3nn-torch applies ``1/sqrt(fan_in)`` (path normalisation "element") in the
  forward pass exactly as scalarjax does, except for the species "skip" tensor products, whose
  fan-in counts the one-hot (``1/sqrt(C·S)``; scalarjax: ``1/sqrt(C)``). The dump holds effective
  weights, so every scalarjax parameter is ``effective · sqrt(fan_in_scalarjax)``.
- *Activations.* e3nn-torch's ``normalize2mom(silu)`` uses a Monte-Carlo second moment
  (``cst = 1.67918`` from 10⁶ samples) where scalarjax uses the exact ``1.6765…``. The constant
  multiplies a hidden layer's output, which only enters the next (linear, bias-free) layer, so the
  ratio ``cst_torch / cst_scalarjax`` is folded into the next layer's weights: exact.
- *Clebsch–Gordan signs.* e3nn-torch's ``wigner_3j`` and e3nn-jax's ``clebsch_gordan`` agree up
  to a sign per ``(l1, l2, l3)`` (spherical harmonics agree exactly); each path's sign, its
  ``path_weight`` and the ``sqrt(2 l3 + 1)`` scalarjax applies are folded into the convolution's
  output linear (checked: ``|CG_jax − s·CG_torch| < 1e-10``).
- *Path order.* The radial MLP's last layer columns and the output linear's blocks are permuted
  from e3nn's instruction order to scalarjax's plan order, matched by ``(ir1, l2, ir3)``.
- *Per-layer ``avg_num_neighbors``.* scalarjax has one; a layer's ratio goes into its linear.
- *Symmetric contraction.* mace's ``U_matrix_real`` has redundant coupling paths; scalarjax uses
  e3nn-jax's reduced basis. Both are linear maps from weights to the coefficients of the
  symmetric polynomial ``Σ U A^⊗ν`` on sorted monomials, so for each (L, ν) the torch basis is
  projected onto the jax basis by least squares, ``J R = T``, and ``w_jax = R w_torch``; the
  relative residual ``|J R − T| / |T|`` (written to ``import_report.json``) is ~1e-15 for
  float64 models: the spans agree and the map is exact.
- *E0s, scale, shift*: ``E_i = E0[s_i] + shift + scale · Σ_t readout_t`` in both (plain ``MACE``:
  scale 1, shift 0). Species are re-ordered to ascending atomic number.

Everything else (interaction classes, radial basis, readouts, irreps) is checked against the
one architecture scalarjax's MACE implements; anything else is :class:`Unsupported`.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

from scalarjax.interop.mace_torch_dump import FORMAT, Unsupported

EXACT_SILU_CST = 1.6765324703310907  # scalarjax.nn.linear.normalized_silu
INSTALL_HINT = (
    'pip install "scalarjax[mace-torch]" (torch and mace-torch>=0.3,<0.4), or dump it with a torch '
    "environment: PYTHON_WITH_MACE -m scalarjax.interop.mace_torch_dump MODEL -o DUMP.npz "
    "(or run the file scalarjax/interop/mace_torch_dump.py directly), then scalarjax import-mace DUMP.npz"
)


def load_dump(path) -> tuple[dict, dict]:
    """``DUMP.npz`` (or ``DUMP.json``) → (arrays, meta)."""
    path = str(path)
    stem = path[:-4] if path.endswith(".npz") else path[:-5] if path.endswith(".json") else path
    npz, js = stem + ".npz", stem + ".json"
    for p in (npz, js):
        if not os.path.isfile(p):
            raise Unsupported(f"{p}: no such file (a dump is DUMP.npz + DUMP.json)")
    try:
        with open(js) as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise Unsupported(f"{js}: not JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise Unsupported(f"{js}: not a mace-torch dump of format {FORMAT!r}")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, meta


def _irreps_channels(irreps: str) -> dict:
    from scalarjax.nn.features import irreps_to_channels

    return irreps_to_channels(irreps)


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


def _check_close(a: float, b: float, what: str, rtol: float):
    if abs(a - b) > rtol * max(abs(a), abs(b), 1e-300):
        raise Unsupported(f"{what}: {a!r} differs from the expected {b!r}")


def convert(arrays: dict, meta: dict, dtype: str = "float64"):
    """(arrays, meta) of a dump → (``ModelConfig``, parameter pytree, report dict).

    Needs JAX's x64 mode for ``dtype="float64"`` only at evaluation; the conversion itself is
    done in NumPy float64.
    """
    import e3nn_jax as e3nn

    from scalarjax.config import MACEConfig, ModelConfig, load_model_config
    from scalarjax.model import build_model
    from scalarjax.nn.features import natural_irreps
    from scalarjax.nn.symmetric_contraction import monomial_coefficients, symmetrize_to_monomials
    from scalarjax.nn.tensor_product import channelwise_tp_plan

    src64 = meta.get("source_dtype", "float64") == "float64"
    rtol = 1e-12 if src64 else 1e-6
    zs = [int(z) for z in meta["atomic_numbers"]]
    if len(set(zs)) != len(zs):
        raise Unsupported(f"atomic_numbers {zs} repeat an element")
    order = np.argsort(zs)  # scalarjax's species index i ↔ mace's one-hot index order[i]
    S = len(zs)
    r_max = float(meta["r_max"])
    for key in ("cutoff_r_max", "bessel_r_max"):
        _check_close(float(meta[key]), r_max, key, rtol)
    bw = arrays["radial.bessel_weights"]
    nb = int(bw.size)
    if int(meta["num_bessel"]) != nb:
        raise Unsupported(f"num_bessel {meta['num_bessel']} but {nb} Bessel frequencies")
    expected = np.pi / r_max * np.arange(1, nb + 1)
    if np.abs(bw - expected).max() > rtol * expected.max():
        raise Unsupported(f"Bessel frequencies {bw.tolist()} are not n·π/r_max (trainable Bessel weights are not supported)")
    _check_close(float(meta["bessel_prefactor"]), float(np.sqrt(2.0 / r_max)), "Bessel prefactor", rtol)

    layers, readouts = meta["layers"], meta["readouts"]
    T = len(layers)
    if T < 2:
        raise Unsupported("a single interaction (linear readout only) is not supported")
    max_ell = int(meta["max_ell"])
    hidden = _irreps_channels(layers[0]["hidden_irreps"])
    C = hidden.get("0e")
    if C is None or any(c != C for c in hidden.values()) or any(ir not in natural_irreps(max_ell) for ir in hidden):
        raise Unsupported(
            f"hidden_irreps {layers[0]['hidden_irreps']}: scalarjax needs equal channels of natural-parity irreps up to max_ell"
        )
    hidden_str = "+".join(f"{C}x{ir}" for ir in natural_irreps(max_ell) if ir in hidden)
    target = {ir: C for ir in natural_irreps(max_ell)}
    for t, L in enumerate(layers):
        cls = L["interaction_class"]
        if t > 0 and cls != "RealAgnosticResidualInteractionBlock":
            raise Unsupported(f"interactions.{t}: {cls} after the first layer is not supported (scalarjax's later layers are residual)")
        want_in = {"0e": C} if t == 0 else hidden
        want_out = {"0e": C} if t == T - 1 else hidden
        if _irreps_channels(L["node_feats_irreps"]) != want_in or _irreps_channels(L["hidden_irreps"]) != want_out:
            raise Unsupported(
                f"interactions.{t}: irreps {L['node_feats_irreps']} → {L['hidden_irreps']} differ from MACE's "
                f"(keep_last_layer_irreps is not supported)"
            )
        if _irreps_channels(L["target_irreps"]) != target:
            raise Unsupported(f"interactions.{t}: target irreps {L['target_irreps']} are not {C}x(0e..{max_ell})")
    residual_first = layers[0]["interaction_class"] == "RealAgnosticResidualInteractionBlock"
    widths = [L["radial_mlp"]["widths"][:-1] for L in layers]  # the output width depends on the layer's paths
    if any(w != widths[0] for w in widths) or widths[0][0] != nb:
        raise Unsupported(f"radial MLP widths {widths} differ between layers or from num_bessel {nb}")
    corrs = [len(next(iter(L["product"]["outputs"].values()))) for L in layers]
    if any(c != corrs[0] for c in corrs):
        raise Unsupported(f"per-layer correlation {corrs} is not supported (one correlation for all layers)")
    last = readouts[-1]
    mlp = _irreps_channels(last["mlp_irreps"])
    if list(mlp) != ["0e"]:
        raise Unsupported(f"MLP_irreps {last['mlp_irreps']} is not scalars only")
    avg = [float(L["avg_num_neighbors"]) for L in layers]

    cfg = load_model_config(
        ModelConfig(
            backbone=MACEConfig(
                max_ell=max_ell,
                hidden_irreps=hidden_str,
                correlation=corrs[0],
                num_interactions=T,
                mlp_irreps=f"{mlp['0e']}x0e",
                residual_first=residual_first,
            ),
            r_max=r_max,
            num_bessel=nb,
            num_polynomial_cutoff=int(meta["num_polynomial_cutoff"]),
            radial_mlp=tuple(widths[0][1:]),
            avg_num_neighbors=avg[0],
            atomic_numbers=tuple(sorted(zs)),
            atomic_energies=tuple(float(meta["atomic_energies"][i]) for i in order),
            scale=float(meta["scale"]),
            shift=float(meta["shift"]),
            dtype="float64",
        )
    )
    from scalarjax.model import abstract_params

    template = abstract_params(build_model(load_model_config(cfg, dtype="float32")))  # structure and shapes only
    P = _Params(template)
    report = {"cg_signs": {}, "silu_cst_torch": [], "product_projection": [], "per_layer_avg_num_neighbors": avg}

    emb = meta["embedding"]
    if len(emb) != 1:
        raise Unsupported("node embedding: expected one linear block")
    P.set(("embedding", "w"), arrays[emb[0]["array"]][order] * np.sqrt(S))

    for t, L in enumerate(layers):
        pre = (f"interaction_{t}", "conv")
        for ir, w in _by_irrep(L["linear_up"], arrays, f"interactions.{t}.linear_up").items():
            P.set(pre + ("linear_up", f"w_{ir}"), w * np.sqrt(w.shape[0]))
        # Radial MLP (hidden activations' constants folded into the next layer).
        rm = L["radial_mlp"]
        ws = [arrays[n] for n in rm["weights"]]
        posts = [1.0] + list(rm["post"])
        report["silu_cst_torch"].extend(rm["post"])
        conv = [ins for ins in L["conv_tp"]]
        h_irreps = tuple(sorted(_irreps_channels(L["node_feats_irreps"])))
        plan = channelwise_tp_plan(h_irreps, max_ell, tuple(target))
        by_key = {}
        for k, ins in enumerate(conv):
            key = (ins["ir1"], int(ins["l2"]), ins["ir3"])
            if key in by_key or ins["size"] != C:
                raise Unsupported(f"interactions.{t}.conv_tp: unexpected instruction {key}")
            by_key[key] = k
        if set(by_key) != {(p.ir1, p.l2, p.ir3) for p in plan.paths}:
            raise Unsupported(f"interactions.{t}.conv_tp: paths {sorted(by_key)} differ from MACE's")
        last_w = ws[-1]
        cols = np.concatenate(
            [np.arange(conv[by_key[(p.ir1, p.l2, p.ir3)]]["offset"], conv[by_key[(p.ir1, p.l2, p.ir3)]]["offset"] + C) for p in plan.paths]
        )
        ws = ws[:-1] + [last_w[:, cols]]
        for i, w in enumerate(ws):
            P.set(pre + ("radial_mlp", f"w_{i}"), w * np.sqrt(w.shape[0]) * posts[i] / (EXACT_SILU_CST if i else 1.0))
        # Output linear of the convolution, per target irrep: [P_ir3, C, C].
        lin = {}
        for ins in L["linear"]:
            if ins["ir_in"] != ins["ir_out"]:
                raise Unsupported(f"interactions.{t}.linear: block {ins['ir_in']} → {ins['ir_out']}")
            lin[ins["i_in"]] = arrays[ins["array"]]
        blocks: dict = {}
        for p in plan.paths:
            ins = conv[by_key[(p.ir1, p.l2, p.ir3)]]
            l1, l3 = e3nn.Irrep(p.ir1).l, e3nn.Irrep(p.ir3).l
            cg_j, cg_t = np.asarray(e3nn.clebsch_gordan(l1, p.l2, l3)), arrays[ins["cg"]]
            s = float(np.sign(np.sum(cg_j * cg_t)))
            # 1e-6: a float32 model's dump holds float32 CG entries (rounded at ~6e-8); another
            # convention would differ by O(0.1). Only the sign s is used below.
            if s == 0 or np.abs(cg_j - s * cg_t).max() > 1e-6:
                raise Unsupported(f"Clebsch-Gordan ({l1},{p.l2},{l3}) of e3nn-torch and e3nn-jax differ by more than a sign")
            report["cg_signs"][f"{l1},{p.l2},{l3}"] = s
            factor = ins["path_weight"] * s / np.sqrt(2 * l3 + 1)
            if ins["i_out"] not in lin:
                raise Unsupported(f"interactions.{t}.linear: no block for tensor-product output {ins['i_out']}")
            blocks.setdefault(p.ir3, []).append(lin[ins["i_out"]] * factor * avg[0] / avg[t])
        for ir3, bl in blocks.items():
            P.set(pre + (f"linear_{ir3}",), np.stack(bl) * np.sqrt(len(bl) * C))
        # Species skip: residual (on h) or the first block's selector (on A).
        skip_name = "skip" if (t > 0 or residual_first) else "species_linear"
        for ir, name in L["skip"].items():
            w = arrays[name][order]
            P.set((f"interaction_{t}", skip_name, f"w_{ir}"), w * np.sqrt(w.shape[1]))
        # Symmetric contraction: least-squares projection of mace's coupling basis onto e3nn-jax's.
        prod = L["product"]
        coupling = [str(e3nn.Irrep(ir)) for _, ir in e3nn.Irreps(prod["irreps_in"])]
        keys = tuple(sorted(target, key=e3nn.Irrep))
        if tuple(coupling) != keys:
            raise Unsupported(f"products.{t}: input irreps {prod['irreps_in']} are not {C}x({'+'.join(keys)})")
        out_irreps = tuple(prod["irreps_out"])
        D = e3nn.Irreps("+".join(keys)).dim
        coeffs = monomial_coefficients(keys, corrs[0], out_irreps)
        for Lo in out_irreps:
            wblocks = []
            for entry in prod["outputs"][Lo]:
                nu = int(entry["nu"])
                U, wt = arrays[entry["U"]], arrays[entry["w"]][order]  # [M, D..., k], [S, k, Ct]
                k = U.shape[-1]
                Tm = symmetrize_to_monomials(np.moveaxis(U, 0, -2), D, nu)  # [n_mono, M, k]
                J = coeffs[(Lo, nu)]  # [n_mono, P, M]
                A = np.transpose(J, (0, 2, 1)).reshape(-1, J.shape[1])  # [n_mono·M, P]
                B = Tm.reshape(-1, k)
                if J.shape[1] == 0:
                    if np.abs(B).max(initial=0.0) > 0:
                        raise Unsupported(f"products.{t}: mace has {Lo} paths of order {nu} that e3nn-jax's basis lacks")
                    continue
                R, *_ = np.linalg.lstsq(A, B, rcond=None)
                res = float(np.linalg.norm(A @ R - B) / max(np.linalg.norm(B), 1e-300))
                report["product_projection"].append(
                    {"layer": t, "L": Lo, "nu": nu, "torch_paths": int(k), "jax_paths": int(J.shape[1]), "relative_residual": res}
                )
                if res > (1e-9 if src64 else 1e-5):
                    raise Unsupported(f"products.{t}: mace's {Lo} order-{nu} basis is not in e3nn-jax's span (residual {res:.2e})")
                wblocks.append(np.einsum("pk,skc->spc", R, wt))
            P.set((f"product_{t}", f"w_{Lo}"), np.concatenate(wblocks, axis=1))
        for ir, w in _by_irrep(L["product_linear"], arrays, f"products.{t}.linear").items():
            P.set((f"product_linear_{t}", f"w_{ir}"), w * np.sqrt(w.shape[0]))

    for t, ro in enumerate(readouts):
        if ro["kind"] == "linear":
            (w,) = _by_irrep(ro["linear"], arrays, f"readouts.{t}").values()
            P.set((f"readout_{t}", "MLP_0", "w_0"), w * np.sqrt(w.shape[0]))
        else:
            (w1,) = _by_irrep(ro["linear_1"], arrays, f"readouts.{t}.linear_1").values()
            (w2,) = _by_irrep(ro["linear_2"], arrays, f"readouts.{t}.linear_2").values()
            P.set((f"readout_{t}", "MLP_0", "w_0"), w1 * np.sqrt(w1.shape[0]))
            P.set((f"readout_{t}", "MLP_0", "w_1"), w2 * np.sqrt(w2.shape[0]) * ro["post"] / EXACT_SILU_CST)
            report["silu_cst_torch"].append(ro["post"])
    params = P.tree(np.dtype(dtype))
    cfg = load_model_config(cfg, dtype=dtype)
    report["max_product_projection_residual"] = max((r["relative_residual"] for r in report["product_projection"]), default=0.0)
    return cfg, params, report


def write_run(run_dir, cfg, params, extra_stats: dict | None = None, report: dict | None = None) -> pathlib.Path:
    """A run directory ``Calculator.from_run`` / ``scalarjax evaluate|md|relax|diagnose`` load:
    ``config.yaml``, ``statistics.json``, ``best/`` (orbax) and ``import_report.json``.

    Written into a temporary sibling directory and renamed at the end: an interrupted import
    leaves nothing at ``run_dir``. An existing ``run_dir`` is an error.
    """
    import yaml

    from scalarjax.training.config import OutputConfig, RunConfig, to_dict
    from scalarjax.training.trainer import save_params

    run_dir = pathlib.Path(run_dir)
    if run_dir.exists():
        raise FileExistsError(f"{run_dir}: exists; choose a new run directory")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.partial-", dir=run_dir.parent))
    try:
        rc = RunConfig(model=cfg, output=OutputConfig(run_dir=str(run_dir)))
        with open(tmp / "config.yaml", "w") as f:
            yaml.safe_dump(to_dict(rc), f, sort_keys=False)
        stats = {
            "atomic_numbers": list(cfg.atomic_numbers),
            "e0s": list(cfg.atomic_energies),
            "avg_num_neighbors": cfg.avg_num_neighbors,
            "scale": cfg.scale,
            "shift": cfg.shift,
            **(extra_stats or {}),
        }
        with open(tmp / "statistics.json", "w") as f:
            json.dump(stats, f, indent=1)
        if report is not None:
            with open(tmp / "import_report.json", "w") as f:
                json.dump(report, f, indent=1)
        save_params(tmp / "best", params)
        os.rename(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir


def torch_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "e3nn", "mace"))


def import_mace(source, run_dir, dtype: str = "float64") -> pathlib.Path:
    """``source``: a mace-torch ``.model`` file (dumped in-process: needs torch + mace-torch) or a
    dump (``DUMP.npz``/``.json``, no torch) → scalarjax run directory ``run_dir``."""
    source = str(source)
    if run_dir is not None and pathlib.Path(run_dir).exists():
        raise FileExistsError(f"{run_dir}: exists; choose a new run directory")
    if source.endswith((".npz", ".json")):
        arrays, meta = load_dump(source)
    else:
        if not os.path.isfile(source):
            raise Unsupported(f"{source}: no such file")
        if not torch_available():
            raise Unsupported(
                f"{source}: reading a mace-torch model needs torch and mace-torch, which are not installed here; {INSTALL_HINT}"
            )
        import torch

        from scalarjax.interop import mace_torch_dump

        model = mace_torch_dump.load_model(source)
        params = list(model.parameters()) if hasattr(model, "parameters") else []
        with torch.no_grad():
            arrays, meta = mace_torch_dump.dump_model(model.double() if hasattr(model, "double") else model)
        meta["source"] = os.path.basename(source)
        meta["source_dtype"] = str(params[0].dtype).replace("torch.", "") if params else "unknown"
    cfg, params, report = convert(arrays, meta, dtype)
    report = {
        "source": meta.get("source", source),
        "source_dtype": meta.get("source_dtype"),
        "model_class": meta["model_class"],
        "versions": meta.get("versions", {}),
        **report,
    }
    return write_run(run_dir, cfg, params, {"imported_from": report["source"]}, report)

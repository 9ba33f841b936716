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
one architecture scalarjax's MACE implements; anything else is :class:`Unsupported`. This module
does those checks and writes the run directory; :mod:`scalarjax.interop.mace_torch_weights` maps
the weights.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

from scalarjax.interop.mace_torch_dump import FORMAT, Unsupported
from scalarjax.interop.mace_torch_weights import EXACT_SILU_CST as EXACT_SILU_CST  # kept importable from here
from scalarjax.interop.mace_torch_weights import Architecture, map_weights

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


def _check_close(a: float, b: float, what: str, rtol: float):
    if abs(a - b) > rtol * max(abs(a), abs(b), 1e-300):
        raise Unsupported(f"{what}: {a!r} differs from the expected {b!r}")


def convert(arrays: dict, meta: dict, dtype: str = "float64"):
    """(arrays, meta) of a dump → (``ModelConfig``, parameter pytree, report dict).

    Needs JAX's x64 mode for ``dtype="float64"`` only at evaluation; the conversion itself is
    done in NumPy float64.
    """
    from scalarjax.config import load_model_config
    from scalarjax.model import abstract_params, build_model

    cfg, arch = _architecture(arrays, meta)
    template = abstract_params(build_model(load_model_config(cfg, dtype="float32")))  # structure and shapes only
    params, report = map_weights(arrays, meta, arch, template, np.dtype(dtype))
    cfg = load_model_config(cfg, dtype=dtype)
    report["max_product_projection_residual"] = max((r["relative_residual"] for r in report["product_projection"]), default=0.0)
    return cfg, params, report


def _architecture(arrays: dict, meta: dict):
    """Checks the dump against the one architecture scalarjax's MACE implements → (its float64
    ``ModelConfig``, the :class:`Architecture` the weight mapping needs)."""
    from scalarjax.config import MACEConfig, ModelConfig, load_model_config

    src64 = meta.get("source_dtype", "float64") == "float64"
    zs = [int(z) for z in meta["atomic_numbers"]]
    if len(set(zs)) != len(zs):
        raise Unsupported(f"atomic_numbers {zs} repeat an element")
    order = np.argsort(zs)  # scalarjax's species index i ↔ mace's one-hot index order[i]
    r_max, nb = _check_radial(arrays, meta, 1e-12 if src64 else 1e-6)
    C, hidden_str = _check_layers(meta)
    widths, correlation, mlp_channels = _check_shared(meta, nb)
    layers = meta["layers"]
    residual_first = layers[0]["interaction_class"] == "RealAgnosticResidualInteractionBlock"
    avg = [float(L["avg_num_neighbors"]) for L in layers]
    cfg = load_model_config(
        ModelConfig(
            backbone=MACEConfig(
                max_ell=int(meta["max_ell"]),
                hidden_irreps=hidden_str,
                correlation=correlation,
                num_interactions=len(layers),
                mlp_irreps=f"{mlp_channels}x0e",
                residual_first=residual_first,
            ),
            r_max=r_max,
            num_bessel=nb,
            num_polynomial_cutoff=int(meta["num_polynomial_cutoff"]),
            radial_mlp=tuple(widths[1:]),
            avg_num_neighbors=avg[0],
            atomic_numbers=tuple(sorted(zs)),
            atomic_energies=tuple(float(meta["atomic_energies"][i]) for i in order),
            scale=float(meta["scale"]),
            shift=float(meta["shift"]),
            dtype="float64",
        )
    )
    arch = Architecture(
        order=order,
        channels=C,
        max_ell=int(meta["max_ell"]),
        correlation=correlation,
        avg_num_neighbors=avg,
        residual_first=residual_first,
        src64=src64,
    )
    return cfg, arch


def _check_radial(arrays: dict, meta: dict, rtol: float) -> tuple[float, int]:
    """One r_max for cutoff and Bessel basis, fixed Bessel frequencies ``n·π/r_max`` and prefactor
    ``sqrt(2/r_max)``, as scalarjax's radial basis → (r_max, num_bessel)."""
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
    return r_max, nb


def _check_layers(meta: dict) -> tuple[int, str]:
    """At least two interactions, residual after the first, and MACE's irreps: scalars into the first,
    C channels of every natural-parity irrep up to max_ell in between, scalars out of the last →
    (C, the hidden irreps string)."""
    from scalarjax.nn.features import natural_irreps

    layers = meta["layers"]
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
    return C, "+".join(f"{C}x{ir}" for ir in natural_irreps(max_ell) if ir in hidden)


def _check_shared(meta: dict, nb: int) -> tuple[list, int, int]:
    """What scalarjax's MACE shares between layers (radial MLP widths, from num_bessel inputs, and the
    correlation order) and a scalars-only readout MLP → (radial MLP widths, correlation, MLP channels)."""
    layers = meta["layers"]
    widths = [L["radial_mlp"]["widths"][:-1] for L in layers]  # the output width depends on the layer's paths
    if any(w != widths[0] for w in widths) or widths[0][0] != nb:
        raise Unsupported(f"radial MLP widths {widths} differ between layers or from num_bessel {nb}")
    corrs = [len(next(iter(L["product"]["outputs"].values()))) for L in layers]
    if any(c != corrs[0] for c in corrs):
        raise Unsupported(f"per-layer correlation {corrs} is not supported (one correlation for all layers)")
    last = meta["readouts"][-1]
    mlp = _irreps_channels(last["mlp_irreps"])
    if list(mlp) != ["0e"]:
        raise Unsupported(f"MLP_irreps {last['mlp_irreps']} is not scalars only")
    return widths[0], corrs[0], mlp["0e"]


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
    """Whether torch, e3nn and mace are importable here (needed to read a ``.model`` file, not a dump)."""
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

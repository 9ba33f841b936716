"""Parameter counts of the reference Allegro (nequip-allegro) next to scalarjax's Allegro, same settings.

    python experiments/peer/allegro_params.py [--peer-python ../peer/allegro-venv/bin/python] \
        [--out experiments/results/allegro_params.json]

The reference runs in its own environment (torch + nequip-allegro; never a scalarjax dependency):
``python -m venv ../peer/allegro-venv && ../peer/allegro-venv/bin/pip install nequip-allegro``.
This script runs there as ``--child`` and prints the reference counts; the parent counts
scalarjax's parameters from shapes alone (``jax.eval_shape``) and writes both.
Settings: the reference model builder's defaults and the tutorial's widths (r_max 5, 8 Bessel
functions, p = 6), with the elements and layers named per case.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
CASES = {
    "Si, builder defaults (U=16, readout 32), L=2, l_max=2": dict(elements=["Si"], num_layers=2, l_max=2, U=16, readout=32),
    "Si, tutorial widths (U=32, readout 64), L=2, l_max=2": dict(elements=["Si"], num_layers=2, l_max=2, U=32, readout=64),
    "C/O/H, tutorial as shipped (l_max=1)": dict(elements=["C", "O", "H"], num_layers=2, l_max=1, U=32, readout=64),
    "Si, L=3, l_max=2, parity": dict(elements=["Si"], num_layers=3, l_max=2, U=32, readout=64),
    "Si, L=3, l_max=2, no parity": dict(elements=["Si"], num_layers=3, l_max=2, U=32, readout=64, parity=False),
}


def reference_counts() -> dict:
    import allegro
    import nequip
    import torch
    from allegro.model import AllegroModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    out = {}
    for name, c in CASES.items():
        model = AllegroModel(
            seed=1,
            model_dtype="float64",
            type_names=c["elements"],
            r_max=5.0,
            l_max=c["l_max"],
            parity=c.get("parity", True),
            radial_chemical_embed={
                "_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                "num_bessels": 8,
                "bessel_trainable": False,
                "polynomial_cutoff_p": 6,
            },
            num_layers=c["num_layers"],
            num_scalar_features=64,
            num_tensor_features=c["U"],
            readout_mlp_hidden_layers_width=c["readout"],
            avg_num_neighbors=20.0,
        )
        out[name] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    versions = {"nequip-allegro": getattr(allegro, "__version__", "?"), "nequip": nequip.__version__, "torch": torch.__version__}
    return {"counts": out, "versions": versions}


def scalarjax_counts() -> dict:
    import jax
    import numpy as np
    from ase.data import atomic_numbers

    from scalarjax.config import load_model_config
    from scalarjax.model import abstract_params, build_model

    out = {}
    for name, c in CASES.items():
        backbone = {"kind": "allegro", "num_layers": c["num_layers"], "l_max": c["l_max"], "parity": c.get("parity", True)}
        backbone |= {"num_tensor_features": c["U"], "readout_mlp": [c["readout"]]}
        cfg = load_model_config({"backbone": backbone, "atomic_numbers": [atomic_numbers[e] for e in c["elements"]]})
        out[name] = int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract_params(build_model(cfg)))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--peer-python", default=os.environ.get("ALLEGRO_PYTHON", str(ROOT.parent / "peer" / "allegro-venv" / "bin" / "python"))
    )
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "allegro_params.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(reference_counts()))
        return
    ref = json.loads(
        subprocess.run([args.peer_python, __file__, "--child"], check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    )
    ours = scalarjax_counts()
    rows = {name: {"reference": ref["counts"][name], "scalarjax": ours[name], "ratio": ours[name] / ref["counts"][name]} for name in CASES}
    report = {"cases": rows, "reference_versions": ref["versions"], "settings": "r_max 5 Å, 8 Bessel, p = 6, F = 64, hidden widths 64"}
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for name, r in rows.items():
        print(f"{name:55s} reference {r['reference']:7d}  scalarjax {r['scalarjax']:7d}  ratio {r['ratio']:.4f}")


if __name__ == "__main__":
    main()

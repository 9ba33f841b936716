"""Parameter counts of the reference NequIP (nequip 0.6.2) next to scalarjax's NequIP backbone.

Builds nequip's model with its own builders (``nequip.model.model_from_config`` with the default
builder chain of ``nequip-train``: SimpleIrrepsConfig, EnergyModel, PerSpeciesRescale,
StressForceOutput, RescaleEnergyEtc; ``initialize=False``, so no data set is needed) for Si and for
aspirin (H, C, O) and counts its trainable parameters, in total and per top-level module. Then it
runs itself a second time under scalarjax's venv (``--scalarjax``) to count scalarjax's parameters
per module, and writes both to one JSON file.

It also counts "live" parameters on both sides: entries with a non-zero gradient of the energy of
one small rattled structure (one forward + backward, energy only).

    ../peer/venv/bin/python experiments/peer/nequip_params.py \
        --out experiments/results/peer_nequip_params.json

Light: about a minute on the 2-core machine, mostly imports and TorchScript / XLA compilation.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import subprocess
import sys
from collections import OrderedDict

REPO = pathlib.Path(__file__).resolve().parents[2]

SPECIES_SETS = OrderedDict(
    si=dict(chemical_symbols=["Si"], atomic_numbers=[14]),
    aspirin=dict(chemical_symbols=["H", "C", "O"], atomic_numbers=[1, 6, 8]),
)

# nequip's own option names; the settings of scalarjax's nequip defaults (scalarjax/config.py).
NEQUIP_CONFIG = dict(
    model_builders=[
        "SimpleIrrepsConfig",
        "EnergyModel",
        "PerSpeciesRescale",
        "StressForceOutput",
        "RescaleEnergyEtc",
    ],
    r_max=5.0,
    num_layers=4,
    l_max=2,
    parity=True,
    num_features=32,
    nonlinearity_type="gate",
    resnet=True,
    use_sc=True,
    num_basis=8,
    BesselBasis_trainable=True,
    PolynomialCutoff_p=6,
    invariant_layers=2,
    invariant_neurons=64,
    avg_num_neighbors=10.0,  # fixed number; does not change parameter counts
    # Scale/shift builders: nequip's defaults (per-species shift from data, global scale from
    # force RMS), not trainable by default -> buffers, not parameters. With initialize=False they
    # get dummy values, so no data set is needed.
    per_species_rescale_scales_trainable=False,
    per_species_rescale_shifts_trainable=False,
    global_rescale_scale_trainable=False,
    global_rescale_shift_trainable=False,
    model_dtype="float32",
)

NOTES = [
    "Module correspondence: chemical_embedding <-> embedding, layer{t}_convnet <-> layer_{t}, "
    "conv_to_output_hidden <-> output_hidden, output_hidden_to_scalar <-> output; nequip's "
    "radial_basis holds the trainable Bessel frequencies (num_basis params), which scalarjax keeps fixed.",
    "Biases: neither side has any (e3nn Linear/FullyConnectedNet and scalarjax's linears are bias-free), "
    "so the output block is 32*16 + 16*1 = 528 on both sides and the embedding is num_species*32 on both.",
    "Layer 0: nequip adds a self-connection FullyConnectedTensorProduct(embedding 32x0e x one-hot "
    "num_species x0e -> layer irreps), i.e. 32*num_species*(dim of 0e outputs incl. gates) weights; "
    "scalarjax has no self-connection in layer 0 but a species-indexed linear on the convolution "
    "output (num_species * sum over irreps of C_out^2), which is larger.",
    "Layers >= 1: nequip's self-connection is FullyConnectedTensorProduct(h x one-hot), i.e. a "
    "species-indexed linear per irrep (num_species * C_in * C_out per irrep in both input and output); "
    "scalarjax's self_connection is the same map (SpeciesLinear on h), restricted to irreps present "
    "in both its input and output.",
    "Irreps pruning: nequip keeps every hidden irrep reachable from the input (forward only), so its "
    "layers 1-3 all output 32x(0e+0o+1e+1o+2e+2o) and the last layer carries l>0 features that the "
    "scalar readout discards (nequip's own TODO in EnergyModel). scalarjax also prunes backwards "
    "(irreps that cannot reach the 0e energy): layer_2 outputs 0e+1o+2e, layer_3 only 0e. This "
    "shrinks the tensor-product paths (radial MLP last layer), the linear after the neighbour sum "
    "(linear_<ir>), the gates and the self-connection of the last layers.",
    "Within the convolution: nequip's linear_1 (before the tensor product) <-> scalarjax conv/linear_up, "
    "nequip's fc (radial MLP 8-64-64-n_paths) <-> conv/radial_mlp, nequip's linear_2 (after the "
    "scatter, on the 'uvu' path outputs) <-> conv/linear_<ir> (leading axis = number of paths into that irrep).",
    "Scale/shift: nequip's PerSpeciesRescale and RescaleEnergyEtc add only buffers with their "
    "default (non-trainable) settings; scalarjax's E0/scale/shift are config constants, not params.",
    "Parameter counts do not depend on avg_num_neighbors, r_max, the cutoff p or resnet.",
    "live_params: parameter entries with a non-zero gradient of the total energy of one small "
    "rattled structure (Si: 8-atom diamond cell; aspirin set: 13-atom H/C/O cluster), counted per "
    "module. Every scalarjax parameter is live. nequip's live count per layer equals scalarjax's "
    "count exactly in layers 1-3, i.e. nequip's extra parameters there are dead weight (they feed "
    "only the odd-parity / l>0 outputs the scalar readout discards); the remaining live difference is "
    "layer 0 (self-connection vs species-indexed linear, num_species*8192) and nequip's 8 Bessel frequencies.",
]


def test_structure(name: str):
    """A small rattled structure of the species set, for the live-parameter check (ase Atoms)."""
    import ase
    import ase.build
    import numpy as np

    rng = np.random.default_rng(0)
    if name == "si":
        atoms = ase.build.bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms, periodic
        atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
        return atoms
    # molecule-like cluster of H, C, O, no periodicity; at least 0.9 A apart
    symbols = ["C"] * 5 + ["O"] * 3 + ["H"] * 5
    pos = []
    while len(pos) < len(symbols):
        x = rng.uniform(0.0, 4.0, size=3)
        if all(np.linalg.norm(x - y) > 0.9 for y in pos):
            pos.append(x)
    return ase.Atoms(symbols, positions=np.array(pos))


def _count_nonzero(named_grads) -> tuple[int, OrderedDict]:
    per_module = OrderedDict()
    for key, g in named_grads:
        per_module[key] = per_module.get(key, 0) + int((abs(g) > 0).sum())
    return sum(per_module.values()), per_module


# ---------------------------------------------------------------------------------------------
# nequip side (peer venv)


def nequip_counts() -> dict:
    import warnings

    import torch

    # nequip's modules are TorchScript-compiled at construction; silence its annotation warnings
    warnings.filterwarnings("ignore", message="The TorchScript type system", category=UserWarning)
    warnings.filterwarnings("ignore", message="!! PyTorch version", category=UserWarning)
    # e3nn 0.4.4 torch.load()s its own constants; torch >= 2.6 refuses that unless `slice` is
    # allow-listed (same as experiments/peer/mace_cli.py).
    torch.serialization.add_safe_globals([slice])
    torch.set_num_threads(1)

    import e3nn
    import nequip
    from nequip.model import model_from_config
    from nequip.nn import SequentialGraphNetwork
    from nequip.utils import Config

    out = OrderedDict()
    for name, species in SPECIES_SETS.items():
        config = copy.deepcopy(NEQUIP_CONFIG)
        config["chemical_symbols"] = list(species["chemical_symbols"])
        given = copy.deepcopy(config)
        torch.manual_seed(0)
        cfg = Config.from_dict(config)
        model = model_from_config(cfg, initialize=False, dataset=None)

        seq = [m for m in model.modules() if isinstance(m, SequentialGraphNetwork)]
        assert len(seq) == 1, len(seq)
        seq = seq[0]

        per_module = OrderedDict()
        per_submodule = OrderedDict()
        for child_name, child in seq.named_children():
            n = sum(p.numel() for p in child.parameters() if p.requires_grad)
            per_module[child_name] = n
            for sub_name, p in child.named_parameters():
                if not p.requires_grad:
                    continue
                # e.g. layer0_convnet.conv.fc, layer0_convnet.conv.sc, radial_basis.basis
                key = ".".join([child_name] + sub_name.split(".")[:2])
                per_submodule[key] = per_submodule.get(key, 0) + p.numel()

        total = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert total == sum(per_module.values()), "trainable parameters outside the SequentialGraphNetwork"
        buffers = OrderedDict((k, list(b.shape)) for k, b in model.named_buffers() if "rescale" in k or "scale" in k or "shift" in k)

        # Live parameters: entries with a non-zero gradient of the energy of a small rattled
        # structure (energy only, through the SequentialGraphNetwork; float32).
        from nequip.data import AtomicData, AtomicDataDict
        from nequip.data.transforms import TypeMapper

        atoms = test_structure(name)
        data = AtomicData.from_ase(atoms, r_max=cfg["r_max"])
        data = TypeMapper(chemical_symbols=species["chemical_symbols"])(data)
        data = AtomicData.to_AtomicDataDict(data)
        data = {k: (v.to(torch.float32) if torch.is_floating_point(v) else v) for k, v in data.items()}
        seq.zero_grad()
        energy = seq(data)[AtomicDataDict.TOTAL_ENERGY_KEY].sum()
        energy.backward()
        live_total, live_per_module = _count_nonzero(
            (n.split(".")[0], p.grad.detach()) for n, p in seq.named_parameters() if p.requires_grad and p.grad is not None
        )

        # irreps each layer actually outputs, for the notes
        layer_irreps = OrderedDict()
        for child_name, child in seq.named_children():
            if child_name.endswith("_convnet"):
                layer_irreps[child_name] = str(child.irreps_out["node_features"])

        out[name] = OrderedDict(
            chemical_symbols=species["chemical_symbols"],
            total_trainable_params=total,
            per_module=per_module,
            per_submodule=per_submodule,
            live_params=dict(
                total=live_total, per_module=live_per_module, n_atoms=len(atoms), n_edges=int(data[AtomicDataDict.EDGE_INDEX_KEY].shape[1])
            ),
            layer_irreps_out=layer_irreps,
            scale_shift_buffers=buffers,
            config=given,
            resolved_irreps={
                k: cfg[k]
                for k in (
                    "chemical_embedding_irreps_out",
                    "feature_irreps_hidden",
                    "irreps_edge_sh",
                    "conv_to_output_hidden_irreps_out",
                )
            },
        )
    versions = dict(nequip=nequip.__version__, torch=torch.__version__, e3nn=e3nn.__version__, python=sys.version.split()[0])
    return dict(versions=versions, models=out)


# ---------------------------------------------------------------------------------------------
# scalarjax side (run with scalarjax's venv: `python nequip_params.py --scalarjax`)


def scalarjax_counts() -> dict:
    sys.path.insert(0, str(REPO))
    import jax
    import numpy as np

    import scalarjax
    from scalarjax import Potential, load_model_config

    out = OrderedDict()
    for name, species in SPECIES_SETS.items():
        cfg = load_model_config(backbone="nequip", atomic_numbers=tuple(species["atomic_numbers"]))
        pot = Potential(cfg)
        backbone = pot.params["params"]["backbone"]
        per_module = OrderedDict()
        per_submodule = OrderedDict()
        for path, leaf in jax.tree_util.tree_leaves_with_path(backbone):
            keys = [str(getattr(k, "key", k)) for k in path]
            n = int(np.prod(leaf.shape))
            per_module[keys[0]] = per_module.get(keys[0], 0) + n
            # layer_1/conv/radial_mlp, layer_1/conv/linear_up, layer_1/conv/linear_<ir>, layer_1/self_connection
            sub = "/".join(keys[:3] if len(keys) >= 3 and keys[1] == "conv" else keys[:2])
            per_submodule[sub] = per_submodule.get(sub, 0) + n
        total = int(pot.num_params())
        assert total == sum(per_module.values()), (total, sum(per_module.values()))
        # Live parameters, as on the nequip side: non-zero d(energy)/d(param) on the same structure.
        import jax.numpy as jnp

        from scalarjax.backbones.nequip import layer_irreps
        from scalarjax.data.configuration import Configuration
        from scalarjax.graph.batch import batch_graphs
        from scalarjax.potential import make_energy_fn

        atoms = test_structure(name)
        graph = batch_graphs([pot.graph(Configuration.from_atoms(atoms, source="test"))])
        energy_fn = make_energy_fn(pot.model.apply, cfg.r_max, pot.dtype)
        pos = graph.nodes["positions"].astype(pot.dtype)
        strain = jnp.zeros((graph.n_node.shape[0], 3, 3), pot.dtype)
        grads = jax.grad(lambda p: energy_fn(p, graph, pos, strain).sum())(pot.params)
        live_total, live_per_module = _count_nonzero(
            (str(getattr(path[0], "key", path[0])), np.asarray(g))
            for path, g in jax.tree_util.tree_leaves_with_path(grads["params"]["backbone"])
        )

        out[name] = OrderedDict(
            atomic_numbers=species["atomic_numbers"],
            total_trainable_params=total,
            per_module=per_module,
            per_submodule=per_submodule,
            live_params=dict(total=live_total, per_module=live_per_module, n_atoms=len(atoms)),
            layer_irreps_out={
                f"layer_{t}": "+".join(irr)
                for t, irr in enumerate(layer_irreps(cfg.backbone.num_layers, cfg.backbone.l_max, cfg.backbone.parity))
            },
        )
    versions = dict(jax=jax.__version__, scalarjax=getattr(scalarjax, "__version__", "repo"))
    return dict(versions=versions, models=out)


# ---------------------------------------------------------------------------------------------


def _compare(nq: dict, sj: dict) -> dict:
    """Side-by-side per corresponding module (nequip name <- scalarjax name)."""
    pairs = [("radial_basis", None), ("chemical_embedding", "embedding")]
    nl = NEQUIP_CONFIG["num_layers"]
    pairs += [(f"layer{t}_convnet", f"layer_{t}") for t in range(nl)]
    pairs += [("conv_to_output_hidden", "output_hidden"), ("output_hidden_to_scalar", "output")]
    rows = OrderedDict()
    for a, b in pairs:
        na = nq["per_module"].get(a, 0)
        nb = sj["per_module"].get(b, 0) if b else 0
        la = nq["live_params"]["per_module"].get(a, 0)
        lb = sj["live_params"]["per_module"].get(b, 0) if b else 0
        rows[f"{a} | {b}"] = dict(nequip=na, scalarjax=nb, diff_scalarjax_minus_nequip=nb - na, nequip_live=la, scalarjax_live=lb)
    rows["total"] = dict(
        nequip=nq["total_trainable_params"],
        scalarjax=sj["total_trainable_params"],
        diff_scalarjax_minus_nequip=sj["total_trainable_params"] - nq["total_trainable_params"],
        nequip_live=nq["live_params"]["total"],
        scalarjax_live=sj["live_params"]["total"],
    )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "experiments/results/peer_nequip_params.json"))
    ap.add_argument(
        "--scalarjax-python", default=str(REPO / ".venv/bin/python"), help="interpreter of scalarjax's venv, for the scalarjax half"
    )
    ap.add_argument("--scalarjax", action="store_true", help="(internal) print scalarjax's counts as JSON and exit")
    args = ap.parse_args()

    if args.scalarjax:
        print(json.dumps(scalarjax_counts()))
        return

    nq = nequip_counts()
    proc = subprocess.run(
        [args.scalarjax_python, str(pathlib.Path(__file__).resolve()), "--scalarjax"],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"},
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"scalarjax half failed (rc {proc.returncode})")
    sj = json.loads(proc.stdout.strip().splitlines()[-1])

    result = OrderedDict(
        description="Trainable parameter counts: reference NequIP (nequip 0.6.2, torch) vs scalarjax's "
        "NequIP backbone, same hyper-parameters.",
        versions=nq["versions"],
        scalarjax_versions=sj["versions"],
        nequip=nq["models"],
        scalarjax=sj["models"],
        comparison={k: _compare(nq["models"][k], sj["models"][k]) for k in SPECIES_SETS},
        notes=NOTES,
    )

    for k in SPECIES_SETS:
        print(f"== {k} ({', '.join(SPECIES_SETS[k]['chemical_symbols'])})")
        print(f"{'module (nequip | scalarjax)':44s} {'nequip':>9s} {'scalarjax':>9s} {'diff':>9s} {'nequip_live':>11s} {'sj_live':>9s}")
        for name, row in result["comparison"][k].items():
            print(
                f"{name:44s} {row['nequip']:9,d} {row['scalarjax']:9,d} {row['diff_scalarjax_minus_nequip']:+9,d}"
                f" {row['nequip_live']:11,d} {row['scalarjax_live']:9,d}"
            )
        print()
    print("versions:", nq["versions"], sj["versions"])

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()

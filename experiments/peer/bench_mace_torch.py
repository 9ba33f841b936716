"""Benchmark the reference peer, mace-torch 0.3.x, on CPU.

Runs ONLY inside the separate peer venv (see README.md beside this file);
scalarjax itself never depends on torch.

Builds the model exactly as ``mace_run_train`` does with its defaults
(``--model MACE`` -> ``modules.ScaleShiftMACE`` with shift 0 and the
``rms_forces_scaling`` std as scale; ``--interaction``
RealAgnosticResidualInteractionBlock; ``--interaction_first`` forced to
RealAgnosticInteractionBlock by ``_build_model`` for ``--model MACE``) and
the "medium" hyper-parameters below, then

  a) counts parameters (total, per module, symmetric-contraction weights per
     layer / output L / correlation order nu) for aspirin (H,C,O) and Si;
  b) times steady-state E+F(+S) inference for aspirin x1, aspirin x10,
     Si 64 and Si 512 in float32 and float64;
  c) writes everything to a JSON file.

Usage:
  ../peer/venv/bin/python experiments/peer/bench_mace_torch.py \
      --out experiments/results/peer_mace_torch_cpu.json --tag plain
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import ase
import ase.io
import numpy as np
import torch

# mace-torch 0.3.x pins e3nn==0.4.4, whose import does a plain torch.load of
# its own bundled constants.pt; torch >= 2.6 defaults to weights_only=True and
# refuses the pickled `slice` objects in it.  Allow-list `slice` only.
torch.serialization.add_safe_globals([slice])
# e3nn's TorchScript-compatibility annotations warn once per module build.
warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support")

from e3nn import o3  # noqa: E402
from mace import data as mace_data  # noqa: E402
from mace import modules  # noqa: E402
from mace.tools import torch_geometric, utils  # noqa: E402

# --- "medium" settings -----------------------------------------------------
R_MAX = 5.0
NUM_RADIAL_BASIS = 8  # --num_radial_basis
NUM_CUTOFF_BASIS = 5  # --num_cutoff_basis
MAX_ELL = 3
HIDDEN_IRREPS = "64x0e+64x1o"
CORRELATION = 3
NUM_INTERACTIONS = 2
MLP_IRREPS = "16x0e"
RADIAL_MLP = [64, 64, 64]
GATE = "silu"
AVG_NUM_NEIGHBORS = 20.0
SCALE = 1.0  # stands in for the rms_forces_scaling std (value irrelevant here)
# mace 0.3.16 arg_parser defaults: --interaction RealAgnosticResidualInteractionBlock,
# --interaction_first RealAgnosticResidualInteractionBlock, but
# model_script_utils._build_model() replaces interaction_first by
# RealAgnosticInteractionBlock when --model MACE (the default model).
INTERACTION = "RealAgnosticResidualInteractionBlock"
INTERACTION_FIRST_DEFAULT_MODEL = "RealAgnosticInteractionBlock"
INTERACTION_FIRST_EXPLICIT_SCALESHIFT = "RealAgnosticResidualInteractionBlock"

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SCALARJAX_DATA", ROOT.parent / "shared/data"))
ASPIRIN = DATA / "rmd17/aspirin_test.xyz"
SI_JSON = DATA / "mlearn/Si/test.json"

Z_ASPIRIN = [1, 6, 8]
Z_SI = [14]


def build_model(zs, interaction_first=INTERACTION_FIRST_DEFAULT_MODEL, seed=0, avg_num_neighbors=None, atomic_energies=None, scale=None):
    """Mirror mace.tools.model_script_utils.configure_model/_build_model.

    The data statistics default to the benchmark's fixed values (avg 20, zero E0s, scale 1);
    the training-throughput script passes the ones computed from its data."""
    torch.manual_seed(seed)
    z_table = utils.AtomicNumberTable(list(zs))
    model = modules.ScaleShiftMACE(
        r_max=R_MAX,
        num_bessel=NUM_RADIAL_BASIS,
        num_polynomial_cutoff=NUM_CUTOFF_BASIS,
        max_ell=MAX_ELL,
        interaction_cls=modules.interaction_classes[INTERACTION],
        num_interactions=NUM_INTERACTIONS,
        num_elements=len(z_table),
        hidden_irreps=o3.Irreps(HIDDEN_IRREPS),
        edge_irreps=None,
        atomic_energies=np.zeros((1, len(z_table))) if atomic_energies is None else atomic_energies,  # heads x elements
        apply_cutoff=True,
        avg_num_neighbors=AVG_NUM_NEIGHBORS if avg_num_neighbors is None else avg_num_neighbors,
        atomic_numbers=z_table.zs,
        use_reduced_cg=False,  # arg_parser default
        use_so3=False,
        use_edge_irreps_first=False,
        cueq_config=None,
        pair_repulsion=False,
        distance_transform="None",
        correlation=CORRELATION,
        gate=modules.gate_dict[GATE],
        interaction_cls_first=modules.interaction_classes[interaction_first],
        MLP_irreps=o3.Irreps(MLP_IRREPS),
        atomic_inter_scale=SCALE if scale is None else scale,
        atomic_inter_shift=[0.0],  # --model MACE: [0.0] * len(heads)
        radial_MLP=RADIAL_MLP,
        radial_type="bessel",
        heads=["Default"],
        embedding_specs=None,
        use_embedding_readout=False,
        use_last_readout_only=False,
        use_agnostic_product=False,
    )
    return model, z_table


# --- parameter accounting ---------------------------------------------------
def _group(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("interactions", "products"):
        return ".".join(parts[:3])
    if parts[0] == "readouts":
        return ".".join(parts[:2])
    return parts[0]


def param_breakdown(model):
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        g = _group(name)
        groups[g] = groups.get(g, 0) + p.numel()
    total = sum(p.numel() for p in model.parameters())
    assert total == sum(groups.values())
    # symmetric contraction weights per (layer, output L, nu)
    sc = []
    for layer, prod in enumerate(model.products):
        symc = prod.symmetric_contractions
        for irrep_out, contr in zip(symc.irreps_out, symc.contractions):
            corr = contr.correlation
            entries = [(corr, contr.weights_max)]
            # forward(): self.weights[i] pairs with U_matrix_{corr - i - 1}
            for i, w in enumerate(contr.weights):
                entries.append((corr - i - 1, w))
            for nu, w in sorted(entries):
                sc.append(
                    {
                        "layer": layer,
                        "L_out": str(irrep_out.ir),
                        "nu": nu,
                        "shape": list(w.shape),  # [elements, num_params(U), channels]
                        "numel": int(w.numel()),
                        "empty_param": type(w).__name__ == "EmptyParam",
                    }
                )
    return {"total": int(total), "per_module": groups, "symmetric_contraction": sc}


# --- structures ---------------------------------------------------------------
def aspirin_frames(n):
    return ase.io.read(str(ASPIRIN), index=f":{n}")


def si64():
    entries = json.loads(SI_JSON.read_text())
    e = next(x for x in entries if x["group"] == "AIMD-NVT")
    s = e["structure"]
    atoms = ase.Atoms(
        symbols=[site["species"][0]["element"] for site in s["sites"]],
        positions=[site["xyz"] for site in s["sites"]],
        cell=s["lattice"]["matrix"],
        pbc=True,
    )
    assert len(atoms) == 64, len(atoms)
    return atoms


def make_batch(atoms_list, z_table, model):
    """mace's own pipeline (as in mace/cli/eval_configs.py); built once."""
    configs = [mace_data.config_from_atoms(a, head_name="Default") for a in atoms_list]
    loader = torch_geometric.dataloader.DataLoader(
        dataset=[mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=float(model.r_max), heads=model.heads) for c in configs],
        batch_size=len(configs),
        shuffle=False,
        drop_last=False,
    )
    batch = next(iter(loader))
    return batch.to_dict(), int(batch["edge_index"].shape[1])


def _busy_s():
    """Non-idle CPU seconds of the whole machine so far (from /proc/stat)."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        v = [int(x) for x in f]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _self_cpu_s():
    t = os.times()
    return t.user + t.system


def wait_idle(max_wait_s=900.0, window_s=5.0, windows=3, frac=0.10):
    """Block until the machine is < frac busy for `windows` consecutive windows."""
    t_start = time.perf_counter()
    ok = 0
    ncpu = os.cpu_count() or 1
    while ok < windows and time.perf_counter() - t_start < max_wait_s:
        b0 = _busy_s()
        time.sleep(window_s)
        ok = ok + 1 if (_busy_s() - b0) < frac * window_s * ncpu else 0
    return time.perf_counter() - t_start


# --- timing -------------------------------------------------------------------
def time_case(model, batch_dict, compute_stress, n_calls, budget_s, max_attempts=6):
    """Time a case; redo it (after waiting for an idle machine) whenever other
    processes used more than 5% of one core during the timed calls: with 2
    torch threads on 2 cores, any foreign load inflates times many-fold."""
    attempts = []
    for _ in range(max_attempts):
        waited = wait_idle()
        r = _time_case_once(model, batch_dict, compute_stress, n_calls, budget_s)
        attempts.append(
            {
                "waited_idle_s": waited,
                "other_procs_cpu_s": r["other_procs_cpu_s"],
                "timed_wall_s": r["timed_wall_s"],
                "median_ms": r["median_ms"],
            }
        )
        if r["other_procs_cpu_s"] <= 0.05 * r["timed_wall_s"]:
            break
        print(f"    contention ({r['other_procs_cpu_s']:.1f}s foreign cpu), retrying", flush=True)
    r["attempts"] = attempts
    r["contended"] = r["other_procs_cpu_s"] > 0.05 * r["timed_wall_s"]
    return r


def _time_case_once(model, batch_dict, compute_stress, n_calls, budget_s, min_calls=5):
    def call():
        # prepare_graph() writes displaced positions/shifts back into the dict
        # when compute_stress=True, so hand the model a fresh (shallow) dict each
        # call, like MACECalculator does with its batch clone.
        out = model(
            dict(batch_dict),
            training=False,
            compute_force=True,
            compute_stress=compute_stress,
        )
        return out

    for _ in range(3):  # warm-up
        t0 = time.perf_counter()
        out = call()
        t_warm = time.perf_counter() - t0
    n = max(min_calls, min(n_calls, int(budget_s / max(t_warm, 1e-9))))
    times = []
    busy0, self0, wall0 = _busy_s(), _self_cpu_s(), time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        out = call()
        times.append((time.perf_counter() - t0) * 1e3)
    wall = time.perf_counter() - wall0
    other_cpu = (_busy_s() - busy0) - (_self_cpu_s() - self0)
    assert out["forces"] is not None
    if compute_stress:
        assert out["stress"] is not None
    return {
        "n_calls": n,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "mean_ms": statistics.fmean(times),
        "times_ms": times,
        "energy_first": float(out["energy"][0].detach()),
        # CPU seconds used by OTHER processes while the timed calls ran
        # (machine busy time minus this process); ~0 means no contention.
        "other_procs_cpu_s": other_cpu,
        "timed_wall_s": wall,
    }


# --- environment ----------------------------------------------------------------
def machine_info():
    info = {"nproc": os.cpu_count(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = line.split(":", 1)[1].split()
                info["avx512f"] = "avx512f" in flags
                info["avx2"] = "avx2" in flags
    except OSError:
        pass
    try:
        info["nproc_cmd"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_kib"] = int(line.split()[1])
    except OSError:
        pass
    return info


def versions():
    v = {"python": sys.version.split()[0]}
    for pkg in ["torch", "mace-torch", "e3nn", "ase", "matscipy", "numpy", "opt_einsum", "opt-einsum-fx", "scipy"]:
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            v[pkg] = None
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "experiments/results/peer_mace_torch_cpu.json"))
    ap.add_argument("--tag", default="plain")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-calls", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=90.0, help="per-case timing budget")
    ap.add_argument("--cases", default="aspirin_x1,aspirin_x10,si_64,si_512")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--skip-params", action="store_true")
    args = ap.parse_args()
    want_cases = set(args.cases.split(","))
    want_dtypes = set(args.dtypes.split(","))

    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    result = {
        "tag": args.tag,
        "command": [sys.executable] + sys.argv,
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES"),
        "loadavg_before": list(load_before),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "versions": versions(),
        "machine": machine_info(),
        "model": {
            "class": "mace.modules.ScaleShiftMACE (mace_run_train default --model MACE)",
            "interaction_cls": INTERACTION,
            "interaction_cls_first": INTERACTION_FIRST_DEFAULT_MODEL,
            "r_max": R_MAX,
            "num_radial_basis": NUM_RADIAL_BASIS,
            "num_cutoff_basis": NUM_CUTOFF_BASIS,
            "max_ell": MAX_ELL,
            "hidden_irreps": HIDDEN_IRREPS,
            "correlation": CORRELATION,
            "num_interactions": NUM_INTERACTIONS,
            "MLP_irreps": MLP_IRREPS,
            "radial_MLP": RADIAL_MLP,
            "gate": GATE,
            "radial_type": "bessel",
            "avg_num_neighbors": AVG_NUM_NEIGHBORS,
            "atomic_inter_scale": SCALE,
            "atomic_inter_shift": 0.0,
            "use_reduced_cg": False,
            "atomic_energies": "zeros",
            "params_requires_grad": False,
        },
        "params": {},
        "params_alt_first_residual": {},
        "timings": {},
    }

    # a) parameter counts
    torch.set_default_dtype(torch.float64)
    for species, zs in () if args.skip_params else (("aspirin_HCO", Z_ASPIRIN), ("Si", Z_SI)):
        m, _ = build_model(zs)
        result["params"][species] = param_breakdown(m)
        pb = result["params"][species]
        print(f"[params] {species}: total {pb['total']}")
        for k, v in pb["per_module"].items():
            print(f"    {k:45s} {v}")
        for e in pb["symmetric_contraction"]:
            print(f"    sc layer {e['layer']} L={e['L_out']} nu={e['nu']}: {e['shape']} = {e['numel']}")
        # --model ScaleShiftMACE given explicitly keeps interaction_first=Residual
        m2, _ = build_model(zs, interaction_first=INTERACTION_FIRST_EXPLICIT_SCALESHIFT)
        alt = param_breakdown(m2)
        result["params_alt_first_residual"][species] = {
            "note": "--model ScaleShiftMACE explicitly: interaction_first stays RealAgnosticResidualInteractionBlock (not timed)",
            "total": alt["total"],
            "per_module": alt["per_module"],
        }
        print(f"[params] {species} (alt, first=Residual): total {alt['total']}")
        del m, m2

    # b) timings
    frames10 = aspirin_frames(10)
    s64 = si64()
    s512 = s64.repeat((2, 2, 2))
    cases = [
        ("aspirin_x1", Z_ASPIRIN, frames10[:1], False),
        ("aspirin_x10", Z_ASPIRIN, frames10, False),
        ("si_64", Z_SI, [s64], True),
        ("si_512", Z_SI, [s512], True),
    ]
    cases = [c for c in cases if c[0] in want_cases]
    for dtype_name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        if dtype_name not in want_dtypes:
            continue
        torch.set_default_dtype(dtype)
        models = {}
        for tuple_zs in (tuple(Z_ASPIRIN), tuple(Z_SI)):
            m, zt = build_model(tuple_zs)
            m = m.to(dtype)
            m.eval()
            for p in m.parameters():  # as MACECalculator / eval_configs do
                p.requires_grad = False
            models[tuple_zs] = (m, zt)
        for name, zs, atoms_list, stress in cases:
            m, zt = models[tuple(zs)]
            bd, n_edges = make_batch(atoms_list, zt, m)
            assert bd["positions"].dtype == dtype
            r = time_case(m, bd, stress, args.n_calls, args.budget_s)
            r.update(
                {
                    "n_atoms": int(bd["positions"].shape[0]),
                    "n_graphs": len(atoms_list),
                    "n_edges": n_edges,
                    "outputs": "E+F+S" if stress else "E+F",
                }
            )
            result["timings"][f"{name}/{dtype_name}"] = r
            print(
                f"[time] {name:12s} {dtype_name}: median {r['median_ms']:.2f} ms, "
                f"min {r['min_ms']:.2f} ms (n={r['n_calls']}, atoms={r['n_atoms']}, edges={n_edges}) "
                f"other-procs cpu {r['other_procs_cpu_s']:.1f}s / wall {r['timed_wall_s']:.1f}s",
                flush=True,
            )
    result["loadavg_after"] = list(os.getloadavg())

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

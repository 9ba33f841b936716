"""Summarise scalarjax vs mace-torch timings (ratios < 1: scalarjax faster) from the results JSONs."""

import json
import os

R = os.path.join(os.path.dirname(__file__), "results")
ours = json.load(open(os.path.join(R, "bench_inference_cpu.json")))
peers = {
    tag: json.load(open(os.path.join(R, f)))
    for tag, f in (("plain", "peer_mace_torch_cpu.json"), ("tuned", "peer_mace_torch_cpu_tuned.json"))
}
rows, table = (
    [],
    [
        "| case | dtype | scalarjax ms | mace-torch ms (glibc default) | mace-torch ms (GLIBC_TUNABLES) | ratio vs best peer"
        " | scalarjax trace + compile s | scalarjax first execution s |",
        "|---|---|---|---|---|---|---|---|",
    ],
)
for dtype in ("float32", "float64"):
    for case, v in ours[dtype].get("mace", ours[dtype])["cases"].items():
        p = {tag: peers[tag]["timings"].get(f"{case}/{dtype}", {}).get("median_ms") for tag in peers}
        best = min(x for x in p.values() if x)
        ratio = v["median_ms"] / best
        rows.append(
            {
                "case": case,
                "dtype": dtype,
                "scalarjax_ms": v["median_ms"],
                "peer_ms": p,
                "ratio_vs_best_peer": round(ratio, 3),
                "scalarjax_compile_s": v["compile_s"],  # first call: trace + compile + first execution
                "scalarjax_trace_compile_s": v.get("trace_compile_s"),
                "scalarjax_first_exec_s": v.get("first_exec_s"),
            }
        )
        tc, fe = v.get("trace_compile_s"), v.get("first_exec_s")
        fmt = lambda x: "-" if x is None else f"{x:.2f}"
        table.append(
            f"| {case} | {dtype} | {v['median_ms']:.1f} | {p['plain']:.1f} | {p['tuned']:.1f} | {ratio:.2f} | {fmt(tc)} | {fmt(fe)} |"
        )
params = {
    "scalarjax": {
        k: ours["float32"].get("mace", ours["float32"])["cases"][c]["params"] for k, c in (("aspirin", "aspirin_x1"), ("si", "si_64"))
    },
    "mace_torch": {k: peers["plain"]["params"][n]["total"] for k, n in (("aspirin", "aspirin_HCO"), ("si", "Si"))},
}
out = {"machine": ours["machine"], "allocator": ours.get("allocator"), "rows": rows, "params": params}
training = None
try:  # training throughput, mlearn Si, batch 4, float32 (compare_mace_torch.sh without --skip-training)
    t_ours = json.load(open(os.path.join(R, "bench_training_cpu.json")))
    t_peer = {
        tag: json.load(open(os.path.join(R, f)))["summary"]
        for tag, f in (("plain", "peer_mace_torch_train_throughput.json"), ("tuned", "peer_mace_torch_train_throughput_tuned.json"))
    }
    best = max(v["configs_per_s_total"] for v in t_peer.values())
    training = {
        "scalarjax_configs_per_s": t_ours["configs_per_s"],
        "peer_configs_per_s": {k: round(v["configs_per_s_total"], 3) for k, v in t_peer.items()},
        "speedup_vs_best_peer": round(t_ours["configs_per_s"] / best, 3),
        "scalarjax_padded_share": {"atoms": t_ours.get("padded_share_atoms"), "edges": t_ours.get("padded_share_edges")},
    }
    out["training"] = training
except (OSError, KeyError):
    pass
json.dump(out, open(os.path.join(R, "comparison_mace_torch_cpu.json"), "w"), indent=1)
text = "\n".join(table) + f"\n\nparameters: {json.dumps(params)}\n"
if training:
    p = training["peer_configs_per_s"]
    text += (
        f"\ntraining, mlearn Si, batch 4, float32: scalarjax {training['scalarjax_configs_per_s']:.2f} configurations/s, "
        f"mace-torch {p['plain']:.2f} (glibc default) / {p['tuned']:.2f} (tunables): {training['speedup_vs_best_peer']:.2f}x the faster\n"
    )
open(os.path.join(R, "comparison_mace_torch_cpu.md"), "w").write(text)
print(text)

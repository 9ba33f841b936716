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
        "| case | dtype | scalarjax ms | mace-torch ms (glibc default) | mace-torch ms (GLIBC_TUNABLES) | ratio vs best peer |",
        "|---|---|---|---|---|---|",
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
                "scalarjax_compile_s": v["compile_s"],
            }
        )
        table.append(f"| {case} | {dtype} | {v['median_ms']:.1f} | {p['plain']:.1f} | {p['tuned']:.1f} | {ratio:.2f} |")
params = {
    "scalarjax": {
        k: ours["float32"].get("mace", ours["float32"])["cases"][c]["params"] for k, c in (("aspirin", "aspirin_x1"), ("si", "si_64"))
    },
    "mace_torch": {k: peers["plain"]["params"][n]["total"] for k, n in (("aspirin", "aspirin_HCO"), ("si", "Si"))},
}
out = {"machine": ours["machine"], "rows": rows, "params": params}
json.dump(out, open(os.path.join(R, "comparison_mace_torch_cpu.json"), "w"), indent=1)
text = "\n".join(table) + f"\n\nparameters: {json.dumps(params)}\n"
open(os.path.join(R, "comparison_mace_torch_cpu.md"), "w").write(text)
print(text)

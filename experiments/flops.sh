#!/usr/bin/env bash
# Inference FLOPs (XLA cost analysis) and parameters of base / +PAN / +PGS / +PAN+PGS for the default
# medium MACE and the default NequIP: the 64-atom Si cell (scalarjax flops' default diamond Si64, E+F+S)
# and one rMD17 aspirin (E+F). Results: experiments/results/flops_<backbone>_<structure>.json
#   bash experiments/flops.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SCALARJAX_DATA:-../shared/data}
R=experiments/results
for backbone in mace nequip; do
  .venv/bin/scalarjax flops experiments/configs/mlearn_si.yaml --set backbone=$backbone --json > $R/flops_${backbone}_si64.json
  .venv/bin/scalarjax flops experiments/configs/rmd17_aspirin.yaml --set backbone=$backbone \
    --structure $DATA/rmd17/aspirin_test.xyz --json > $R/flops_${backbone}_aspirin.json
done
.venv/bin/python - <<'PY'
import json
for b in ("mace", "nequip"):
    for s in ("si64", "aspirin"):
        r = json.load(open(f"experiments/results/flops_{b}_{s}.json"))
        print(b, s, {k: f"{100 * v['flops_overhead_vs_base']:+.2f}%" for k, v in r["variants"].items()})
PY

#!/usr/bin/env bash
# Same-session CPU comparison of scalarjax with mace-torch (medium MACE), then a summary table.
# Needs the peer venv of experiments/peer/README.md; run on an otherwise idle machine.
#   bash experiments/compare_mace_torch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER_PYTHON:-../peer/venv/bin/python}
R=experiments/results
.venv/bin/python experiments/bench_inference.py --out $R/bench_inference_cpu.json
$PEER experiments/peer/bench_mace_torch.py --out $R/peer_mace_torch_cpu.json --tag plain
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295 \
  $PEER experiments/peer/bench_mace_torch.py --out $R/peer_mace_torch_cpu_tuned.json --tag tuned
.venv/bin/python experiments/compare_peer.py

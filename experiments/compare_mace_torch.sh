#!/usr/bin/env bash
# Same-session CPU comparison of scalarjax with mace-torch (medium MACE): steady-state inference on
# the eight cases and training throughput on mlearn Si (batch 4, float32), then a summary table
# (experiments/results/comparison_mace_torch_cpu.{json,md}, which the README's table copies).
# scalarjax runs as its command runs (allocator preloaded by the launcher); mace-torch runs with
# glibc's default allocator and with the GLIBC_TUNABLES that help it most ("tuned").
# Needs the peer venv of experiments/peer/README.md; run on an otherwise idle machine (~25 min).
#   bash experiments/compare_mace_torch.sh [--skip-training]
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER_PYTHON:-../peer/venv/bin/python}
R=experiments/results
TUNED=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295
.venv/bin/python experiments/bench_inference.py --backbones mace --out $R/bench_inference_cpu.json
$PEER experiments/peer/bench_mace_torch.py --out $R/peer_mace_torch_cpu.json --tag plain
GLIBC_TUNABLES=$TUNED $PEER experiments/peer/bench_mace_torch.py --out $R/peer_mace_torch_cpu_tuned.json --tag tuned
if [ "${1:-}" != "--skip-training" ]; then
  .venv/bin/python -m scalarjax.launch experiments/bench_training.py --out $R/bench_training_cpu.json
  $PEER experiments/peer/train_throughput_mace_torch.py --out $R/peer_mace_torch_train_throughput.json
  GLIBC_TUNABLES=$TUNED $PEER experiments/peer/train_throughput_mace_torch.py --out $R/peer_mace_torch_train_throughput_tuned.json
fi
.venv/bin/python experiments/compare_peer.py

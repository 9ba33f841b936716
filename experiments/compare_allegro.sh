#!/usr/bin/env bash
# Allegro next to MACE and NequIP: the recipes, splits and budgets of compare_backbones.sh (mlearn Si:
# 40 epochs; rMD17 aspirin: 60 epochs, test every 5, 1 h limit), default Allegro (the reference's builder
# defaults). The MACE and NequIP rows come from experiments/results/backbones_mace_nequip.json.
#   bash experiments/compare_allegro.sh     (finished runs are reused)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SCALARJAX_DATA:?set SCALARJAX_DATA to the shared data directory}"
SJ=.venv/bin/scalarjax

[ -f runs/allegro_si/final_metrics.json ] || $SJ train experiments/configs/mlearn_si.yaml \
  --set model.backbone=allegro --set training.max_epochs=40 --set output.run_dir=runs/allegro_si
[ -f runs/allegro_aspirin/final_metrics.json ] || $SJ train experiments/configs/rmd17_aspirin.yaml \
  --set model.backbone=allegro --set training.max_epochs=60 --set training.test_every=5 --set training.time_limit_s=3600 \
  --set output.run_dir=runs/allegro_aspirin

.venv/bin/python experiments/compare_backbones.py --out experiments/results/backbones_mace_nequip_allegro.json \
  --include experiments/results/backbones_mace_nequip.json \
  --run "mlearn Si|Allegro|runs/allegro_si" --run "rMD17 aspirin|Allegro|runs/allegro_aspirin"

#!/usr/bin/env bash
# NequIP next to MACE: the same recipes, splits and budgets (mlearn Si: 40 epochs as in the mace-torch
# comparison; rMD17 aspirin: the 60-epoch, ~1 h curve run), test MAEs side by side in
# experiments/results/backbones_mace_nequip.{json,md}. The MACE runs come from
# compare_training_mace_torch.sh and from the aspirin curve command in rmd17_aspirin.yaml.
#   bash experiments/compare_backbones.sh     (~1 h on 2 cores: NequIP Si 27 min, aspirin 34 min; finished runs are reused)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SCALARJAX_DATA:?set SCALARJAX_DATA to the shared data directory}"
SJ=.venv/bin/scalarjax
MACE_SI=runs/compare_si/scalarjax
MACE_ASPIRIN=runs/rmd17_aspirin_curve
for r in $MACE_SI $MACE_ASPIRIN; do [ -f $r/final_metrics.json ] || { echo "missing MACE run $r"; exit 1; }; done

[ -f runs/nequip_si/final_metrics.json ] || $SJ train experiments/configs/mlearn_si.yaml \
  --set model.backbone=nequip --set training.max_epochs=40 --set output.run_dir=runs/nequip_si
[ -f runs/nequip_aspirin/final_metrics.json ] || $SJ train experiments/configs/rmd17_aspirin.yaml \
  --set model.backbone=nequip --set training.max_epochs=60 --set training.test_every=5 --set training.time_limit_s=3600 \
  --set output.run_dir=runs/nequip_aspirin

.venv/bin/python experiments/compare_backbones.py --out experiments/results/backbones_mace_nequip.json \
  --run "mlearn Si|MACE|$MACE_SI" --run "mlearn Si|NequIP|runs/nequip_si" \
  --run "rMD17 aspirin|MACE|$MACE_ASPIRIN" --run "rMD17 aspirin|NequIP|runs/nequip_aspirin"

#!/usr/bin/env bash
# Issue 17, step 4: fine-tune an imported mace-torch model on mlearn Si with and without PAN+PGS.
#   1. mace-torch trains its model with its own CLI (experiments/compare_training_mace_torch.sh, mace side
#      only, MACE_EPOCHS epochs, the split of experiments/configs/mlearn_si.yaml);
#   2. the model is dumped in the peer venv and imported (scalarjax import-mace, float32);
#   3. four fine-tunings of FT_EPOCHS epochs from the imported run (experiments/configs/finetune_si.yaml):
#      {no transforms, +PAN+PGS with identity_init} × {trainable all, trainable new};
#   4. the imported model and the four fine-tuned ones are scored on mlearn Si's test set with the same code
#      -> experiments/results/finetune_mace_torch_si.json (+ .md).
# Needs the peer venv of experiments/peer/README.md (PEER_PYTHON). Every step is skipped when its output
# exists, so an interrupted run resumes.  ~30 min (mace-torch, 15 epochs) + ~4 x 5 min on 2 cores.
#   bash experiments/finetune_mace_torch_si.sh [MACE_EPOCHS] [FT_EPOCHS]   (defaults 15, 4)
set -euo pipefail
cd "$(dirname "$0")/.."
MACE_EPOCHS=${1:-15}
FT_EPOCHS=${2:-4}
PEER=${PEER_PYTHON:-../peer/venv/bin/python}
W=runs/finetune_si
export SCALARJAX_DATA=${SCALARJAX_DATA:-../shared/data}

WORK=$W SIDES=mace bash experiments/compare_training_mace_torch.sh "$MACE_EPOCHS"
MODEL=$W/mace/mace_si_stagetwo.model
[ -f $MODEL ] || MODEL=$W/mace/mace_si.model
[ -f $W/mace_si.npz ] || $PEER scalarjax/interop/mace_torch_dump.py $MODEL -o $W/mace_si.npz
[ -d $W/imported ] || .venv/bin/scalarjax import-mace $W/mace_si.npz -o $W/imported --dtype float32

PANPGS='model.scalar_transforms=[{kind: pan, identity_init: true}, {kind: pgs, identity_init: true}]'
for name in base_all panpgs_all panpgs_new base_new; do
  [ -f $W/$name/final_metrics.json ] && continue
  extra=()
  [[ $name == panpgs_* ]] && extra=(--set "$PANPGS")
  .venv/bin/scalarjax train experiments/configs/finetune_si.yaml --set training.init_from=$W/imported \
    --set training.trainable=${name#*_} --set training.max_epochs=$FT_EPOCHS --set output.run_dir=$W/$name \
    "${extra[@]}" 2>&1 | tee $W/$name.log
done

.venv/bin/python experiments/finetune_report.py $W --mace-epochs "$MACE_EPOCHS" --ft-epochs "$FT_EPOCHS" \
  --command "bash $0 $MACE_EPOCHS $FT_EPOCHS" --out experiments/results/finetune_mace_torch_si

#!/usr/bin/env bash
# mlearn Si: scalarjax's `scalarjax train` against mace-torch's own `mace_run_train` on the same split,
# the same model settings (default medium MACE, float32), the same loss, optimiser, schedule, EMA,
# stage two and number of epochs; both test sets scored by the same metric code. Known remaining
# differences: the symmetric contraction's basis (e3nn-jax's reduced one: same polynomials, fewer
# redundant weights) and the first interaction block (scalarjax's default has no skip from the
# embedding; mace-torch 0.3's has one: --set model.residual_first=true matches it).
# Needs the peer venv of experiments/peer/README.md. Run on an otherwise idle machine (~75 min).
#   bash experiments/compare_training_mace_torch.sh [EPOCHS]
# SIDES=mace trains only mace-torch's model (experiments/finetune_mace_torch_si.sh imports it);
# WORK=DIR puts the runs somewhere other than runs/compare_si.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-40}
PEER=${PEER_PYTHON:-../peer/venv/bin/python}
W=${WORK:-runs/compare_si}
SIDES=${SIDES:-scalarjax mace}
R=experiments/results
mkdir -p $W
START=$(python3 -c "print(int(0.8 * $EPOCHS))")

[ -f $W/split/test.xyz ] || .venv/bin/python experiments/peer/training_split.py write experiments/configs/mlearn_si.yaml $W/split

# Each side is skipped when its finished run is already there (rerun after an interruption).
[[ " $SIDES " != *" scalarjax "* ]] || [ -f $W/scalarjax/final_metrics.json ] || \
/usr/bin/time -v -o $W/scalarjax_time.txt .venv/bin/scalarjax train experiments/configs/mlearn_si.yaml \
  --set training.max_epochs=$EPOCHS --set output.run_dir=$W/scalarjax 2>&1 | tee $W/scalarjax.log

[[ " $SIDES " != *" mace "* ]] || [ -f $W/mace/mace_si.model ] || \
/usr/bin/time -v -o $W/mace_time.txt $PEER experiments/peer/mace_cli.py run_train \
  --name mace_si --work_dir $W/mace --seed 0 --device cpu --default_dtype float32 \
  --train_file $W/split/train.xyz --valid_file $W/split/valid.xyz --test_file $W/split/test.xyz \
  --energy_key REF_energy --forces_key REF_forces --stress_key REF_stress \
  --model MACE --hidden_irreps '64x0e+64x1o' --r_max 5.0 --num_radial_basis 8 --num_cutoff_basis 5 \
  --max_ell 3 --correlation 3 --num_interactions 2 --MLP_irreps 16x0e --radial_MLP '[64, 64, 64]' \
  --E0s average --scaling rms_forces_scaling \
  --loss stress --energy_weight 1 --forces_weight 100 --stress_weight 100 \
  --batch_size 4 --valid_batch_size 8 --max_num_epochs $EPOCHS --lr 0.01 --amsgrad --weight_decay 5e-7 \
  --scheduler ReduceLROnPlateau --scheduler_patience 5 --lr_factor 0.8 --clip_grad 10 \
  --ema --ema_decay 0.99 --swa --start_swa $START --swa_lr 0.001 \
  --swa_energy_weight 1000 --swa_forces_weight 100 --swa_stress_weight 100 \
  --error_table PerAtomMAEstressvirials 2>&1 | tee $W/mace.log

[[ " $SIDES " == *" scalarjax "* && " $SIDES " == *" mace "* ]] || exit 0
MODEL=$W/mace/mace_si_stagetwo.model
[ -f $MODEL ] || MODEL=$W/mace/mace_si.model
$PEER experiments/peer/mace_cli.py eval_configs --configs $W/split/test.xyz --model $MODEL \
  --output $W/mace_test_pred.xyz --device cpu --default_dtype float32 --batch_size 8 --compute_stress

.venv/bin/python experiments/peer/training_split.py score $W/split $W/mace_test_pred.xyz --command "bash $0 $EPOCHS" \
  --run-dir $W/scalarjax --out $R/training_mlearn_si_vs_mace_torch.json \
  --scalarjax-time $W/scalarjax_time.txt --mace-time $W/mace_time.txt
grep "Elapsed (wall" $W/scalarjax_time.txt $W/mace_time.txt

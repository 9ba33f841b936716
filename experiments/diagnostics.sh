#!/usr/bin/env bash
# The four physical diagnostics (repulsion, phonons, NVE drift, liquid RDF) on the embedded Ag demo
# model and on the MACE trained on mlearn Si by the mace-torch comparison, one command each, and the
# MD throughput of the Si model on 64- and 512-atom cells with its recompilation count.
#   bash experiments/diagnostics.sh     (DEMO=dir of a finished `make demo`, default runs/demo; SI_RUN=another mlearn Si run)
# Needs SCALARJAX_DATA (mlearn Si: the data's shortest distance and AIMD-NVT frames as the reference g(r)).
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
SI=${SI_RUN:-runs/compare_si/scalarjax}
DEMO=${DEMO:-runs/demo}
: "${SCALARJAX_DATA:?set SCALARJAX_DATA to the shared data directory}"

[ -f $DEMO/run/final_metrics.json ] || .venv/bin/python -m scalarjax.demo --out $DEMO
[ -f $SI/final_metrics.json ] || { echo "no trained run in $SI: bash experiments/compare_training_mace_torch.sh first"; exit 1; }

timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name: $((SECONDS - t0)) s" | tee -a $R/diagnostics_wall.txt; }
: > $R/diagnostics_wall.txt
timed "diagnose ag demo" .venv/bin/scalarjax diagnose $DEMO/run --system ag --data $DEMO/data/train.xyz \
  --labels "Ag demo MACE" --out $R/diagnostics_ag_demo
timed "diagnose mlearn si" .venv/bin/scalarjax diagnose $SI --system si --data $SCALARJAX_DATA/mlearn/Si/training.json \
  --labels "mlearn Si MACE" --out $R/diagnostics_mlearn_si
timed "md throughput" .venv/bin/python experiments/bench_md.py $SI --out $R/bench_md_cpu.json

#!/usr/bin/env bash
# Device check on one GPU, in at most ~8 minutes: install, physics tests on the GPU (float64 and
# float32), steady-state E+F(+S) timings (aspirin ×1/×10, Si 64/512/4096/32768), training
# throughput (mlearn Si, batch 4 and 32). Writes experiments/results/device_*.json (and copies
# them to $OUT when that is set, for the device tool to bring back). CI never runs this.
#
# Prepare once on the development machine, in the repository root:
#   bash ../shared/tools/device-wheels.sh                 # .whl/: e3nn-jax, jraph, ase, matscipy
#   mkdir -p .devdata/mlearn .devdata/rmd17 && grep -qx '/.devdata/' .git/info/exclude || echo '/.devdata/' >> .git/info/exclude
#   cp -r ../shared/data/mlearn/Si .devdata/mlearn/ && cp ../shared/data/rmd17/aspirin_t*.xyz .devdata/rmd17/
# then run `bash experiments/device_check.sh` there with carry [".whl", ".devdata"] (≈ 15 MiB).
# On a machine with pip access, `pip install -e ".[cuda12,test]"` replaces the wheel step.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
PY=${PYTHON:-python3}
RES=experiments/results
mkdir -p "$RES"
stamp() { echo "[device_check] $(( $(date +%s) - T0 )) s: $*"; }

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export SCALARJAX_DATA=${SCALARJAX_DATA:-$PWD/.devdata} PYTHONUNBUFFERED=1
# JAX must not grab 75% of the GPU up front: the checks below start several processes in turn.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
stamp "installed; $($PY -c 'import jax; print(jax.__version__, jax.devices())' 2>&1 | tail -1)"

# 1. the physics and export tests of the suite, on the GPU (the suite runs them in float64)
timeout 140 $PY -m pytest -q -p no:cacheprovider tests/test_physics.py tests/test_export.py tests/test_calculator.py \
  2>&1 | tee "$RES/device_pytest.log" | tail -15
stamp "pytest done (exit ${PIPESTATUS[0]})"

# 2. float32 and float64 physics on the default model, then timings (each dtype its own process)
timeout 210 $PY experiments/device_check.py --out "$RES/device_check.json" --budget-s 60
stamp "device_check.py done"

# 3. training throughput, mlearn Si, default medium model, float32
for b in 4 32; do
  timeout 60 $PY experiments/bench_training.py --batch-size $b --out "$RES/device_training_b$b.json" | tail -3
  stamp "training batch $b done"
done

$PY - <<'EOF'
import glob, json, os
out = {}
for p in sorted(glob.glob("experiments/results/device_*.json")):
    if not p.endswith("device_summary.json"):
        out[os.path.basename(p)] = json.load(open(p))
json.dump(out, open("experiments/results/device_summary.json", "w"), indent=1)
print("wrote experiments/results/device_summary.json")
EOF
if [ -n "${OUT:-}" ]; then cp "$RES"/device_* "$OUT"/ 2>/dev/null; fi
stamp "done"

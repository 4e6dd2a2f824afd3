#!/usr/bin/env bash
# GPU checks in one go, for a CUDA host (used on the lent H100/H200 machine; works on any CUDA box with the
# project installed). Writes everything under OUT (default results/gpu):
#   gpu_tests.txt       pytest -m gpu (sketch, samplers, models on CUDA)
#   bench_sketch.json   sketch speed at N = 1e4..1e7 next to one training step
#   bench_scale.json    sketch and sampler costs at N = 1e7
#   ttt.tgz, report.md  a short time-to-target comparison (uniform, history, nws x 3 seeds) and its report
#
#   scripts/gpu_check.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-results/gpu}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/device.txt"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/device.txt"
echo "== gpu tests"
"$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_samplers.py tests/test_models.py tests/test_distributed.py 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
echo "== sketch speed"
"$PY" scripts/bench_sketch.py --device cuda --sizes 1e4 1e5 1e6 1e7 --out "$OUT/bench_sketch.json" 2>&1 | tail -25
echo "== time to target"
"$PY" -m bench.run -m experiment=ml100k_ctr sampler=uniform,history,nws seed=0,1,2 device=cuda logger=disabled \
  progress=false trainer.checkpoint_every_s=0 paths.results_dir="$OUT/ttt" hydra.sweep.dir=/tmp/gpu_sweep 2>&1 | grep -E "^\[sweep\]|error" | tail -25
"$PY" -m bench.report "$OUT/ttt" --out "$OUT/ttt_report" 2>&1 | tail -20
cp "$OUT/ttt_report/report.md" "$OUT/report.md" 2>/dev/null
tar czf "$OUT/ttt.tgz" -C "$OUT" ttt ttt_report && rm -rf "$OUT/ttt" "$OUT/ttt_report"
echo "== scale"
"$PY" scripts/bench_scale.py --device cuda --n 10000000 --out "$OUT/bench_scale.json" 2>&1 | tail -25
ls -la "$OUT"

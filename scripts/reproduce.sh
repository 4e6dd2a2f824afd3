#!/usr/bin/env bash
# Reproduce the evaluation protocol on the offline stand-in datasets, build the report, fill docs/RESULTS.md.
#
#   scripts/reproduce.sh --quick       # test experiments at quick budgets (conf/sweep/protocol_quick.yaml), 19 min on 2 CPU cores
#   scripts/reproduce.sh               # development sweeps (NWS tuning), then the test experiments at full budgets
#                                      #   (conf/sweep/protocol.yaml): hours on a CPU; use a GPU host or a cluster
#   scripts/reproduce.sh --device cuda --launcher local_parallel              # on a GPU host
#   scripts/reproduce.sh --quick --dev                                        # quick, plus the development sweeps
#   scripts/reproduce.sh --no-dev --experiments 'mnist_mlp fmnist_mlp'       # some test experiments at full budgets
#   scripts/reproduce.sh --quick --experiments kdd04_long --extra "sampler=uniform seed=0 trainer.epochs=1" \
#       --out /tmp/try --docs /tmp/RESULTS.md                                 # one tiny job end to end (a dry run)
#
# The protocol: each test experiment x every registered sampler x 3 seeds, one experiment at a time; the report
# takes each experiment's target from its uniform runs (T_u, 0.99 T_u), times and steps to reach them, the metric
# at uniform's time, the final metric (bench.report.tables). The development sweeps (conf/sweep/dev*.yaml) tune NWS on the
# development experiments only; their rows go to OUT/dev and their own report. Then the report's table goes into
# docs/RESULTS.md between its markers (section <device>-<mode>, and <device>-dev; --no-docs leaves it alone).
# Finished jobs are skipped on a re-run (rows are keyed by config hash): an interrupted run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 DEV="" DEVICE=auto LAUNCHER=basic DOCS=1 DOC=docs/RESULTS.md OUT="" ONLY="" EXTRA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --dev) DEV=1 ;;
    --no-dev) DEV=0 ;;
    --device) DEVICE="$2"; shift ;;
    --launcher) LAUNCHER="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --experiments) ONLY="$2"; shift ;;
    --extra) EXTRA="$2"; shift ;;
    --docs) DOC="$2"; shift ;;
    --no-docs) DOCS=0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "reproduce.sh: unknown argument '$1' (allowed: --quick, --dev, --no-dev, --device cpu|cuda|auto, --launcher basic|local_parallel|slurm, --out DIR, --experiments 'E ...', --extra 'KEY=VALUE ...', --docs FILE, --no-docs)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
MODE=$([ "$QUICK" = 1 ] && echo quick || echo full)
DEV=${DEV:-$([ "$QUICK" = 1 ] && echo 0 || echo 1)}  # full mode tunes first; quick mode uses the frozen settings
SWEEP=$([ "$QUICK" = 1 ] && echo protocol_quick || echo protocol)
OUT=${OUT:-results/reproduce-$MODE}
SECTION=$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1} WANDB_MODE=${WANDB_MODE:-offline}
common="device=$DEVICE hydra/launcher=$LAUNCHER progress=false trainer.checkpoint_every_s=0"
START=$SECONDS

# A busy machine stalls the fair clock (bench.train.timing.find_stalls flags it in every row): say so before hours of runs.
CORES=$(nproc 2>/dev/null || echo 1)
LOAD=$(cut -d' ' -f1 "${NWS_LOADAVG:-/proc/loadavg}" 2>/dev/null || echo 0)
if awk -v l="$LOAD" -v c="$CORES" 'BEGIN { exit !(l > 0.5 * c) }'; then
  echo "reproduce.sh: warning: load average $LOAD on $CORES core(s), over 0.5 per core: other work will stall the" \
       "fair clock (rows flag it as stalls; the report's stall-robust times discount it)" >&2
fi

took() {  # "12 min 5 s" since $1 (seconds)
  local s=$((SECONDS - $1)); echo "$((s / 60)) min $((s % 60)) s"
}

# The experiments of a sweep file, from its `experiment:` line (one place: conf/sweep/*.yaml).
experiments_of() {
  sed -n 's/^ *experiment: *\([^ #]*\).*/\1/p' "conf/sweep/$1.yaml" | tr ',' ' '
}

run_sweep() {  # run_sweep SWEEP RESULTS_DIR EXPERIMENT...: one experiment at a time, each timed
  local sweep=$1 results=$2; shift 2
  for e in "$@"; do
    local t0=$SECONDS
    echo "== $sweep: $e (every sampler x 3 seeds) $EXTRA"
    # shellcheck disable=SC2086
    "$PY" -m bench.run -m sweep="$sweep" experiment="$e" $common $EXTRA paths.results_dir="$results" \
      hydra.sweep.dir="$results/sweeps/${e//\//_}"
    echo "== $e took $(took "$t0")"
  done
}

echo "== prepare datasets"
"$PY" -m bench.prepare mnist fashion_mnist kdd04 movielens100k mnist_subset adult digits

if [ "$DEV" = 1 ]; then
  t0=$SECONDS
  for sweep in dev_baselines dev dev_round2 dev_round3; do  # docs/TUNING.md: the rounds that chose the defaults
    run_sweep "$sweep" "$OUT/dev" $(experiments_of "$sweep")  # never --experiments: tuning sees development data only
  done
  "$PY" -m bench.report "$OUT/dev" --out "$OUT/dev/report"
  if [ "$DOCS" = 1 ]; then
    "$PY" scripts/fill_results.py "$OUT/dev/report/report.md" "$DOC" --section "$SECTION-dev" --took "$(took "$t0")"
  fi
  echo "== development sweeps took $(took "$t0")"
fi

run_sweep "$SWEEP" "$OUT/test" ${ONLY:-$(experiments_of "$SWEEP")}

echo "== sketch fidelity (error vs depth and width)"
"$PY" scripts/sketch_fidelity.py $([ "$QUICK" = 1 ] && echo --quick) --out-dir "$OUT"

echo "== report"
"$PY" -m bench.report "$OUT/test" --out "$OUT/report" --fidelity "$OUT/sketch_fidelity.json"
if [ "$DOCS" = 1 ]; then
  "$PY" scripts/fill_results.py "$OUT/report/report.md" "$DOC" --section "$SECTION-$MODE" --took "$(took "$START")"
fi
echo "done in $(took "$START"): $OUT/report/report.md"

#!/usr/bin/env bash
# The GPU measurements (issue 17) and the NB201 table scores, exactly as run on the lent H200 machine
# (16 CPU cores), from the repository root:
#
#   OUT=/tmp/gpu bash experiments/gpu_session.sh smoke          # 2 cells, every code path on CUDA
#   OUT=/tmp/gpu bash experiments/gpu_session.sh full 320       # the figures; table scoring stops after 320 s
#
# full: experiments/gpu_check.py (CPU vs CUDA statistics, one-process throughput), `eznas stats
# configs/nb201.yaml --device cuda` with (cores - 2) worker processes sharing the GPU, stopped after 120 s
# (timed -> stats_gpu.txt), then experiments/table_scores.py on CUDA until the deadline. Copy $OUT/* to
# experiments/results/gpu/ and run experiments/gpu_summary.py (it adds the CPU reference scores).
# Optional: .whl/ (wheels the machine lacks: deap and moocore, cffi, pycparser, platformdirs) and
# .devdata/data (the data directory) in the repository root. The 2026-12-04 run: 16 cores, W = 14;
# gpu_check ran in one call, the stats and table steps in a second one.
set -u
MODE=${1:-full}
DEADLINE=${2:-380}
OUT=${OUT:-/tmp/eznas-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if [ -d .devdata/data ]; then export EZNAS_DATA_DIR=$PWD/.devdata/data; fi
export EZNAS_CACHE_DIR=/tmp/eznas-stats
nvidia-smi -L
python3 -c "import torch, deap, eznas; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
W=$(( $(python3 -c "import os; print(len(os.sched_getaffinity(0)))") - 2 ))  # nproc said 1 there
if [ "$MODE" = smoke ]; then
  timeout 100 python3 experiments/gpu_check.py --nets 3 --throughput-nets 6 --warmup 1 --cpu-nets 1 \
    --out "$OUT/gpu_check_smoke.json"
  timeout 120 python3 experiments/table_scores.py --device cuda --backend serial --limit 2 --out "$OUT/table_smoke"
  exit 0
fi
timeout 150 python3 experiments/gpu_check.py --nets 20 --throughput-nets 64 --cpu-nets 4 --out "$OUT/gpu_check.json"
t0=$(date +%s.%N)
timeout 120 python3 -m eznas.cli stats configs/nb201.yaml --device cuda --workers "$W" 2>&1 | tail -3
t1=$(date +%s.%N)
echo "STATS wall $(python3 -c "print($t1-$t0)") nets $(find /tmp/eznas-stats -name '*.npz' | wc -l)" | tee "$OUT/stats_gpu.txt"
timeout $((DEADLINE + 90)) python3 experiments/table_scores.py --device cuda --workers "$W" --deadline-s "$DEADLINE" \
  --out "$OUT/table"

#!/usr/bin/env bash
# The GPU measurements (issue 17) and the NB201 table scores, exactly as run on the lent H200 machine
# (16 CPU cores), from the repository root:
#
#   OUT=/tmp/gpu bash experiments/gpu_session.sh smoke          # 2 cells, every code path on CUDA
#   OUT=/tmp/gpu bash experiments/gpu_session.sh full 380       # the figures; table scoring stops after 380 s
#
# full: experiments/gpu_check.py (CPU vs CUDA statistics, one-process throughput), `eznas stats
# configs/nb201.yaml --device cuda` with (cores - 2) workers sharing the GPU (timed -> stats_gpu.json),
# then experiments/table_scores.py on CUDA until the deadline. Optional: .whl/ (wheels the machine lacks,
# e.g. deap) and .devdata/data (the data directory) in the repository root.
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
W=$(( $(nproc) - 2 ))
if [ "$MODE" = smoke ]; then
  timeout 100 python3 experiments/gpu_check.py --nets 3 --throughput-nets 6 --warmup 1 --cpu-nets 1 \
    --out "$OUT/gpu_check_smoke.json"
  timeout 120 python3 experiments/table_scores.py --device cuda --backend serial --limit 2 --out "$OUT/table_smoke"
  exit 0
fi
timeout 150 python3 experiments/gpu_check.py --nets 20 --throughput-nets 64 --cpu-nets 4 --out "$OUT/gpu_check.json"
t0=$(date +%s.%N)
timeout 150 python3 -m eznas.cli stats configs/nb201.yaml --device cuda --workers "$W"
rc=$?
t1=$(date +%s.%N)
python3 - "$t0" "$t1" "$rc" "$W" "$OUT/stats_gpu.json" <<'PY'
import json, pathlib, sys, torch
t0, t1, rc, w, out = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
n = sum(1 for _ in pathlib.Path("/tmp/eznas-stats").rglob("*.npz"))
doc = {"command": f"eznas stats configs/nb201.yaml --device cuda --workers {w}", "exit_code": rc, "nets": n,
       "wall_s": round(t1 - t0, 2), "nets_per_s": round(n / (t1 - t0), 2), "device": torch.cuda.get_device_name(0),
       "torch": torch.__version__, "note": "wall time includes starting the workers and CUDA in each"}
print(json.dumps(doc, indent=1))
pathlib.Path(out).write_text(json.dumps(doc, indent=1) + "\n")
PY
timeout $((DEADLINE + 90)) python3 experiments/table_scores.py --device cuda --workers "$W" --deadline-s "$DEADLINE" \
  --out "$OUT/table"

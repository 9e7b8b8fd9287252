#!/usr/bin/env bash
# Train a recipe, or time `measure`, on a lent GPU machine that has torch but not this project's
# other packages. Before: wheels for Python 3.12 in .whl/ (segmentation-models-pytorch,
# albumentations and their needs) and the training data in .devdata/ (FUSeg re-encoded as WebP
# q85 so that it travels under the 64 MiB limit), both git-ignored: `bash
# scripts/device_prepare.sh` makes them (~22 MB; with the tracked files ~59 MiB).
# Modes (RUN=runs/NAME and CONFIG=configs/train/X.yaml choose the run):
#   session  one call for a whole 15-minute lease: install, train CONFIG from models/default for
#            its max_minutes, time `measure` (GPU and CPU cores), leave the weights under $OUT
#   bench    only the `measure` timings (bench_measure.py on 72 12-MP photos)
#   start / resume / wait / fetch   the same training as a detached process over several calls
#            (for longer leases; never name .devdata in carry again while it runs: a carried path
#            is replaced and files vanish under the loader workers)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/robust}
CONFIG=${CONFIG:-configs/train/robust_gpu.yaml}

render_photos() {  # RENDER N JOBS: RENDER 12-MP photos in /tmp/photos (JOBS processes), copied up to N
    python3 - "$@" <<'PY'
import shutil, sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
sys.path.insert(0, "scripts")
from bench_measure import make_photo
render, n, jobs = (int(v) for v in sys.argv[1:4])
root = Path("/tmp/photos")
with ProcessPoolExecutor(jobs) as pool:  # the photos bench_measure.py --photos reuses
    paths = list(pool.map(partial(make_photo, root, size=(4000, 3000)), range(render)))
for i in range(render, n):
    dst = root / f"S{i:03d}" / "D0" / "U1.jpg"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths[i % render], dst)
PY
}

export_ema() {  # CHECKPOINT: its weight average at the last finished epoch -> /tmp/last_ema.pt
    python3 -c "import torch,sys; ck=torch.load(sys.argv[1],map_location='cpu',weights_only=False); \
sd={k[len('module.'):]:v for k,v in ck['ema'].items() if k.startswith('module.')}; \
torch.save(sd,'/tmp/last_ema.pt'); print('epoch',ck['epoch']+1,'step',ck['step'])" "$1"
}

bench_pair() {  # N LOG: bench_measure.py on the GPU and on the CPU cores, same photos
    for args in "--backend torch --device cuda --parallel-photos 16" \
        "--backend torch --device cuda --parallel-photos 32" \
        "--backend onnx --parallel-photos 16 --threads 1"; do
        echo "== bench_measure.py --n $1 $args" | tee -a "$2"
        # shellcheck disable=SC2086
        timeout 90 python3 scripts/bench_measure.py --n "$1" --photos /tmp/photos $args 2>&1 \
            | tail -4 | tee -a "$2" || true
    done
}
case "${1:-start}" in
session)
    # everything in one call, for a lease of 15 minutes (a start costs 1-2 of them): install,
    # train CONFIG from models/default for its max_minutes, then time `measure` on the GPU and on
    # the CPU cores of the same machine (bench_measure.py, 12-MP photos), then leave the last
    # weight average, the card, the metrics and one log under $OUT
    # (SKIP_INSTALL=1 BENCH_RENDER=2 BENCH_N=4 with a tiny CONFIG: a dry run on a CPU machine)
    [ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    render=${BENCH_RENDER:-24} n=${BENCH_N:-72}
    log=$OUT/session.log
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$log" || true
    nproc | tee -a "$log"
    [ -d data/synth-train ] || python3 -m ulcerseg.training synth dataset -o data/synth-train --n 300 --seed 101 2>/dev/null
    mkdir -p "$RUN"
    python3 -m ulcerseg.training -v train --config "$CONFIG" --init models/default \
        --data .devdata/fuseg-train --data data/synth-train -o "$RUN" >"$RUN.log" 2>&1 </dev/null &
    train_pid=$!
    # 24 12-MP photos for the throughput figures, rendered meanwhile on one core, each used
    # 3 times (S024-S071 are copies: enough photos that start-up does not dominate)
    render_photos "$render" "$n" 1 &
    photos_pid=$!
    wait "$train_pid" || echo "training exited with $?" | tee -a "$log"
    wait "$photos_pid" || echo "photo rendering exited with $?" | tee -a "$log"
    tr "\r" "\n" <"$RUN.log" | grep -v "it/s\]" | tail -40 >>"$log" || true
    cp "$RUN"/model.json "$RUN"/metrics.csv "$OUT"/ || true
    export_ema "$RUN"/last.pt | tee -a "$log" && split -b 15M -d /tmp/last_ema.pt "$OUT"/last_ema.pt.part \
        || echo "no weight average to fetch" | tee -a "$log"
    bench_pair "$n" "$log"
    ls -la "$OUT"
    ;;
bench)
    # only the throughput figures: `measure` on the GPU and on the CPU cores, same photos
    [ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    log=$OUT/bench.log
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } | tee "$log" || true
    render_photos "${BENCH_RENDER:-24}" "${BENCH_N:-72}" "$(nproc)"
    bench_pair "${BENCH_N:-72}" "$log"
    ;;
start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv
    [ -d data/synth-train ] || python3 -m ulcerseg.training synth dataset -o data/synth-train --n 300 --seed 101 2>/dev/null
    mkdir -p "$RUN"
    setsid nohup python3 -m ulcerseg.training -v train --config "$CONFIG" \
        --init models/default --data .devdata/fuseg-train --data data/synth-train -o "$RUN" \
        >"$RUN.log" 2>&1 </dev/null &
    sleep "${2:-60}"
    tr "\r" "\n" <"$RUN.log" | grep -v "it/s\]" | tail -20
    ;;
resume)
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    setsid nohup python3 -m ulcerseg.training -v train --config "$CONFIG" \
        --init models/default --data .devdata/fuseg-train --data data/synth-train -o "$RUN" --resume \
        >>"$RUN.log" 2>&1 </dev/null &
    sleep "${2:-30}"
    tr "\r" "\n" <"$RUN.log" | grep -v "it/s\]" | tail -5
    ;;
wait)
    end=$((SECONDS + ${2:-540}))
    while [ $SECONDS -lt $end ] && pgrep -f "ulcerseg.training -v train" >/dev/null; do sleep 10; done
    tr "\r" "\n" <"$RUN.log" | grep -E "epoch [0-9]+:|stopped|Error|error|Traceback" | tail -30 | cut -c1-400
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
    ;;
fetch)
    cp "$RUN"/model.json "$RUN"/metrics.csv "$OUT"/
    split -b 15M -d "$RUN"/model.pt "$OUT"/best.pt.part
    # the weight average at the last finished epoch (no selection on the validation split)
    export_ema "$RUN"/last.pt
    split -b 15M -d /tmp/last_ema.pt "$OUT"/last_ema.pt.part
    tr "\r" "\n" <"$RUN.log" | grep -v "it/s\]" | tail -200 >"$OUT"/train.log
    ls -la "$OUT"
    ;;
esac

#!/usr/bin/env bash
# Train a recipe on a lent GPU machine that has torch but not this project's other packages.
# Before: wheels for Python 3.12 in .whl/ (segmentation-models-pytorch, albumentations and their
# needs), the training data in .devdata/ (FUSeg re-encoded as WebP q85 so that it travels under
# the 64 MiB limit), both git-ignored: `bash scripts/device_prepare.sh` makes them (~26 MB; with
# the tracked files ~62 MiB). Starts training as a detached process (it survives the
# command) and prints its log; "resume" restarts it from its checkpoint; never name .devdata in
# carry again while it runs (a carried path is replaced, files vanish under the workers); call with "wait" to follow it, "fetch" to copy results to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/robust}
case "${1:-start}" in
start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv
    python3 -m ulcerseg.training synth dataset -o data/synth-train --n 300 --seed 101 2>/dev/null
    mkdir -p "$RUN"
    setsid nohup python3 -m ulcerseg.training -v train --config configs/train/robust_gpu.yaml \
        --init models/default --data .devdata/fuseg-train --data data/synth-train -o "$RUN" \
        >"$RUN.log" 2>&1 </dev/null &
    sleep "${2:-60}"
    tr "\r" "\n" <"$RUN.log" | grep -v "it/s\]" | tail -20
    ;;
resume)
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    setsid nohup python3 -m ulcerseg.training -v train --config configs/train/robust_gpu.yaml \
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
    python3 -c "import torch,sys; ck=torch.load(sys.argv[1],map_location='cpu',weights_only=False); \
sd={k[len('module.'):]:v for k,v in ck['ema'].items() if k.startswith('module.')}; \
torch.save(sd,'/tmp/last_ema.pt'); print('epoch',ck['epoch']+1,'step',ck['step'])" "$RUN"/last.pt
    split -b 15M -d /tmp/last_ema.pt "$OUT"/last_ema.pt.part
    tr "\r" "\n" <"$RUN.log" | grep -v "it/s\]" | tail -200 >"$OUT"/train.log
    ls -la "$OUT"
    ;;
esac

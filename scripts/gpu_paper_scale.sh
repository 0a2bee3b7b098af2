#!/usr/bin/env bash
# The paper's scale on one GPU, in at most about 10 minutes: Fashion-MNIST, the whole model
# (ResNet-18 with the CIFAR stem, transformer head D=256, L=10, H=16, FFN 1024, out 512),
# batch 1024, NT-Xent temperature 0.02, bf16; then the attention analysis with the v3 verdict (one seed: exploratory).
# Prints a short table last. No internet is needed: the four IDX files travel with the checkout.
#
#   scripts/gpu_paper_scale.sh [OUT_DIR]       env: FASHION_MNIST=folder of the IDX files,
#                                               EPOCHS (default 40), TRAIN_LIMIT_S (default 480)
#   PAPER_SCALE_TINY=1 scripts/gpu_paper_scale.sh OUT   the same plumbing at toy size on a CPU
#   PYTHON=path/to/python                         the interpreter to use (default: python on PATH)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-paper-scale}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"  # the interpreter with torch; set PYTHON to choose another
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # the checkout, not installed
has_idx() { ls "$1"/train-images-idx3-ubyte* >/dev/null 2>&1; }
if [ -n "${FASHION_MNIST:-}" ]; then
    FM="$FASHION_MNIST"
    has_idx "$FM" || { echo "FASHION_MNIST=$FM holds no train-images-idx3-ubyte[.gz]; point it at the four IDX files" >&2; exit 2; }
else
    FM=""
    for c in data/fashion-mnist shared/fashion-mnist /usr/share/datasets/fashion-mnist; do
        if has_idx "$c"; then FM="$c"; break; fi
    done
    [ -n "$FM" ] || { echo "Fashion-MNIST IDX files not found; copy them to data/fashion-mnist/ or set FASHION_MNIST" >&2; exit 2; }
fi
EPOCHS="${EPOCHS:-40}"
LIMIT="${TRAIN_LIMIT_S:-480}"
ARGS=(--config fashion_mnist "data.root=$FM" train.batch_size=1024 loss.temperature=0.02 "train.epochs=$EPOCHS"
      optim.warmup_epochs=4 train.name=paper_scale eval.head_batch=1024 --no-progress)
DEVICE=cuda
if [ "${PAPER_SCALE_TINY:-0}" = 1 ]; then  # CPU plumbing check: the same commands at toy size
    DEVICE=cpu
    ARGS+=("data.options={limit: 300}" train.batch_size=60 train.epochs=1 optim.warmup_epochs=0 model.backbone=cnn3
           model.dim=16 model.depth=2 model.heads=2 model.ffn_dim=32 model.out_dim=16 eval.linear_epochs=2
           eval.head_batch=60 train.device=cpu train.threads=1)
else
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 2
fi
start=$(date +%s)
# SIGTERM at the limit saves a checkpoint; the analysis then describes the last one written
timeout -s TERM "$LIMIT" "$PY" -m deepfusion train "${ARGS[@]}" --out "$OUT/runs" > "$OUT/train.txt" 2>&1
train_rc=$?
train_s=$(( $(date +%s) - start ))
"$PY" -m deepfusion analyze --run "$OUT/runs/paper_scale" --device "$DEVICE" --threads 0 --out "$OUT/analysis.json" \
    > "$OUT/analysis.txt" 2>&1
analyze_rc=$?

echo "== paper scale on $DEVICE: train exit $train_rc in ${train_s} s, analyze exit $analyze_rc (files in $OUT) =="
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
run = out / "runs" / "paper_scale"
lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()] if (run / "metrics.jsonl").exists() else []
ev = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {}
rate = max((l.get("images_per_s", 0) for l in lines), default=0)
print(f"  steps {lines[-1]['step'] if lines else 0}, last loss {lines[-1]['loss'] if lines else float('nan'):.4f}, "
      f"peak {rate:,.0f} images/s")
for key, base in (("knn", "random_knn"), ("linear", "random_linear"), ("head_loo1nn", None)):
    if ev.get(key) is not None:
        print(f"  {key:<12} {ev[key]:.4f}" + (f"   random backbone {ev[base]:.4f}" if base and ev.get(base) is not None else ""))
verdict = [l for l in (out / "analysis.txt").read_text().splitlines() if l.startswith(("EFFECT", "verdict"))] if (out / "analysis.txt").exists() else []
print("\n".join("  " + v for v in verdict) or "  no analysis")
PY
[ "$analyze_rc" = 0 ]

#!/usr/bin/env bash
# One call on a CUDA machine (no internet needed, under 8 minutes): the CUDA tests, then every
# benchmark on the GPU, JSON under the folder given as $1 or $BENCH_OUT (default bench-gpu/),
# and a short table printed last. Record the numbers in benchmarks/README.md with the card named.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${BENCH_OUT:-bench-gpu}}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the project without installing anything
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 2

timeout 180 python -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tail -15
tests=${PIPESTATUS[0]}
timeout 120 python -m deepfusion bench head --device cuda --repeats 10 --out "$OUT/head.json" > "$OUT/head.txt" 2>&1
timeout 150 python -m deepfusion bench train --device cuda --repeats 10 --compile --out "$OUT/train.json" > "$OUT/train.txt" 2>&1 \
  || timeout 90 python -m deepfusion bench train --device cuda --repeats 10 --out "$OUT/train.json" > "$OUT/train.txt" 2>&1
timeout 60 python -m deepfusion bench theory --device cuda --repeats 3 --out "$OUT/theory.json" > "$OUT/theory.txt" 2>&1

echo "== gpu_check summary (pytest -m gpu exit $tests; JSON in $OUT) =="
cat "$OUT/head.txt" "$OUT/train.txt" "$OUT/theory.txt" 2>/dev/null | grep -v '^#' | sed 's/^/  /'
head -n1 "$OUT/head.txt" 2>/dev/null
exit "$tests"

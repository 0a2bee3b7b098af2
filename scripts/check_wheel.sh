#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment outside the checkout, and use it
# there: `deepfusion verify --quick`, a short training run, the public API's tests and the README's
# "Use it in your own training loop" example, and no bare top-level `model`, `theory`,
# `experiments` or `paper_figures` package (only `deepfusion` is installed).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip wheel -q --no-deps -w "$work/dist" "$repo"
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q "$work"/dist/deepfusion-*.whl pytest
# the API tests and the README example, copied out of the checkout (they import only deepfusion)
cp "$repo/tests/api/test_public_api.py" "$work/"
python - "$repo/README.md" > "$work/readme_example.py" <<'PY'
import re, sys
section = open(sys.argv[1]).read().split("## Use it in your own training loop", 1)[1].split("\n## ", 1)[0]
print(re.findall(r"```python\n(.*?)```", section, re.S)[0])
PY
cd "$work"  # nothing of the checkout on sys.path
for name in model theory experiments paper_figures; do
    if python -c "import $name" 2>/dev/null; then
        echo "wheel check: a bare top-level package '$name' is importable" >&2
        exit 1
    fi
done
python -c "import deepfusion, sys; assert deepfusion.__file__.startswith(sys.prefix), deepfusion.__file__"
python -m pytest -q -p no:cacheprovider test_public_api.py > api.txt || { cat api.txt; exit 1; }
tail -1 api.txt
python readme_example.py > example.txt || { cat example.txt; exit 1; }
grep -q "(4, 3, 4, 64, 64)" example.txt && tail -1 example.txt | grep -q "^exploratory " || { cat example.txt; exit 1; }
python -c "import deepfusion.model.runs.config as c; assert c.presets(), 'no presets in the wheel'"
deepfusion verify --quick > verify.txt || { cat verify.txt; exit 1; }
tail -1 verify.txt
deepfusion train --config synthetic train.epochs=1 train.device=cpu train.threads=1 eval.linear_epochs=2 \
    --out "$work/runs" --no-progress > train.txt || { cat train.txt; exit 1; }
grep -q "kNN" train.txt || { cat train.txt; exit 1; }
echo "wheel check: passed"

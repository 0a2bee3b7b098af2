#!/usr/bin/env bash
# Run the 2-process gloo test N times (default 20), optionally beside a CPU-heavy process
# (--load), and print how many passed. Used to show that the process-group teardown does not
# abort at exit.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=20 load=0
for arg in "$@"; do
    case "$arg" in
        --load) load=1 ;;
        [0-9]*) runs=$arg ;;
        *) echo "usage: $0 [RUNS] [--load]" >&2; exit 2 ;;
    esac
done
if [ "$load" = 1 ]; then
    python -c "while True: sum(i * i for i in range(10**6))" &
    hog=$!
    trap 'kill $hog 2>/dev/null' EXIT
fi
passed=0
for i in $(seq "$runs"); do
    if python -m pytest -q -p no:cacheprovider tests/model/runs/test_distributed.py \
        -k two_processes_match >/dev/null 2>&1; then
        passed=$((passed + 1))
    else
        echo "run $i failed"
    fi
done
echo "passed $passed of $runs$([ "$load" = 1 ] && echo ' (beside a CPU-heavy process)')"
[ "$passed" = "$runs" ]

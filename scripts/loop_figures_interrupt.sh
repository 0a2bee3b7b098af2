#!/usr/bin/env bash
# Stop `deepfusion figures` (two training workers) N times (default 10) by Ctrl-C (SIGINT to its
# process group, as a terminal sends it) and N times by kill -9 of the parent, at a random moment
# of training. After each stop it checks: no process of the job is left (`pgrep -P PARENT` and
# `pgrep -g GROUP` empty, every worker seen before the stop gone within 60 s), every run folder's
# lock is free (`flock -n`), and for Ctrl-C exit 130 with one stderr line and no traceback. Last,
# the final Ctrl-C'd job is rerun and must finish (exit 0), resuming from the saved checkpoints.
# Each job trains the two digits runs of F2 --seeds 2 into a temporary folder.
set -uo pipefail
set -m  # job control: each job gets its own process group, with Ctrl-C's SIGINT not ignored
cd "$(dirname "$0")/.."
runs=${1:-10}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args() { echo "figures --quick --only F2 --seeds 2 --workers 2 --out $1/fig --results $1/runs"; }

started() {  # metric lines written by the job's runs so far
    cat "$1"/runs/*/metrics.jsonl 2>/dev/null | wc -l
}

bad=0
for kind in INT KILL; do
    for i in $(seq "$runs"); do
        dir="$tmp/$kind-$i"
        mkdir -p "$dir"
        deepfusion $(args "$dir") >"$dir/out" 2>"$dir/err" &
        parent=$!  # the job's pid and (job control) its process group
        target=$((1 + RANDOM % 4))  # stop after 1-4 logged steps: sometimes inside a checkpoint write
        for _ in $(seq 1200); do
            [ "$(started "$dir")" -ge "$target" ] && break
            kill -0 "$parent" 2>/dev/null || break
            sleep 0.1
        done
        kids=$(pgrep -P "$parent" | tr '\n' ' ')
        if [ "$kind" = INT ]; then kill -INT -- "-$parent"; else kill -KILL "$parent"; fi
        wait "$parent" 2>/dev/null
        rc=$?
        left=""
        for _ in $(seq 600); do
            left=$( { pgrep -P "$parent"; pgrep -g "$parent"; for k in $kids; do kill -0 "$k" 2>/dev/null && echo "$k"; done; } \
                   | sort -u | tr '\n' ' ')
            [ -z "$left" ] && break
            sleep 0.1
        done
        locks="free"
        for lock in "$dir"/runs/*/.lock; do
            [ -e "$lock" ] || continue
            flock -n "$lock" true || locks="HELD: $lock"
        done
        lines=$(wc -l <"$dir/err")
        note="exit $rc, $(started "$dir") metric lines, workers [$kids] left [${left}], locks $locks"
        ok=1
        [ -z "$left" ] && [ "$locks" = free ] || ok=0
        if [ "$kind" = INT ]; then
            note="$note, stderr: $(head -c 160 "$dir/err")"
            { [ "$rc" = 130 ] && [ "$lines" = 1 ] && ! grep -q Traceback "$dir/err"; } || ok=0
        fi
        [ "$ok" = 1 ] && echo "ok   $kind $i: $note" || { echo "FAIL $kind $i: $note"; bad=$((bad + 1)); }
        kill -KILL $left 2>/dev/null  # never leave a failure's processes running
    done
done
dir="$tmp/INT-$runs"
start=$SECONDS
if deepfusion $(args "$dir") >"$dir/rerun.out" 2>&1; then
    echo "rerun of INT-$runs: exit 0 after $((SECONDS - start)) s; $(grep -c '^  trained' "$dir/rerun.out") run(s) trained to the end"
else
    echo "rerun of INT-$runs: FAILED"; tail -3 "$dir/rerun.out"; bad=$((bad + 1))
fi
echo "$((2 * runs - bad + 1)) of $((2 * runs + 1)) passed"
[ "$bad" = 0 ]

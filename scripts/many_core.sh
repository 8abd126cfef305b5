#!/usr/bin/env bash
# One prepared many-core session (e.g. a lent 16-core machine): the seed comparison on every
# CPU, spinlock vs mutex under 2x oversubscription, and a short ramp.  Writes results under
# ${OUT:-./many_core_out}.  Usage: bash scripts/many_core.sh [seconds-per-run]
set -uo pipefail
OUT=${OUT:-./many_core_out}
mkdir -p "$OUT"
D=${1:-10}
N=$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
PY="python3 -m stress"
echo "== $(nproc) CPUs online, $N in affinity; python $(python3 -V 2>&1)"
python3 scripts/measure_seed.py --cpus "$N" --duration "$D" 2>&1 | tee "$OUT/seed.txt"
for lock in spin mutex; do
  $PY run --era 2.6.33 --users 1000 --pages 100 --cpus $((2 * N)) --duration "$D" --lock $lock --quiet \
      --json "$OUT/over-$lock.json" | head -6 | tee -a "$OUT/oversub.txt"
done
$PY ramp --start-users 100 --end-users 6400 --factor 2 --duration 4 --cpus "$N" --quiet \
    --json "$OUT/ramp.json" --plot "$OUT/ramp.png" 2>&1 | tee "$OUT/ramp.txt"
ls /dev/shm | grep -c rmap-stress || true

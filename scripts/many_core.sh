#!/usr/bin/env bash
# The many-core session, one command: will-it-scale's picture of the anon_vma collapse.
#
#   bash scripts/many_core.sh [seconds-per-run]        (results under ${OUT:-./many_core_out})
#
# reclaim-storm in 2.6.33 and 2.6.34, each with the spinlock and the sleeping mutex, on
# 1, 2, 4, ... CPU workers up to the online CPUs and then twice as many (oversubscribed),
# three interleaved rounds, with the queueing-theory prediction beside every point.
# About 2 x 2 x (log2(CPUs) + 2) x 3 runs of D seconds each: 8 minutes on 16 CPUs at D=5.
set -euo pipefail
OUT=${OUT:-./many_core_out}
D=${1:-5}
mkdir -p "$OUT"
echo "== $(nproc) CPUs online; python $(python3 -V 2>&1)"
python3 -m stress scale --era 2.6.33 --era 2.6.34 --lock spin --lock mutex --repeat 3 \
    --duration "$D" --predict --quiet \
    --json "$OUT/scale.json" --csv "$OUT/scale.csv" --plot "$OUT/scale.png" 2>&1 | tee "$OUT/scale.txt"

#!/usr/bin/env bash
# The issue-17 measurement sequence behind bench/RESULTS.rst, "Scale" (2 cores, one at a time).
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# rows of revision 3e1336d
$PY bench/scale.py --boxes 64 128 256 --res 35 20 12 8.5 --iters 3 --out bench/results/scale.jsonl
$PY bench/scale.py --boxes 64 128 256 --res 35 12 --iters 3 --full-box --out bench/results/scale.jsonl
# the demo before (c849b71) and after (3b2f169) this work
bash bench/demo_time.sh 3b2f169 bench/results/demo_after.json
bash bench/demo_time.sh c849b71 bench/results/demo_before.json
# rows of revision c1cff16 (images as real-FFT points, broadcast radial grid)
$PY bench/scale.py --boxes 64 256 --res 35 --iters 3 --out bench/results/scale.jsonl
$PY bench/cost_model.py bench/results/scale.jsonl

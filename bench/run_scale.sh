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
# session 13: a box-128 job end to end (20,000 particles, 1.3 A/px, SNR 0.02, to 3.5 A = 2.7 px)
$PY bench/big.py --dir /tmp/big128 --box 128 --apix 1.3 --n 20000 --unique 20000 --snr 0.02 --job-args "--init-res 35 --max-res 3.5 --init-iters 100 --fourier-radius-step 0.2 --final-iters 20" --out bench/results/big128.jsonl

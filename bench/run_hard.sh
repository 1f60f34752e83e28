#!/usr/bin/env bash
# The issue-10 benchmark sequence run for bench/RESULTS.rst (one case at a time: 2 cores).
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/hard.py --shape demo --snr 0.01 --n 10000 --seeds 0 --oracle
$PY bench/hard.py --shape flat --snr 0.01 --n 10000 --seeds 1 --junk 0.2 --realistic
$PY bench/hard.py --shape demo --snr 0.01 --n 10000 --seeds 0
$PY bench/peers.py --shape demo --snr 0.01 --n 10000 --seeds 0 --relion-iters 25 100 25
$PY bench/hard.py --shape compact --snr 0.01 --n 10000 --seeds 2
# session 3 (rows (e)-(i) and the RELION row of bench/RESULTS.rst)
$PY bench/hard.py --shape demo --snr 0.01 --n 10000 --seeds 0
$PY bench/hard.py --shape compact --snr 0.01 --n 10000 --seeds 1
$PY bench/peers.py --shape demo --snr 0.01 --n 10000 --seeds 0 --relion-iters 25 100 25
$PY bench/hard.py --shape flat --snr 0.01 --n 10000 --seeds 1 --junk 0.2 --realistic
$PY bench/hard.py --shape elongated --snr 0.01 --n 10000 --seeds 2
# session 4 (seeds at one revision, single random start: --params '{"n_starts": 1}' reproduces it now)
$PY bench/hard.py --shape demo --snr 0.01 --n 10000 --seeds 0 1 2 3 4 --params '{"n_starts": 1}'
# session 5: random starts per half (the default); at 6766c8f (4 starts) and 1a69d03 (8, halving twice) seed 4
# only, at 7e411b9 (8 starts, one halving) seeds 4, 0, 1 (the time left allowed no more)
$PY bench/hard.py --shape demo --snr 0.01 --n 10000 --seeds 4
$PY bench/hard.py --shape demo --snr 0.01 --n 10000 --seeds 4 0 1

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
# session 14: system time at box 128 (2,000 particles of the box-128 stack above), before and after chunking
A="--particles /tmp/big128/particles.star --threads 2 --num-particles 2000 --init-res 35 --max-res 3.5 --init-iters 20 --fourier-radius-step 1.0 --final-iters 10 --starts 1 --init-minibatch 90 --final-minibatch 300 --minibatch-switch 20"
perf record -F 199 -g -o /tmp/perf.data -- /usr/bin/time -v .venv/bin/abinitrefine run $A --out /tmp/sys128
perf report -i /tmp/perf.data --no-children --sort sym --stdio | head -60
bash bench/demo_time.sh 67d2580 bench/results/demo_67d2580.json
bash bench/demo_time.sh 70cd241 bench/results/demo_70cd241.json
# session 14: the kernel cache (empty, then filled) and the halves side by side
rm -rf ~/.cache/scipion-abinitrefine
bash bench/demo_time.sh 77b6e4a /tmp/demo_cold.json
bash bench/demo_time.sh 77b6e4a /tmp/demo_warm.json
ABINITREFINE_SIDE_BY_SIDE=1 bash bench/demo_time.sh 77b6e4a /tmp/demo_sbs.json
# session 15: the box-128 job again after the sampling and insertion-order changes (e12fffe), and the demo in
# turn and side by side, twice each (2ef43fe)
/usr/bin/time -v .venv/bin/abinitrefine run $A --out /tmp/sys128
bash bench/demo_time.sh 2ef43fe /tmp/demo_inturn.json
ABINITREFINE_SIDE_BY_SIDE=1 bash bench/demo_time.sh 2ef43fe /tmp/demo_sbs.json
ABINITREFINE_SIDE_BY_SIDE=1 bash bench/demo_time.sh 2ef43fe /tmp/demo_sbs2.json
bash bench/demo_time.sh 2ef43fe /tmp/demo_inturn2.json
# session 16: the demo and the box-128 job at the session's start (2c56fd3) and after (82f9243: normalisation,
# padded transforms, back-projection kernel; 92b4a9f: the balanced chunk grid), each alone, in turn
bash bench/demo_time.sh 2c56fd3 /tmp/demo_2c56.json
bash bench/demo_time.sh 82f9243 /tmp/demo_82f9.json
bash bench/demo_time.sh 82f9243 /tmp/demo_82f9b.json
bash bench/demo_time.sh 92b4a9f /tmp/demo_92b4.json
bash bench/demo_time.sh c9a3212 /tmp/demo_c9a3.json
for rev in 2c56fd3 82f9243; do  # each in a worktree at $rev, PYTHONPATH=$wt
  /usr/bin/time -v .venv/bin/python -m scipion_abinitrefine.cli run $A --out /tmp/b128_$rev
done
.venv/bin/python bench/scale.py --boxes 64 256 --res 35 --iters 8 --out /tmp/scale16.jsonl
# session 17: the demo before / after the random starts' element rule (starts.start_radii), one after the other
bash bench/demo_time.sh 052e49d bench/results/demo_052e49d.json
bash bench/demo_time.sh 4caca33 bench/results/demo_4caca33.json

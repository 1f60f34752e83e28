#!/usr/bin/env bash
# Scale and cost (docs/results.rst, "Scale" and "Cost"):
#   bash bench/run_scale.sh demo REV OUT_JSON   wall, user and system time and peak memory of `abinitrefine demo`
#       at git revision REV (checked out in a temporary worktree, run with this checkout's .venv; nothing else
#       running); prints one JSON line, also written to OUT_JSON
#   bash bench/run_scale.sh                     the measurement sequence below (2 cores, one at a time)
set -u
if [ "${1:-}" = demo ]; then
set -e
rev=$2; out=$3
root=$(cd "$(dirname "$0")/.." && pwd)
wt=$(mktemp -d /tmp/demo_wt.XXXX)
git -C "$root" worktree add --detach "$wt" "$rev" >/dev/null 2>&1
cd "$wt"
log=$(mktemp /tmp/demo_time.XXXX)
PYTHONPATH="$wt" /usr/bin/time -f '%e %U %S %M' -o "$log.t" "$root/.venv/bin/python" -m scipion_abinitrefine.cli demo \
    --out "$wt/demo_out" > "$log" 2>&1
read -r wall user sys maxkb < "$log.t"
line=$(grep '^demo:' "$log" | tail -1)
# digests of the written maps' voxels (not the files: mrcfile stamps the time in a header label), so two runs
# (e.g. in turn / side by side) can be compared bit for bit
sums=$("$root/.venv/bin/python" - "$wt/demo_out" <<'PY'
import glob, hashlib, os, sys
import mrcfile
for f in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.mrc"), recursive=True)):
    if "checkpoint" not in f:
        with mrcfile.open(f, permissive=True) as m:
            print(hashlib.sha256(m.data.tobytes()).hexdigest()[:16] + "  " + os.path.relpath(f, sys.argv[1]), end=";")
PY
)
cd "$root"  # out of the worktree before it goes (tools refuse a vanished working directory)
git -C "$root" worktree remove --force "$wt"
python3 - "$rev" "$wall" "$user" "$sys" "$maxkb" "$line" "$out" "$sums" <<'PY'
import json, sys
rev, wall, user, sys_, maxkb, line, out, sums = sys.argv[1:]
maps = dict(reversed(s.split("  ", 1)) for s in sums.split(";") if s)
r = dict(rev=rev, wall_s=float(wall), user_s=float(user), sys_s=float(sys_), peak_gb=int(maxkb) / 2**20,
         result=line, maps_sha256_16=maps)
print(json.dumps(r))
open(out, "w").write(json.dumps(r) + "\n")
PY

exit 0
fi
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# rows of revision 3e1336d
$PY bench/scale.py --boxes 64 128 256 --res 35 20 12 8.5 --iters 3 --out bench/results/scale.jsonl
$PY bench/scale.py --boxes 64 128 256 --res 35 12 --iters 3 --full-box --out bench/results/scale.jsonl
# the demo before (c849b71) and after (3b2f169) this work
bash bench/run_scale.sh demo 3b2f169 bench/results/demo_after.json
bash bench/run_scale.sh demo c849b71 bench/results/demo_before.json
# rows of revision c1cff16 (images as real-FFT points, broadcast radial grid)
$PY bench/scale.py --boxes 64 256 --res 35 --iters 3 --out bench/results/scale.jsonl
$PY bench/cost_model.py bench/results/scale.jsonl
# session 13: a box-128 job end to end (20,000 particles, 1.3 A/px, SNR 0.02, to 3.5 A = 2.7 px)
$PY bench/scale.py --big --dir /tmp/big128 --box 128 --apix 1.3 --n 20000 --unique 20000 --snr 0.02 --job-args "--init-res 35 --max-res 3.5 --init-iters 100 --fourier-radius-step 0.2 --final-iters 20" --out bench/results/big128.jsonl
# session 14: system time at box 128 (2,000 particles of the box-128 stack above), before and after chunking
A="--particles /tmp/big128/particles.star --threads 2 --num-particles 2000 --init-res 35 --max-res 3.5 --init-iters 20 --fourier-radius-step 1.0 --final-iters 10 --starts 1 --init-minibatch 90 --final-minibatch 300 --minibatch-switch 20"
perf record -F 199 -g -o /tmp/perf.data -- /usr/bin/time -v .venv/bin/abinitrefine run $A --out /tmp/sys128
perf report -i /tmp/perf.data --no-children --sort sym --stdio | head -60
bash bench/run_scale.sh demo 67d2580 bench/results/demo_67d2580.json
bash bench/run_scale.sh demo 70cd241 bench/results/demo_70cd241.json
# session 14: the kernel cache (empty, then filled) and the halves side by side
rm -rf ~/.cache/scipion-abinitrefine
bash bench/run_scale.sh demo 77b6e4a /tmp/demo_cold.json
bash bench/run_scale.sh demo 77b6e4a /tmp/demo_warm.json
ABINITREFINE_SIDE_BY_SIDE=1 bash bench/run_scale.sh demo 77b6e4a /tmp/demo_sbs.json
# session 15: the box-128 job again after the sampling and insertion-order changes (e12fffe), and the demo in
# turn and side by side, twice each (2ef43fe)
/usr/bin/time -v .venv/bin/abinitrefine run $A --out /tmp/sys128
bash bench/run_scale.sh demo 2ef43fe /tmp/demo_inturn.json
ABINITREFINE_SIDE_BY_SIDE=1 bash bench/run_scale.sh demo 2ef43fe /tmp/demo_sbs.json
ABINITREFINE_SIDE_BY_SIDE=1 bash bench/run_scale.sh demo 2ef43fe /tmp/demo_sbs2.json
bash bench/run_scale.sh demo 2ef43fe /tmp/demo_inturn2.json
# session 16: the demo and the box-128 job at the session's start (2c56fd3) and after (82f9243: normalisation,
# padded transforms, back-projection kernel; 92b4a9f: the balanced chunk grid), each alone, in turn
bash bench/run_scale.sh demo 2c56fd3 /tmp/demo_2c56.json
bash bench/run_scale.sh demo 82f9243 /tmp/demo_82f9.json
bash bench/run_scale.sh demo 82f9243 /tmp/demo_82f9b.json
bash bench/run_scale.sh demo 92b4a9f /tmp/demo_92b4.json
bash bench/run_scale.sh demo c9a3212 /tmp/demo_c9a3.json
for rev in 2c56fd3 82f9243; do  # each in a worktree at $rev, PYTHONPATH=$wt
  /usr/bin/time -v .venv/bin/python -m scipion_abinitrefine.cli run $A --out /tmp/b128_$rev
done
.venv/bin/python bench/scale.py --boxes 64 256 --res 35 --iters 8 --out /tmp/scale16.jsonl
# session 17: the demo before / after the random starts' element rule (starts.start_radii), one after the other
bash bench/run_scale.sh demo 052e49d bench/results/demo_052e49d.json
bash bench/run_scale.sh demo 4caca33 bench/results/demo_4caca33.json

#!/usr/bin/env bash
# Wall, user and system time and peak memory of `abinitrefine demo` at a git revision (issue 17, item 6):
#   bash bench/demo_time.sh REV OUT_JSON      e.g. bash bench/demo_time.sh c849b71 bench/results/demo_c849b71.json
# The revision is checked out in a temporary worktree and run with this checkout's .venv (PYTHONPATH),
# nothing else running. Prints one JSON line (also written to OUT_JSON).
set -eu
rev=$1; out=$2
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

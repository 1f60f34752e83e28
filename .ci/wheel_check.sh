#!/usr/bin/env bash
# The package as a user installs it: build the wheel and the sdist, install the wheel into a fresh virtual
# environment outside the source tree, and run the INSTALLED copy: the CLI (simulate + a tiny job), plugin
# discovery by pyworkflow and the plugin's Scipion-style suite through pyworkflow's test runner (what
# `scipion3 tests` runs), GUI class included under xvfb-run.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
WORK=$(mktemp -d /tmp/abinitrefine_wheel.XXXXXX)
echo "wheel check in $WORK"

.venv/bin/python -m pip install -q build 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -m build --no-isolation --wheel --sdist --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 ||
  { tail -40 "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/*.whl)
SDIST=$(ls "$WORK"/dist/*.tar.gz)
python3 -m zipfile -l "$WHEEL" >"$WORK/wheel.txt"   # what `unzip -l` lists
for f in engine/__init__.py engine/job.py engine/search.py engine/kernels_cuda.py engine/params.py protocols.conf bibtex.py \
         templates/abinitrefine_relion_local.json.template \
         tests/test_scipion_suite.py tests/protocol_cases.py; do
  grep -q "scipion_abinitrefine/$f" "$WORK/wheel.txt" || { echo "the wheel lacks scipion_abinitrefine/$f"; exit 1; }
done
echo "wheel: $(grep -c 'scipion_abinitrefine/engine/.*\.py' "$WORK/wheel.txt") engine modules"
tar tzf "$SDIST" >"$WORK/sdist.txt"
for f in LICENSE CHANGES.rst README.rst docs/design.rst setup.py scipion_abinitrefine/engine/__init__.py; do
  grep -q "/$f\$" "$WORK/sdist.txt" || { echo "the sdist lacks $f"; exit 1; }
done

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
"$WORK/venv/bin/python" -m pip install -q "$WHEEL[scipion,test]" 2>&1 | { grep -v "^WARNING: Location" || true; }
cd "$WORK"  # nothing from the source tree on the path from here on
VPY="$WORK/venv/bin/python"
"$VPY" - <<PY
import scipion_abinitrefine.engine.job as job
assert job.__file__.startswith("$WORK/venv/"), job.__file__
assert not job.__file__.startswith("$SRC"), job.__file__
print("installed engine:", job.__file__)
PY
"$WORK/venv/bin/abinitrefine" simulate --out sim --n 200 --box 32 --apix 4 --snr 0.3 --seed 3 >/dev/null
# a smoke test of the installed command (the suite checks results): short, to keep CI within its time
"$WORK/venv/bin/abinitrefine" run --particles sim/particles.star --out job --backend cpu --threads 2 \
  --max-res 16 --align-res 24 --init-iters 6 --final-iters 2 --fourier-radius-step 0.3 --init-minibatch 60 \
  --final-minibatch 100 --minibatch-switch 30 --lr-duration 15 --align-every 10 --starts 2 >job.log 2>&1 ||
  { tail -40 job.log; exit 1; }
"$VPY" -c "import json; r = json.load(open('job/result.json')); print('installed job:', r['resolution_A'], 'A,', r['verdict'])"

"$VPY" -m scipion_abinitrefine.tests.scipion_env --pyworkflow-tests "$WORK/scipion" \
  --show --mode classes --grep abinitrefine | tee "$WORK/list.txt"
for c in TestAbInitRefinePlugin TestAbInitRefineProtocol TestAbInitRefineGui; do
  grep -q "test_scipion_suite.$c" "$WORK/list.txt" || { echo "pyworkflow's runner does not list $c"; exit 1; }
done
"$VPY" -m scipion_abinitrefine.tests.scipion_env --pyworkflow-tests "$WORK/scipion" --gui \
  scipion_abinitrefine.tests.test_scipion_suite | tail -25
echo "wheel check passed"
rm -rf "$WORK"

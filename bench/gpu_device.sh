#!/bin/bash
# One GPU-machine session in one command (device time is short): the GPU tests, bench/gpu.py and the demo job
# on the cuda backend. Each step has its own time limit and the script goes on past a failed step, so one
# call returns everything there is to learn. Logs and JSON go to $OUT (default /tmp/gpu_device).
#
#   bash bench/gpu_device.sh [gpu.py options...]
#   GPU_BIG_JOB=1 bash bench/gpu_device.sh ...   # also the box-128, 20,000-particle job end to end (~5 min)
#
# Runs under the machine's own python3 (its scipy / numba / numba-cuda / CuPy). What the image lacks travels as
# wheels in .whl/ (ignored by git; see the device README): mrcfile and emtable, and numpy 2.3.5, since the
# image's numpy 2.5.2 breaks numba-cuda 0.30.4 (session 23):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl mrcfile emtable numpy==2.3.5
set -o pipefail
OUT=${OUT:-/tmp/gpu_device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "gpu_device.sh: wheel install failed"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() {  # step NAME LIMIT_S COMMAND...: run, log to $OUT/NAME.log, note the status and the seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
}
step env 60 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
  python3 -c "import sys, numpy, scipy, numba, cupy; from importlib.metadata import version as v;
print(sys.version.split()[0], \"numpy\", numpy.__version__, \"scipy\", scipy.__version__, \"numba\", numba.__version__,
\"numba-cuda\", v(\"numba-cuda\"), \"cupy\", cupy.__version__); from numba import cuda; print(cuda.is_available(),
cuda.get_current_device().name, cuda.get_current_device().compute_capability)"'
step tests 60 python3 -m pytest -q -p no:cacheprovider scipion_abinitrefine/tests/test_cuda_kernels.py \
  scipion_abinitrefine/tests/test_backend_orchestration.py scipion_abinitrefine/tests/test_search_sampling.py
step gpu_bench 190 python3 bench/gpu.py --json "$OUT/gpu.json" "$@"
step demo_cuda 170 python3 -m scipion_abinitrefine.cli demo --backend cuda --out /tmp/demo_cuda
cp /tmp/demo_cuda/job/result.json "$OUT/demo_cuda_result.json" 2>/dev/null
if [ "${GPU_BIG_JOB:-0}" = 1 ]; then
  step big128 420 python3 bench/scale.py --big --dir /tmp/big128 --box 128 --apix 1.3 --n 20000 --unique 2000 --snr 0.02 \
    --threads 16 --out "$OUT/big128_gpu.jsonl" --job-args "--init-res 35 --max-res 3.5 --init-iters 100 \
    --fourier-radius-step 0.2 --final-iters 20 --backend cuda"
fi
cat "$OUT/steps.txt"

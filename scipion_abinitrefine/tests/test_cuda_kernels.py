"""CUDA kernels against the numpy references (CUDA simulator) and compiled to PTX for sm_90 (no GPU needed).

Both kinds of check run in a subprocess: ``NUMBA_ENABLE_CUDASIM=1`` only works when set before numba is first
imported, and other tests in this pytest process import numba; the PTX compile must run without the
simulator. The subprocess runs this file as a script (``python test_cuda_kernels.py sim|ptx``), prints its
measurements as JSON on the last line, and the tests assert on them, so a wrong kernel fails here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOL = 2e-5  # relative to the largest reference value; float32 kernels vs float64 references


def _run_script(mode: str, simulator: bool, timeout: int = 900) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), mode], env=env, cwd=str(ROOT),
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"`{mode}` subprocess failed (rc={p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- what the subprocesses run --------------------------------------------------------------------------------
def _problem(seed, Dp, radius, n):
    from scipion_abinitrefine.engine import fourier, so3

    rng = np.random.default_rng(seed)
    F = (rng.normal(size=(Dp,) * 3) + 1j * rng.normal(size=(Dp,) * 3)).astype(np.complex64)
    R = so3.random_rotations(n, rng).astype(np.float32)
    kx, ky = (a.astype(np.float32) for a in fourier.half_plane_points(radius))
    vals = (rng.normal(size=(n, len(kx))) + 1j * rng.normal(size=(n, len(kx)))).astype(np.complex64)
    wts = rng.random((n, len(kx))).astype(np.float32)
    return F, R, kx, ky, vals, wts


def _fview(a):
    return a.view(np.float32).reshape(a.shape + (2,))


def _rel(got, ref):
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def _sim_checks() -> dict:
    from numba import cuda

    from scipion_abinitrefine.engine import kernels_cpu, kernels_cuda
    from scipion_abinitrefine.testing import kernels_ref

    assert kernels_cuda.SIMULATOR and cuda.is_available()  # the simulator's device
    res = {}

    def extract(F, R, kx, ky, pad, **kw):
        out = np.full((len(R), len(kx), 2), np.nan, np.float32)  # every entry must be written
        kernels_cuda.extract_slices_launch(_fview(F), R, kx, ky, pad, out, **kw)
        return out.view(np.complex64)[..., 0]

    def insert(Dp, R, kx, ky, pad, vals, wts, times=1, **kw):
        B = np.zeros((Dp,) * 3, np.complex64)
        W = np.zeros((Dp,) * 3, np.float32)
        for _ in range(times):
            kernels_cuda.insert_slices_launch(_fview(B), W, R, kx, ky, pad, _fview(vals), wts, **kw)
        return B, W

    # extraction: Dp 24 / radius 6 / pad 2 reaches past the grid edge (zeros), Dp 32 / pad 1 stays inside
    F, R, kx, ky, _, _ = _problem(0, 24, 6, 5)
    got = extract(F, R, kx, ky, 2)
    res["extract_edge"] = _rel(got, kernels_ref.extract_slices_ref(F, R, kx, ky, 2))
    res["extract_edge_zeros"] = int(np.sum(got == 0))
    F, R, kx, ky, _, _ = _problem(1, 32, 9, 4)
    res["extract_pad1"] = _rel(extract(F, R, kx, ky, 1), kernels_ref.extract_slices_ref(F, R, kx, ky, 1))
    # grid y shrunk to 2 blocks of 1 row, 64 threads: the grid-stride loop over rotations must cover all 4
    got = extract(F, R, kx, ky, 1, threads=64, limits=(1024, 2**31 - 1, 2))
    res["extract_gridstride"] = _rel(got, kernels_ref.extract_slices_ref(F, R, kx, ky, 1))
    res["extract_cpu"] = _rel(got, kernels_cpu.extract_slices(F, R, kx, ky, 1))

    # insertion: edge clipping at Dp 24; all inside at Dp 32 (Hermitian, vs CPU); accumulation over two calls
    _, R, kx, ky, vals, wts = _problem(2, 24, 6, 5)
    vals[1, :7] = 0
    wts[1, :7] = 0  # skipped points
    B, W = insert(24, R, kx, ky, 2, vals, wts)
    Br, Wr = kernels_ref.insert_slices_ref(24, R, kx, ky, 2, vals, wts)
    res["insert_edge_B"], res["insert_edge_W"] = _rel(B, Br), _rel(W, Wr)
    _, R, kx, ky, vals, wts = _problem(3, 32, 7, 4)
    B, W = insert(32, R, kx, ky, 2, vals, wts, times=2, threads=64, limits=(1024, 2**31 - 1, 3))
    Br, Wr = kernels_ref.insert_slices_ref(32, R, kx, ky, 2, vals, wts)
    res["insert_twice_B"], res["insert_twice_W"] = _rel(B, 2 * Br), _rel(W, 2 * Wr)
    inner = B[1:, 1:, 1:]
    res["insert_hermitian"] = _rel(inner, np.conj(inner[::-1, ::-1, ::-1]))
    acc = kernels_cpu.Accumulator(32, nthreads=2)
    acc.insert(R, kx, ky, 2, vals, wts)
    Bc, Wc = acc.result()
    res["insert_cpu_B"], res["insert_cpu_W"] = _rel(B, 2 * Bc), _rel(W, 2 * Wc)

    # argument checks
    errs = 0
    for bad in (R.astype(np.float64), R[:, :2]):
        try:
            kernels_cuda.extract_slices_launch(_fview(F), bad, kx, ky, 1, np.zeros((len(R), len(kx), 2), np.float32))
        except ValueError:
            errs += 1
    res["bad_args_rejected"] = errs
    return res


F64 = re.compile(r"\.f64\b|%fd\d")  # float64 instructions or registers
F32_ATOMIC = re.compile(r"\b(?:red|atom)(?:\.[a-z]+)*\.global(?:\.[a-z]+)*\.add\.f32\b")


def _ptx_checks() -> dict:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    from scipion_abinitrefine.engine import kernels_cuda

    assert not kernels_cuda.SIMULATOR and cuda.implementation == "NVIDIA", "numba-cuda (not the simulator) needed"
    # A kernel's device functions are compiled for the *current device's* compute capability (they ignore
    # compile_ptx's cc). Without a GPU there is none, so pin them to the target cc as well.
    assert hasattr(dispatcher, "get_current_device"), "numba-cuda internals changed: update this test"
    dispatcher.get_current_device = lambda: type("FakeDevice", (), {"compute_capability": (9, 0)})()
    res = {}
    for name, fn in kernels_cuda.KERNEL_FUNCTIONS.items():
        try:
            ptx, _ = cuda.compile_ptx(fn, kernels_cuda.KERNEL_SIGNATURES[name], cc=(9, 0),
                                      **kernels_cuda.GPU_COMPILE_OPTIONS)
        except Exception as e:  # noqa: BLE001 - name the usual cause
            raise RuntimeError("PTX compile failed; NVVM comes from the pip extra: pip install "
                               f"'numba-cuda[cu13]' (make test installs it): {type(e).__name__}: {e}") from e
        res[name] = dict(chars=len(ptx), target=" ".join(re.findall(r"^\.target\s+(\S+)", ptx, re.M)),
                         f64=[ln.strip() for ln in ptx.splitlines() if F64.search(ln)][:20],
                         f32_atomics=len(F32_ATOMIC.findall(ptx)),
                         other_atomics=len(re.findall(r"\b(?:red|atom)\.", ptx)) - len(F32_ATOMIC.findall(ptx)))
    return res


# -- the tests --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim():
    return _run_script("sim", simulator=True)


@pytest.mark.parametrize("key", ["extract_edge", "extract_pad1", "extract_gridstride", "extract_cpu",
                                 "insert_edge_B", "insert_edge_W", "insert_twice_B", "insert_twice_W",
                                 "insert_cpu_B", "insert_cpu_W"])
def test_simulated_kernel_matches_reference(sim, key):
    assert sim[key] < TOL, f"{key}: relative error {sim[key]:.3g} (all: {sim})"


def test_simulated_edges_hermitian_and_arg_checks(sim):
    assert sim["extract_edge_zeros"] > 0  # the edge case really leaves the grid
    assert sim["insert_hermitian"] < TOL
    assert sim["bad_args_rejected"] == 2


def test_ptx_sm90_compiles_float32_only():
    res = _run_script("ptx", simulator=False)
    assert set(res) == {"extract_slices_kernel", "insert_slices_kernel"}
    for name, r in res.items():
        assert r["target"] == "sm_90", (name, r["target"])
        assert not r["f64"], f"{name}: float64 creep in PTX: {r['f64']}"
    assert res["extract_slices_kernel"]["f32_atomics"] == 0
    # 2 splats (q and -q) x 8 corners x (re, im, weight), all float32 atomics, nothing else
    assert res["insert_slices_kernel"]["f32_atomics"] == 48
    assert res["insert_slices_kernel"]["other_atomics"] == 0


def test_launch_config_limits():
    from scipion_abinitrefine.engine.kernels_cuda import launch_config

    lim = (1024, 2**31 - 1, 65535)
    assert launch_config(6000, 8000, 256, lim) == ((47, 4000), (128, 2))
    assert launch_config(20, 3, 256, lim) == ((1, 1), (32, 8))
    assert launch_config(20, 10**6, 256, lim)[0] == (1, 65535)  # grid-stride over the rest
    assert launch_config(0, 5, 256, lim) is None
    for bad in (0, 100, 2048):
        with pytest.raises(ValueError):
            launch_config(10, 10, bad, lim)
    with pytest.raises(ValueError):
        launch_config(10**6, 1, 256, (1024, 100, 65535))


def test_low_occupancy_warning_silenced_others_kept():
    """numba-cuda warns at every launch of fewer than 128 blocks, which the low-resolution iterations do by
    nature: the demo's log on an H200 carried hundreds of such lines. Only that warning is dropped."""
    import warnings

    from numba.cuda.core import errors

    from scipion_abinitrefine.engine.kernels_cuda import _silence_low_occupancy

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")  # what a user's session shows, then the job's filter on top
        _silence_low_occupancy()
        # the message exactly as numba-cuda 0.30 words it, terminal escape codes included
        grid = "\x1b[1mGrid size 23 will likely result in GPU under-utilization due to low occupancy.\x1b[0m"
        warnings.warn(errors.NumbaPerformanceWarning(grid), stacklevel=1)
        warnings.warn(errors.NumbaPerformanceWarning("\x1b[1mHost array used in CUDA kernel\x1b[0m"), stacklevel=1)
    assert [str(r.message) for r in rec] == ["\x1b[1mHost array used in CUDA kernel\x1b[0m"]


def test_cuda_backend_names_a_numpy_that_numba_cuda_cannot_load_with():
    """numba-cuda 0.30.4 fails with numpy 2.5 (no np.row_stack) at its first kernel compile; the backend
    says so when it is created, before any data are read. Replayed on this numpy by telling numba-cuda it runs
    on numpy 2.5 and removing np.row_stack."""
    code = ("import importlib\nimport numpy as np\nfrom scipion_abinitrefine.engine import kernels_cuda\n"
            "importlib.import_module('numba.cuda.np.numpy_support').numpy_version = (2, 5)\ndel np.row_stack\n"
            "try:\n    kernels_cuda.require_gpu()\nexcept RuntimeError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(ROOT), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "does not load with numpy" in p.stdout and "row_stack" in p.stdout, p.stdout + p.stderr[-3000:]


def test_cuda_backend_without_gpu_says_why_or_works_with_one():
    from scipion_abinitrefine.engine import backend

    if not backend.gpu_visible():
        with pytest.raises(RuntimeError, match="GPU|numba-cuda|CuPy"):
            backend.get_backend("cuda")
        return
    from scipion_abinitrefine.testing import kernels_ref

    be = backend.get_backend("cuda")
    F, R, kx, ky, vals, wts = _problem(4, 32, 8, 6)
    got = be.to_host(be.extract_slices(be.asarray(F), be.asarray(R), be.asarray(kx), be.asarray(ky), 2))
    assert _rel(got, kernels_ref.extract_slices_ref(F, R, kx, ky, 2)) < TOL
    acc = be.accumulator(32)
    acc.insert(R, kx, ky, 2, vals, wts)
    B, W = (be.to_host(a) for a in acc.result())
    Br, Wr = kernels_ref.insert_slices_ref(32, R, kx, ky, 2, vals, wts)
    assert _rel(B, Br) < TOL and _rel(W, Wr) < TOL


if __name__ == "__main__":
    mode = sys.argv[1]
    out = {"sim": _sim_checks, "ptx": _ptx_checks}[mode]()
    print(json.dumps(out))

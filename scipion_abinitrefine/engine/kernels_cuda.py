"""CUDA kernels (numba.cuda) for slice extraction and insertion, and the ``cuda`` backend.

Same shapes and conventions as :mod:`kernels_cpu` (see there), same geometry helpers
(:mod:`kernels_common`, compiled here with ``cuda.jit(device=True)``):

  Fv, Bv (Dp, Dp, Dp, 2) float32   float32 view of a complex64 padded centred transform
  Wv     (Dp, Dp, Dp)    float32   insertion weights
  R      (n, 3, 3)       float32   rotation matrices A
  kx, ky (m,)            float32   half-plane frequency points
  out, vals (n, m, 2)    float32   slice values (re, im);  wts (n, m) float32

Kernel rules (docs/design.rst, "Backends and kernel rules"): float32/int32 only (``float32(...)`` literals),
complex accumulation through float32 views and float32 ``cuda.atomic.add`` (complex atomics pass in the simulator
but fail on a GPU), the API is called only as ``cuda.xxx`` (the simulator swaps the module), GPU-only jit options
sit behind :func:`_kernel`, and :func:`launch_config` checks launch limits. The module imports and the kernels run
under ``NUMBA_ENABLE_CUDASIM=1`` without CuPy; :class:`CUDABackend` imports CuPy when it is created.

Threads: x indexes the frequency point j, y the rotation r with a grid-stride loop (no per-sample division;
any n fits the 65535 grid-y limit). Adjacent threads take adjacent points of one slice: points are sorted by
radius, so their gathers and atomics land close together in the volume.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from numba import config, cuda, float32, int32

from . import kernels_common as kc

SIMULATOR = bool(config.ENABLE_CUDASIM)


def _silence_low_occupancy():
    """Drop numba-cuda's warning about grids of fewer than 128 blocks: the low-resolution iterations launch
    small grids by nature (a few hundred points per slice), and hundreds of such lines buried the demo's
    log on an H200. By message, which numba-cuda starts with a terminal escape code (its
    NumbaPerformanceWarning is its own class, not numba's)."""
    warnings.filterwarnings("ignore", message=r"\W*(\[1m)?Grid size \d+ will likely result in GPU under-utilization")


_silence_low_occupancy()

# options that only mean something to the real compiler (the simulator ignores them); the PTX test compiles
# with these too. No cache=True: numba keys its cache on this file only, so an edit to kernels_common.py would
# leave a stale kernel in the cache (compiling both kernels takes about a second per process).
GPU_COMPILE_OPTIONS = dict(fastmath=True)
_GPU_JIT_OPTIONS = dict(GPU_COMPILE_OPTIONS)


def _kernel(fn):
    """``cuda.jit`` a kernel, adding the GPU-only options when not under the simulator."""
    return cuda.jit(fn) if SIMULATOR else cuda.jit(**_GPU_JIT_OPTIONS)(fn)


_rotated_coords = cuda.jit(device=True)(kc.rotated_coords)
_sample = cuda.jit(device=True)(kc.sample_trilinear)
_corner_weight = cuda.jit(device=True)(kc.corner_weight)


def extract_slices_kernel(Fv, R, kx, ky, pad, out):
    j, r0 = cuda.grid(2)
    m = kx.shape[0]
    if j >= m:
        return
    n = R.shape[0]
    step = cuda.gridDim.y * cuda.blockDim.y
    c = float32(Fv.shape[0] // 2)
    kxj = kx[j]
    kyj = ky[j]
    for r in range(r0, n, step):
        x, y, z = _rotated_coords(R, r, kxj, kyj, pad, c)
        re, im = _sample(Fv, x, y, z)
        out[r, j, 0] = re
        out[r, j, 1] = im


def _splat_py(Bv, Wv, x, y, z, re, im, w):
    """Trilinear scatter of (re, im) and w at (x, y, z) with float32 atomics; nothing outside the grid."""
    n = Wv.shape[0]
    x0 = int32(math.floor(x))
    y0 = int32(math.floor(y))
    z0 = int32(math.floor(z))
    if x0 < 0 or y0 < 0 or z0 < 0 or x0 + 1 >= n or y0 + 1 >= n or z0 + 1 >= n:
        return
    fx = x - float32(x0)
    fy = y - float32(y0)
    fz = z - float32(z0)
    for corner in range(8):
        cw = _corner_weight(fx, fy, fz, corner)
        xi = x0 + int32(corner & 1)
        yi = y0 + int32((corner >> 1) & 1)
        zi = z0 + int32((corner >> 2) & 1)
        cuda.atomic.add(Bv, (zi, yi, xi, int32(0)), cw * re)
        cuda.atomic.add(Bv, (zi, yi, xi, int32(1)), cw * im)
        cuda.atomic.add(Wv, (zi, yi, xi), cw * w)


_splat = cuda.jit(device=True)(_splat_py)


def insert_slices_kernel(Bv, Wv, R, kx, ky, pad, vals, wts):
    """Each value goes in at q and its complex conjugate at -q (Friedel mate), exactly like the CPU kernel."""
    j, r0 = cuda.grid(2)
    m = kx.shape[0]
    if j >= m:
        return
    n = R.shape[0]
    step = cuda.gridDim.y * cuda.blockDim.y
    c = float32(Wv.shape[0] // 2)
    c2 = float32(2.0) * c
    kxj = kx[j]
    kyj = ky[j]
    for r in range(r0, n, step):
        w = wts[r, j]
        re = vals[r, j, 0]
        im = vals[r, j, 1]
        if w == float32(0.0) and re == float32(0.0) and im == float32(0.0):
            continue
        x, y, z = _rotated_coords(R, r, kxj, kyj, pad, c)
        _splat(Bv, Wv, x, y, z, re, im, w)
        _splat(Bv, Wv, c2 - x, c2 - y, c2 - z, re, -im, w)


# python functions (for cuda.compile_ptx in the tests) and their compiled kernels
KERNEL_FUNCTIONS = {"extract_slices_kernel": extract_slices_kernel, "insert_slices_kernel": insert_slices_kernel}
_extract = _kernel(extract_slices_kernel)
_insert = _kernel(insert_slices_kernel)

# signatures of the arrays the launchers pass (C-contiguous float32, pad float32), for ahead-of-time checks
_F4 = "float32[:, :, :, ::1]"
KERNEL_SIGNATURES = {
    "extract_slices_kernel": f"void({_F4}, float32[:, :, ::1], float32[::1], float32[::1], float32, "
                             "float32[:, :, ::1])",
    "insert_slices_kernel": f"void({_F4}, float32[:, :, ::1], float32[:, :, ::1], float32[::1], float32[::1], "
                            "float32, float32[:, :, ::1], float32[:, ::1])",
}


# -- launcher -----------------------------------------------------------------------------------------------
# CUDA limits for every device numba-cuda supports (cc >= 5.0); the device's own values are used when known
MAX_THREADS_PER_BLOCK = 1024
MAX_GRID_DIM_X = 2**31 - 1
MAX_GRID_DIM_Y = 65535

_limits_cache: list = []


def device_limits() -> tuple[int, int, int]:
    """(max threads per block, max grid x, max grid y) of the current device; CUDA's limits in the simulator."""
    if not _limits_cache:
        lim = (MAX_THREADS_PER_BLOCK, MAX_GRID_DIM_X, MAX_GRID_DIM_Y)
        if not SIMULATOR:
            try:
                d = cuda.get_current_device()
                lim = (int(d.MAX_THREADS_PER_BLOCK), int(d.MAX_GRID_DIM_X), int(d.MAX_GRID_DIM_Y))
            except Exception:  # noqa: BLE001 - no device: keep the architectural limits
                pass
        _limits_cache.append(lim)
    return _limits_cache[0]


def launch_config(m: int, n: int, threads: int = 256, limits=None):
    """Grid and block for m points x n rotations: x over points, y over rotations (grid-stride in y).

    Returns ``((gx, gy), (bx, by))``, or None when there is nothing to do. Raises ValueError when the block
    size is not a multiple of 32 within the device limit or m needs more blocks than grid x allows.
    """
    max_tpb, max_gx, max_gy = limits or device_limits()
    if threads % 32 or not 32 <= threads <= max_tpb:
        raise ValueError(f"threads per block must be a multiple of 32 in [32, {max_tpb}], got {threads}")
    if m < 0 or n < 0:
        raise ValueError(f"negative launch size m={m}, n={n}")
    if m == 0 or n == 0:
        return None
    bx = min(128, threads, 32 * -(-m // 32))  # no more x-threads than points (rounded up to a warp)
    by = threads // bx
    gx = -(-m // bx)
    gy = min(-(-n // by), max_gy)
    if gx > max_gx:
        raise ValueError(f"{m} points need {gx} blocks in x, more than the device's {max_gx}")
    return (gx, gy), (bx, by)


def _check(name, a, shape):
    if tuple(a.shape) != tuple(shape) or a.dtype != np.float32:
        raise ValueError(f"{name}: expected float32 {tuple(shape)}, got {a.dtype} {tuple(a.shape)}")


def extract_slices_launch(Fv, R, kx, ky, pad, out, stream=0, threads: int = 256, limits=None):
    """Launch extraction: device arrays (numpy arrays in the simulator), out (n, m, 2) written.

    ``limits`` overrides :func:`device_limits` (the tests shrink grid y to exercise the grid-stride loop).
    """
    Dp, n, m = Fv.shape[0], R.shape[0], kx.shape[0]
    for name, a, shape in (("Fv", Fv, (Dp, Dp, Dp, 2)), ("R", R, (n, 3, 3)), ("kx", kx, (m,)), ("ky", ky, (m,)),
                           ("out", out, (n, m, 2))):
        _check(name, a, shape)
    cfg = launch_config(m, n, threads, limits)
    if cfg is not None:
        _extract[cfg[0], cfg[1], stream](Fv, R, kx, ky, np.float32(pad), out)


def insert_slices_launch(Bv, Wv, R, kx, ky, pad, vals, wts, stream=0, threads: int = 256, limits=None):
    """Launch insertion: accumulates into Bv (Dp, Dp, Dp, 2) and Wv (Dp, Dp, Dp) with float32 atomics."""
    Dp, n, m = Wv.shape[0], R.shape[0], kx.shape[0]
    for name, a, shape in (("Bv", Bv, (Dp, Dp, Dp, 2)), ("Wv", Wv, (Dp, Dp, Dp)), ("R", R, (n, 3, 3)),
                           ("kx", kx, (m,)), ("ky", ky, (m,)), ("vals", vals, (n, m, 2)), ("wts", wts, (n, m))):
        _check(name, a, shape)
    cfg = launch_config(m, n, threads, limits)
    if cfg is not None:
        _insert[cfg[0], cfg[1], stream](Bv, Wv, R, kx, ky, np.float32(pad), vals, wts)


# -- backend ------------------------------------------------------------------------------------------------
def require_gpu():
    """Fail clearly unless numba-cuda drives a real NVIDIA GPU."""
    if SIMULATOR:
        raise RuntimeError("backend=cuda needs a real GPU: NUMBA_ENABLE_CUDASIM=1 is set (the simulator is "
                           "only for the kernel tests)")
    impl = getattr(cuda, "implementation", None)
    if impl != "NVIDIA":
        raise RuntimeError("backend=cuda needs the numba-cuda package (pip install 'numba-cuda[cu13]'); numba's "
                           f"built-in CUDA target is not supported (numba.cuda.implementation = {impl!r})")
    _check_compiler_loads()
    if not cuda.is_available():
        raise RuntimeError("backend=cuda: no usable NVIDIA GPU/driver found (numba.cuda.is_available() is False)")


def _check_compiler_loads():
    """Load now what numba-cuda loads at the first kernel compile, where an incompatible numpy would fail
    deep inside the first launch, after the data were read (numba-cuda 0.30.4 with numpy 2.5: np.row_stack
    is gone; seen on a GPU machine's image)."""
    try:
        import numba.cuda.np.arrayobj  # noqa: F401
    except ModuleNotFoundError:
        return  # another numba-cuda layout: its first compile will tell
    except AttributeError as e:
        from importlib.metadata import version

        raise RuntimeError(f"backend=cuda: numba-cuda {version('numba-cuda')} does not load with numpy "
                           f"{np.__version__} ({e}); install a numpy it supports (docs/results.rst's GPU runs: "
                           "numpy 2.3.5 with numba-cuda 0.30.4) or a newer numba-cuda") from e


class CUDABackend:
    """numba.cuda kernels on CuPy arrays; cuFFT and cuBLAS through ``xp = cupy``.

    Kernels run on CuPy's current stream, so they are ordered with CuPy work without host synchronisation.
    Inputs may be numpy or CuPy arrays (numpy ones are copied to the device); results are CuPy arrays.
    """

    name = "cuda"
    # the pose search's batch cutting (search.PoseSearch): few, large array operations, since each one is a
    # kernel launch (~10-20 us from Python) and the GPU has memory to spare. A level-0 chunk of 256 images
    # scores 256 x <= 61 shifts x 4,608 rotations (the shift grid scales with the box): ~0.3 GB per float32
    # array, a few of them at a time.
    search_chunk = 256
    search_fine_bytes = 512 << 20

    def __init__(self):
        require_gpu()
        try:
            import cupy
        except ImportError as e:
            raise RuntimeError("backend=cuda needs CuPy for the GPU's CUDA version (e.g. cupy-cuda13x)") from e
        self.xp = cupy
        self._streams: dict[int, object] = {}

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    # helpers (public for bench/gpu.py, which launches the kernels directly)
    def stream(self):
        """numba stream object for CuPy's current stream (kernels launched on it are ordered with CuPy work)."""
        ptr = int(self.xp.cuda.get_current_stream().ptr)
        s = self._streams.get(ptr)
        if s is None:
            s = self._streams[ptr] = cuda.external_stream(ptr) if ptr else cuda.default_stream()
        return s

    def _dev(self, a, dtype):
        """C-contiguous device array of dtype (numpy input copied over, strided numpy made contiguous first)."""
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a, dtype=dtype)
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    @staticmethod
    def device_view(a):
        """numba view of a CuPy array; sync=False: we launch on CuPy's stream, so no host wait is needed."""
        return cuda.as_cuda_array(a, sync=False)

    def _f32view(self, a):
        """complex64 (..., ) CuPy array -> float32 (..., 2) view sharing memory."""
        return a.view(self.xp.float32).reshape(a.shape + (2,))

    def _geom(self, R, kx, ky):
        return (self._dev(R, np.float32).reshape(-1, 3, 3), self._dev(kx, np.float32).ravel(),
                self._dev(ky, np.float32).ravel())

    def extract_slices(self, F, R, kx, ky, pad):
        """Central slices of padded transform F (complex64) at rotations R -> complex64 (n, m) CuPy array."""
        F = self._dev(F, np.complex64)
        R, kx, ky = self._geom(R, kx, ky)
        out = self.xp.empty((R.shape[0], kx.shape[0], 2), dtype=self.xp.float32)
        if out.size == 0:
            return out.view(self.xp.complex64).reshape(out.shape[:2])
        dv = self.device_view
        extract_slices_launch(dv(self._f32view(F)), dv(R), dv(kx), dv(ky), pad, dv(out), stream=self.stream())
        return out.view(self.xp.complex64).reshape(out.shape[:2])

    def accumulator(self, Dp: int):
        return CUDAAccumulator(self, Dp)


class CUDAAccumulator:
    """Back-projection target on the GPU: B (complex64 padded) and W (float32 padded), filled with atomics."""

    def __init__(self, backend: CUDABackend, Dp: int):
        xp = backend.xp
        self.be = backend
        self.B = xp.zeros((Dp, Dp, Dp), dtype=xp.complex64)
        self.W = xp.zeros((Dp, Dp, Dp), dtype=xp.float32)
        self.Bv = backend._f32view(self.B)

    def reset(self):
        self.B.fill(0)
        self.W.fill(0)

    def insert(self, R, kx, ky, pad, vals, wts):
        be = self.be
        R, kx, ky = be._geom(R, kx, ky)
        v = be._dev(vals, np.complex64).reshape(R.shape[0], kx.shape[0])
        w = be._dev(wts, np.float32).reshape(R.shape[0], kx.shape[0])
        if w.size == 0:
            return
        dv = be.device_view
        insert_slices_launch(dv(self.Bv), dv(self.W), dv(R), dv(kx), dv(ky), pad, dv(be._f32view(v)), dv(w),
                             stream=be.stream())

    def result(self):
        """(B, W) copies (like the CPU accumulator's, they survive a later reset)."""
        return self.B.copy(), self.W.copy()

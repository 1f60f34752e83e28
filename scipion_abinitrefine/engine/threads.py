"""One knob for every CPU thread pool the engine uses (docs/design.rst, "Backends").

numba's kernels, scipy.fft's transforms and the pose search's workers each get the job's thread count;
BLAS (OpenBLAS under numpy/scipy) gets one thread. The search already runs its matrix products in
parallel, one batch part per worker (:meth:`search.PoseSearch.workers`), and an idle OpenBLAS pool
spins beside numba's threads: measured on 2 cores, with BLAS at 2 threads a third of the CPU time was
system time (the spinning), for the same wall time.

:func:`limit` also keeps glibc's allocator from returning every large temporary to the kernel: numpy
takes arrays over 128 KiB (glibc's default) straight from mmap and gives them back on free, so each
iteration's level-0 score arrays (tens of MB) were fresh pages, zeroed by the kernel. On the 2-core
profile bench/scale.py runs, this cut system time from 14% to 5% of the CPU time and wall time by 15%.
"""
from __future__ import annotations

import os

import numpy as np

SIDE_BY_SIDE = "ABINITREFINE_SIDE_BY_SIDE"  # "1": the two halves side by side (half_workers)
_TOUCH = None  # a tiny parallel kernel (compiled on first use)
_LIMITER = None  # the threadpoolctl limit in force (kept alive: dropping it would not undo it, but be clear)


def available() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def limit(n: int = 0) -> int:
    """Use ``n`` threads (0: every CPU this process may run on, at most numba's maximum). Returns n."""
    global _LIMITER
    import numba
    import scipy.linalg  # noqa: F401 - load scipy's BLAS too, so the limit reaches it
    from threadpoolctl import threadpool_limits

    from . import fourier

    n = int(n) if n and n > 0 else available()
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    fourier.set_workers(n)
    _LIMITER = threadpool_limits(limits=1, user_api="blas")
    keep_heap()
    return n


def keep_heap() -> bool:
    """glibc only: serve allocations up to 32 MiB from the heap and keep up to 256 MiB of freed heap.

    Returns False where there is no glibc (the allocator is then left as it is)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed on 64-bit
    ok &= mallopt(M_TRIM_THRESHOLD, 256 << 20)
    ok &= mallopt(M_TOP_PAD, 64 << 20)
    return bool(ok)


def current() -> dict:
    """The thread counts in force (for logs and tests)."""
    import numba
    from threadpoolctl import threadpool_info

    from . import fourier

    blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return dict(numba=numba.get_num_threads(), fft=fourier.get_workers(), blas=max(blas) if blas else 0)


def concurrent_kernels_ok() -> bool:
    """Whether numba's parallel kernels may run from two Python threads at once: every threading layer but
    workqueue allows it (numba aborts the process on concurrent workqueue use). Runs a tiny parallel kernel
    first so that numba has chosen its layer."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        _touch_parallel(np.zeros(4))
        layer = numba.threading_layer()
    return layer != "workqueue"


def _touch_parallel(a):
    global _TOUCH
    if _TOUCH is None:
        from numba import njit, prange

        @njit(parallel=True)
        def touch(x):
            for i in prange(x.shape[0]):
                x[i] += 1.0

        _TOUCH = touch
    _TOUCH(a)


class HalfWorkers:
    """One worker thread per half-set, each with its share of the job's threads (numba's thread count is per
    thread): half A and half B run their iterations at the same time, so that the parts of an iteration that
    use one core (the SGD update, the noise model) of one half overlap the other half's search.

    ``run(fa, fb)`` calls fa() on A's worker and fb() on B's and returns both results (an exception in
    either is raised here)."""

    def __init__(self, n_threads: int):
        from concurrent.futures import ThreadPoolExecutor

        import numba

        shares = (n_threads // 2, n_threads - n_threads // 2)
        self.pools = [ThreadPoolExecutor(1, thread_name_prefix=f"half-{h}", initializer=numba.set_num_threads,
                                         initargs=(k,)) for h, k in zip("AB", shares)]

    def run(self, fa, fb):
        futures = [pool.submit(f) for pool, f in zip(self.pools, (fa, fb))]
        return tuple(f.result() for f in futures)

    def close(self):
        for pool in self.pools:
            pool.shutdown(wait=True)


def half_workers(backend: str) -> HalfWorkers | None:
    """Workers to run the two halves side by side on the CPU with the threads in force, or None (one thread,
    a GPU, or numba's workqueue layer): then the halves take turns."""
    import numba

    # off unless asked (ABINITREFINE_SIDE_BY_SIDE=1): on 2 cores the whole demo took 259 s side by side
    # against 263-264 s in turn, the same maps, for 3% more CPU time and 0.3 GB more memory
    # (docs/results.rst, "Scale")
    if os.environ.get(SIDE_BY_SIDE) != "1":
        return None
    n = numba.get_num_threads()
    if backend != "cpu" or n < 2 or not concurrent_kernels_ok():
        return None
    return HalfWorkers(n)


# ---- the pose search's parts of a batch (search.PoseSearch.search) and their workers

def search_workers(be) -> int:
    """Threads the pose search (``search.PoseSearch``) splits a batch over on backend ``be``: the CPU
    backend's numba thread count, else 1.

    Each worker runs its images' whole search (numpy releases the GIL in its array loops; BLAS runs one
    thread per call, see :func:`limit`), so every step of it, not only the matrix products,
    uses all the cores. Not under numba's workqueue threading layer, which must not be entered from
    two threads at once.
    """
    if be.name != "cpu":
        return 1
    import numba

    try:
        if numba.threading_layer() == "workqueue":
            return 1
    except ValueError:  # no parallel kernel has run yet in this process: the layer is not chosen
        return 1
    return numba.get_num_threads()


def chunk_edges(B: int, chunk: int) -> np.ndarray:
    """The chunk grid of a batch of B images: the edges of an even number of chunks of at most ``chunk``
    images whose sizes differ by at most one (90 images: 6 of 15; 100: 8 of 12-13). A function of B alone,
    so every chunk's rows, and BLAS's rounding of them, stay the same whatever the worker count; two workers'
    parts (``split_parts``) then differ by at most one image (with a fixed 16-image grid a 90-image minibatch split
    48 / 42 and the second core idled 1/8 of the search)."""
    n = -(-B // max(1, chunk))
    n += n % 2
    return np.unique(np.round(np.linspace(0, B, n + 1)).astype(np.int64))


def split_parts(edges: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Contiguous parts of the batch for n workers, each a run of whole chunks of the grid ``edges``: every
    chunk's matrix product then has the same rows whatever the worker count (BLAS rounds a row differently
    with the rows beside it: a cut that moved with the worker count made results depend on --threads in the
    last digits)."""
    k = len(edges) - 1
    n = max(1, min(n, k))
    cut = np.round(np.linspace(0, k, n + 1)).astype(np.int64)
    return [(int(edges[a]), int(edges[b])) for a, b in zip(cut[:-1], cut[1:]) if b > a]


_POOLS: dict = {}


def search_pool(n: int):
    """A persistent pool of n search workers; each runs numba's kernels on one thread (numba's thread count
    is per thread: the workers together use the cores the caller's count names)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    key = (n, threading.current_thread().name)  # the two halves' threads (job.py) each get their own workers
    if key not in _POOLS:
        import numba

        _POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="pose-search",
                                         initializer=lambda: numba.set_num_threads(1))
    return _POOLS[key]

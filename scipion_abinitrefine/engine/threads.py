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
    # (bench/RESULTS.rst, Scale; session 15)
    if os.environ.get(SIDE_BY_SIDE) != "1":
        return None
    n = numba.get_num_threads()
    if backend != "cpu" or n < 2 or not concurrent_kernels_ok():
        return None
    return HalfWorkers(n)

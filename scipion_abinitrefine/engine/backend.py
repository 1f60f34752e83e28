"""Compute backends: one algorithm, two array modules.

``get_backend("cpu" | "cuda" | "auto")`` returns an object with the same methods on both:

- ``xp``                      numpy or cupy
- ``asarray(a)`` / ``to_host(a)``
- ``extract_slices(F, R, kx, ky, pad) -> complex64 (n, m)``  (F: padded centred transform, complex64)
- ``accumulator(Dp) -> obj`` with ``reset()``, ``insert(R, kx, ky, pad, vals, wts)``, ``result() -> (B, W)``
- ``name``

Arrays passed in are the backend's own (``asarray`` first). The pose search (:mod:`search`: slices,
shift phases, the likelihood's matrix products, beam selection) is written with ``xp``, so BLAS (numpy) or
cuBLAS (cupy) does the products and its arrays stay on the device; the model goes over once per iteration
and the poses come back. The SGD update of the model and the noise model stay on the host (numpy): they
touch the padded volume once per iteration, a small cost beside the search.
"""
from __future__ import annotations

import os

import numpy as np

from . import kernels_cpu


class CPUBackend:
    name = "cpu"
    xp = np
    # the pose search's batch cutting (search.PoseSearch): images per level-0 chunk, and bytes of one complex
    # temporary of the finer levels; small, so they stay in the caches (a GPU wants large ones: each array
    # operation is a kernel launch there, kernels_cuda.CUDABackend)
    search_chunk = 16
    search_fine_bytes = 8 << 20

    @staticmethod
    def asarray(a, dtype=None):
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def to_host(a):
        return np.asarray(a)

    @staticmethod
    def extract_slices(F, R, kx, ky, pad):
        return kernels_cpu.extract_slices(F, R, kx, ky, pad)

    @staticmethod
    def accumulator(Dp: int):
        return kernels_cpu.Accumulator(Dp)

    @staticmethod
    def synchronize():
        pass


def gpu_visible() -> bool:
    """True when a real NVIDIA GPU is usable through numba-cuda (never under the simulator)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - any driver/import problem means no GPU
        return False


def get_backend(name: str = "auto"):
    """Pick a backend by name; ``auto`` means cuda when a GPU is visible, else cpu."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if gpu_visible() else "cpu"
    if name == "cpu":
        return CPUBackend()
    if name == "cuda":
        from .kernels_cuda import CUDABackend  # imported lazily: needs numba-cuda and cupy

        return CUDABackend()
    raise ValueError(f"unknown backend {name!r}: use 'cpu', 'cuda' or 'auto'")

"""CPU kernels (numba.njit, parallel over slices) for slice extraction and insertion.

Shapes:
  Fv   (Dp, Dp, Dp, 2) float32   padded centred transform (float32 view of complex64)
  R    (n, 3, 3)      float32   rotation matrices A (RELION convention)
  kx, ky (m,)         float32   half-plane frequency points (index units of the unpadded box)
  out/vals (n, m, 2)  float32   slice values (re, im)
  wts  (n, m)         float32   insertion weights (e.g. CTF^2/sigma^2 times posterior)
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import float32, int32, njit, prange

from . import kernels_common as kc

_rotated_coords = njit(kc.rotated_coords, inline="always")
_sample = njit(kc.sample_trilinear, inline="always")
_corner_weight = njit(kc.corner_weight, inline="always")


@njit(parallel=True, fastmath=True)  # no cache: numba would not see edits to kernels_common
def extract_slices_kernel(Fv, R, kx, ky, pad, out):
    n = R.shape[0]
    m = kx.shape[0]
    c = float32(Fv.shape[0] // 2)
    p = float32(pad)
    for r in prange(n):
        for j in range(m):
            x, y, z = _rotated_coords(R, r, kx[j], ky[j], p, c)
            re, im = _sample(Fv, x, y, z)
            out[r, j, 0] = re
            out[r, j, 1] = im


@njit(inline="always")
def _splat(Bv, Wv, x, y, z, re, im, w):
    n = Wv.shape[0]
    x0 = int32(math.floor(x))
    y0 = int32(math.floor(y))
    z0 = int32(math.floor(z))
    if x0 < 0 or y0 < 0 or z0 < 0 or x0 + 1 >= n or y0 + 1 >= n or z0 + 1 >= n:
        return
    fx = float32(x - x0)
    fy = float32(y - y0)
    fz = float32(z - z0)
    for corner in range(8):
        cw = _corner_weight(fx, fy, fz, corner)
        xi = x0 + (corner & 1)
        yi = y0 + ((corner >> 1) & 1)
        zi = z0 + ((corner >> 2) & 1)
        Bv[zi, yi, xi, 0] += cw * re
        Bv[zi, yi, xi, 1] += cw * im
        Wv[zi, yi, xi] += cw * w


@njit(parallel=True, fastmath=True)  # no cache: numba would not see edits to kernels_common
def insert_slices_kernel(Bbuf, Wbuf, R, kx, ky, pad, vals, wts):
    """Accumulate slices into per-thread buffers Bbuf (T, Dp,Dp,Dp, 2), Wbuf (T, Dp,Dp,Dp).

    Each value is inserted at q and its complex conjugate at -q (Friedel mate), so the accumulated
    volume stays Hermitian although slices hold only half-plane points.
    """
    T = Bbuf.shape[0]
    n = R.shape[0]
    m = kx.shape[0]
    c = float32(Wbuf.shape[1] // 2)
    p = float32(pad)
    for t in prange(T):
        Bv = Bbuf[t]
        Wv = Wbuf[t]
        for r in range(t, n, T):
            for j in range(m):
                w = wts[r, j]
                re = vals[r, j, 0]
                im = vals[r, j, 1]
                if w == 0.0 and re == 0.0 and im == 0.0:
                    continue
                x, y, z = _rotated_coords(R, r, kx[j], ky[j], p, c)
                _splat(Bv, Wv, x, y, z, re, im, w)
                _splat(Bv, Wv, float32(2.0) * c - x, float32(2.0) * c - y, float32(2.0) * c - z,
                       re, -im, w)


def as_float_view(F: np.ndarray) -> np.ndarray:
    """complex64 (Dp, Dp, Dp) -> float32 view (Dp, Dp, Dp, 2) sharing memory."""
    assert F.dtype == np.complex64 and F.flags.c_contiguous
    return F.view(np.float32).reshape(F.shape + (2,))


def extract_slices(F: np.ndarray, R: np.ndarray, kx, ky, pad: int) -> np.ndarray:
    """Central slices of padded transform F (complex64) at rotations R -> complex64 (n, m)."""
    out = np.empty((len(R), len(kx), 2), dtype=np.float32)
    extract_slices_kernel(as_float_view(F), np.ascontiguousarray(R, dtype=np.float32),
                          np.asarray(kx, np.float32), np.asarray(ky, np.float32), pad, out)
    return out.view(np.complex64)[..., 0]


class Accumulator:
    """Back-projection target: B (complex64 padded) and W (float32 padded), per-thread buffers."""

    def __init__(self, Dp: int, nthreads: int | None = None):
        self.T = max(1, min(nthreads or numba.get_num_threads(), 8))
        self.Bbuf = np.zeros((self.T, Dp, Dp, Dp, 2), dtype=np.float32)
        self.Wbuf = np.zeros((self.T, Dp, Dp, Dp), dtype=np.float32)

    def reset(self):
        self.Bbuf[...] = 0
        self.Wbuf[...] = 0

    def insert(self, R, kx, ky, pad, vals: np.ndarray, wts: np.ndarray):
        v = np.ascontiguousarray(vals, dtype=np.complex64)
        insert_slices_kernel(self.Bbuf, self.Wbuf, np.ascontiguousarray(R, dtype=np.float32),
                             np.asarray(kx, np.float32), np.asarray(ky, np.float32), pad,
                             v.view(np.float32).reshape(v.shape + (2,)),
                             np.ascontiguousarray(wts, dtype=np.float32))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        B = self.Bbuf.sum(axis=0)
        return np.ascontiguousarray(B).view(np.complex64)[..., 0], self.Wbuf.sum(axis=0)

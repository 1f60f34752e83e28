"""CPU kernels (numba.njit) for slice extraction (parallel over slices) and insertion (parallel over z-planes).

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
from .jitcache import CACHE

_rotated_coords = njit(kc.rotated_coords, inline="always")
_sample = njit(kc.sample_trilinear, inline="always")
_corner_weight = njit(kc.corner_weight, inline="always")


@njit(parallel=True, fastmath=True, cache=CACHE)
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
def _splat_slab(Bv, Wv, x, y, z, re, im, w, lo, hi):
    """Trilinear splat of one value at (x, y, z), only into the z-planes lo <= zi < hi."""
    n = Wv.shape[0]
    x0 = int32(math.floor(x))
    y0 = int32(math.floor(y))
    z0 = int32(math.floor(z))
    if x0 < 0 or y0 < 0 or z0 < 0 or x0 + 1 >= n or y0 + 1 >= n or z0 + 1 >= n:
        return
    if z0 + 1 < lo or z0 >= hi:
        return
    fx = float32(x - x0)
    fy = float32(y - y0)
    fz = float32(z - z0)
    for corner in range(8):
        zi = z0 + ((corner >> 2) & 1)
        if zi < lo or zi >= hi:
            continue
        cw = _corner_weight(fx, fy, fz, corner)
        xi = x0 + (corner & 1)
        yi = y0 + ((corner >> 1) & 1)
        Bv[zi, yi, xi, 0] += cw * re
        Bv[zi, yi, xi, 1] += cw * im
        Wv[zi, yi, xi] += cw * w


@njit(parallel=True, fastmath=True, cache=CACHE)
def plane_counts(R, kx, ky, pad, Dp, T):
    """Number of splats (points and their Friedel mates) whose lower z-plane is each plane of the grid."""
    n = R.shape[0]
    m = kx.shape[0]
    c = float32(Dp // 2)
    p = float32(pad)
    H = np.zeros((T, Dp), np.int64)
    for t in prange(T):
        for r in range(t, n, T):
            for j in range(m):
                z = (R[r, 0, 2] * kx[j] + R[r, 1, 2] * ky[j]) * p + c
                z0 = int32(math.floor(z))
                if 0 <= z0 < Dp:
                    H[t, z0] += 1
                z0 = int32(math.floor(float32(2.0) * c - z))
                if 0 <= z0 < Dp:
                    H[t, z0] += 1
    return H.sum(axis=0)


@njit(parallel=True, fastmath=True, cache=CACHE)
def insert_slices_kernel(Bv, Wv, R, kx, ky, pad, vals, wts, bounds):
    """Accumulate slices into Bv (Dp,Dp,Dp, 2) and Wv (Dp,Dp,Dp), in parallel over slabs of z-planes: slab t
    is planes bounds[t] <= z < bounds[t + 1].

    Each slab's thread goes through every point and writes only its own planes, so no two threads write one
    voxel and every voxel receives its contributions in the same order (slice, point, mate) whatever the
    slabs: the result does not depend on the thread count, and the memory is one volume, not one per thread
    (per-thread volumes cost 1.6 GB each at box 256, padded, in the final pass).
    Each value is inserted at q and its complex conjugate at -q (Friedel mate), so the accumulated
    volume stays Hermitian although slices hold only half-plane points.
    """
    T = bounds.shape[0] - 1
    n = R.shape[0]
    m = kx.shape[0]
    c = float32(Wv.shape[0] // 2)
    c2 = float32(2.0) * c
    p = float32(pad)
    for t in prange(T):
        lo = bounds[t]
        hi = bounds[t + 1]
        if lo >= hi:
            continue
        zlo = float32(lo - 1)
        zhi = float32(hi)
        for r in range(n):
            for j in range(m):
                # z first: a splat at z touches planes floor(z) and floor(z) + 1, its mate those of 2c - z
                z = (R[r, 0, 2] * kx[j] + R[r, 1, 2] * ky[j]) * p + c
                zm = c2 - z
                if (z < zlo or z >= zhi) and (zm < zlo or zm >= zhi):
                    continue
                w = wts[r, j]
                re = vals[r, j, 0]
                im = vals[r, j, 1]
                if w == 0.0 and re == 0.0 and im == 0.0:
                    continue
                x, y, z = _rotated_coords(R, r, kx[j], ky[j], p, c)
                _splat_slab(Bv, Wv, x, y, z, re, im, w, lo, hi)
                _splat_slab(Bv, Wv, c2 - x, c2 - y, c2 - z, re, -im, w, lo, hi)


# The SGD update's kernels run on the host for every backend (the accumulator comes back from the device), so
# they are CPU-only and keep float64 where the numpy formula they replace has it (shell radii, shell sums).
@njit(inline="always")
def _shell(z, y, x, c, pad, D):
    """Shell of padded voxel (z, y, x): rint(|k| / pad) capped at D, as ``fourier.radial_index`` computes it."""
    d = math.sqrt(float((z - c) * (z - c)) + float((y - c) * (y - c)) + float((x - c) * (x - c))) / pad
    return min(int(np.rint(d)), D)


@njit(parallel=True, cache=CACHE)
def curvature_shell_sums(H, Wv, decay, pad, D):
    """H <- decay * H + Wv in place; per z-plane sums of H and counts of H > 0 in each shell (float64
    (Dp, D + 1) each: summed over planes in order afterwards, so the result does not depend on the threads)."""
    Dp = H.shape[0]
    c = Dp // 2
    wsum = np.zeros((Dp, D + 1))
    wcnt = np.zeros((Dp, D + 1))
    for z in prange(Dp):
        for y in range(Dp):
            for x in range(Dp):
                h = H[z, y, x] * decay + Wv[z, y, x]
                H[z, y, x] = h
                if h != 0.0:
                    s = _shell(z, y, x, c, pad, D)
                    wsum[z, s] += h
                    if h > 0.0:
                        wcnt[z, s] += 1.0
    return wsum, wcnt


@njit(parallel=True, cache=CACHE)
def preconditioned_step(Gv, Bv, Wv, H, lam, pad, D):
    """G <- G + (B - W G) / (H + lambda(shell) + 1e-30) where H > 0 (complex volumes as float32 views)."""
    Dp = H.shape[0]
    c = Dp // 2
    tiny = float32(1e-30)
    for z in prange(Dp):
        for y in range(Dp):
            for x in range(Dp):
                h = H[z, y, x]
                if h > 0.0:
                    # times the reciprocal, as numpy divides a complex64 by a real (the same bits)
                    inv = float32(1.0) / (h + lam[_shell(z, y, x, c, pad, D)] + tiny)
                    w = Wv[z, y, x]
                    gr = Gv[z, y, x, 0]
                    gi = Gv[z, y, x, 1]
                    Gv[z, y, x, 0] = gr + (Bv[z, y, x, 0] - w * gr) * inv
                    Gv[z, y, x, 1] = gi + (Bv[z, y, x, 1] - w * gi) * inv


@njit(parallel=True, cache=CACHE)
def normalise_background(img, radius, out):
    """out[i] = (img[i] - mean) / std over the pixels of image i farther than ``radius`` from the centre pixel
    (D // 2, as ``fourier.radial_index``); a std of 0 counts as 1. One image per thread, float64 sums, two
    passes (the mean, then the squared deviations); ``out`` may be ``img``."""
    n, D = img.shape[0], img.shape[1]
    c = D // 2
    r2 = radius * radius
    for i in prange(n):
        s = 0.0
        cnt = 0
        for y in range(D):
            for x in range(D):
                if float((y - c) * (y - c) + (x - c) * (x - c)) > r2:
                    s += img[i, y, x]
                    cnt += 1
        mu = s / max(cnt, 1)
        ss = 0.0
        for y in range(D):
            for x in range(D):
                if float((y - c) * (y - c) + (x - c) * (x - c)) > r2:
                    d = img[i, y, x] - mu
                    ss += d * d
        sd = math.sqrt(ss / max(cnt, 1))
        if not sd > 0.0:
            sd = 1.0
        m32 = float32(mu)
        inv = float32(1.0 / sd)
        for y in range(D):
            for x in range(D):
                out[i, y, x] = (img[i, y, x] - m32) * inv


@njit(parallel=True, fastmath=True, cache=CACHE)
def hermitian_to_centred(Hv, Gv):
    """G (Dp, Dp, Dp) centred complex transform from its half H (Dp, Dp, Dp // 2 + 1) in standard order
    (numpy's rfftn layout): G(k) = H(k) for kx >= 0, conj(H(-k)) for kx < 0 (a real map's transform).
    Float32 views (..., 2) of both (``as_float_view``)."""
    Dp = Gv.shape[0]
    c = Dp // 2
    for z in prange(Dp):
        zs = (z - c) % Dp
        zn = (c - z) % Dp
        for y in range(Dp):
            ys = (y - c) % Dp
            yn = (c - y) % Dp
            for x in range(c, Dp):
                Gv[z, y, x, 0] = Hv[zs, ys, x - c, 0]
                Gv[z, y, x, 1] = Hv[zs, ys, x - c, 1]
            for x in range(c):
                Gv[z, y, x, 0] = Hv[zn, yn, c - x, 0]
                Gv[z, y, x, 1] = -Hv[zn, yn, c - x, 1]


@njit(parallel=True, fastmath=True, cache=CACHE)
def centred_to_hermitian(Gv, Hv):
    """The half H (Dp, Dp, Dp // 2 + 1), standard order, of the Hermitian part (G(k) + conj(G(-k))) / 2 of a
    centred transform G (Dp, Dp, Dp): the half spectrum whose inverse real transform is the real part of G's
    inverse. kx = 0 .. Dp / 2 (the Nyquist Dp / 2 at G's x-index 0, frequency -Dp / 2, the same). Float32
    views (..., 2) of both (``as_float_view``)."""
    Dp = Gv.shape[0]
    c = Dp // 2
    half = float32(0.5)
    for z in prange(Dp):
        zs = (z - c) % Dp
        zm = (Dp - z) % Dp
        for y in range(Dp):
            ys = (y - c) % Dp
            ym = (Dp - y) % Dp
            for j in range(c):
                Hv[zs, ys, j, 0] = (Gv[z, y, c + j, 0] + Gv[zm, ym, c - j, 0]) * half
                Hv[zs, ys, j, 1] = (Gv[z, y, c + j, 1] - Gv[zm, ym, c - j, 1]) * half
            Hv[zs, ys, c, 0] = (Gv[z, y, 0, 0] + Gv[zm, ym, 0, 0]) * half
            Hv[zs, ys, c, 1] = (Gv[z, y, 0, 1] - Gv[zm, ym, 0, 1]) * half


@njit(parallel=True, fastmath=True, cache=CACHE)
def weighted_slices(Xv, C, inv_s2, t, w, kx, ky, box, rows, valsv, wts, bestv):
    """The back-projection's values of ``rows`` (n, 2: image i, pose k) of a batch: the image's points Xv
    (B, m, 2) shifted by t[i, k] (px; phases exp(-2 pi i k.t / box), computed in float32 as
    ``fourier.shift_phases``), times w[i, k] C / s2 -> valsv (n, m, 2); w[i, k] C^2 / s2 -> wts (n, m). Images
    ``bestv`` (B, m, 2) receive their points shifted by their first pose (row k = 0 of each image, which
    ``rows`` must hold). One row per thread."""
    n = rows.shape[0]
    m = kx.shape[0]
    a0 = float32(-2.0 * math.pi / box)
    for r in prange(n):
        i = rows[r, 0]
        k = rows[r, 1]
        tx = t[i, k, 0]
        ty = t[i, k, 1]
        wk = w[i, k]
        for j in range(m):
            arg = a0 * (tx * kx[j] + ty * ky[j])
            cs = math.cos(arg)
            sn = math.sin(arg)
            xr = Xv[i, j, 0]
            xi = Xv[i, j, 1]
            yr = xr * cs - xi * sn
            yi = xr * sn + xi * cs
            if k == 0:
                bestv[i, j, 0] = yr
                bestv[i, j, 1] = yi
            c = C[i, j]
            a = wk * c * inv_s2[j]
            valsv[r, j, 0] = a * yr
            valsv[r, j, 1] = a * yi
            wts[r, j] = a * c


def slab_bounds(counts: np.ndarray, T: int) -> np.ndarray:
    """Boundaries of T slabs of z-planes holding about equal numbers of splats (int64, T + 1, from 0 to Dp)."""
    Dp = len(counts)
    cum = np.concatenate([[0], np.cumsum(counts)])
    if cum[-1] == 0:
        return np.linspace(0, Dp, T + 1).astype(np.int64)
    inner = np.searchsorted(cum, cum[-1] * np.arange(1, T) / T)
    return np.concatenate([[0], np.clip(inner, 0, Dp), [Dp]]).astype(np.int64)


def as_float_view(F: np.ndarray) -> np.ndarray:
    """complex64 array -> float32 view (..., 2) sharing memory."""
    assert F.dtype == np.complex64 and F.flags.c_contiguous
    return F.view(np.float32).reshape(F.shape + (2,))


def extract_slices(F: np.ndarray, R: np.ndarray, kx, ky, pad: int) -> np.ndarray:
    """Central slices of padded transform F (complex64) at rotations R -> complex64 (n, m)."""
    out = np.empty((len(R), len(kx), 2), dtype=np.float32)
    extract_slices_kernel(as_float_view(F), np.ascontiguousarray(R, dtype=np.float32),
                          np.asarray(kx, np.float32), np.asarray(ky, np.float32), pad, out)
    return out.view(np.complex64)[..., 0]


class Accumulator:
    """Back-projection target: B (complex64 padded) and W (float32 padded), one of each, filled by
    ``T`` slabs of z-planes in parallel (:func:`insert_slices_kernel`)."""

    def __init__(self, Dp: int, nthreads: int | None = None):
        self.T = max(1, nthreads or numba.get_num_threads())
        self.B = np.zeros((Dp, Dp, Dp), dtype=np.complex64)
        self.W = np.zeros((Dp, Dp, Dp), dtype=np.float32)

    def reset(self):
        self.B[...] = 0
        self.W[...] = 0

    def insert(self, R, kx, ky, pad, vals: np.ndarray, wts: np.ndarray):
        v = np.ascontiguousarray(vals, dtype=np.complex64)
        R = np.ascontiguousarray(R, dtype=np.float32)
        kx, ky = np.asarray(kx, np.float32), np.asarray(ky, np.float32)
        Dp = self.W.shape[0]
        # slabs with equal shares of the splats (the central planes hold most of them)
        bounds = slab_bounds(plane_counts(R, kx, ky, pad, Dp, self.T), self.T)
        insert_slices_kernel(as_float_view(self.B), self.W, R, kx, ky, pad, v.view(np.float32).reshape(v.shape + (2,)),
                             np.ascontiguousarray(wts, dtype=np.float32), bounds)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, W): the accumulator's own arrays, valid until the next :meth:`reset` or :meth:`insert`."""
        return self.B, self.W

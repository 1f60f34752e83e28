"""Geometry helpers written once, compiled for the CPU (``numba.njit``) and the GPU
(``numba.cuda.jit(device=True)``). Plain scalar code: float32/int32 only, no numpy calls, no allocation.

Volumes are padded centred Fourier transforms stored as float32 views ``(Dp, Dp, Dp, 2)`` (re, im) of a
complex64 array; a frequency vector q (index units of the unpadded box) sits at ``q * pad + Dp // 2``.
"""
import math

from numba import float32, int32


def rotated_coords(R, r, kx, ky, pad, c):
    """Padded-grid coordinates (x, y, z) of plane point (kx, ky) rotated into the map: A.T @ (kx, ky, 0)."""
    x = (R[r, 0, 0] * kx + R[r, 1, 0] * ky) * pad + c
    y = (R[r, 0, 1] * kx + R[r, 1, 1] * ky) * pad + c
    z = (R[r, 0, 2] * kx + R[r, 1, 2] * ky) * pad + c
    return x, y, z


def sample_trilinear(Fv, x, y, z):
    """Trilinear interpolation of the complex volume at (x, y, z); zero outside the grid."""
    n = Fv.shape[0]
    x0 = int32(math.floor(x))
    y0 = int32(math.floor(y))
    z0 = int32(math.floor(z))
    if x0 < 0 or y0 < 0 or z0 < 0 or x0 + 1 >= n or y0 + 1 >= n or z0 + 1 >= n:
        return float32(0.0), float32(0.0)
    fx = x - float32(x0)  # float32 - float32: mixing int32 and float32 would promote to float64
    fy = y - float32(y0)
    fz = z - float32(z0)
    gx = float32(1.0) - fx
    gy = float32(1.0) - fy
    gz = float32(1.0) - fz
    re = float32(0.0)
    im = float32(0.0)
    for dz in range(2):
        wz = fz if dz == 1 else gz
        for dy in range(2):
            wy = fy if dy == 1 else gy
            for dx in range(2):
                wx = fx if dx == 1 else gx
                w = wz * wy * wx
                re += w * Fv[z0 + dz, y0 + dy, x0 + dx, 0]
                im += w * Fv[z0 + dz, y0 + dy, x0 + dx, 1]
    return re, im


def corner_weight(fx, fy, fz, corner):
    """Trilinear weight of corner index 0..7 (bit 0: x, bit 1: y, bit 2: z) for fractions (fx, fy, fz)."""
    wx = fx if (corner & 1) else float32(1.0) - fx
    wy = fy if (corner & 2) else float32(1.0) - fy
    wz = fz if (corner & 4) else float32(1.0) - fz
    return wx * wy * wz

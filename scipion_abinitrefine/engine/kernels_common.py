"""Geometry helpers written once, compiled for the CPU (``numba.njit``) and the GPU
(``numba.cuda.jit(device=True)``). Plain scalar code: float32/int32 only, no numpy calls, no allocation.

Volumes are padded centred Fourier transforms stored as float32 views ``(Dp, Dp, Dp, 2)`` (re, im) of a
complex64 array; a frequency vector q (index units of the unpadded box) sits at ``q * pad + Dp // 2``.
"""

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
    # Sign test, then truncation: the same corner as floor() wherever the point is inside, without the
    # floor call (a libm call on the CPU: a fifth of this function's time at box 128).
    if x < float32(0.0) or y < float32(0.0) or z < float32(0.0):
        return float32(0.0), float32(0.0)
    x0 = int32(x)
    y0 = int32(y)
    z0 = int32(z)
    if x0 + 1 >= n or y0 + 1 >= n or z0 + 1 >= n:
        return float32(0.0), float32(0.0)
    x1 = x0 + 1
    y1 = y0 + 1
    z1 = z0 + 1
    fx = x - float32(x0)  # float32 - float32: mixing int32 and float32 would promote to float64
    fy = y - float32(y0)
    fz = z - float32(z0)
    gx = float32(1.0) - fx
    gy = float32(1.0) - fy
    gz = float32(1.0) - fz
    # separable: along x first (the two x corners are neighbours in memory), then y, then z
    w00 = gz * gy
    w01 = gz * fy
    w10 = fz * gy
    w11 = fz * fy
    re = (w00 * (gx * Fv[z0, y0, x0, 0] + fx * Fv[z0, y0, x1, 0])
          + w01 * (gx * Fv[z0, y1, x0, 0] + fx * Fv[z0, y1, x1, 0])
          + w10 * (gx * Fv[z1, y0, x0, 0] + fx * Fv[z1, y0, x1, 0])
          + w11 * (gx * Fv[z1, y1, x0, 0] + fx * Fv[z1, y1, x1, 0]))
    im = (w00 * (gx * Fv[z0, y0, x0, 1] + fx * Fv[z0, y0, x1, 1])
          + w01 * (gx * Fv[z0, y1, x0, 1] + fx * Fv[z0, y1, x1, 1])
          + w10 * (gx * Fv[z1, y0, x0, 1] + fx * Fv[z1, y0, x1, 1])
          + w11 * (gx * Fv[z1, y1, x0, 1] + fx * Fv[z1, y1, x1, 1]))
    return re, im


def corner_weight(fx, fy, fz, corner):
    """Trilinear weight of corner index 0..7 (bit 0: x, bit 1: y, bit 2: z) for fractions (fx, fy, fz)."""
    wx = fx if (corner & 1) else float32(1.0) - fx
    wy = fy if (corner & 2) else float32(1.0) - fy
    wz = fz if (corner & 4) else float32(1.0) - fz
    return wx * wy * wz

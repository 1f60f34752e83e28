"""Plain numpy references for every kernel (the tests compare CPU and CUDA kernels against these)."""
from __future__ import annotations

import numpy as np


def _coords(R, kx, ky, pad, c):
    k = np.stack([kx, ky, np.zeros_like(kx)], axis=0).astype(np.float64)  # (3, m)
    q = np.einsum("nji,jm->nim", R.astype(np.float64), k)  # A.T @ k -> (n, 3, m) as (x, y, z)
    return q * pad + c


def extract_slices_ref(F, R, kx, ky, pad):
    Dp = F.shape[0]
    c = Dp // 2
    q = _coords(R, kx, ky, pad, c)
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    x0, y0, z0 = np.floor(x).astype(int), np.floor(y).astype(int), np.floor(z).astype(int)
    inside = (x0 >= 0) & (y0 >= 0) & (z0 >= 0) & (x0 + 1 < Dp) & (y0 + 1 < Dp) & (z0 + 1 < Dp)
    fx, fy, fz = x - x0, y - y0, z - z0
    out = np.zeros(x.shape, dtype=np.complex128)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = (fx if dx else 1 - fx) * (fy if dy else 1 - fy) * (fz if dz else 1 - fz)
                zi = np.clip(z0 + dz, 0, Dp - 1)
                yi = np.clip(y0 + dy, 0, Dp - 1)
                xi = np.clip(x0 + dx, 0, Dp - 1)
                out += np.where(inside, w * F[zi, yi, xi], 0)
    return out


def insert_slices_ref(Dp, R, kx, ky, pad, vals, wts):
    c = Dp // 2
    B = np.zeros((Dp, Dp, Dp), dtype=np.complex128)
    W = np.zeros((Dp, Dp, Dp), dtype=np.float64)
    for sign in (1, -1):
        q = _coords(R, sign * np.asarray(kx, float), sign * np.asarray(ky, float), pad, c)
        v = vals if sign == 1 else np.conj(vals)
        x, y, z = q[:, 0].ravel(), q[:, 1].ravel(), q[:, 2].ravel()
        v, w = v.ravel(), wts.ravel()
        x0, y0, z0 = np.floor(x).astype(int), np.floor(y).astype(int), np.floor(z).astype(int)
        inside = (x0 >= 0) & (y0 >= 0) & (z0 >= 0) & (x0 + 1 < Dp) & (y0 + 1 < Dp) & (z0 + 1 < Dp)
        fx, fy, fz = x - x0, y - y0, z - z0
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    cw = (fx if dx else 1 - fx) * (fy if dy else 1 - fy) * (fz if dz else 1 - fz)
                    s = inside
                    np.add.at(B, (z0[s] + dz, y0[s] + dy, x0[s] + dx), cw[s] * v[s])
                    np.add.at(W, (z0[s] + dz, y0[s] + dy, x0[s] + dx), cw[s] * w[s])
    return B, W


def shell_regulariser(W, shells, fraction: float, n_shells: int) -> np.ndarray:
    """Per-voxel lambda (float32): ``fraction`` of the mean W of the voxel's shell over its voxels with W > 0
    (``shells``: each voxel's shell index); the whole-volume formula of the SGD update and the final
    reconstruction, which run it plane by plane or in kernels."""
    wsum = np.bincount(shells.ravel(), weights=W.ravel(), minlength=n_shells)
    wcnt = np.bincount(shells.ravel(), weights=(W > 0).ravel().astype(np.float64), minlength=n_shells)
    return (fraction * wsum / np.maximum(wcnt, 1)).astype(np.float32)[shells]


def normalise_background_ref(img, radius_px: float) -> np.ndarray:
    """Zero mean, unit std of the pixels farther than ``radius_px`` from the centre pixel, per image (float64)."""
    D = img.shape[-1]
    g = (np.arange(D) - D // 2) ** 2
    bg = np.sqrt(g[:, None] + g[None, :]).ravel() > radius_px
    v = img.reshape(len(img), -1)[:, bg].astype(np.float64)
    mu, sd = v.mean(axis=1), v.std(axis=1)
    sd[sd <= 0] = 1.0
    return (img - mu[:, None, None]) / sd[:, None, None]


def padded_transform_ref(vol, pad: int):
    """The centred transform of ``vol`` centred in a zero (pad D)^3 box (numpy's complex FFT, complex128)."""
    D = vol.shape[0]
    Dp = pad * D
    big = np.zeros((Dp, Dp, Dp))
    a = Dp // 2 - D // 2
    big[a:a + D, a:a + D, a:a + D] = vol
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(big)))


def padded_inverse_ref(F, box: int):
    """The centred box^3 of the real part of the centred inverse transform of F (numpy, float64)."""
    Dp = F.shape[0]
    a = Dp // 2 - box // 2
    big = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(F))).real
    return big[a:a + box, a:a + box, a:a + box]


def lowpass_shift_ref(vol, radius: float, width: float, shift=(0.0, 0.0, 0.0)):
    """Shift a real map by (x, y, z) voxels, then the raised-cosine low-pass at ``radius``: numpy's complex
    FFT in float64 on the whole (uncentred) grid."""
    D = vol.shape[0]
    k = np.fft.fftfreq(D) * D
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    t = np.clip((np.sqrt(kx**2 + ky**2 + kz**2) - radius) / max(width, 1e-6), 0.0, 1.0)
    ph = np.exp(-2j * np.pi * (kx * shift[0] + ky * shift[1] + kz * shift[2]) / D)
    return np.fft.ifftn(np.fft.fftn(vol) * ph * 0.5 * (1 + np.cos(np.pi * t))).real

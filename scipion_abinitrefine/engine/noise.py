"""The per-shell noise model of one half: the images' power at the start, then a running average of the
residuals at the best poses (a Gaussian likelihood per Fourier shell; docs/design.rst)."""
from __future__ import annotations

import numpy as np

# The running average remembers at most this many images, so the estimate keeps tracking the model as it
# improves (the residuals of early iterations hold structure the model had not yet explained).
NOISE_MEMORY_IMAGES = 5000.0


def shell_index(kx, ky) -> np.ndarray:
    """Fourier shell (rounded radius) of half-plane points (kx, ky)."""
    return np.rint(np.sqrt(kx.astype(np.float64) ** 2 + ky.astype(np.float64) ** 2)).astype(np.int64)


def initial_noise(shell: np.ndarray, X: np.ndarray, m: int) -> np.ndarray:
    """Per-shell noise variance from the images' own power at their first m points (noise dominates at low
    SNR); shells beyond them take the white-noise extrapolation of the outermost measured shells."""
    nsh = int(shell.max()) + 2
    pw = np.bincount(shell[:m], weights=(np.abs(X) ** 2).mean(axis=0), minlength=nsh)
    cnt = np.bincount(shell[:m], minlength=nsh)
    s2 = np.where(cnt > 0, pw / np.maximum(cnt, 1), np.nan)
    good = np.isfinite(s2) & (np.arange(nsh) > 0)
    fill = np.nanmedian(s2[good][-3:]) if good.any() else 1.0
    s2[~good] = fill
    return s2


def updated_noise(s2: np.ndarray, count: float, shell: np.ndarray, residual: np.ndarray, m: int):
    """Running per-shell variance: ``s2`` (worth ``count`` images) updated with ``residual`` = |X - C P|^2
    (B, m) at the best poses. Returns (new s2, new count)."""
    B = residual.shape[0]
    nsh = len(s2)
    pw = np.bincount(shell[:m], weights=residual.sum(axis=0), minlength=nsh)
    cnt = np.bincount(shell[:m], minlength=nsh) * B
    upd = cnt > 0
    new = s2.copy()
    new[upd] = (count * s2[upd] * (cnt[upd] / B) + pw[upd]) / (count * cnt[upd] / B + cnt[upd])
    return new, min(count + B, NOISE_MEMORY_IMAGES)

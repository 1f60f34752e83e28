"""Fourier shell correlation, soft auto-mask and the phase-randomisation correction (Chen et al. 2013)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import fourier


def _shells(shape):
    return np.rint(fourier.radial_index(shape)).astype(np.int64)


def fsc_curve(a, b, mask=None) -> np.ndarray:
    """FSC per integer Fourier shell 0..D//2 (index units) of two maps (optionally masked first)."""
    if mask is not None:
        a, b = a * mask, b * mask
    D = a.shape[0]
    A, B = fourier.ft3c(a), fourier.ft3c(b)
    sh = _shells(a.shape).ravel()
    num = np.bincount(sh, (A * np.conj(B)).real.ravel(), minlength=D)
    den = np.sqrt(np.bincount(sh, (np.abs(A) ** 2).ravel(), minlength=D) *
                  np.bincount(sh, (np.abs(B) ** 2).ravel(), minlength=D))
    return (num / np.maximum(den, 1e-30))[: D // 2 + 1]


def shell_freqs(box: int, apix: float) -> np.ndarray:
    return np.arange(box // 2 + 1) / (box * apix)


def resolution_at(fsc, box: int, apix: float, threshold: float = 0.143) -> float:
    """Resolution (A) where the FSC first falls below ``threshold`` (after shell 1), interpolated."""
    f = shell_freqs(box, apix)
    for i in range(2, len(fsc)):
        if fsc[i] < threshold:
            x0, x1, y0, y1 = f[i - 1], f[i], fsc[i - 1], fsc[i]
            fx = x0 + (y0 - threshold) / (y0 - y1) * (x1 - x0) if y0 != y1 else x1
            return float(1.0 / fx)
    return float(2.0 * apix)


def soft_auto_mask(vol, apix, lowpass_A=15.0, threshold=None, dilate_A=6.0, soft_A=6.0) -> np.ndarray:
    """Low-pass, threshold, largest component, dilate, raised-cosine edge; float32 in [0, 1]."""
    D = vol.shape[0]
    lp = fourier.lowpass_volume(vol, D * apix / lowpass_A, width=2.0)
    if threshold is None:
        # a robust level: a fraction of a high percentile of the low-passed map
        threshold = 0.15 * np.percentile(lp, 99.9)
    binm = lp > threshold
    lab, n = ndimage.label(binm)
    if n > 1:
        sizes = ndimage.sum(binm, lab, range(1, n + 1))
        binm = lab == (1 + int(np.argmax(sizes)))
    dist = ndimage.distance_transform_edt(~binm) * apix
    m = np.where(dist <= dilate_A, 1.0,
                 np.where(dist <= dilate_A + soft_A, 0.5 * (1 + np.cos(np.pi * (dist - dilate_A) / soft_A)), 0.0))
    return m.astype(np.float32)


def phase_randomize(vol, from_shell: int, seed: int = 0) -> np.ndarray:
    """Randomise Fourier phases beyond ``from_shell`` (Hermitian-consistent via the real FFT)."""
    rng = np.random.default_rng(seed)
    F = np.fft.rfftn(vol)
    D = vol.shape[0]
    kz = np.fft.fftfreq(D) * D
    ky = np.fft.fftfreq(D) * D
    kx = np.fft.rfftfreq(D) * D
    r = np.sqrt(kz[:, None, None] ** 2 + ky[None, :, None] ** 2 + kx[None, None, :] ** 2)
    sel = r > from_shell
    F[sel] = np.abs(F[sel]) * np.exp(2j * np.pi * rng.random(int(sel.sum())))
    return np.fft.irfftn(F, s=vol.shape).astype(np.float32)


def gold_standard_fsc(h1, h2, apix, mask=None, seed=0) -> dict:
    """Unmasked, masked, phase-randomised masked and corrected FSC; resolution at 0.143 (corrected)."""
    D = h1.shape[0]
    if mask is None:
        mask = soft_auto_mask(0.5 * (h1 + h2), apix)
    unm = fsc_curve(h1, h2)
    msk = fsc_curve(h1, h2, mask)
    below = np.flatnonzero(unm[1:] < 0.8)
    cut = int(below[0] + 1) if len(below) else D // 2
    if cut < D // 2:
        rnd = fsc_curve(phase_randomize(h1, cut, seed), phase_randomize(h2, cut, seed + 1), mask)
    else:
        rnd = np.zeros_like(msk)
    corr = msk.copy()
    beyond = np.arange(len(msk)) > cut + 1
    corr[beyond] = (msk[beyond] - rnd[beyond]) / np.maximum(1.0 - rnd[beyond], 1e-6)
    freq = shell_freqs(D, apix)
    with np.errstate(divide="ignore"):
        res = np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1), np.inf)
    return dict(shell=np.arange(len(msk)), freq=freq, resolution_A=res, fsc_unmasked=unm, fsc_masked=msk,
                fsc_randomized=rnd, fsc_corrected=corr, resolution=resolution_at(corr, D, apix), mask=mask,
                randomize_from_shell=cut)

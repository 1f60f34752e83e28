"""Images that carry far more unexplained power than their batch: outliers that must not steer the model.

A particle image, at its best pose against a model that explains it, leaves a residual at the level of the
noise: its mean |X - C P|^2 / s2 over the Fourier points searched is ~1, and it is about the same across a
batch of such images (the spread of a chi-square over m points, plus the particles' own spread in contrast).
A contaminant brighter than the particle (a compact object, an ice crystal, a carbon edge) leaves much more:
on the 6msm cell (CFTR, 20% junk, SNR 0.02, docs/results.rst) the 5% of images of another,
compact object of the same mass carried ~7x the particle's signal power (unexplained power 1.49 against the
particles' 0.97 +- 0.08 under the true map). Weighted like particles, their log likelihood ratios (43 nats
per image against 6) outweigh every particle's: the SGD bent the model towards that object (the contaminants'
score rose from 43 to 88 nats while the particles' fell by 0.9), both halves shared the result, and the
random starts were ranked by how well they explained the contaminant.

The test is relative to the batch (its median and median absolute deviation), so it needs no calibration of
the noise model, and it is one-sided: images the model explains worse than noise alone (empty ice, a particle
off-centre) are the junk weighting's (``SGDParams.junk_weighting``), not this.
"""
from __future__ import annotations

import numpy as np

# Full weight up to this many robust standard deviations above the batch's median unexplained power; beyond,
# a Gaussian taper exp(-(z - Z) ^ 2 / 2): 0.61 at Z + 1, 0.14 at Z + 2, 0.01 at Z + 3. At Z = 2.5 about 0.6%
# of Gaussian-spread particles lose any weight (at most half of it, for 0.1%).
OUTLIER_Z = 2.5
# the MAD of a batch's unexplained power is never taken below this (a batch of identical images)
MIN_SPREAD = 1e-3
# batches smaller than this are not judged (too few images for a median and a MAD)
MIN_BATCH = 16
# an image whose weight is below this counts as an outlier where a yes / no is needed: its residuals stay out
# of the noise model, the verdict's pose tests skip it, --exclude-junk sends it to the unused particles
OUTLIER_BELOW = 0.5


def unexplained_power(X: np.ndarray, s2: np.ndarray, ll_best: np.ndarray) -> np.ndarray:
    """Per image, the mean over its m points of |X - C P|^2 / s2 at its best pose (1: noise alone is left).

    ``ll_best`` is the search's best log-likelihood (``search.SearchResult.ll_best``) over the same m points,
    2 Re sum conj(X) C P / s2 - sum C^2 |P|^2 / s2 = sum |X|^2 / s2 - sum |X - C P|^2 / s2, so the residual is
    the images' own power less it: no slice is cut again."""
    X = np.asarray(X)
    power = (np.abs(X) ** 2 / np.asarray(s2, np.float64)[None, :]).sum(axis=1)
    return ((power - np.asarray(ll_best, np.float64)) / X.shape[1]).astype(np.float64)


def robust_z(u: np.ndarray) -> np.ndarray:
    """Robust z score of each image's unexplained power ``u`` against its batch: (u - median) / (1.4826
    MAD). Batches under ``MIN_BATCH`` images are not judged (z = 0). Written to ``particles.star`` as
    ``rlnParticleSelectZScore``, RELION's column for "how far this particle stands out; high: an outlier"."""
    u = np.asarray(u, np.float64)
    if len(u) < MIN_BATCH:
        return np.zeros(len(u))
    med = np.median(u)
    spread = max(1.4826 * np.median(np.abs(u - med)), MIN_SPREAD)
    return (u - med) / spread


def log_weights_from_z(z: np.ndarray, z_full: float = OUTLIER_Z) -> np.ndarray:
    """Log of :func:`weights_from_z`: 0 up to ``z_full``, then -(z - z_full) ^ 2 / 2."""
    return -0.5 * np.maximum(np.asarray(z, np.float64) - z_full, 0.0) ** 2


def weights_from_z(z: np.ndarray, z_full: float = OUTLIER_Z) -> np.ndarray:
    """Weights in (0, 1]: 1 up to ``z_full``, then a Gaussian taper exp(-(z - z_full) ^ 2 / 2)."""
    return np.exp(log_weights_from_z(z, z_full))


def outlier_weights(u: np.ndarray, z_full: float = OUTLIER_Z) -> np.ndarray:
    """Weights in (0, 1] of images with unexplained power ``u`` (one batch): 1 up to ``z_full`` robust
    standard deviations (1.4826 MAD) above the batch's median, then a Gaussian taper in z."""
    return weights_from_z(robust_z(u), z_full)


def particle_log_weight(loglik: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Log of the weight an image has in the model: log sigmoid(log-likelihood ratio) (the probability that
    the model, rather than noise alone, explains it: ``SGDParams.junk_weighting``) plus the log of its outlier
    weight (``weights_from_z``), from the columns rlnLogLikeliContribution and rlnParticleSelectZScore.

    The lowest values are the likeliest junk of both kinds: images the model explains no better than noise
    (empty ice, off-centre particles: a ratio near or below 0) and images far brighter than a particle
    (another object: a high ratio, an outlier weight near 0). Ranked by the ratio alone, the second kind looks
    like the best particles. ``z`` may be NaN (not judged): weight 1."""
    ll = np.asarray(loglik, np.float64)
    zz = np.nan_to_num(np.asarray(z, np.float64), nan=-np.inf)
    return -np.logaddexp(0.0, -ll) + log_weights_from_z(zz)  # log sigmoid(ll) + log outlier weight

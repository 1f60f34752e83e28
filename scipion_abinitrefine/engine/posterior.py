"""Selection and sampling on a pose posterior over (shift, rotation) pairs, exact and without a pass over
every pair where a cheaper one suffices (``search.PoseSearch`` at its coarse level); array module ``xp``."""
from __future__ import annotations

import numpy as np


def top_pairs(xp, ll, K):
    """Flat indices (s * nR + r) of the K best (shift, rotation) pairs of ll (b, S, nR), unordered.

    Exact, without a selection over all S nR pairs: a pair among the K best has its rotation among the K
    rotations with the best maximum over shifts (fewer than K pairs beat it, so fewer than K rotations
    do), so the K best pairs are the K best of those K rotations' S K pairs.
    """
    b, S, nR = ll.shape
    if K >= nR:
        return xp.argpartition(-ll.reshape(b, -1), K - 1, axis=1)[:, :K]
    rbest = xp.argpartition(-ll.max(axis=1), K - 1, axis=1)[:, :K]  # (b, K) rotations
    sub = xp.take_along_axis(ll, rbest[:, None, :], axis=2).reshape(b, S * K)
    j = xp.argpartition(-sub, K - 1, axis=1)[:, :K]
    return (j // K) * nR + xp.take_along_axis(rbest, j % K, axis=1)


def inverse_cdf(xp, w, u):
    """Per row of weights w (b, n), indices drawn by uniforms u (b, M): first i with cdf_i > u * total.

    Never an index of zero weight (its cdf equals its predecessor's)."""
    b, n = w.shape
    cdf = xp.cumsum(w.astype(np.float64), axis=1)
    cdf /= cdf[:, -1:]
    off = xp.arange(b, dtype=np.float64)[:, None]
    idx = xp.searchsorted((cdf + off).ravel(), (u + off).ravel(), side="right").reshape(u.shape)
    return xp.clip(idx - (xp.arange(b)[:, None] * n), 0, n - 1)


def draw_poses(xp, pf, pr, u):
    """Poses drawn from the level-0 posterior pf (b, S, nR) (unnormalised, max 1), in two stages.

    pr (b, nR) is pf summed over shifts. A rotation r is drawn from pr, then a shift s from pf[:, r]
    (uniforms u (b, M, 2)): the pair's probability is pf[s, r] / sum(pf), at the cost of a cumulative sum
    over the rotations and one over S shifts per draw instead of one over all S nR pairs.
    Returns flat indices s * nR + r (b, M) and their log probabilities.
    """
    b, S, nR = pf.shape
    M = u.shape[1]
    r = inverse_cdf(xp, pr, u[:, :, 0])  # (b, M)
    cols = xp.take_along_axis(pf, r[:, None, :], axis=2)  # (b, S, M): the drawn rotations' shift weights
    cols = xp.transpose(cols, (0, 2, 1)).reshape(b * M, S)
    s = inverse_cdf(xp, cols, u[:, :, 1].reshape(b * M, 1)).reshape(b, M)
    p = xp.take_along_axis(cols, s.reshape(b * M, 1), axis=1).reshape(b, M)
    lp = xp.log(p.astype(np.float64)) - xp.log(pr.sum(axis=1, dtype=np.float64))[:, None]
    return (s * nR + r).astype(np.int64), lp.astype(np.float32)


def median_ess(ll0: np.ndarray, T: float) -> float:
    """Median over images of the 3D ESS (effective number of rotations, shifts marginalised) of the
    posterior at temperature T of the level-0 log-likelihoods ``ll0`` (b, S, nR)."""
    f = ll0.reshape(len(ll0), -1) / T
    p = np.exp(f - f.max(axis=1, keepdims=True)).reshape(ll0.shape).sum(axis=1)
    p /= p.sum(axis=1, keepdims=True)
    return float(np.median(1.0 / (p**2).sum(axis=1)))


def temperature_for_ess(ll0: np.ndarray, target: float) -> float:
    """The annealing start: the temperature (>= 1) at which the median 3D ESS of ``ll0`` (b, S, nR) reaches
    ``target`` rotations (bisection on log2 T)."""
    if median_ess(ll0, 1.0) >= target:
        return 1.0
    lo, hi = 0.0, 8.0
    while median_ess(ll0, 2.0**hi) < target and hi < 40:
        hi += 4
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if median_ess(ll0, 2.0**mid) < target:
            lo = mid
        else:
            hi = mid
    return float(2.0**hi)

"""Random starts per half: each half runs several random initial models through the initial iterations and
the start of the resolution ramp, and keeps the one whose model best explains the half's own images."""
from __future__ import annotations

import numpy as np

from . import fourier, outliers

# Random starts compete until the Fourier radius has grown this much past the initial one. At the initial
# radius they cannot be told apart: on the demo phantom at SNR 0.01 (20 A start, 4 starts of one half) the
# start that converged and the ones that stayed stuck scored within 0.1 of each other at 20 A (the stuck
# original best); at 1.15 x the radius (17 A) the good one was first by 0.013, at 1.3 x (15 A) it led by 0.14
# per image and kept leading. So the better half of the starts goes on at 1.15 x (dropping the worse half
# is safe where picking the best is not yet) and the best one at 1.3 x: twice the starts for ~1.6 x the cost.
START_HALVING_GROWTH = 1.15
START_SELECT_GROWTH = 1.3
# ... and until the particle window (the mask diameter; by default 85% of the box) spans this many resolution
# elements (its diameter over the resolution): a start is told from another by the particle's shape, which a
# coarse initial resolution does not show. From the default 35 A (the demo's 109 A window: 3.1 elements,
# around a ~77 A particle) 1.15 x and 1.3 x are 30 and 27 A, where 8 starts scored
# within 0.03-0.05 of each other and one half of a 20% junk case kept a partly wrong start (16 A to the truth,
# median pose error 76 deg); chosen at 23 / 17.5 A that half reached 10.9 A and 27 deg. From 20 A (5.4
# elements) the growth factors above decide, as before.
START_HALVING_ELEMENTS = 5.0
START_SELECT_ELEMENTS = 6.0
# From the selection radius on, the surviving starts are no longer cut by rank but by evidence: every
# START_CHECK_EVERY iterations, a start goes out once its mean score lies START_ELIMINATION_Z paired standard
# errors (over the same images) below the best's; the last one left goes on. A start that is still not told
# apart when the radius has grown START_LAST_GROWTH x past the initial one and the particle spans
# START_LAST_ELEMENTS elements is dropped by its mean. Why: on CFTR (6msm, realistic noise, SNR 0.02, 20%
# junk; docs/results.rst) 8 starts of one half scored within 0.09 of each other at 27 A (6
# elements) and the best of them there was a middling start later (12% of the poses within 20 deg at 16 A);
# the start that led from 18.7 A on (8.7 elements) was fifth at 27 A and best at 16 A (25%).
START_ELIMINATION_Z = 3.0
START_CHECK_EVERY = 10
START_LAST_GROWTH = 1.6
START_LAST_ELEMENTS = 9.0
# images of a half that score the random starts (the same images for every start: paired differences)
START_SCORE_IMAGES = 1000


def start_radii(r_init: float, r_max: float, particle_radius_px: float, box: int) -> tuple[float, float, float]:
    """Fourier radii (index units) at which a half's random starts are halved, from which they are cut by
    evidence (:func:`lead_z`) and at which the best one is kept whatever the evidence: the larger of the
    growth past the initial radius and the radius at which the particle spans the elements above, at most
    the maximum radius."""
    per_element = box / (2.0 * particle_radius_px)  # Fourier radius per resolution element across the particle
    halve = max(START_HALVING_GROWTH * r_init, START_HALVING_ELEMENTS * per_element)
    select = max(START_SELECT_GROWTH * r_init, START_SELECT_ELEMENTS * per_element)
    last = max(START_LAST_GROWTH * r_init, START_LAST_ELEMENTS * per_element)
    return min(r_max, halve), min(r_max, select), min(r_max, last)


def start_seed(seed: int, half: int, start: int) -> int:
    """The random stream of start ``start`` of half ``half`` (0/1); start 0 keeps the single-start stream."""
    key = [seed, half + 1] if start == 0 else [seed, half + 1, start]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def start_scores(runs, sel: np.ndarray, s2_shell: np.ndarray, batch: int = 250) -> list[float]:
    """Mean log marginal likelihood ratio of the same images ``sel`` (local indices of one half) under each
    run's model, with one noise model. The images are read and transformed once per batch for all runs
    (they share the half's particles, the radius and the points).

    With the outlier weighting on (``SGDParams.outlier_weighting``), each image counts with its outlier weight
    among the selected images by its own power (:mod:`outliers` against a model of nothing: the same weights
    for every run, whichever others compete): a bright contaminant's ratio (40-90 nats against a particle's
    ~6 on the 6msm cell) would otherwise rank the starts by how well they explain it."""
    ev, w = start_evidence(runs, sel, s2_shell, batch)
    return [float(x) for x in weighted_means(ev, w)]


def start_evidence(runs, sel: np.ndarray, s2_shell: np.ndarray, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Per run and image, the log marginal likelihood ratio (len(runs), len(sel)), and the images' weights
    (len(sel),), of which :func:`start_scores` gives the weighted means."""
    lead = runs[0]
    ev = np.zeros((len(runs), len(sel)))
    power = np.zeros(len(sel))
    for a in range(0, len(sel), batch):
        X, C, m = lead.batch_points(sel[a:a + batch], lead.last_radius())
        ev[:, a:a + len(X)] = [run.evidence(X, C, m, s2_shell) for run in runs]
        power[a:a + len(X)] = outliers.unexplained_power(X, lead.noise_per_point(m, s2_shell), np.zeros(len(X)))
    w = outliers.outlier_weights(power) if lead.p.outlier_weighting else np.ones(len(sel))
    return ev, w


def weighted_means(ev: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (ev * w).sum(axis=1) / max(float(w.sum()), 1e-12)


def lead_z(ev: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For each start, how many paired standard errors its weighted mean score lies below the best start's
    (the per-image differences on the same images; 0 for the best; inf where a lower mean has no spread)."""
    m = weighted_means(ev, w)
    best = int(np.argmax(m))
    d = ev[best][None, :] - ev
    dm = m[best] - m
    sw = max(float(w.sum()), 1e-12)
    se = np.sqrt(((w[None, :] * (d - dm[:, None])) ** 2).sum(axis=1)) / sw
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, dm / np.where(se > 0, se, 1.0), np.where(dm > 0, np.inf, 0.0))


# The random start (CryoSPARC-style): this many point masses of random weight 0.5-1.5, uniform in a ball of
# this fraction of the particle radius (the particle's mass sits inside its window), low-passed to the
# initial radius. Different seeds give different low-resolution blobs: the random starts of a half.
START_BLOBS = 40
START_BALL_FRACTION = 0.6


def random_initial_model(box: int, radius_px: float, lowpass_radius: float, rng, sym=None) -> np.ndarray:
    """Random blobs inside the particle radius, low-passed (CryoSPARC-style random start); with a point
    group ``sym`` (n, 3, 3) every blob is repeated at its symmetry mates, so the start is symmetric."""
    vol = np.zeros((box, box, box), np.float32)
    c = box // 2
    n = START_BLOBS
    pts = rng.normal(size=(n, 3))
    pts *= (rng.uniform(0, 1, n) ** (1 / 3) * radius_px * START_BALL_FRACTION / np.linalg.norm(pts, axis=1))[:, None]
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    if sym is not None and len(sym) > 1:
        pts = np.concatenate([pts @ S.T for S in sym])
        w = np.tile(w, len(sym))
    idx = np.clip(np.rint(pts + c).astype(int), 0, box - 1)
    np.add.at(vol, (idx[:, 2], idx[:, 1], idx[:, 0]), w)
    vol = fourier.lowpass_volume(vol, lowpass_radius, width=2.0)
    return np.maximum(vol, 0)

"""Accuracy metrics against a ground truth (benchmarks and tests)."""
from __future__ import annotations

import numpy as np

from ..engine import so3

MIRROR = np.diag([1.0, 1.0, -1.0])


def _closest_rotation(M):
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


# poses within this of a candidate frame count as its inliers when the frame is chosen
FRAME_INLIER_DEG = 15.0
# candidate frames tried per hand: one per sampled particle (its own R_true^T R_est), plus the least squares fit
FRAME_CANDIDATES = 256


def pose_errors(R_est: np.ndarray, R_true: np.ndarray) -> tuple[np.ndarray, bool]:
    """Angular errors (deg) of estimated projection matrices after the best global rotation.

    A reconstruction is determined up to a rotation Q of its frame (A_est = A_true Q) and its hand
    (a map mirrored along z is seen along M A M, M = diag(1, 1, -1)). Both hands are tried. Q is the frame
    that puts the most poses within ``FRAME_INLIER_DEG`` of the truth, among the frames that single particles
    imply and the least squares fit over all, then fitted by least squares on those poses (iterated).
    Consensus, not a least squares fit over all particles: with a pseudo-symmetric particle the poses fall
    into two frames related by the pseudo-symmetry, and the least squares mean of two frames 180 deg apart is
    neither (it reported 0.3% of the poses within 10 deg where one frame holds 14% and its mate 13%).
    Returns (errors, mirrored).
    """
    n = len(R_est)
    pick = np.unique(np.linspace(0, n - 1, min(n, FRAME_CANDIDATES)).astype(int))
    best = None
    for mirrored in (False, True):
        Re = MIRROR @ R_est @ MIRROR if mirrored else R_est
        cands = [_closest_rotation(np.einsum("nji,njk->ik", R_true, Re))]
        cands += list(np.einsum("nji,njk->nik", R_true[pick], Re[pick]))
        counts = [np.count_nonzero(so3.geodesic_deg(Re, R_true @ Q) <= FRAME_INLIER_DEG) for Q in cands]
        Q = cands[int(np.argmax(counts))]
        err = so3.geodesic_deg(Re, R_true @ Q)
        for _ in range(4):
            inl = err <= max(FRAME_INLIER_DEG, np.percentile(err, 1))
            Q = _closest_rotation(np.einsum("nji,njk->ik", R_true[inl], Re[inl]))
            err = so3.geodesic_deg(Re, R_true @ Q)
        key = (np.count_nonzero(err <= FRAME_INLIER_DEG), -np.median(err))
        if best is None or key > best[0]:
            best = (key, err, mirrored)
    return best[1], best[2]


def pose_errors_with_mate(R_est: np.ndarray, R_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Errors (deg) in the best frame (:func:`pose_errors`) and, per pose, the smaller of that and its error
    in the frame that holds the most of the other poses (a pseudo-symmetric particle's mate frame: poses
    turned by its pseudo-symmetry, right up to it). Returns (errors, errors up to the mate)."""
    err, mirrored = pose_errors(R_est, R_true)
    Re = MIRROR @ R_est @ MIRROR if mirrored else R_est
    rest = np.flatnonzero(err > FRAME_INLIER_DEG)
    if len(rest) < 2:
        return err, err
    pick = rest[np.unique(np.linspace(0, len(rest) - 1, min(len(rest), FRAME_CANDIDATES)).astype(int))]
    cands = np.einsum("nji,njk->nik", R_true[pick], Re[pick])
    counts = [np.count_nonzero(so3.geodesic_deg(Re[rest], R_true[rest] @ Q) <= FRAME_INLIER_DEG) for Q in cands]
    Q = cands[int(np.argmax(counts))]
    e2 = so3.geodesic_deg(Re[rest], R_true[rest] @ Q)
    inl = rest[e2 <= FRAME_INLIER_DEG]
    if len(inl) >= 3:
        Q = _closest_rotation(np.einsum("nji,njk->ik", R_true[inl], Re[inl]))
    return err, np.minimum(err, so3.geodesic_deg(Re, R_true @ Q))

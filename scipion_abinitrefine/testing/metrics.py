"""Accuracy metrics against a ground truth (benchmarks and tests)."""
from __future__ import annotations

import numpy as np

from ..engine import so3

MIRROR = np.diag([1.0, 1.0, -1.0])


def _closest_rotation(M):
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


def pose_errors(R_est: np.ndarray, R_true: np.ndarray) -> tuple[np.ndarray, bool]:
    """Angular errors (deg) of estimated projection matrices after the best global rotation.

    A reconstruction is determined up to a rotation Q of its frame (A_est = A_true Q) and its hand
    (a map mirrored along z is seen along M A M, M = diag(1, 1, -1)). Both hands are tried; Q is fitted
    robustly (least squares on the better half, iterated). Returns (errors, mirrored).
    """
    best = None
    for mirrored in (False, True):
        Re = MIRROR @ R_est @ MIRROR if mirrored else R_est
        Q = _closest_rotation(np.einsum("nji,njk->ik", R_true, Re))
        err = so3.geodesic_deg(Re, R_true @ Q)
        for _ in range(4):
            inl = err <= np.percentile(err, 50)
            Q = _closest_rotation(np.einsum("nji,njk->ik", R_true[inl], Re[inl]))
            err = so3.geodesic_deg(Re, R_true @ Q)
        if best is None or np.median(err) < np.median(best[0]):
            best = (err, mirrored)
    return best

"""Continuous local refinement of particle poses (rotation and sub-pixel origin) against a model.

The pose search ends on a grid: its finest rotation step and a shift grid. Downstream local refinement
(RELION, CryoSPARC) starts from these poses, so the final pass polishes each particle's best pose by
Levenberg-Marquardt on the Gaussian likelihood the search uses, on the same Fourier points:

    r_k(R, t) = (X_k exp(-2 pi i k.t / D) - C_k P_k(R)) / sigma_k,      minimise sum_k |r_k|^2

where P(R) is the model's central slice along R (``extract_slices``). The origin derivative is analytic;
the rotation derivative is a forward difference over a small turn (a rotation vector applied after R). A
step is kept only where it lowers the residual, so no pose gets worse than the search left it.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from . import fourier


def _turn(R: np.ndarray, w: np.ndarray) -> np.ndarray:
    """R @ exp([w]x) for rotation vectors w (n, 3) in radians."""
    return (R @ Rotation.from_rotvec(w).as_matrix()).astype(np.float32)


def _slices(be, G, R, kx, ky, pad):
    return be.to_host(be.extract_slices(G, be.asarray(np.ascontiguousarray(R, np.float32)), kx, ky, pad))


def refine_poses(be, G, X, C, s2, kx, ky, R0, t0, box: int, pad: int = 2, iters: int = 8,
                 fd_deg: float = 0.2, max_turn_deg: float = 2.0, max_shift_px: float = 0.5):
    """Polish poses (R0 (n, 3, 3), t0 (n, 2) px) of images X (n, m) with CTF C (n, m) and noise s2 (m,).

    Returns (R, t, improvement): the refined poses and the decrease of sum |r|^2 per image (>= 0).
    """
    n, m = X.shape
    kx = np.asarray(kx[:m])
    ky = np.asarray(ky[:m])
    X = np.asarray(X, np.complex64)
    C = np.asarray(C, np.float32)
    inv_s = (1.0 / np.sqrt(np.asarray(s2, np.float64)))[None, :].astype(np.float32)
    R = np.asarray(R0, np.float32).copy()
    t = np.asarray(t0, np.float32).copy()
    K = np.stack([kx, ky], 1).astype(np.float32) * np.float32(2 * np.pi / box)  # (m, 2) phase gradient
    h = np.deg2rad(fd_deg)

    def residual(Rc, tc):
        ph = fourier.shift_phases(kx, ky, tc, box)  # (n, m) = exp(-i K.t)
        P = _slices(be, G, Rc, kx, ky, pad)
        return ((X * ph - C * P) * inv_s).astype(np.complex64), P

    r, P = residual(R, t)
    cost = np.sum(np.abs(r) ** 2, axis=1)
    cost0 = cost.copy()
    lam = np.full(n, 1e-3, np.float64)
    eye = np.eye(3, dtype=np.float32)
    for _ in range(iters):
        # Jacobian (n, m, 5): rotation (forward difference) then origin
        J = np.empty((n, m, 5), np.complex64)
        for j in range(3):
            Rj = _turn(R, np.broadcast_to(h * eye[j], (n, 3)).copy())
            J[:, :, j] = -C * (_slices(be, G, Rj, kx, ky, pad) - P) / np.float32(h) * inv_s
        xs = (r + C * P * inv_s)  # X exp(-i K.t) / sigma
        J[:, :, 3:] = (-1j * xs)[:, :, None] * K[None]
        # normal equations by batched matrix products (BLAS): einsum's loops took half of the polish at box 128
        Jh = np.conj(J).transpose(0, 2, 1)  # (n, 5, m)
        H = (Jh @ J).real.astype(np.float64)
        g = (Jh @ r[:, :, None])[:, :, 0].real.astype(np.float64)
        Hd = H + lam[:, None, None] * (np.diagonal(H, axis1=1, axis2=2)[:, :, None] * np.eye(5) + 1e-9 * np.eye(5))
        step = -np.linalg.solve(Hd, g[:, :, None])[:, :, 0]
        # trust region: at most max_turn_deg and max_shift_px per step
        turn = np.linalg.norm(step[:, :3], axis=1)
        step[:, :3] *= np.minimum(1.0, np.deg2rad(max_turn_deg) / np.maximum(turn, 1e-30))[:, None]
        sh = np.linalg.norm(step[:, 3:], axis=1)
        step[:, 3:] *= np.minimum(1.0, max_shift_px / np.maximum(sh, 1e-30))[:, None]
        Rn = _turn(R, step[:, :3])
        tn = (t + step[:, 3:]).astype(np.float32)
        rn, Pn = residual(Rn, tn)
        cn = np.sum(np.abs(rn) ** 2, axis=1)
        ok = cn < cost
        R[ok], t[ok], r[ok], P[ok], cost[ok] = Rn[ok], tn[ok], rn[ok], Pn[ok], cn[ok]
        lam = np.where(ok, lam * 0.3, lam * 10.0)
        if not ok.any():
            break
    return R, t, (cost0 - cost).astype(np.float32)

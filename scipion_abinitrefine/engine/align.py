"""3D map alignment (rotation, translation, hand) at limited resolution, and the matching pose transform.

Convention: ``transform_map(V, aln)`` is V'(r) = V(M Q^T (r - t)) with Q = aln.R, t = aln.shift (x, y, z
voxels) and M = diag(1, 1, -1) if aln.flip else I: mirror along z, then rotate by Q, then translate by t.

Poses: with A' = A Q^T (no flip) or A' = M A M Q^T (flip) and origin o' = o + (A M Q^T t)_xy, the
projection of V' along (A', o') equals the projection of V along (A, o) (derivation in transform_poses).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy.ndimage import map_coordinates

from . import fourier, so3

MIRROR = np.diag([1.0, 1.0, -1.0])


@dataclass
class MapAlignment:
    R: np.ndarray
    shift: np.ndarray
    flip: bool
    score: float


def _grid(D):
    g = np.arange(D) - D // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()]).astype(np.float64)  # (3, D^3) as (x, y, z)


def _sample(vol, src_xyz, order=1):
    D = vol.shape[0]
    coords = np.stack([src_xyz[2], src_xyz[1], src_xyz[0]]) + D // 2
    return map_coordinates(vol, coords, order=order, mode="constant", prefilter=order > 1)


def transform_map(vol, aln: MapAlignment, order: int = 3) -> np.ndarray:
    D = vol.shape[0]
    r = _grid(D) - np.asarray(aln.shift, float)[:, None]
    M = MIRROR if aln.flip else np.eye(3)
    src = M @ np.asarray(aln.R).T @ r
    return _sample(vol, src, order).reshape(vol.shape).astype(np.float32)


def transform_poses(A, origins_A, aln: MapAlignment, apix: float):
    """New projection matrices and origins (A) so projections of transform_map(V) match the old ones.

    Proj_{A'}[V'](p) = int V(M Q^T A'^T p - M Q^T t) dz; with A'^T = Q M A^T N (N = M when flipped, a z
    flip of the image frame that leaves the projection unchanged; A' stays a proper rotation) this is
    Proj_A[V](p - u) with u = A M Q^T t, so o' = o + u_xy.
    """
    A = np.asarray(A, float)
    Q = np.asarray(aln.R, float)
    M = MIRROR if aln.flip else np.eye(3)
    An = (M @ A @ M @ Q.T) if aln.flip else A @ Q.T
    u = A @ (M @ Q.T @ np.asarray(aln.shift, float))  # (n, 3)
    return An, np.asarray(origins_A, float) + u[:, :2] * apix


def _prepare(vol, apix, max_res_A):
    """Low-pass at max_res_A and Fourier-crop to a small box (information beyond max_res_A removed)."""
    D = vol.shape[0]
    r = D * apix / max_res_A
    Ds = int(min(D, max(24, 2 * int(np.ceil(r)) + 8)))
    Ds += Ds % 2
    F = fourier.ft3c(vol)
    F *= fourier.soft_edge(fourier.radial_index(vol.shape), r - 1.0, 2.0)
    a = D // 2 - Ds // 2
    small = fourier.ift3c(F[a:a + Ds, a:a + Ds, a:a + Ds]).real
    mask = fourier.soft_edge(fourier.radial_index(small.shape), 0.42 * Ds, 0.06 * Ds)
    small = (small - small.mean()) * mask
    return small.astype(np.float32), D / Ds


def _score_rotations(ref, mov, rots, flip, batch=64):
    """Best translation and normalised CC for each rotation (FFT translation search)."""
    Ds = ref.shape[0]
    Fr = sfft.rfftn(ref)
    nr = np.sqrt((ref**2).sum())
    grid = _grid(Ds)
    M = MIRROR if flip else np.eye(3)
    best_cc = np.empty(len(rots))
    best_t = np.empty((len(rots), 3))
    for a in range(0, len(rots), batch):
        R = rots[a:a + batch]
        src = np.einsum("ij,njk,kl->nil", M, np.transpose(R, (0, 2, 1)), grid)  # M Q^T r
        vols = np.stack([_sample(mov, s) for s in src]).reshape(len(R), Ds, Ds, Ds)
        nm = np.sqrt((vols**2).sum(axis=(1, 2, 3)))
        cc = sfft.irfftn(Fr[None] * np.conj(sfft.rfftn(vols, axes=(1, 2, 3))), s=ref.shape, axes=(1, 2, 3))
        flat = cc.reshape(len(R), -1)
        k = flat.argmax(axis=1)
        best_cc[a:a + batch] = flat[np.arange(len(R)), k] / np.maximum(nr * nm, 1e-30)
        z, y, x = np.unravel_index(k, ref.shape)
        t = np.stack([x, y, z], 1).astype(float)
        t[t >= Ds / 2] -= Ds  # wrap to signed shifts
        best_t[a:a + batch] = t
    return best_cc, best_t


def align_maps(ref, mov, apix, max_res_A=20.0, hands=True, seed=0, n_refine=4) -> MapAlignment:
    """Find the transform with transform_map(mov, aln) ~ ref, using only information at >= max_res_A."""
    r_small, scale = _prepare(ref, apix, max_res_A)
    m_small, _ = _prepare(mov, apix, max_res_A)
    grid = so3.base_grid()
    best = None
    for flip in ((False, True) if hands else (False,)):
        cc, t = _score_rotations(r_small, m_small, grid, flip)
        top = np.argsort(-cc)[:4]
        Rs, step = grid[top], so3.base_step_deg()
        for _ in range(n_refine):  # octree refinement around the best few
            cand = np.concatenate([Rs, so3.subdivide(Rs, step).reshape(-1, 3, 3)])
            c2, t2 = _score_rotations(r_small, m_small, cand, flip)
            o = np.argsort(-c2)[:4]
            Rs, step = cand[o], step / 2
        c_best, t_best = c2[o[0]], t2[o[0]]
        if best is None or c_best > best[0]:
            best = (c_best, Rs[0], t_best, flip)
    cc, R, t, flip = best
    aln = MapAlignment(R=R, shift=t * scale, flip=flip, score=float(cc))
    # sub-voxel translation at the full box: parabolic fit of the low-passed cross-correlation peak
    aln.shift = aln.shift + _residual_shift(ref, transform_map(mov, aln, order=1), apix, max_res_A)
    return aln


def _residual_shift(ref, mov, apix, max_res_A):
    D = ref.shape[0]
    lp = fourier.soft_edge(fourier.radial_index(ref.shape), D * apix / max_res_A, 2.0)
    cc = fourier.ift3c(fourier.ft3c(ref) * np.conj(fourier.ft3c(mov)) * lp).real
    k = np.unravel_index(np.argmax(cc), cc.shape)
    out = []
    for ax in (2, 1, 0):  # x, y, z
        i = k[ax]
        idx = list(k)
        vals = []
        for d in (-1, 0, 1):
            idx[ax] = (i + d) % D
            vals.append(cc[tuple(idx)])
        den = vals[0] - 2 * vals[1] + vals[2]
        frac = 0.5 * (vals[0] - vals[2]) / den if den != 0 else 0.0
        out.append(i - D // 2 + float(np.clip(frac, -0.5, 0.5)))
    return np.array(out)

"""3D alignment of one map to another (rotation, translation, hand) at limited resolution, and the
matching transform of particle poses.

Map transform convention
------------------------
Coordinates r = (x, y, z) are in voxels from the centre voxel D//2 of a (z, y, x) array. A
:class:`MapAlignment` (Q = ``R``, t = ``shift`` in voxels (x, y, z), ``flip``) acts on a map V as::

    V'(r) = V(M Q^T (r - t)),      M = diag(1, 1, -1) if flip else I

i.e. first mirror the map along z (V_m(x, y, z) = V(x, y, -z) about the centre voxel: array plane i
takes plane D - i, plane 0 has no source and is 0), then rotate it by Q about the centre, then
translate it by t. In Fourier space V'^(k) = V^(M Q^T k) exp(-2 pi i k.t / D).

Pose transform
--------------
A particle of V seen along projection rotation A (image transform = V^(A^T (kx, ky, 0))) with origin o
(observed image = projection shifted by -o) is seen in V' along::

    A' = A Q^T              (no flip)
    A' = M A M Q^T          (flip; still a proper rotation, det = +1)
    o' = o + apix * (A M Q^T t)_xy

Derivation (real space, image(p) = int V(A^T (p + o, z)) dz): with A'^T = Q M A^T N, N = M when
flipped (else I), M Q^T A'^T = A^T N, so the ray of V' through (p + o', z) reads V along
A^T N (p + o', z) - M Q^T t = A^T ((p + o', +-z) - u) with u = A M Q^T t. N only flips the sign of the
integration variable z, so a projection along z of V and of its z-mirror are the same image; shifting
z by u_z changes nothing either, and p + o' - u_xy = p + o gives o' = o + u_xy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numba import float32, njit, prange
from scipy import ndimage

from . import fourier, so3
from . import kernels_common as kc
from .jitcache import CACHE

MIRROR = np.diag([1.0, 1.0, -1.0])

_sample = njit(kc.sample_trilinear, inline="always")


@dataclass
class MapAlignment:
    """Result of :func:`align_maps`; see the module docstring for the convention."""

    R: np.ndarray  # 3x3 rotation Q
    shift: np.ndarray  # (3,) voxels of the original box, (x, y, z)
    flip: bool  # z-mirror applied before the rotation
    score: float  # normalised cross-correlation at the alignment resolution
    identity_score: float = float("nan")  # the same NCC without rotation or hand change (shift refined)
    other: MapAlignment | None = None  # the best alignment in the other hand (when both were searched)


def _mirror(flip: bool) -> np.ndarray:
    return MIRROR if flip else np.eye(3)


def _source_matrix(Q: np.ndarray, flip: bool) -> np.ndarray:
    """B = M Q^T for rotations Q (..., 3, 3): V'(r) = V(B (r - t))."""
    return np.einsum("ij,...kj->...ik", _mirror(flip), np.asarray(Q, dtype=np.float64))


# ------------------------------------------------------------------------------------ transforms


def transform_map(vol, aln: MapAlignment, order: int = 3) -> np.ndarray:
    """Apply ``aln`` to a cubic map: V'(r) = V(M Q^T (r - t)) (module docstring); float32, same shape.

    Cubic-spline interpolation (``order``); points whose source lies outside the box are 0.
    """
    vol = np.asarray(vol, dtype=np.float32)
    D = vol.shape[0]
    c = D // 2
    B = _source_matrix(aln.R, bool(aln.flip))
    t = np.asarray(aln.shift, dtype=np.float64).reshape(3)
    coeffs = ndimage.spline_filter(vol, order=order, mode="mirror", output=np.float32) if order > 1 else vol
    out = np.empty_like(vol)
    g = np.arange(D, dtype=np.float64) - c
    chunk = max(1, (1 << 20) // (D * D))  # z-slabs: bounded coordinate memory at large boxes
    for z0 in range(0, D, chunk):
        z1 = min(D, z0 + chunk)
        zz, yy, xx = np.meshgrid(g[z0:z1], g, g, indexing="ij")
        src = B @ np.stack([xx.ravel() - t[0], yy.ravel() - t[1], zz.ravel() - t[2]])
        idx = src[::-1] + c  # (z, y, x) array indices
        vals = ndimage.map_coordinates(coeffs, idx, order=order, mode="mirror", prefilter=False)
        vals[np.any((idx < 0) | (idx > D - 1), axis=0)] = 0.0
        out[z0:z1] = vals.reshape(z1 - z0, D, D)
    return out


def transform_poses(A, origins_A, aln: MapAlignment, apix: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses of the particles in the frame of ``transform_map(V, aln)`` (module docstring).

    Parameters
    ----------
    A : (n, 3, 3) projection rotations (RELION convention)
    origins_A : (n, 2) origins (rlnOriginX/YAngst) in A
    aln : the map alignment
    apix : pixel size (A) of the box ``aln.shift`` is expressed in

    Returns
    -------
    (A', origins') such that projecting V' along (A', o') gives the image of V along (A, o).
    """
    A = np.asarray(A, dtype=np.float64)
    Q = np.asarray(aln.R, dtype=np.float64)
    M = _mirror(bool(aln.flip))
    An = (M @ A @ M @ Q.T) if aln.flip else A @ Q.T
    u = A @ (M @ Q.T @ np.asarray(aln.shift, dtype=np.float64).reshape(3))  # (n, 3) voxels
    return An, np.asarray(origins_A, dtype=np.float64) + u[..., :2] * apix


# ------------------------------------------------------------------------------------ search


@njit(parallel=True, fastmath=True, cache=CACHE)
def _rotated_samples_kernel(Fv, B, k, pad, out):
    """out[r, j] = F(B_r k_j): trilinear samples of a padded centred transform at rotated 3D points."""
    c = float32(Fv.shape[0] // 2)
    p = float32(pad)
    for r in prange(B.shape[0]):
        for j in range(k.shape[0]):
            kx, ky, kz = k[j, 0], k[j, 1], k[j, 2]
            x = (B[r, 0, 0] * kx + B[r, 0, 1] * ky + B[r, 0, 2] * kz) * p + c
            y = (B[r, 1, 0] * kx + B[r, 1, 1] * ky + B[r, 1, 2] * kz) * p + c
            z = (B[r, 2, 0] * kx + B[r, 2, 1] * ky + B[r, 2, 2] * kz) * p + c
            re, im = _sample(Fv, x, y, z)
            out[r, j, 0] = re
            out[r, j, 1] = im


def _band(D: int, r: float) -> tuple[float, int]:
    """Fourier radius (index units, at most D/2 - 1) and the small even box whose Nyquist is just past it."""
    r = min(r, D / 2 - 1.0)
    return r, min(D, 2 * (int(np.ceil(r)) + 1))


def _small_map(vol, r: float, Ds: int) -> np.ndarray:
    """Low-pass to radius r (exactly 0 at |k| >= r), Fourier-crop to Ds, remove background, soft sphere."""
    vol = np.asarray(vol, dtype=np.float32)
    D = vol.shape[0]
    F = fourier.ft3c(vol)
    w = min(2.0, r / 3.0)
    F *= fourier.soft_edge(fourier.radial_index(F.shape), r - w, w)
    a = D // 2 - Ds // 2
    small = fourier.ift3c(F[a:a + Ds, a:a + Ds, a:a + Ds]).real
    rad = fourier.radial_index(small.shape)
    bg = np.median(small[rad > 0.4 * Ds])
    # the soft sphere keeps the circular translation search from wrapping edge density around
    return ((small - bg) * fourier.soft_edge(rad, 0.4 * Ds, 0.1 * Ds)).astype(np.float32)


class _Scorer:
    """NCC of the fixed map with the rotated (and mirrored) moving map, over translations.

    Works on the Fourier coefficients with 0 < |k| <= r only (DC out: mean-free), stored on the half
    space kx >= 0 of the small box's rfft layout; weights w = 2 for kx > 0 count the Friedel mates.
    """

    def __init__(self, ref_small, mov_small, r: float, D: int, pad: int = 2):
        Ds = ref_small.shape[0]
        self.pad = pad
        self.D, self.Ds = D, Ds
        kz = sfft.fftfreq(Ds) * Ds
        kx = sfft.rfftfreq(Ds) * Ds
        KZ, KY, KX = np.meshgrid(kz, kz, kx, indexing="ij")
        rr = np.sqrt(KX**2 + KY**2 + KZ**2)
        sel = (rr <= r) & (rr > 0.5)
        self.flat = np.flatnonzero(sel)
        self.k = np.stack([KX[sel], KY[sel], KZ[sel]], 1)  # (m, 3) (x, y, z)
        self.k32 = self.k.astype(np.float32)
        self.w = np.where(self.k[:, 0] > 0, 2.0, 1.0)
        self.fref = sfft.rfftn(sfft.ifftshift(ref_small)).ravel()[self.flat]  # origin at the centre voxel
        self.nref = np.sqrt(np.sum(self.w * np.abs(self.fref) ** 2))
        Fm = np.ascontiguousarray(fourier.volume_to_fourier(mov_small, pad=pad), dtype=np.complex64)
        self.Fv = Fm.view(np.float32).reshape(Fm.shape + (2,))

    def sample(self, B) -> np.ndarray:
        """Moving map's transform at B k for every point: (n, m) complex64."""
        out = np.empty((len(B), len(self.k32), 2), dtype=np.float32)
        _rotated_samples_kernel(self.Fv, np.ascontiguousarray(B, dtype=np.float32), self.k32, self.pad, out)
        return out.view(np.complex64)[..., 0]

    def _norm(self, vals):
        return np.sqrt(np.sum(self.w * (vals.real**2 + vals.imag**2), axis=1))

    def grid_search(self, B, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Best NCC over the small box's voxel shifts (FFT), and that shift in original voxels (n, 3)."""
        Ds = self.Ds
        nh = Ds * Ds * (Ds // 2 + 1)
        cc_best = np.empty(len(B))
        t_best = np.empty((len(B), 3))
        for a in range(0, len(B), batch):
            vals = self.sample(B[a:a + batch])
            nb = len(vals)
            X = np.zeros((nb, nh), dtype=np.complex64)
            X[:, self.flat] = self.fref[None] * np.conj(vals)
            cc = sfft.irfftn(X.reshape(nb, Ds, Ds, Ds // 2 + 1), s=(Ds,) * 3, axes=(1, 2, 3),
                             workers=fourier.get_workers())
            cc = cc.reshape(nb, -1)
            i = np.argmax(cc, axis=1)
            # irfftn carries 1/Ds^3; Parseval sums over the full sphere give the norms
            cc_best[a:a + nb] = cc[np.arange(nb), i] * Ds**3 / np.maximum(self.nref * self._norm(vals), 1e-30)
            iz, iy, ix = np.unravel_index(i, (Ds,) * 3)
            t = np.stack([ix, iy, iz], 1).astype(np.float64)
            t[t >= Ds / 2] -= Ds  # cyclic index -> signed shift
            t_best[a:a + nb] = t * (self.D / Ds)
        return cc_best, t_best

    def refine(self, B, t0, iters: int = 12) -> tuple[np.ndarray, np.ndarray]:
        """Continuous shift (original voxels) maximising the NCC, by Newton steps from t0; (ncc, t).

        NCC(t) = Re sum_k w X_k exp(2 pi i k.t / D) / norms, with X = F_ref conj(F_mov_rotated).
        """
        vals = self.sample(B)
        X = (self.w * self.fref)[None] * np.conj(vals).astype(np.complex128)
        K = self.k * (2.0 * np.pi / self.D)
        t = np.array(t0, dtype=np.float64)
        for _ in range(iters):
            c = X * np.exp(1j * (t @ K.T))
            g = -(c.imag @ K)  # gradient of Re sum c
            H = -np.einsum("nm,mi,mj->nij", c.real, K, K)
            step = np.empty_like(t)
            for n in range(len(t)):
                if np.linalg.eigvalsh(H[n]).max() < 0:
                    step[n] = np.linalg.solve(H[n], -g[n])
                else:  # not in the concave region yet: climb the gradient
                    step[n] = g[n] / max(np.linalg.norm(g[n]), 1e-30) * 0.5
            ln = np.linalg.norm(step, axis=1, keepdims=True)
            step *= np.minimum(1.0, 0.5 / np.maximum(ln, 1e-30))  # at most half a voxel per step
            t += step
            if ln.max() < 1e-4:
                break
        f = (X * np.exp(1j * (t @ K.T))).real.sum(axis=1)
        return f / np.maximum(self.nref * self._norm(vals), 1e-30), t


# The global search runs at a Fourier radius of at most this (index units): on a ~15 deg grid, finer
# shells decorrelate between grid points anyway, and the cost grows as radius^3.
_GLOBAL_RADIUS = 8.0


def _seeds(grid, cc, keep: int, extra: int, min_sep_deg: float) -> np.ndarray:
    """The ``keep`` best grid rotations, plus the best of up to ``extra`` other basins (>= min_sep_deg)."""
    order = np.argsort(-cc)
    chosen = list(order[:keep])
    for i in order[keep:]:
        if len(chosen) >= keep + extra:
            break
        if so3.geodesic_deg(grid[chosen], grid[i][None]).min() >= min_sep_deg:
            chosen.append(i)
    return np.asarray(chosen)


# The fine scorer samples a 4x padded transform: trilinear interpolation error on a 2x grid (~1e-3 NCC at
# 20 A) is as large as the NCC change of a 1-2 deg rotation of a 20 A map, and biased the answer by that much.
_FINE_PAD = 4


def _polish(scorer, Q0, t0, flip: bool, tol_deg: float = 0.01):
    """Continuous rotation (and, inside, shift) maximising the NCC from (Q0, t0): (ncc, Q, t).

    Nelder-Mead on a rotation vector applied after Q0 (a 3-parameter local chart), each point scored at
    its Newton-refined shift; the simplex starts at 0.5 deg.
    """
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation

    def rot(w):
        return Rotation.from_rotvec(np.deg2rad(w)).as_matrix() @ Q0

    def f(w):
        ncc, _ = scorer.refine(_source_matrix(rot(w)[None], flip), t0[None], iters=6)
        return -float(ncc[0])

    simplex = np.vstack([np.zeros(3), 0.5 * np.eye(3)])
    res = minimize(f, np.zeros(3), method="Nelder-Mead",
                   options=dict(initial_simplex=simplex, xatol=tol_deg, fatol=1e-9, maxiter=400))
    Q = rot(res.x)
    ncc, t = scorer.refine(_source_matrix(Q[None], flip), t0[None])
    return float(ncc[0]), Q, t[0]


def align_maps(ref, mov, apix, max_res_A=20.0, hands=True, seed=0, n_refine=5, keep=6) -> MapAlignment:
    """Find ``aln`` with ``transform_map(mov, aln) ~ ref`` using only information at max_res_A or coarser.

    Both maps are low-passed to exactly zero beyond max_res_A (gold standard: halves stay independent
    above it), Fourier-cropped to a small box whose Nyquist is just past max_res_A, background-subtracted
    and softly masked. Per hand: all 4,608 rotations of ``so3.base_grid()`` (~15 deg), each with an FFT
    translation search, at a Fourier radius capped at 8 (the grid cannot use finer detail); then
    ``n_refine`` octree levels (``so3.subdivide``; 5 levels: ~0.5 deg cells) at the full alignment
    resolution around the ``keep`` best (plus the best of two other basins, and the identity in the
    unmirrored hand), each candidate scored at its Newton-refined continuous shift; the best is then
    polished continuously (:func:`_polish`) on a 4x padded transform. The hand with the higher final NCC
    wins. ``seed`` is accepted for interface stability: the search is deterministic.

    Returns
    -------
    MapAlignment with the shift in voxels of the original box and the final NCC as ``score``.
    """
    del seed
    ref = np.asarray(ref, dtype=np.float32)
    mov = np.asarray(mov, dtype=np.float32)
    D = ref.shape[0]
    r, Ds = _band(D, D * apix / max_res_A)
    fine = _Scorer(_small_map(ref, r, Ds), _small_map(mov, r, Ds), r, D, pad=_FINE_PAD)
    if r > _GLOBAL_RADIUS:
        rg, Dg = _band(D, _GLOBAL_RADIUS)
        coarse = _Scorer(_small_map(ref, rg, Dg), _small_map(mov, rg, Dg), rg, D)
    else:
        coarse = fine
    grid = so3.base_grid()
    base_step = so3.base_step_deg()
    per_hand = {}
    for flip in ((False, True) if hands else (False,)):
        cc, _ = coarse.grid_search(_source_matrix(grid, flip))
        Qs = grid[_seeds(grid, cc, keep, 2, 2.0 * base_step)]
        if not flip:  # halves already in one frame must be able to stay exactly there
            Qs = np.concatenate([Qs, np.eye(3)[None]])
        ts = np.zeros((0, 3))
        step = base_step
        for level in range(n_refine + 1):
            # level 0 scores the seeds themselves at full resolution; then octree children of the best
            cand = Qs
            if level > 0:
                cand = np.concatenate([Qs, so3.subdivide(Qs, step).reshape(-1, 3, 3)])
                step /= 2.0
            B = _source_matrix(cand, flip)
            _, t0 = fine.grid_search(B)
            t0[:len(ts)] = ts  # parents keep their refined shifts
            ncc, tc = fine.refine(B, t0)
            o = np.argsort(-ncc)[:keep]
            Qs, ts, ncc = cand[o], tc[o], ncc[o]
        score, Q, t = _polish(fine, Qs[0], ts[0], flip)
        if score < ncc[0]:  # never worse than the grid's best
            score, Q, t = float(ncc[0]), Qs[0], ts[0]
        per_hand[flip] = MapAlignment(R=Q.copy(), shift=np.asarray(t).copy(), flip=flip, score=score)
    best = max(per_hand.values(), key=lambda a: a.score)
    best.other = per_hand.get(not best.flip)
    ident = _source_matrix(np.eye(3)[None], False)
    _, t0 = fine.grid_search(ident)
    best.identity_score = float(fine.refine(ident, t0)[0][0])
    return best

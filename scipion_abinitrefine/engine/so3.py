"""Rotations: RELION ZYZ Euler angles, geodesic distances, and a hierarchical SO(3) grid.

Conventions (RELION ``Euler_angles2matrix``): angles (rot, tilt, psi) in degrees; the projection of a
map along A samples its 3D transform at ``A.T @ (kx, ky, 0)``.

The search grid is a Hopf-fibration grid: HEALPix (ring scheme) directions on S2 times a uniform psi
circle. The base level uses Nside=4 (192 directions x 24 psi = 4,608 rotations, ~15 deg); each finer level
is an octree split of a cell in the tangent space of SO(3) (8 children at +-step/4 along three body axes),
so a coarse-to-fine search can refine only around its best poses.
"""
from __future__ import annotations

import numpy as np


def euler_to_matrix(rot, tilt, psi) -> np.ndarray:
    """ZYZ Euler angles (deg, scalars or arrays) to rotation matrices, shape (..., 3, 3)."""
    a, b, g = (np.deg2rad(np.asarray(x, dtype=np.float64)) for x in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    A = np.empty(np.broadcast(a, b, g).shape + (3, 3))
    A[..., 0, 0] = cg * cb * ca - sg * sa
    A[..., 0, 1] = cg * cb * sa + sg * ca
    A[..., 0, 2] = -cg * sb
    A[..., 1, 0] = -sg * cb * ca - cg * sa
    A[..., 1, 1] = -sg * cb * sa + cg * ca
    A[..., 1, 2] = sg * sb
    A[..., 2, 0] = sb * ca
    A[..., 2, 1] = sb * sa
    A[..., 2, 2] = cb
    return A


def matrix_to_euler(A) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation matrices (..., 3, 3) to ZYZ Euler angles (rot, tilt, psi) in degrees, tilt in [0, 180]."""
    A = np.asarray(A, dtype=np.float64)
    abs_sb = np.sqrt(A[..., 0, 2] ** 2 + A[..., 1, 2] ** 2)
    regular = abs_sb > 1e-6
    psi = np.where(regular, np.arctan2(A[..., 1, 2], -A[..., 0, 2]), 0.0)
    rot = np.where(regular, np.arctan2(A[..., 2, 1], A[..., 2, 0]), 0.0)
    tilt = np.arctan2(abs_sb, A[..., 2, 2])
    # gimbal lock (tilt 0 or 180): put everything into psi
    up = A[..., 2, 2] > 0
    psi_gl = np.where(up, np.arctan2(-A[..., 1, 0], A[..., 0, 0]), np.arctan2(A[..., 1, 0], -A[..., 0, 0]))
    psi = np.where(regular, psi, psi_gl)
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def geodesic_deg(A, B) -> np.ndarray:
    """Angle (deg) of the rotation taking A to B, elementwise over leading axes."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    tr = np.einsum("...ij,...ij->...", A, B)  # trace(A^T B)
    return np.rad2deg(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotations (Haar measure) from random unit quaternions, shape (n, 3, 3)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return quat_to_matrix(q)


def quat_to_matrix(q) -> np.ndarray:
    """Unit quaternions (w, x, y, z), shape (..., 4), to rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.empty(q.shape[:-1] + (3, 3))
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - z * w)
    R[..., 0, 2] = 2 * (x * z + y * w)
    R[..., 1, 0] = 2 * (x * y + z * w)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - x * w)
    R[..., 2, 0] = 2 * (x * z - y * w)
    R[..., 2, 1] = 2 * (y * z + x * w)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def axis_angle_to_matrix(v) -> np.ndarray:
    """Rotation vectors (..., 3) (axis * angle in rad) to matrices (Rodrigues)."""
    v = np.asarray(v, dtype=np.float64)
    th = np.linalg.norm(v, axis=-1)
    safe = np.where(th > 1e-12, th, 1.0)
    k = v / safe[..., None]
    K = np.zeros(v.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    s, c = np.sin(th)[..., None, None], np.cos(th)[..., None, None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + s * K + (1 - c) * (K @ K)


def matrix_to_axes(R) -> np.ndarray:
    """Unit rotation axes (n, 3) of matrices ``R`` (n, 3, 3); the sign is arbitrary (the axis, not the sense;
    the inverse direction of :func:`axis_angle_to_matrix` without the angle)."""
    from scipy.spatial.transform import Rotation

    rv = Rotation.from_matrix(np.asarray(R, np.float64)).as_rotvec()
    nrm = np.linalg.norm(rv, axis=1, keepdims=True)
    return rv / np.where(nrm > 0, nrm, 1.0)


# --------------------------------------------------------------------------------------- HEALPix


def healpix_ring_angles(nside: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (theta, phi) in rad of the 12*nside^2 HEALPix pixels, ring scheme."""
    npix = 12 * nside * nside
    ncap = 2 * nside * (nside - 1)
    p = np.arange(npix)
    theta = np.empty(npix)
    phi = np.empty(npix)
    # north polar cap
    n = p < ncap
    ph = p[n] + 1
    i = np.floor(np.sqrt(ph / 2.0 - np.sqrt(np.floor(ph / 2.0)))).astype(int) + 1
    j = ph - 2 * i * (i - 1)
    theta[n] = np.arccos(1 - i**2 / (3.0 * nside**2))
    phi[n] = np.pi / (2 * i) * (j - 0.5)
    # equatorial belt
    e = (p >= ncap) & (p < npix - ncap)
    pe = p[e] - ncap
    i = pe // (4 * nside) + nside
    j = pe % (4 * nside) + 1
    s = (i - nside + 1) % 2 + 1
    theta[e] = np.arccos(4.0 / 3.0 - 2.0 * i / (3.0 * nside))
    phi[e] = np.pi / (2 * nside) * (j - s / 2.0)
    # south polar cap
    sc = p >= npix - ncap
    ps = npix - p[sc]
    i = np.floor(np.sqrt(ps / 2.0 - np.sqrt(np.floor(ps / 2.0)))).astype(int) + 1
    j = 4 * i + 1 - (ps - 2 * i * (i - 1))
    theta[sc] = np.arccos(-1 + i**2 / (3.0 * nside**2))
    phi[sc] = np.pi / (2 * i) * (j - 0.5)
    return theta, phi


BASE_NSIDE = 4
BASE_NPSI = 24


def base_grid(nside: int = BASE_NSIDE, npsi: int = BASE_NPSI) -> np.ndarray:
    """Hopf grid: HEALPix directions (rot, tilt) x uniform psi, as matrices (n, 3, 3).

    The projection direction of A is its third row; tilt/rot of a HEALPix pixel give a uniform cover
    of directions and psi the in-plane angle. The default is 4,608 rotations (~15 deg).
    """
    theta, phi = healpix_ring_angles(nside)
    psi = (np.arange(npsi) + 0.5) * 360.0 / npsi
    rot = np.repeat(np.rad2deg(phi), npsi)
    tilt = np.repeat(np.rad2deg(theta), npsi)
    psis = np.tile(psi, theta.size)
    return euler_to_matrix(rot, tilt, psis)


def base_step_deg(nside: int = BASE_NSIDE, npsi: int = BASE_NPSI) -> float:
    """Cell size (deg) of the base grid: cube root of the SO(3) volume per rotation.

    In the rotation-angle metric SO(3) has volume 8*pi^2; 4,608 rotations give ~14.8 deg.
    """
    n = 12 * nside * nside * npsi
    return float(np.rad2deg((8 * np.pi**2 / n) ** (1 / 3)))


_OCT = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


def subdivide(R: np.ndarray, step_deg: float) -> np.ndarray:
    """Octree children of cells of size ``step_deg`` centred on rotations R (n, 3, 3) -> (n, 8, 3, 3).

    A child is R @ exp(+-step/4 along each body axis); the 8 children tile the parent cell with cells of
    half the size.
    """
    return np.einsum("nij,cjk->ncik", R, child_offsets(step_deg, R.dtype))


def child_offsets(step_deg: float, dtype=np.float32) -> np.ndarray:
    """The 8 right factors of :func:`subdivide`, exp(+-step/4 along each body axis) -> (8, 3, 3)."""
    return axis_angle_to_matrix(_OCT * (np.deg2rad(step_deg) / 4.0)).astype(dtype)

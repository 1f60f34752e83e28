"""Simulated particle data sets with known ground truth.

``make_phantom`` builds the embedded demo map: an asymmetric, protein-like pseudo-atomic model (chains of
Gaussian atoms confined to several ellipsoidal domains of different sizes, plus a helical rod), rendered
on the requested grid. It has no symmetry and no hand symmetry, so hand and orientation errors show up.

``simulate_particles`` projects a map (Fourier-slice theorem, RELION conventions) with uniform random
poses and shifts, applies a RELION-convention CTF with realistic defocus, and adds white Gaussian noise at
a given SNR (signal variance / noise variance over the box).
"""
from __future__ import annotations

import numpy as np

from . import fourier, kernels_cpu, so3
from .ctf import CTFParams, ctf_at


def _chain_in_ellipsoid(rng, n_res, centre, axes, R):
    """Random walk of C-alpha-like steps (3.8 A) kept inside an ellipsoid; returns atom positions."""
    pts = np.empty((n_res, 3))
    p = np.zeros(3)
    step_dir = rng.normal(size=3)
    for i in range(n_res):
        for _ in range(20):
            step_dir = 0.6 * step_dir / np.linalg.norm(step_dir) + 0.8 * rng.normal(size=3)
            q = p + 3.8 * step_dir / np.linalg.norm(step_dir)
            if np.sum((q / axes) ** 2) <= 1.0:
                p = q
                break
        pts[i] = p
    # side-chain-like atoms scattered around each residue
    side = pts[:, None, :] + rng.normal(scale=1.6, size=(n_res, 4, 3))
    atoms = np.concatenate([pts, side.reshape(-1, 3)])
    return atoms @ R.T + centre


def make_phantom(box: int = 64, apix: float = 2.0, seed: int = 7, diameter_A: float | None = None,
                 atom_sigma_A: float = 1.2) -> np.ndarray:
    """Asymmetric protein-like density (float32, (box,)*3), max ~1, centred, fits in ~60% of the box."""
    rng = np.random.default_rng(seed)
    diam = diameter_A if diameter_A is not None else 0.6 * box * apix
    s = diam / 85.0  # layout designed for an 85 A particle, scaled
    domains = [  # centre (A), semi-axes (A): deliberately unequal and off-axis
        ((-18, 10, -6), (24, 16, 13)),
        ((20, 6, 8), (17, 21, 12)),
        ((0, -22, 4), (15, 11, 19)),
        ((8, 14, -24), (10, 13, 8)),
    ]
    atoms = []
    for c, ax in domains:
        ax = np.array(ax, float) * s
        n_res = int(4.0 / 3.0 * np.pi * np.prod(ax) / 130.0)  # protein: ~1 residue per 130 A^3
        R = so3.random_rotations(1, rng)[0]
        atoms.append(_chain_in_ellipsoid(rng, n_res, np.array(c, float) * s, ax, R))
    # a helical rod sticking out on one side (right-handed helix: makes the hand unambiguous)
    t = np.linspace(0, 10 * 2 * np.pi, 280)
    helix = np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * t / (2 * np.pi) * 1.0], 1)
    helix[:, 2] = helix[:, 2] * s * 1.6 - 8 * s
    helix = helix @ so3.euler_to_matrix(30, 70, 0)  # tilted rod
    helix += np.array([-30, -20, 20]) * s
    atoms.append(helix)
    atoms = np.concatenate(atoms)
    atoms -= atoms.mean(axis=0)

    # splat atoms (trilinear) on the grid, then blur with a Gaussian of width atom_sigma_A in Fourier space
    grid = np.zeros((box, box, box), dtype=np.float64)
    pos = atoms / apix + box // 2  # (x, y, z) in voxels
    i0 = np.floor(pos).astype(int)
    f = pos - i0
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * \
                    (f[:, 2] if dz else 1 - f[:, 2])
                zi, yi, xi = i0[:, 2] + dz, i0[:, 1] + dy, i0[:, 0] + dx
                ok = (xi >= 0) & (xi < box) & (yi >= 0) & (yi < box) & (zi >= 0) & (zi < box)
                np.add.at(grid, (zi[ok], yi[ok], xi[ok]), w[ok])
    k = fourier.radial_index(grid.shape) / (box * apix)
    F = fourier.ft3c(grid) * np.exp(-2 * np.pi**2 * atom_sigma_A**2 * k**2)
    vol = fourier.ift3c(F).real
    vol = np.maximum(vol, 0)
    return (vol / np.percentile(vol, 99.9)).astype(np.float32)


def random_ctf(n: int, rng: np.random.Generator, defocus_range_um=(0.8, 2.5), astig_A: float = 300.0,
               voltage: float = 300.0, cs: float = 2.7, q0: float = 0.1) -> CTFParams:
    """Realistic per-particle CTF parameters (300 kV, Cs 2.7 mm, Q0 0.1, 0.8-2.5 um underfocus)."""
    df = rng.uniform(*defocus_range_um, size=n) * 1e4
    da = rng.uniform(0, astig_A, size=n)
    return CTFParams(df + da / 2, df - da / 2, rng.uniform(0, 180, size=n), np.full(n, voltage),
                     np.full(n, cs), np.full(n, q0), np.zeros(n))


def points_to_images(vals: np.ndarray, kx, ky, box: int) -> np.ndarray:
    """Half-plane Fourier values (n, m) -> real images (n, box, box) (Friedel mates filled in)."""
    c = box // 2
    F = np.zeros((vals.shape[0], box, box), dtype=np.complex64)
    F[:, ky + c, kx + c] = vals
    F[:, c - ky, c - kx] = np.conj(vals)
    return fourier.ift2c(F).real.astype(np.float32)


def project(vol: np.ndarray, R: np.ndarray, origins_px: np.ndarray | None = None,
            ctf: CTFParams | None = None, apix: float = 1.0, pad: int = 2, F: np.ndarray | None = None) -> np.ndarray:
    """Projections of ``vol`` along rotations R (n,3,3), shifted by -origin (px), times CTF (optional)."""
    box = vol.shape[0]
    if F is None:
        F = fourier.volume_to_fourier(vol, pad)
    kx, ky = fourier.half_plane_points(box // 2 - 1)
    P = kernels_cpu.extract_slices(F, R, kx, ky, pad)
    if origins_px is not None:
        # observed image = projection shifted by -origin
        P = P * fourier.shift_phases(kx, ky, -np.asarray(origins_px), box)
    if ctf is not None:
        P = P * ctf_at(ctf, np.arange(len(R)), kx / (box * apix), ky / (box * apix))
    return points_to_images(P, kx, ky, box)


def simulate_particles(vol: np.ndarray, n: int, apix: float, snr: float = 0.05, seed: int = 0,
                       max_shift_A: float | None = None, defocus_range_um=(0.8, 2.5), batch: int = 500):
    """Simulate ``n`` noisy CTF-modulated projections of ``vol``.

    Returns
    -------
    images : float32 (n, box, box)
    truth : dict with 'rot', 'tilt', 'psi' (deg), 'origin_x', 'origin_y' (A), 'ctf' (CTFParams),
            'noise_sigma' (per pixel)
    """
    rng = np.random.default_rng(seed)
    box = vol.shape[0]
    R = so3.random_rotations(n, rng)
    rot, tilt, psi = so3.matrix_to_euler(R)
    if max_shift_A is None:
        max_shift_A = 0.04 * box * apix
    origins = rng.uniform(-max_shift_A, max_shift_A, size=(n, 2))
    ctf = random_ctf(n, rng, defocus_range_um)
    F = fourier.volume_to_fourier(vol, 2)
    images = np.empty((n, box, box), dtype=np.float32)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        images[a:b] = project(vol, R[a:b], origins[a:b] / apix, ctf.subset(np.arange(a, b)), apix, F=F)
    sig_var = float(images.var(axis=(1, 2)).mean())
    noise_sigma = float(np.sqrt(sig_var / snr)) if snr > 0 else 1.0
    if snr <= 0:  # pure noise (for the Einstein-from-noise test)
        images[...] = 0
    for a in range(0, n, batch):
        b = min(n, a + batch)
        images[a:b] += rng.normal(scale=noise_sigma, size=(b - a, box, box)).astype(np.float32)
    truth = dict(rot=rot, tilt=tilt, psi=psi, origin_x=origins[:, 0], origin_y=origins[:, 1], ctf=ctf,
                 noise_sigma=noise_sigma)
    return images, truth

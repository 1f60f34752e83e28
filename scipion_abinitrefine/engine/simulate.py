"""Simulated particle data sets with known ground truth.

``make_phantom`` builds the embedded demo map: an asymmetric, protein-like pseudo-atomic model (chains of
Gaussian atoms confined to several ellipsoidal domains of different sizes, plus a helical rod), rendered
on the requested grid. It has no symmetry and no hand symmetry, so hand and orientation errors show up.

``simulate_particles`` projects a map (Fourier-slice theorem, RELION conventions) with uniform random
poses and shifts, applies a RELION-convention CTF with realistic defocus, and adds Gaussian noise at a
given SNR (signal variance / noise variance over the box). For data like real data sets: a B-factor
envelope, coloured (ice/detector) noise, per-particle amplitude scale and a junk fraction (empty ice,
off-centre particles, another object, aggregates), all marked in the returned ground truth.

Phantom shapes: ``make_phantom(shape=...)`` with "demo", "compact", "elongated", "flat" (seeded).
Real structures: ``map_from_pdb`` renders an atomic model (PDB format, first model) as a density map.
"""
from __future__ import annotations

import numpy as np

from . import fourier, kernels_cpu, so3
from .ctf import CTFParams, ctf_at
from .symmetry import operators as symmetry_operators


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


# Domain layouts (centre, semi-axes; arbitrary units, scaled to the requested size): the demo layout and
# three shape families. Each family's domains are jittered by the seed, so every seed is another structure.
_DEMO_LAYOUT = [((-18, 10, -6), (24, 16, 13)), ((20, 6, 8), (17, 21, 12)), ((0, -22, 4), (15, 11, 19)),
                ((8, 14, -24), (10, 13, 8))]
SHAPES = ("demo", "compact", "elongated", "flat")


def _layout(shape: str, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Domain centres and semi-axes for a shape family (units: ~A for an 85 A particle)."""
    if shape == "demo":
        return [(np.array(c, float), np.array(a, float)) for c, a in _DEMO_LAYOUT]
    if shape == "compact":  # globular: 4-5 domains packed around the centre, aspect ~1.2
        n = rng.integers(4, 6)
        cs = rng.normal(size=(n, 3)) * 12.0
        ax = rng.uniform(11, 18, size=(n, 3))
    elif shape == "elongated":  # rod-like, aspect ~3: domains along x
        n = rng.integers(4, 6)
        cs = np.stack([np.linspace(-24, 24, n) + rng.normal(0, 2, n), rng.normal(0, 3, n),
                       rng.normal(0, 3, n)], 1)
        ax = np.stack([rng.uniform(12, 16, n), rng.uniform(11, 15, n), rng.uniform(11, 15, n)], 1)
    elif shape == "flat":  # disc-like, aspect ~1:3: domains on a ring in the xy plane
        n = rng.integers(5, 7)
        phi = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(18, 30, n)
        cs = np.stack([rad * np.cos(phi), rad * np.sin(phi), rng.normal(0, 2.0, n)], 1)
        ax = np.stack([rng.uniform(11, 16, n), rng.uniform(11, 16, n), rng.uniform(6, 9, n)], 1)
    else:
        raise ValueError(f"unknown phantom shape {shape!r}: choose one of {', '.join(SHAPES)}")
    return [(c, a) for c, a in zip(cs, ax)]


def phantom_atoms(shape: str = "demo", seed: int = 7, diameter_A: float = 85.0,
                  mass_kda: float | None = None) -> np.ndarray:
    """Pseudo-atom positions (n, 3) in A, centred: chains in ellipsoidal domains plus a right-handed helix.

    The size is set by ``mass_kda`` (protein density: ~1 residue of 110 Da per 130 A^3) when given,
    otherwise by the largest extent ``diameter_A``.
    """
    rng = np.random.default_rng(seed)
    lay = _layout(shape, rng)
    ext = max(np.max(np.abs(c) + a) for c, a in lay) * 2
    if mass_kda:
        vol_unit = sum(4.0 / 3.0 * np.pi * np.prod(a) for _, a in lay)
        s = (mass_kda * 1000.0 / 110.0 * 130.0 / vol_unit) ** (1.0 / 3.0)
    else:
        s = diameter_A / (85.0 if shape == "demo" else ext)
    atoms = []
    for c, ax in lay:
        ax = ax * s
        n_res = int(4.0 / 3.0 * np.pi * np.prod(ax) / 130.0)  # protein: ~1 residue per 130 A^3
        R = so3.random_rotations(1, rng)[0]
        atoms.append(_chain_in_ellipsoid(rng, n_res, c * s, ax, R))
    # a helical rod sticking out on one side (right-handed helix: makes the hand unambiguous)
    t = np.linspace(0, 10 * 2 * np.pi, 280)
    helix = np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * t / (2 * np.pi) * 1.0], 1)
    helix[:, 2] = helix[:, 2] * s * 1.6 - 8 * s
    helix = helix @ so3.euler_to_matrix(30, 70, 0)  # tilted rod
    anchor = np.array([-30, -20, 20]) * s if shape == "demo" else lay[-1][0] * s
    helix += anchor
    atoms.append(helix)
    atoms = np.concatenate(atoms)
    return atoms - atoms.mean(axis=0)


def render_atoms(atoms: np.ndarray, box: int, apix: float, atom_sigma_A: float = 1.2,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """Splat atoms (trilinear; ``weights`` per atom, default 1) on the grid, blur by a Gaussian of width
    atom_sigma_A; max ~1 (99.9th pct)."""
    grid = np.zeros((box, box, box), dtype=np.float64)
    wa = np.ones(len(atoms)) if weights is None else np.asarray(weights, np.float64)
    pos = atoms / apix + box // 2  # (x, y, z) in voxels
    i0 = np.floor(pos).astype(int)
    f = pos - i0
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = wa * (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * \
                    (f[:, 2] if dz else 1 - f[:, 2])
                zi, yi, xi = i0[:, 2] + dz, i0[:, 1] + dy, i0[:, 0] + dx
                ok = (xi >= 0) & (xi < box) & (yi >= 0) & (yi < box) & (zi >= 0) & (zi < box)
                np.add.at(grid, (zi[ok], yi[ok], xi[ok]), w[ok])
    k = fourier.radial_index(grid.shape) / (box * apix)
    F = fourier.ft3c(grid) * np.exp(-2 * np.pi**2 * atom_sigma_A**2 * k**2)
    vol = np.maximum(fourier.ift3c(F).real, 0)
    return (vol / np.percentile(vol, 99.9)).astype(np.float32)


# electrons per atom (the weight of an atom in the rendered density); other elements count as carbon
_ELECTRONS = {"H": 1, "C": 6, "N": 7, "O": 8, "P": 15, "S": 16, "SE": 34, "MG": 12, "ZN": 30, "FE": 26,
              "CA": 20, "MN": 25, "CL": 17, "NA": 11, "K": 19}
_SOLVENT = {"HOH", "WAT", "DOD", "SOL", "TIP", "TIP3"}


def read_pdb_atoms(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (n, 3) in A and electron counts (n,) of the ATOM/HETATM records of a PDB file (plain or
    .gz), first model only, waters left out. Raises ValueError naming the file when it holds no atoms."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    xyz, z = [], []
    with opener(path, "rt", errors="replace") as fh:
        for line in fh:
            if line.startswith("ENDMDL"):
                break
            if not line.startswith(("ATOM", "HETATM")) or line[17:21].strip() in _SOLVENT:
                continue
            try:
                xyz.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
            except ValueError:
                raise ValueError(f"{path}: unreadable coordinates in the line {line.rstrip()!r}") from None
            el = line[76:78].strip().upper() or line[12:16].strip().lstrip("0123456789")[:1].upper()
            z.append(_ELECTRONS.get(el, 6))
    if not xyz:
        raise ValueError(f"{path}: no ATOM/HETATM records (a PDB-format atomic model is needed)")
    return np.array(xyz, np.float64), np.array(z, np.float64)


def map_from_pdb(path: str, box: int, apix: float, atom_sigma_A: float = 1.2) -> np.ndarray:
    """The atomic model in ``path`` as a density map (float32, (box,)*3, max ~1): atoms weighted by their
    electrons, centred on the centre of mass, blurred by ``atom_sigma_A``. Raises ValueError when the
    model does not fit in 90% of the box (a bigger box or pixel size is needed)."""
    xyz, z = read_pdb_atoms(path)
    xyz = xyz - (xyz * z[:, None]).sum(0) / z.sum()
    extent = 2 * np.linalg.norm(xyz, axis=1).max() + 4 * atom_sigma_A
    if extent > 0.9 * box * apix:
        raise ValueError(f"{path}: the model spans {extent:.0f} A, more than 90% of the box ({box} px x {apix} A = "
                         f"{box * apix:.0f} A): use a larger --box or --apix (e.g. --apix "
                         f"{extent / (0.75 * box):.2f})")
    return render_atoms(xyz, box, apix, atom_sigma_A, weights=z)


def make_phantom(box: int = 64, apix: float = 2.0, seed: int = 7, diameter_A: float | None = None,
                 atom_sigma_A: float = 1.2, shape: str = "demo", mass_kda: float | None = None,
                 symmetry: str = "C1") -> np.ndarray:
    """Protein-like density (float32, (box,)*3), max ~1, centred; asymmetric in C1.

    ``shape``: "demo" (the embedded demo map with seed 7), "compact", "elongated" or "flat"; ``seed``
    draws the structure within the family. Size: ``mass_kda`` (e.g. 50-500) or ``diameter_A`` (default
    60% of the box). ``symmetry`` (RELION's names, :mod:`symmetry`): the phantom becomes one subunit, moved
    off the symmetry axes and repeated at its mates, the assembly scaled to the same largest extent.
    """
    diam = diameter_A if diameter_A is not None else 0.6 * box * apix
    atoms = phantom_atoms(shape, seed, diam, mass_kda)
    ops = symmetry_operators(symmetry)
    if len(ops) > 1:
        unit = atoms + np.array([0.30, 0.18, 0.24]) * diam  # off every axis of the groups' conventions
        atoms = np.concatenate([unit @ S.T for S in ops])
        atoms *= 0.5 * diam / np.max(np.linalg.norm(atoms, axis=1))
    return render_atoms(atoms, box, apix, atom_sigma_A)


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
            ctf: CTFParams | None = None, apix: float = 1.0, pad: int = 2, F: np.ndarray | None = None,
            envelope: np.ndarray | None = None) -> np.ndarray:
    """Projections of ``vol`` along rotations R (n,3,3), shifted by -origin (px), times CTF and an
    envelope on the half-plane points (optional)."""
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
    if envelope is not None:
        P = P * envelope
    return points_to_images(P, kx, ky, box)


JUNK_KINDS = ("empty", "offcentre", "other", "aggregate")


def noise_psd(box: int, apix: float, colour: str = "white") -> np.ndarray:
    """Noise power spectrum (box, box), centred, mean 1 over the image: "white", or "coloured" (ice and
    detector: ~5x more power at low than at high frequency, falling over ~1/40 A^-1, as in real micrographs).
    """
    if colour == "white":
        return np.ones((box, box))
    if colour != "coloured":
        raise ValueError(f"unknown noise colour {colour!r}: 'white' or 'coloured'")
    k = fourier.radial_index((box, box)) / (box * apix)
    psd = 0.25 + np.exp(-k * 40.0)
    return psd / psd.mean()


def _coloured_noise(rng, shape, sigma: float, psd_sqrt: np.ndarray | None) -> np.ndarray:
    z = rng.normal(scale=sigma, size=shape)
    if psd_sqrt is None:
        return z.astype(np.float32)
    return fourier.ift2c(fourier.ft2c(z) * psd_sqrt).real.astype(np.float32)


def simulate_particles(vol: np.ndarray, n: int, apix: float, snr: float = 0.05, seed: int = 0,
                       max_shift_A: float | None = None, defocus_range_um=(0.8, 2.5), batch: int = 500,
                       bfactor: float = 0.0, noise: str = "white", scale_spread: float = 0.0,
                       junk_fraction: float = 0.0, junk_kinds=JUNK_KINDS, junk_map: np.ndarray | None = None):
    """Simulate ``n`` noisy CTF-modulated projections of ``vol``.

    Parameters
    ----------
    snr : signal variance / noise variance over the box (signal: the good particles' images)
    bfactor : B-factor (A^2) envelope exp(-B k^2 / 4) on every projection (real data: 50-150)
    noise : "white" or "coloured" (:func:`noise_psd`)
    scale_spread : per-particle amplitude scale uniform in [1 - s, 1 + s] (ice thickness, e.g. 0.2)
    junk_fraction : fraction of particles replaced by junk, drawn evenly from ``junk_kinds``:
        "empty" (ice only), "offcentre" (the particle 25-45% of the box off centre), "other" (a
        different object: ``junk_map``, default a random compact phantom), "aggregate" (2-3 copies at
        random orientations, touching)

    Returns
    -------
    images : float32 (n, box, box)
    truth : dict with 'rot', 'tilt', 'psi' (deg), 'origin_x', 'origin_y' (A), 'ctf' (CTFParams),
            'noise_sigma' (per pixel), 'scale' (n,), 'junk' (bool, n), 'junk_kind' ('' for good particles)
    """
    rng = np.random.default_rng(seed)
    box = vol.shape[0]
    R = so3.random_rotations(n, rng)
    rot, tilt, psi = so3.matrix_to_euler(R)
    if max_shift_A is None:
        max_shift_A = 0.04 * box * apix
    origins = rng.uniform(-max_shift_A, max_shift_A, size=(n, 2))
    ctf = random_ctf(n, rng, defocus_range_um)
    # everything new draws from its own stream: the default data set stays what it always was
    rng2 = np.random.default_rng(np.random.SeedSequence([seed, 0x51A7]))
    scale = rng2.uniform(1 - scale_spread, 1 + scale_spread, n) if scale_spread > 0 else np.ones(n)
    kinds = np.full(n, "", dtype=object)
    n_junk = int(round(junk_fraction * n))
    if n_junk:
        jidx = rng2.choice(n, n_junk, replace=False)
        kinds[jidx] = np.asarray(junk_kinds, dtype=object)[np.arange(n_junk) % len(junk_kinds)]
    F = fourier.volume_to_fourier(vol, 2)
    env = None
    if bfactor:
        kx, ky = fourier.half_plane_points(box // 2 - 1)
        env = np.exp(-bfactor * (kx**2 + ky**2) / (box * apix) ** 2 / 4.0).astype(np.float32)
    images = np.empty((n, box, box), dtype=np.float32)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        images[a:b] = project(vol, R[a:b], origins[a:b] / apix, ctf.subset(np.arange(a, b)), apix, F=F,
                              envelope=env)
    good = kinds == ""
    sig_var = float(images[good].var(axis=(1, 2)).mean()) if good.any() else float(images.var(axis=(1, 2)).mean())
    images *= scale[:, None, None].astype(np.float32)
    if n_junk:
        _make_junk(images, kinds, vol, R, origins / apix, ctf, apix, env, rng2, junk_map)
    noise_sigma = float(np.sqrt(sig_var / snr)) if snr > 0 else 1.0
    if snr <= 0:  # pure noise (for the Einstein-from-noise test)
        images[...] = 0
    psd_sqrt = None if noise == "white" else np.sqrt(noise_psd(box, apix, noise))
    for a in range(0, n, batch):
        b = min(n, a + batch)
        if psd_sqrt is None:  # the same draws as before coloured noise existed
            images[a:b] += rng.normal(scale=noise_sigma, size=(b - a, box, box)).astype(np.float32)
        else:
            images[a:b] += _coloured_noise(rng, (b - a, box, box), noise_sigma, psd_sqrt)
    truth = dict(rot=rot, tilt=tilt, psi=psi, origin_x=origins[:, 0], origin_y=origins[:, 1], ctf=ctf,
                 noise_sigma=noise_sigma, scale=scale, junk=~good, junk_kind=kinds)
    return images, truth


def _make_junk(images, kinds, vol, R, origins_px, ctf, apix, env, rng, junk_map):
    """Replace the images of junk particles in place (before noise), CTF-modulated like the rest."""
    box = vol.shape[0]
    for kind in JUNK_KINDS:
        idx = np.flatnonzero(kinds == kind)
        if not len(idx):
            continue
        c = ctf.subset(idx)
        if kind == "empty":
            images[idx] = 0
        elif kind == "offcentre":
            ang = rng.uniform(0, 2 * np.pi, len(idx))
            d = rng.uniform(0.25, 0.45, len(idx)) * box
            o = np.stack([d * np.cos(ang), d * np.sin(ang)], 1)
            images[idx] = project(vol, R[idx], o, c, apix, envelope=env)
        elif kind == "other":
            other = junk_map if junk_map is not None else make_phantom(box, apix, seed=int(rng.integers(1 << 30)),
                                                                         shape="compact")
            other = other * (vol.sum() / max(other.sum(), 1e-12))  # same mass
            images[idx] = project(other, so3.random_rotations(len(idx), rng), origins_px[idx], c, apix,
                                  envelope=env)
        elif kind == "aggregate":
            rad = 0.5 * _extent_px(vol)
            acc = project(vol, R[idx], origins_px[idx], c, apix, envelope=env)
            for _ in range(2):
                ang = rng.uniform(0, 2 * np.pi, len(idx))
                o = origins_px[idx] + np.stack([np.cos(ang), np.sin(ang)], 1) * rad * 1.6
                keep = rng.random(len(idx)) < 0.7  # 2 or 3 copies
                acc += keep[:, None, None] * project(vol, so3.random_rotations(len(idx), rng), o, c, apix,
                                                     envelope=env)
            images[idx] = acc


def _extent_px(vol) -> float:
    """Largest extent (px) of the density above 5% of its maximum."""
    zz = np.argwhere(vol > 0.05 * vol.max())
    return float(np.max(zz.max(axis=0) - zz.min(axis=0) + 1)) if len(zz) else vol.shape[0] / 2

"""What the SGD update and the final reconstruction of a half share: images to Fourier points with their
CTF, back-projection of posterior-weighted images and their curvature, the per-shell regulariser."""
from __future__ import annotations

import numpy as np

from . import fourier, kernels_cpu
from .ctf import ctf_at

# Regulariser lambda = this fraction of the shell's mean curvature (over voxels that have any): scale-free.
# The SGD step takes a larger one (its curvature is a forgetting sum of few minibatches, noisy at the edge
# of the data); the final reconstruction from every particle a smaller one (a Wiener-like floor).
UPDATE_REGULARISER = 0.05
FINAL_REGULARISER = 0.01
# poses whose back-projection weight is at most this fraction of their image's total are not inserted (a
# change of < 1e-4 of one image in the map; relative, so that an image's overall weight does not matter)
MIN_INSERT_WEIGHT = 1e-4
# bytes of one (images x poses x points) complex temporary of the back-projection
CHUNK_BYTES = 16 << 20


def normalise_images(img: np.ndarray, radius_px: float, out: np.ndarray | None = None) -> np.ndarray:
    """Zero mean, unit std of the background (outside ``radius_px``), per image: float32, into ``out`` (a new
    array by default; ``img`` itself to normalise in place). One parallel pass per image
    (``kernels_cpu.normalise_background``): numpy's gather, mean, std and division took 0.1 s per 300
    images at box 128-256, as long as their Fourier transforms."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    if out is None:
        out = np.empty_like(img)
    kernels_cpu.normalise_background(img, float(radius_px), out)
    return out


def image_points(data, gidx: np.ndarray, radius_px: float, kx, ky):
    """Normalised images ``gidx`` of ``data`` at half-plane points (kx, ky) and their CTF there: (X, C)."""
    img = np.ascontiguousarray(data.read_images(gidx), dtype=np.float32)
    # normalised in place when the array is a fresh one of ours (not a view of a source's own images)
    img = normalise_images(img, radius_px, out=img if img.flags.owndata and img.flags.writeable else None)
    X = fourier.image_points(img, kx, ky)
    return X, ctf_at(data.ctf, gidx, kx / (data.box * data.apix), ky / (data.box * data.apix))


def backproject(acc, res, X, C, s2, kx, ky, box: int, pad: int, weights, sym=None) -> np.ndarray:
    """Insert the centred images (weighted by ``weights`` (B, n) over the n poses of ``res``, CTF and 1/s2)
    and their curvature C^2 / s2 into accumulator ``acc``. Returns the images centred at their best pose
    (B, m).

    ``sym``: the point group's matrices (``symmetry.operators``); an image seen at A is also an image of
    the symmetric map at A S for every S of the group, and is inserted at all of them.

    In chunks of images whose (chunk, n, m) temporaries stay under ``CHUNK_BYTES``: the same insertions in
    the same order (the same sums), without mapping hundreds of MB afresh per call at box 128+.
    """
    B, nb, m = len(X), res.R.shape[1], len(kx)
    step = max(1, CHUNK_BYTES // (8 * nb * m))
    out = np.empty((B, m), np.complex64)
    Xv = kernels_cpu.as_float_view(np.ascontiguousarray(X, np.complex64))
    Ch = np.ascontiguousarray(C, np.float32)
    inv = (1.0 / np.asarray(s2, np.float32)).astype(np.float32)
    t = np.ascontiguousarray(res.t, np.float32)
    kxf, kyf = np.asarray(kx, np.float32), np.asarray(ky, np.float32)
    wgt = np.asarray(weights, np.float32)
    # poses of negligible posterior weight are left out: once the posterior is sharp (the final pass) the
    # best pose carries ~all of an image's weight and inserting the other n - 1 was most of the work; each
    # image's first pose is always computed (it gives the centred images returned)
    heavy = wgt > MIN_INSERT_WEIGHT * wgt.sum(axis=1, keepdims=True)  # the poses inserted
    keep = heavy | (np.arange(nb) == 0)[None, :]  # the rows computed
    # images in order of their best pose's viewing direction: consecutive slices then cross nearly the same
    # voxels, which stay in cache between them (insertion is bound by its scattered read-modify-writes:
    # ~15% less time per batch at box 128); changes only the order of each voxel's sum
    order = view_order(res.R[:, 0])
    for a in range(0, B, step):
        idx = order[a:a + step]
        ii, kk = np.nonzero(keep[idx])
        rows = np.stack([idx[ii], kk], axis=1).astype(np.int64)
        vals = np.empty((len(rows), m), np.complex64)
        wts = np.empty((len(rows), m), np.float32)
        # the shifted, weighted values in one parallel pass (numpy's chain of (images x poses x points)
        # temporaries ran on one core beside the parallel insertion)
        kernels_cpu.weighted_slices(Xv, Ch, inv, t, wgt, kxf, kyf, float(box), rows,
                                    kernels_cpu.as_float_view(vals), wts, kernels_cpu.as_float_view(out))
        use = heavy[rows[:, 0], rows[:, 1]]
        R = res.R[rows[:, 0], rows[:, 1]]
        if not use.all():  # a first pose kept only for the centred image: not inserted
            R, vals, wts = R[use], vals[use], wts[use]
        if sym is None or len(sym) == 1:
            acc.insert(R, kx, ky, pad, vals, wts)
        else:
            for S in sym:
                acc.insert(R @ S.astype(np.float32), kx, ky, pad, vals, wts)
    return out


def view_order(R: np.ndarray, band: float = 0.1) -> np.ndarray:
    """Indices of rotations ``R`` (n, 3, 3) in an order that keeps neighbouring slices' planes close: by the
    plane's normal (the third row of A, up to sign, since each slice is inserted with its Friedel mate), in
    bands of ``band`` rad of its polar angle, along the azimuth, every other band backwards (a snake)."""
    d = np.asarray(R, np.float64)[:, 2, :]
    d = np.where(d[:, 2:3] < 0, -d, d)
    theta = np.arccos(np.clip(d[:, 2], -1.0, 1.0))
    phi = np.arctan2(d[:, 1], d[:, 0])
    b = np.floor(theta / band).astype(np.int64)
    return np.lexsort((np.where(b % 2 == 1, -phi, phi), b))


def preconditioned_update(G, H, B, W, lr: float, pad: int, D: int, fraction: float = UPDATE_REGULARISER):
    """One SGD step in Fourier space, in place on the padded volumes: H <- (1 - lr) H + W (the curvature's
    running average), then G <- G + (B - W G) / (H + lambda) where H > 0, lambda = ``fraction`` of the mean H
    of the voxel's shell (shells of the box D). Two parallel passes (``kernels_cpu``), no full-size
    temporaries; the numpy formula it replaces (masked arithmetic with ``testing.kernels_ref.shell_regulariser``)
    is its test's reference."""
    wsum, wcnt = kernels_cpu.curvature_shell_sums(H, W, np.float32(1.0 - lr), pad, D)
    lam = shell_lambda(wsum.sum(axis=0), wcnt.sum(axis=0), fraction)
    kernels_cpu.preconditioned_step(kernels_cpu.as_float_view(G), kernels_cpu.as_float_view(B), W, H, lam, pad, D)


def shell_lambda(wsum: np.ndarray, wcnt: np.ndarray, fraction: float) -> np.ndarray:
    """Per-shell lambda from each shell's summed curvature ``wsum`` over its ``wcnt`` voxels with W > 0."""
    return (fraction * wsum / np.maximum(wcnt, 1)).astype(np.float32)


def _plane_radii(Dp: int, pad: int):
    """Per z-plane of a padded centred grid: radius / pad (float64, as ``fourier.radial_index`` sums it)."""
    g = (np.arange(Dp, dtype=np.float64) - Dp // 2) ** 2
    for z in range(Dp):
        yield z, np.sqrt((g[z] + g[:, None]) + g[None, :]) / pad


def normalise_in_place(B: np.ndarray, W: np.ndarray, D: int, pad: int, r_keep: float, fraction: float) -> np.ndarray:
    """The final direct reconstruction's Fourier map, written over ``B`` (complex64, padded (pD)^3) and returned:
    B / (W + lambda) where W > 0 and the radius is at most ``r_keep`` + 0.5 (index units of the box D),
    0 elsewhere; lambda = ``fraction`` of the mean W of the voxel's shell (:func:`shell_lambda`).

    Plane by plane: a full-size temporary of a padded box-256 map is 0.5-1 GB, and the whole-volume
    expression made several (the final pass peaked at 10 GB at box 256).
    """
    Dp = W.shape[0]
    wsum = np.zeros(D + 1)
    wcnt = np.zeros(D + 1)
    for z, rsh in _plane_radii(Dp, pad):
        sh = np.minimum(np.rint(rsh).astype(np.int64), D).ravel()
        wsum += np.bincount(sh, weights=W[z].ravel(), minlength=D + 1)
        wcnt += np.bincount(sh, weights=(W[z] > 0).ravel().astype(np.float64), minlength=D + 1)
    lam = shell_lambda(wsum, wcnt, fraction)
    for z, rsh in _plane_radii(Dp, pad):
        sh = np.minimum(np.rint(rsh).astype(np.int64), D)
        Wz = W[z]
        Fz = np.where(Wz > 0, B[z] / (Wz + lam[sh] + 1e-30), 0).astype(np.complex64)
        Fz[rsh > r_keep + 0.5] = 0
        B[z] = Fz
    return B

"""Back-projection of a batch (engine/reconstruct.backproject): what the SGD update and the final pass insert.

What a user relies on: every image goes in once per kept pose, weighted by its posterior, CTF and 1/sigma^2,
shifted by its pose's origin, whatever order and chunks the batch is cut into for speed.
"""
import numpy as np

from scipion_abinitrefine.engine import fourier, kernels_cpu, reconstruct, so3
from scipion_abinitrefine.engine.search import SearchResult
from scipion_abinitrefine.testing import kernels_ref

D, PAD, B, NB = 24, 2, 37, 3


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    kx, ky = fourier.half_plane_points(D / 2 - 1)
    m = len(kx)
    R = so3.random_rotations(B * NB, rng).astype(np.float32).reshape(B, NB, 3, 3)
    t = rng.uniform(-2, 2, (B, NB, 2)).astype(np.float32)
    w = rng.random((B, NB))
    w[:, -1] = 0  # a pose without weight: left out
    w /= w.sum(axis=1, keepdims=True)
    res = SearchResult(R=R, t=t, w=w, ess=np.ones(B), ll_best=np.zeros(B))
    X = (rng.standard_normal((B, m)) + 1j * rng.standard_normal((B, m))).astype(np.complex64)
    C = rng.uniform(-1, 1, (B, m)).astype(np.float32)
    s2 = rng.uniform(0.5, 2, m).astype(np.float32)
    return res, X, C, s2, kx, ky, w


def test_backproject_matches_image_by_image_insertion(monkeypatch):
    res, X, C, s2, kx, ky, w = _batch()
    ref = kernels_cpu.Accumulator(D * PAD)
    for i in range(B):  # the reference: each image and pose on its own, in the batch's order
        for k in range(NB):
            if w[i, k] == 0:
                continue
            Xc = X[i] * fourier.shift_phases(kx, ky, res.t[i, k][None], D)[0]
            ref.insert(res.R[i, k][None], kx, ky, PAD, (w[i, k] * C[i] * Xc / s2)[None],
                       (w[i, k] * C[i] ** 2 / s2)[None].astype(np.float32))
    monkeypatch.setattr(reconstruct, "CHUNK_BYTES", 8 * NB * len(kx) * 5)  # chunks of 5 images
    acc = kernels_cpu.Accumulator(D * PAD)
    out = reconstruct.backproject(acc, res, X, C, s2, kx, ky, D, PAD, w)
    scale = np.abs(ref.B).max()
    assert np.abs(acc.B - ref.B).max() < 1e-5 * scale
    assert np.abs(acc.W - ref.W).max() < 1e-5 * ref.W.max()
    best = X * fourier.shift_phases(kx, ky, res.t[:, 0], D)  # the images centred at their best pose
    assert np.abs(out - best).max() < 1e-5 * np.abs(best).max()


def test_view_order_keeps_neighbouring_planes_close():
    R = so3.random_rotations(2000, np.random.default_rng(1))
    order = reconstruct.view_order(R)
    assert np.array_equal(np.sort(order), np.arange(len(R)))

    def mean_step(o):  # angle between consecutive planes' normals (up to sign)
        d = R[o, 2, :]
        return np.degrees(np.arccos(np.clip(np.abs((d[1:] * d[:-1]).sum(axis=1)), 0, 1))).mean()

    assert mean_step(order) < 10 and mean_step(np.arange(len(R))) > 40


def test_preconditioned_update_matches_the_numpy_formula():
    """The SGD step's two kernels against the masked numpy arithmetic they replace (shell_regulariser)."""
    rng = np.random.default_rng(3)
    Dp, box, lr = 2 * 14, 20, 0.3
    shape = (Dp, Dp, Dp)
    r = fourier.radial_index(shape)
    H = (rng.random(shape) * (rng.random(shape) > 0.4) * (1 + r) ** 2).astype(np.float32)  # shells differ
    W = rng.random(shape).astype(np.float32) * (rng.random(shape) > 0.5)
    B = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    G = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    Hr, Gr = H.copy(), G.copy()  # the reference
    Hr *= (1.0 - lr)
    Hr += W
    shells = np.minimum(np.rint(r / PAD).astype(np.int64), box)
    lam = kernels_ref.shell_regulariser(Hr, shells, 0.5, box + 1)
    upd = Hr > 0
    Gr[upd] += (B[upd] - W[upd] * Gr[upd]) / (Hr[upd] + lam[upd] + 1e-30)
    reconstruct.preconditioned_update(G, H, B, W, lr, PAD, box, fraction=0.5)
    assert np.array_equal(H, Hr)
    assert np.abs(G - Gr).max() <= 1e-6 * np.abs(Gr).max()
    assert np.array_equal(G[~upd], Gr[~upd])  # no curvature: untouched


def test_normalise_images_matches_numpy_and_works_in_place():
    """Every image reaches the search with zero mean and unit std of its background (the noise outside the
    particle), odd and even boxes, offsets and scales far from 0 / 1, a flat image left at std 1."""
    rng = np.random.default_rng(3)
    for D, r in ((24, 9.6), (25, 10.0), (32, 13.6)):
        img = (rng.normal(5.0, 3.0, (7, D, D)) + rng.uniform(-100, 100, (7, 1, 1))).astype(np.float32)
        img[2] = 4.0  # flat: std 0 counts as 1
        img[3, D // 2, D // 2] = 1e4  # the particle region does not enter the statistics
        ref = kernels_ref.normalise_background_ref(img, r)
        got = reconstruct.normalise_images(img, r)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        work = img.copy()
        assert reconstruct.normalise_images(work, r, out=work) is work
        np.testing.assert_array_equal(work, got)

"""The band-limited pose likelihood (``SGDParams.min_align_res_A``, ``search.PoseSearch(min_radius=...)``):
the points below the lower radius enter no score, no evidence and no polish, the others exactly as before."""
import numpy as np
import pytest

from scipion_abinitrefine.engine import fourier, refine, search
from scipion_abinitrefine.testing import sources


@pytest.fixture(scope="module")
def batch():
    D, X, C, s2, kx, ky, r, G = sources.search_batch(16, snr=0.5, seed=5, r=10.0)
    return D, X, C.astype(np.float32), s2, kx, ky, r, G


def _scramble_below(X, C, kx, ky, r_lo, seed):
    """The same images and CTFs with every point below ``r_lo`` replaced by something else."""
    rng = np.random.default_rng(seed)
    low = np.hypot(kx, ky) < r_lo
    X2, C2 = X.copy(), C.copy()
    X2[:, low] = (rng.normal(size=(len(X), low.sum())) + 1j * rng.normal(size=(len(X), low.sum()))) * 50
    C2[:, low] = rng.uniform(-1, 1, size=(len(X), low.sum()))
    return X2, C2, low


def test_points_below_the_lower_radius_change_nothing(batch):
    D, X, C, s2, kx, ky, r, G = batch
    ps = search.PoseSearch(D, 12.0, 3.0, top_k=8, min_radius=4.0)
    X2, C2, low = _scramble_below(X, C, kx, ky, 4.0, 0)
    assert 10 < low.sum() < len(kx) // 2
    a = ps.search(G, X, C, s2, kx, ky, r, n_keep=4)
    b = ps.search(G, X2, C2, s2, kx, ky, r, n_keep=4)
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_allclose(a.evidence, b.evidence, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(a.ll_best, b.ll_best, rtol=1e-5, atol=1e-3)
    # the polish sees the same band (the job passes it ``band(s2)``)
    s2b = ps.band(s2, kx, ky)
    assert np.isinf(s2b[low]).all() and np.array_equal(s2b[~low], s2[~low])
    Ra, ta, _ = refine.refine_poses(ps.be, G, X, C, s2b, kx, ky, a.R[:, 0], a.t[:, 0], D)
    Rb, tb, _ = refine.refine_poses(ps.be, G, X2, C2, s2b, kx, ky, a.R[:, 0], a.t[:, 0], D)
    np.testing.assert_allclose(Ra, Rb, atol=1e-5)
    np.testing.assert_allclose(ta, tb, atol=1e-4)
    # ... while without the lower radius the same change moves the scores
    full = search.PoseSearch(D, 12.0, 3.0, top_k=8)
    c = full.search(G, X, C, s2, kx, ky, r, n_keep=4)
    d = full.search(G, X2, C2, s2, kx, ky, r, n_keep=4)
    assert np.abs(c.evidence - d.evidence).max() > 1.0


def test_the_band_limited_scores_are_the_band_alone(batch):
    """The search's best log-likelihood equals the numpy sum over the band's points at its best pose."""
    D, X, C, s2, kx, ky, r, G = batch
    ps = search.PoseSearch(D, 12.0, 3.0, top_k=8, min_radius=4.0)
    res = ps.search(G, X, C, s2, kx, ky, r, n_keep=1)
    band = np.hypot(kx, ky) >= 4.0
    P = ps.be.extract_slices(G, res.R[:, 0], kx, ky, 2)
    ph = fourier.shift_phases(kx, ky, res.t[:, 0], D)
    ll = (2 * np.real(np.conj(X * ph) * C * P) - C**2 * np.abs(P) ** 2) / s2
    np.testing.assert_allclose(res.ll_best, ll[:, band].sum(axis=1), rtol=1e-4, atol=1e-2)


def test_every_level_scores_points_of_the_band():
    ps = search.PoseSearch(64, 27.0, 6.0, min_radius=8.0)
    assert min(ps.levels(14.0)) >= 12.0  # the coarse level reaches 1.5 x the lower radius
    assert search.PoseSearch(64, 27.0, 6.0).levels(14.0)[0] < 12.0

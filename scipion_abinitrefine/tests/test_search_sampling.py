"""Posterior samples beyond the beam (search.PoseSearch.search n_samples): the draws follow the level-0
posterior, and the mass they carry is the posterior mass the beam misses."""
import numpy as np
import pytest

from scipion_abinitrefine.engine import posterior, search
from scipion_abinitrefine.testing import sources


def test_draws_follow_the_softmax():
    """Two-stage draws (rotation, then shift given rotation) follow the softmax over all pairs."""
    rng = np.random.default_rng(0)
    S, nR = 5, 10
    logp = rng.normal(scale=2.0, size=(3, S * nR)).astype(np.float32)
    logp[1, 7] = -200.0  # a pair of (numerically) zero probability is never drawn
    M = 40000
    pf = np.exp(logp - logp.max(axis=1, keepdims=True)).reshape(3, S, nR)
    idx, lp = posterior.draw_poses(np, pf, pf.sum(axis=1), rng.random((3, M, 2)))
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for b in range(3):
        freq = np.bincount(idx[b], minlength=S * nR) / M
        np.testing.assert_allclose(freq, p[b], atol=4 * np.sqrt(p[b].max() / M))
        np.testing.assert_allclose(lp[b], np.log(p[b][idx[b]]), atol=1e-4)
    assert not (idx[1] == 7).any()


def test_top_pairs_are_the_best_of_all_pairs():
    """The K best (shift, rotation) pairs found through the rotations' maxima are the exact top K."""
    rng = np.random.default_rng(1)
    for S, nR, K in [(9, 300, 8), (1, 50, 8), (25, 40, 32), (4, 6, 10)]:
        ll = rng.normal(size=(6, S, nR)).astype(np.float32)
        ll[0, :, 3] += 5.0  # one rotation holds many of the best pairs
        top = posterior.top_pairs(np, ll, K)
        ref = np.argsort(-ll.reshape(6, -1), axis=1)[:, :K]
        np.testing.assert_array_equal(np.sort(top, axis=1), np.sort(ref, axis=1))


@pytest.fixture(scope="module")
def low_snr_batch():
    # one level (r = 4): the samples' mass is exactly the level-0 mass outside the beam
    return sources.search_batch(12, snr=0.02, seed=3, r=4.0)


def test_sample_mass_is_the_mass_outside_the_beam(low_snr_batch):
    D, X, C, s2, kx, ky, r, G = low_snr_batch
    ps = search.PoseSearch(D, 12.0, 3.0, top_k=8)
    assert len(ps.levels(r)) == 1
    res, ll0 = ps.search(G, X, C, s2, kx, ky, r, n_keep=4, return_ll0=True, n_samples=4000,
                         rng=np.random.default_rng(1))
    assert res.R.shape[1] == 4 + 4000
    np.testing.assert_allclose(res.w.sum(axis=1), 1.0, atol=1e-4)
    flat = ll0.reshape(len(X), -1)
    p = np.exp(flat - flat.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    beam_mass = np.sort(p, axis=1)[:, ::-1][:, :8].sum(axis=1)
    alpha = res.w[:, 4:].sum(axis=1)
    assert 0.2 < np.median(1 - beam_mass) < 0.999  # a broad posterior: the case the samples are for
    np.testing.assert_allclose(alpha, 1 - beam_mass, atol=0.03)


def test_no_samples_when_the_posterior_is_sharp(low_snr_batch):
    """With a strong signal the beam holds all the mass and the samples get (almost) no weight."""
    D, X, C, s2, kx, ky, r, G = low_snr_batch
    ps = search.PoseSearch(D, 12.0, 3.0, top_k=8)
    res = ps.search(G * 1.0, X, C, s2 / 400.0, kx, ky, r, n_keep=4, n_samples=64, rng=np.random.default_rng(2))
    assert np.median(res.w[:, 4:].sum(axis=1)) < 0.01

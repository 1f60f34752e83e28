"""engine/threads.py: --threads reaches every pool, and the pose search's split over workers changes no
result (each image's search is independent and its random draws are made before the split)."""
import numpy as np

from scipion_abinitrefine.engine import fourier, search, simulate, threads
from scipion_abinitrefine.engine.ctf import ctf_at


def test_limit_sets_every_pool():
    try:
        assert threads.limit(1) == 1
        assert threads.current() == dict(numba=1, fft=1, blas=1)
        n = threads.limit(0)
        assert n == min(threads.available(), __import__("numba").config.NUMBA_NUM_THREADS)
        assert threads.current() == dict(numba=n, fft=n, blas=1)
    finally:
        threads.limit(0)


def test_search_split_over_workers_changes_nothing(monkeypatch):
    D, apix = 32, 4.0
    vol = simulate.make_phantom(D, apix)
    images, truth = simulate.simulate_particles(vol, 70, apix, snr=0.02, seed=5)
    r = 7.0
    kx, ky = fourier.half_plane_points(r)
    X = fourier.gather_points(fourier.ft2c(images / truth["noise_sigma"]), kx, ky).astype(np.complex64)
    C = ctf_at(truth["ctf"], np.arange(len(images)), kx / (D * apix), ky / (D * apix))
    s2 = np.full(len(kx), float((np.abs(X) ** 2).mean()), np.float32)
    G = fourier.volume_to_fourier(vol / truth["noise_sigma"], 2)
    ps = search.PoseSearch(D, 12.0, 3.0, top_k=8, chunk=16)
    out = {}
    for n in (1, 3):
        monkeypatch.setattr(ps, "workers", lambda n=n: n)
        assert len(search._split(len(X), ps.chunk, n)) == n
        out[n] = ps.search(G, X, C, s2, kx, ky, r, temperature=2.0, n_keep=4, n_samples=16,
                           rng=np.random.default_rng(4))
    a, b = out[1], out[3]
    assert a.R.shape == b.R.shape and a.R.shape[1] == 4 + 16
    for f in ("R", "t", "w", "ess", "ll_best", "evidence"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-4, atol=1e-5, err_msg=f)

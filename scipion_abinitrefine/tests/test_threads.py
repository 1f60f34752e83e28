"""engine/threads.py: --threads reaches every pool, and the pose search's split over workers changes no
result (each image's search is independent and its random draws are made before the split)."""
import numpy as np

from scipion_abinitrefine.engine import search, threads
from scipion_abinitrefine.testing import sources


def test_limit_sets_every_pool():
    before = threads.current()["numba"]
    try:
        assert threads.limit(1) == 1
        assert threads.current() == dict(numba=1, fft=1, blas=1)
        n = threads.limit(0)
        assert n == min(threads.available(), __import__("numba").config.NUMBA_NUM_THREADS)
        assert threads.current() == dict(numba=n, fft=n, blas=1)
    finally:
        threads.limit(before)


def test_search_split_over_workers_changes_nothing(monkeypatch):
    D, X, C, s2, kx, ky, r, G = sources.search_batch(70, snr=0.1, seed=5, r=7.0)
    ps = search.PoseSearch(D, 12.0, 3.0, top_k=8, chunk=16)
    out = {}
    for n in (1, 2, 3):
        monkeypatch.setattr(threads, "search_workers", lambda be, n=n: n)
        edges = threads.chunk_edges(len(X), ps.chunk)  # the batch's chunk grid, whatever n
        parts = threads.split_parts(edges, n)
        assert len(parts) == n and all(a in edges and b in edges for a, b in parts)  # on the chunk grid
        out[n] = ps.search(G, X, C, s2, kx, ky, r, temperature=1.0, n_keep=4, n_samples=16,
                           rng=np.random.default_rng(4))
    assert out[1].R.shape[1] == 4 + 16
    sharp = out[1].w[:, 4:].sum(axis=1) == 0
    assert 0 < sharp.sum() < len(X)  # both kinds of image (samples or none) are in the batch
    for n in (2, 3):  # the same bits whatever the worker count (BLAS rounds by the rows it is given)
        for f in ("R", "t", "w", "ess", "ll_best", "evidence"):
            assert np.array_equal(getattr(out[1], f), getattr(out[n], f)), (n, f)


def test_chunk_grid_balances_two_workers():
    """Two workers get parts of a minibatch that differ by at most one image (the second core does not idle
    while the first finishes an extra chunk), with chunks of at most 16 images, for any batch size."""
    for B in list(range(1, 400)) + [1000, 4999]:
        e = threads.chunk_edges(B, 16)
        sizes = np.diff(e)
        assert e[0] == 0 and e[-1] == B and sizes.min() >= 1 and sizes.max() <= 16
        assert sizes.max() - sizes.min() <= 1
        parts = [b - a for a, b in threads.split_parts(e, 2)]
        assert sum(parts) == B and (len(parts) == 1 and B == 1 or max(parts) - min(parts) <= 1), (B, parts)

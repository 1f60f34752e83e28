"""The engine's orchestration on a device array module, checked without a GPU.

The CUDA backend hands the search CuPy arrays; CuPy refuses what numpy silently allows: arithmetic that
mixes host and device arrays, and numpy functions given device arrays. ``StrictBackend`` is the CPU backend
behind a "device" array type with those same refusals, so a host array leaking into the device path (or a
per-call copy of the model volume) fails here, and the results must equal the CPU backend's.
"""
from __future__ import annotations

import numpy as np
import pytest

from scipion_abinitrefine.engine import backend as backend_mod
from scipion_abinitrefine.engine import fourier, kernels_cpu, sgd, simulate, so3
from scipion_abinitrefine.engine.ctf import ctf_at
from scipion_abinitrefine.engine.search import PoseSearch
from scipion_abinitrefine.testing import sources

_HOST_OK = {"asarray", "array", "ascontiguousarray"}  # explicit transfers, as cupy.asarray(numpy) is


def _is_host(x) -> bool:
    return isinstance(x, np.ndarray) and not isinstance(x, Dev) and x.ndim > 0


def _plain(x):
    if isinstance(x, Dev):
        return x.view(np.ndarray)
    if isinstance(x, (tuple, list)):
        return type(x)(_plain(y) for y in x)
    return x


def _dev(x):
    if isinstance(x, np.ndarray) and not isinstance(x, Dev):
        return x.view(Dev)
    if isinstance(x, tuple):
        return tuple(_dev(y) for y in x)
    return x


class Dev(np.ndarray):
    """A numpy array standing in for a CuPy array: arithmetic with host arrays raises, as in CuPy."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        for x in inputs + (out or ()):
            if _is_host(x):
                raise TypeError(f"host array mixed with a device array in {ufunc.__name__}")
        if out is not None:
            kw["out"] = tuple(_plain(o) for o in out)
        return _dev(getattr(ufunc, method)(*(_plain(x) for x in inputs), **kw))

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} called on a device array (use the backend's xp)")


class StrictXP:
    """The backend's ``xp``: numpy functions on device arrays only, results on the device."""

    def __getattr__(self, name):
        f = getattr(np, name)
        if not callable(f) or isinstance(f, type):
            return f

        def call(*a, **k):
            if name not in _HOST_OK:
                for x in list(a) + list(k.values()):
                    items = x if isinstance(x, (list, tuple)) else [x]
                    if any(_is_host(y) for y in items):
                        raise TypeError(f"xp.{name} given a host array")
            r = f(*(_plain(x) for x in a), **{key: _plain(v) for key, v in k.items()})
            return _dev(np.array(r) if name in _HOST_OK else r)

        return call


class StrictAccumulator(kernels_cpu.Accumulator):
    def result(self):
        return tuple(_dev(a) for a in super().result())


class StrictBackend:
    name = "strict"
    xp = StrictXP()
    # the CUDA backend's batch cutting in the search (large chunks), checked here against the CPU's
    search_chunk = 256
    search_fine_bytes = 512 << 20

    def __init__(self):
        self.extract_calls = 0

    @staticmethod
    def asarray(a, dtype=None):
        return np.array(_plain(a), dtype=dtype).view(Dev)

    @staticmethod
    def to_host(a):
        return np.array(_plain(a))

    def extract_slices(self, F, R, kx, ky, pad):
        # the model volume must already be on the device: a numpy F here means a volume copy per call
        assert isinstance(F, Dev), "model volume passed to extract_slices from the host"
        self.extract_calls += 1
        return _dev(kernels_cpu.extract_slices(_plain(F), np.asarray(_plain(R), np.float32), kx, ky, pad))

    @staticmethod
    def accumulator(Dp):
        return StrictAccumulator(Dp)

    @staticmethod
    def synchronize():
        pass


def test_strict_array_type_refuses_what_cupy_refuses():
    d = StrictBackend.asarray(np.ones(3, np.float32))
    with pytest.raises(TypeError):
        d + np.ones(3, np.float32)
    with pytest.raises(TypeError):
        np.concatenate([d, d])
    with pytest.raises(TypeError):
        StrictBackend.xp.concatenate([d, np.ones(3)])
    assert isinstance(d * 2.0 + d, Dev)


@pytest.fixture(scope="module")
def problem():
    vol = simulate.make_phantom(32, 4.0)
    images, truth = simulate.simulate_particles(vol, 48, 4.0, snr=0.5, seed=11)
    return vol, images, truth


def test_search_on_a_device_array_module_matches_cpu(problem):
    vol, images, truth = problem
    D, apix = 32, 4.0
    r = 8.0
    kx, ky = fourier.half_plane_points(r)
    X = fourier.gather_points(fourier.ft2c(images), kx, ky).astype(np.complex64)
    C = ctf_at(truth["ctf"], np.arange(len(images)), kx / (D * apix), ky / (D * apix))
    s2 = np.full(len(kx), float((np.abs(X) ** 2).mean()), np.float32)
    G = fourier.volume_to_fourier(vol.astype(np.float32), 2)
    out = {}
    for name, be in (("cpu", backend_mod.get_backend("cpu")), ("strict", StrictBackend())):
        ps = PoseSearch(D, 12.0, 3.0, top_k=8, backend=be, chunk=4 if name == "cpu" else None)
        if name == "cpu":
            ps.fine_bytes = 1  # one image per sub-chunk of the finer levels; the strict one takes all 48 at once
        res, ll0 = ps.search(G, X, C, s2, kx, ky, r, temperature=2.0, n_keep=4, return_ll0=True)
        for a in (res.R, res.t, res.w, res.ess, res.ll_best, ll0):
            assert type(a) is np.ndarray  # results come back to the host
        out[name] = (res, ll0)
    (a, la), (b, lb) = out["cpu"], out["strict"]
    np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-3 * np.abs(la).max())
    same = np.all(np.isclose(a.R, b.R, atol=1e-6).reshape(len(images), -1), axis=1)
    assert same.mean() > 0.95  # identical poses (float ties aside)
    np.testing.assert_allclose(a.ll_best[same], b.ll_best[same], rtol=1e-5)
    np.testing.assert_allclose(a.ess, b.ess, rtol=1e-4)
    # and the search found the truth at this SNR: the check is not comparing two wrong answers
    err = so3.geodesic_deg(a.R[:, 0].astype(np.float64), so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"]))
    assert np.median(err) < 15.0, np.median(err)


def test_sgd_iterations_and_final_pass_on_a_device_array_module(problem):
    vol, images, truth = problem
    data = sources.ArrayParticles(images, truth["ctf"], 4.0)
    p = sgd.SGDParams(max_res_A=16.0, init_res_A=35.0, init_iters=3, final_iters=2, radius_step=2.0,
                      init_minibatch=16, final_minibatch=16, minibatch_switch_iter=3, lr_duration=3, seed=2)
    runs = {}
    for name, be in (("cpu", "cpu"), ("strict", StrictBackend())):
        run = sgd.SGDRun(data, np.arange(len(images)), p, backend=be)
        while not run.done:
            run.step()
        runs[name] = (run, run.final_pass(batch=24))
    (ra, va), (rb, vb) = runs["cpu"], runs["strict"]
    assert runs["strict"][0].be.extract_calls > 0
    assert np.mean(np.all(np.isclose(ra.R, rb.R, atol=1e-5).reshape(len(images), -1), axis=1)) > 0.9
    assert np.corrcoef(va.ravel(), vb.ravel())[0, 1] > 0.999

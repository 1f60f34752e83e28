"""CPU numba kernels against the numpy references."""
import numpy as np

from scipion_abinitrefine.engine import fourier, kernels_cpu, so3
from scipion_abinitrefine.testing import kernels_ref


def _setup(seed=0, Dp=24, r=6):
    rng = np.random.default_rng(seed)
    F = (rng.normal(size=(Dp,) * 3) + 1j * rng.normal(size=(Dp,) * 3)).astype(np.complex64)
    R = so3.random_rotations(9, rng).astype(np.float32)
    kx, ky = fourier.half_plane_points(r)
    return rng, F, R, kx, ky


def test_extract_matches_reference():
    _, F, R, kx, ky = _setup()
    got = kernels_cpu.extract_slices(F, R, kx, ky, 2)
    ref = kernels_ref.extract_slices_ref(F, R, kx, ky, 2)
    assert np.allclose(got, ref, atol=1e-4 * np.abs(ref).max())


def test_extract_out_of_grid_is_zero():
    _, F, R, kx, ky = _setup(Dp=8, r=6)  # radius*pad beyond the grid
    got = kernels_cpu.extract_slices(F, R, kx, ky, 2)
    ref = kernels_ref.extract_slices_ref(F, R, kx, ky, 2)
    assert np.allclose(got, ref, atol=1e-4 * np.abs(ref).max())
    assert np.any(got == 0)


def test_insert_matches_reference_and_is_hermitian():
    rng, F, R, kx, ky = _setup(1)
    vals = (rng.normal(size=(9, len(kx))) + 1j * rng.normal(size=(9, len(kx)))).astype(np.complex64)
    wts = rng.random((9, len(kx))).astype(np.float32)
    acc = kernels_cpu.Accumulator(32, nthreads=2)  # all points inside: no edge clipping
    acc.insert(R, kx, ky, 2, vals, wts)
    B, W = acc.result()
    Br, Wr = kernels_ref.insert_slices_ref(32, R, kx, ky, 2, vals, wts)
    assert np.allclose(B, Br, atol=1e-4) and np.allclose(W, Wr, atol=1e-4)
    # Hermitian: B(-q) = conj(B(q)) on the inner grid
    inner = B[1:, 1:, 1:]
    assert np.allclose(inner, np.conj(inner[::-1, ::-1, ::-1]), atol=1e-4)


def test_insert_does_not_depend_on_the_thread_count():
    """Slabs of z-planes, one per thread: every voxel gets its contributions in one order, so 1, 2 or 5
    threads give the same bits (and the reference), points near the grid's edge included."""
    rng, F, R, kx, ky = _setup(2, r=13)  # radius 13 x pad 2 reaches the edge of the 32 grid: clipped splats
    vals = (rng.normal(size=(9, len(kx))) + 1j * rng.normal(size=(9, len(kx)))).astype(np.complex64)
    wts = rng.random((9, len(kx))).astype(np.float32)
    out = []
    for T in (1, 2, 5):
        acc = kernels_cpu.Accumulator(32, nthreads=T)
        acc.insert(R, kx, ky, 2, vals, wts)
        out.append(tuple(a.copy() for a in acc.result()))
    for B, W in out[1:]:
        assert np.array_equal(B, out[0][0]) and np.array_equal(W, out[0][1])
    Br, Wr = kernels_ref.insert_slices_ref(32, R, kx, ky, 2, vals, wts)
    assert np.allclose(out[0][0], Br, atol=1e-4) and np.allclose(out[0][1], Wr, atol=1e-4)
    bounds = kernels_cpu.slab_bounds(kernels_cpu.plane_counts(R, kx, ky, 2, 32, 5), 5)
    assert bounds[0] == 0 and bounds[-1] == 32 and np.all(np.diff(bounds) >= 0), bounds


def test_volume_fourier_round_trip_and_slice_of_projection():
    """A slice at A = I is the 2D transform of the z-projection (Fourier-slice theorem)."""
    from scipion_abinitrefine.engine import simulate

    vol = simulate.make_phantom(32, 3.0)
    F = fourier.volume_to_fourier(vol, 2)
    kx, ky = fourier.half_plane_points(10)
    sl = kernels_cpu.extract_slices(F, np.eye(3, dtype=np.float32)[None], kx, ky, 2)[0]
    direct = fourier.gather_points(fourier.ft2c(vol.sum(axis=0))[None], kx, ky)[0]
    # on-grid samples see the sinc^2 pre-compensation without interpolation blur: ~3% overshoot expected
    assert np.abs(sl - direct).max() < 0.05 * np.abs(direct).max()
    wrong = fourier.gather_points(fourier.ft2c(vol.sum(axis=1))[None], kx, ky)[0]  # a y-projection
    assert np.abs(sl - wrong).max() > 0.2 * np.abs(direct).max()

"""The working box (engine/sgd.py, fourier.working_box): the model lives in a box that follows the radius.

What a user relies on: nothing below the current radius is lost or changed, so the search and the update
see the same model they would at the full box (within interpolation precision), at a fraction of the cost.
"""
import numpy as np
import pytest

from scipion_abinitrefine.engine import fourier, kernels_cpu, sgd, simulate, so3
from scipion_abinitrefine.testing import kernels_ref, sources

D, APIX = 48, 3.0


@pytest.fixture(scope="module")
def run_and_map():
    vol = simulate.make_phantom(D, APIX)
    images, truth = simulate.simulate_particles(vol, 40, APIX, snr=0.1, seed=2)
    data = sources.ArrayParticles(images, truth["ctf"], APIX)
    p = sgd.SGDParams(max_res_A=8.0, init_res_A=30.0, init_minibatch=20, final_minibatch=20)
    return sgd.SGDRun(data, np.arange(len(data)), p), vol


def test_working_box_sizes():
    for r, box in [(3.0, 64), (7.3, 256), (20.0, 64), (100.0, 256)]:
        Dw = fourier.working_box(r, box)
        assert Dw % 2 == 0 and Dw <= box
        assert Dw == box or Dw / 2 >= 1.25 * r + 4  # the low-pass edge and interpolation fit
    assert fourier.working_box(7.3, 256) <= 32  # 35 A at 1 A/px: a tiny fraction of the voxels


def test_resample_round_trip_is_exact_for_band_limited_maps():
    vol = fourier.lowpass_volume(simulate.make_phantom(D, APIX), 6.0, width=2.0)  # zero beyond k = 8
    for Dw in (18, 20, 30):
        back = fourier.resample_volume(fourier.resample_volume(vol, Dw), D)
        np.testing.assert_allclose(back, vol, atol=1e-5 * np.abs(vol).max())
    F = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)
    np.testing.assert_array_equal(fourier.embed_centred(fourier.embed_centred(F, 14), 8), F)


def test_cropped_slices_are_slices_of_the_full_model(run_and_map):
    """The working model's central sections at k <= r are those of the full-box model.

    Equal to interpolation precision, not exactly: the padded transform's in-between samples (half-integer
    k) come from sums over the box that the two voxel sizes approximate differently; per shell the RMS
    difference is ~1%, the same order as trilinear interpolation's own error in a twice-padded grid."""
    run, vol = run_and_map
    lp = fourier.lowpass_volume(vol, run.r_init + 1.0, width=2.0)
    run.set_model_volume(lp)
    assert run.Dw < D and run.G.shape == (2 * run.Dw,) * 3
    G_full = fourier.volume_to_fourier(lp, 2)
    R = so3.base_grid()[::97].astype(np.float32)
    kx, ky = fourier.half_plane_points(run.r_init)
    a = kernels_cpu.extract_slices(G_full, R, kx, ky, 2)
    b = kernels_cpu.extract_slices(run.G, R, kx, ky, 2)
    shell = np.rint(np.hypot(kx, ky)).astype(int)
    for k in np.unique(shell):
        s = shell == k
        rel = np.sqrt((np.abs(a[:, s] - b[:, s]) ** 2).mean() / (np.abs(a[:, s]) ** 2).mean())
        assert rel < 0.02, (k, rel)


def test_growing_the_box_loses_nothing_below_the_radius(run_and_map):
    run, vol = run_and_map
    lp = fourier.lowpass_volume(vol, run.r_init + 1.0, width=2.0)
    run.set_model_volume(lp)
    H = np.random.default_rng(0).random(run.H.shape).astype(np.float32)
    run.H = H.copy()
    Dw0 = run.Dw
    np.testing.assert_allclose(run.model_volume(), lp, atol=1e-4 * np.abs(lp).max())
    run.set_working_radius(run.r_max)
    assert run.Dw > Dw0 and run.H.shape == (2 * run.Dw,) * 3
    np.testing.assert_allclose(run.model_volume(), lp, atol=1e-4 * np.abs(lp).max())
    np.testing.assert_array_equal(fourier.embed_centred(run.H, 2 * Dw0), H)  # the curvature moves as is
    Dw1 = run.Dw
    run.set_working_radius(run.r_init)  # never shrinks
    assert run.Dw == Dw1


def test_checkpoint_keeps_the_working_box(run_and_map):
    run, _ = run_and_map
    st = run.state_dict()
    other = sgd.SGDRun(run.data, run.idx, run.p)
    other.load_state(st)
    assert other.Dw == run.Dw
    np.testing.assert_array_equal(other.G, run.G)
    np.testing.assert_array_equal(other.model_volume(), run.model_volume())


def test_final_reconstruction_plane_by_plane_equals_the_whole_volume_formula():
    """The final pass's map at box 256 must fit in memory: its normalisation runs plane by plane and the inverse
    transform reads the centred box straight from ifftn's output; both give the whole-volume numbers."""
    from scipion_abinitrefine.engine import reconstruct

    rng = np.random.default_rng(4)
    Dh, pad = 12, 2
    Dp = pad * Dh
    B = (rng.normal(size=(Dp,) * 3) + 1j * rng.normal(size=(Dp,) * 3)).astype(np.complex64)
    W = rng.random((Dp,) * 3).astype(np.float32)
    W[rng.random(W.shape) < 0.3] = 0  # voxels no image reached
    rsh = fourier.radial_index((Dp,) * 3) / pad  # the whole-volume formula (numpy reference)
    shells = np.minimum(np.rint(rsh).astype(np.int64), Dh)
    lam = kernels_ref.shell_regulariser(W, shells, reconstruct.FINAL_REGULARISER, Dh + 1)
    ref = np.where(W > 0, B / (W + lam + 1e-30), 0).astype(np.complex64)
    ref[rsh > Dh / 2 - 1 + 0.5] = 0
    got = reconstruct.normalise_in_place(B.copy(), W, Dh, pad, Dh / 2 - 1, reconstruct.FINAL_REGULARISER)
    assert np.allclose(got, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())
    assert np.array_equal(got == 0, ref == 0)
    a = Dp // 2 - Dh // 2
    full = fourier.ift3c(ref).real[a:a + Dh, a:a + Dh, a:a + Dh] / fourier.gridding_correction(Dh, pad)
    assert np.allclose(fourier.fourier_to_volume(ref.copy(), Dh, pad), full, rtol=1e-5, atol=1e-6 * np.abs(full).max())


def test_padded_transforms_match_the_whole_box_fft():
    """The model's padded transform and its inverse's centred crop (computed axis by axis over only the rows
    that matter, real-input halves) equal numpy's full complex FFT of the padded box, odd and even maps."""
    from scipion_abinitrefine.testing import kernels_ref

    rng = np.random.default_rng(5)
    for D, pad in ((16, 2), (15, 2), (12, 3), (9, 3)):  # (9, 3): an odd padded box, the whole-box path
        vol = rng.normal(size=(D, D, D)).astype(np.float32)
        ref = kernels_ref.padded_transform_ref(vol, pad)
        got = fourier.padded_transform(vol, pad)
        assert got.dtype == np.complex64 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.abs(ref).max())
        back = fourier.padded_inverse(got, D)
        np.testing.assert_allclose(back, kernels_ref.padded_inverse_ref(ref, D), rtol=0, atol=2e-6 * np.abs(vol).max())
        np.testing.assert_allclose(back, vol, rtol=0, atol=2e-6 * np.abs(vol).max())  # the round trip


def test_lowpass_with_shift_matches_the_complex_transform():
    """The model's low-pass (and its re-centring shift, in the same transform) equals the shift then the
    low-pass through numpy's complex FFT, odd and even boxes, radii up to the last shell."""
    from scipion_abinitrefine.testing import kernels_ref

    rng = np.random.default_rng(6)
    for D, r, s in ((16, 5.0, (0.7, -1.3, 2.2)), (15, 7.0, (-0.4, 0.0, 1.0)), (20, 9.5, None)):
        vol = rng.normal(size=(D, D, D)).astype(np.float32)
        ref = kernels_ref.lowpass_shift_ref(vol, r, 2.0, (0.0, 0.0, 0.0) if s is None else s)
        got = fourier.lowpass_volume(vol, r, 2.0, shift=s)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())

"""FSC curves, resolution read-out, soft auto-mask, phase randomisation and the Chen et al. correction."""
import numpy as np
import pytest
from scipy import ndimage

from scipion_abinitrefine.engine import fourier, fsc


def blob_map(D, seed, n=40):
    """Asymmetric density: random Gaussian blobs inside ~0.3 of the box."""
    rng = np.random.default_rng(seed)
    g = np.arange(D) - D // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    v = np.zeros((D,) * 3, np.float32)
    for _ in range(n):
        c = rng.normal(scale=0.12 * D, size=3)
        c = c / max(1.0, np.linalg.norm(c) / (0.28 * D))
        s = rng.uniform(1.5, 3.5)
        v += rng.uniform(0.5, 1.0) * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    return v.astype(np.float32)


def test_fsc_self_is_one_and_independent_noise_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(32,) * 3).astype(np.float32)
    c = fsc.fsc_curve(a, a)
    assert c.shape == (17,)
    assert np.allclose(c, 1.0, atol=1e-5)
    b = rng.normal(size=(32,) * 3).astype(np.float32)
    c = fsc.fsc_curve(a, b)
    assert abs(c[3:].mean()) < 0.1 and np.abs(c[3:]).max() < 0.3
    # a mask multiplies both maps first
    m = (fourier.radial_index(a.shape) < 10).astype(np.float32)
    assert np.allclose(fsc.fsc_curve(a, a + 0 * b, m), 1.0, atol=1e-5)
    assert np.allclose(fsc.fsc_curve(a, b, m), fsc.fsc_curve(a * m, b * m))


def test_shell_freqs_and_resolution_at_tanh_curve():
    box, apix = 64, 1.5
    f = fsc.shell_freqs(box, apix)
    assert f.shape == (33,) and f[0] == 0 and np.isclose(f[-1], 1 / (2 * apix))
    s = np.arange(box // 2 + 1, dtype=float)
    s0, w = 14.3, 2.5
    curve = 0.5 * (1 - np.tanh((s - s0) / w))
    s_cross = s0 + w * np.arctanh(1 - 2 * 0.143)
    assert fsc.resolution_at(curve, box, apix) == pytest.approx(box * apix / s_cross, rel=0.01)
    assert fsc.resolution_at(curve, box, apix, 0.5) == pytest.approx(box * apix / s0, rel=0.01)
    # never crossing: Nyquist; a dip at shell 1 is ignored
    assert fsc.resolution_at(np.ones(33), box, apix) == pytest.approx(2 * apix)
    c2 = np.ones(33)
    c2[1] = 0.0
    assert fsc.resolution_at(c2, box, apix) == pytest.approx(2 * apix)
    # below the threshold from shell 1 on (pure noise), falling further: shell 1's resolution, never a
    # negative or coarser-than-the-box one (a pure-noise job reported -21.7 A)
    c3 = np.zeros(33)
    c3[:3] = [1.0, 0.10, 0.09]
    assert fsc.resolution_at(c3, box, apix) == pytest.approx(box * apix)


def test_soft_auto_mask_covers_object():
    D, apix = 48, 2.0
    v = blob_map(D, 1)
    rng = np.random.default_rng(2)
    for noisy in (v, v + rng.normal(scale=0.5 * v.std(), size=v.shape).astype(np.float32)):
        m = fsc.soft_auto_mask(noisy, apix)
        assert m.dtype == np.float32 and m.shape == v.shape
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert m[v > 0.05 * v.max()].min() > 0.99  # covers the object, including its weak parts
        assert 0.05 < (m > 0).mean() < 0.6  # and is not the whole box
        assert ((m > 0.01) & (m < 0.99)).any()  # soft edge
    # dilation grows the mask
    assert fsc.soft_auto_mask(v, apix, dilate_A=10.0).sum() > fsc.soft_auto_mask(v, apix, dilate_A=2.0).sum()


def test_soft_edge_is_at_least_three_pixels_at_coarse_sampling():
    """At 4 A/px a 6 A edge would be 1.5 px; the edge must still fall over >= 3 px (compact transform)."""
    D, apix = 32, 4.0
    v = blob_map(D, 1)
    m = fsc.soft_auto_mask(v, apix, soft_A=6.0)
    binm = fsc.soft_auto_mask(v, apix, soft_A=6.0, min_soft_px=0.0) >= 1.0  # mask core (edge excluded)
    dist = ndimage.distance_transform_edt(~binm)  # px from the core
    edge = dist[(m > 0) & (m < 1)]
    assert edge.size and edge.max() > 2.5  # the fall extends ~3 px past the core, not 1.5
    assert np.all(m[dist > 4.0] == 0)  # and no further (3 px + voxel discretisation)


def test_phase_randomize_keeps_amplitudes_and_low_shells():
    rng = np.random.default_rng(3)
    v = blob_map(32, 4) + 0.1 * rng.normal(size=(32,) * 3).astype(np.float32)
    r = fsc.phase_randomize(v, 6, seed=1)
    assert r.dtype == np.float32
    assert np.allclose(np.abs(np.fft.fftn(r)), np.abs(np.fft.fftn(v)), rtol=1e-3, atol=1e-3 * np.abs(v).sum())
    c = fsc.fsc_curve(v, r)
    assert np.allclose(c[:6], 1.0, atol=1e-4)
    assert abs(c[8:].mean()) < 0.1
    assert np.array_equal(fsc.phase_randomize(v, 6, seed=1), r)  # seeded


def test_gold_standard_correction_removes_mask_correlation():
    """Signal only below shell ~8: a tight hard mask inflates the masked FSC beyond it; corrected ~ 0."""
    D, apix = 48, 2.0
    S = fourier.lowpass_volume(blob_map(D, 3), 6.0, 2.0)
    rng = np.random.default_rng(1)
    h1 = S + rng.normal(scale=0.5 * S.std(), size=S.shape).astype(np.float32)
    h2 = S + rng.normal(scale=0.5 * S.std(), size=S.shape).astype(np.float32)
    mask = (S > 0.15 * S.max()).astype(np.float32)
    gs = fsc.gold_standard_fsc(h1, h2, apix, mask=mask, seed=1)
    for k in ("shell", "freq", "resolution_A", "fsc_unmasked", "fsc_masked", "fsc_randomized", "fsc_corrected"):
        assert len(gs[k]) == D // 2 + 1, k
    assert gs["resolution_A"][0] == np.inf and np.isclose(gs["resolution_A"][1], D * apix)
    cut = gs["randomize_from_shell"]
    assert 4 <= cut <= 8
    beyond = slice(12, None)
    assert gs["fsc_masked"][beyond].mean() > 0.3  # the mask alone correlates the halves here
    assert abs(gs["fsc_corrected"][beyond].mean()) < 0.1
    assert np.allclose(gs["fsc_corrected"][:cut + 1], gs["fsc_masked"][:cut + 1])
    assert gs["fsc_corrected"][:5].min() > 0.9
    assert gs["resolution"] > 10.0  # the signal stops at 12 A


def test_gold_standard_auto_mask_and_noise_halves():
    D, apix = 32, 3.0
    rng = np.random.default_rng(5)
    S = fourier.lowpass_volume(blob_map(D, 6), 5.0, 2.0)
    h1 = S + rng.normal(scale=0.3 * S.std(), size=S.shape).astype(np.float32)
    h2 = S + rng.normal(scale=0.3 * S.std(), size=S.shape).astype(np.float32)
    gs = fsc.gold_standard_fsc(h1, h2, apix)
    assert gs["mask"].shape == S.shape and gs["mask"].max() == pytest.approx(1.0)
    assert 2 * apix < gs["resolution"] < D * apix
    assert abs(gs["fsc_corrected"][10:].mean()) < 0.1


def test_correction_never_raises_the_masked_fsc_under_a_small_mask():
    """Independent noise halves under a small mask: the correction may lower the masked FSC, never raise it."""
    D, apix = 32, 4.0
    rng = np.random.default_rng(11)
    z, y, x = np.mgrid[:D, :D, :D] - D // 2
    r = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    mask = np.clip(6.0 - r, 0.0, 1.0).astype(np.float32)  # ~3 % of the box, one-voxel soft edge
    for seed in range(4):
        h1 = rng.normal(size=(D, D, D)).astype(np.float32)
        h2 = rng.normal(size=(D, D, D)).astype(np.float32)
        gs = fsc.gold_standard_fsc(h1, h2, apix, mask=mask, seed=seed)
        beyond = slice(gs["randomize_from_shell"] + 1, None)
        assert np.all(gs["fsc_corrected"][beyond] <= gs["fsc_masked"][beyond] + 1e-6)


def test_filter_by_shell_scales_each_shell_as_a_direct_dft_does():
    """Each Fourier shell multiplied by its weight: against a reference built from numpy's FFT and the
    shell radius written out (rounded |k|, corners beyond Nyquist taking the last weight)."""
    rng = np.random.default_rng(4)
    D = 12
    vol = rng.normal(size=(D,) * 3).astype(np.float32)
    w = rng.uniform(0.0, 1.0, D // 2 + 1)
    k = np.fft.fftfreq(D) * D
    kk = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    shell = np.minimum(np.rint(kk).astype(int), D // 2)
    ref = np.fft.ifftn(np.fft.fftn(vol) * w[shell]).real
    np.testing.assert_allclose(fsc.filter_by_shell(vol, w), ref, atol=1e-5)
    # weights of one keep the map
    np.testing.assert_allclose(fsc.filter_by_shell(vol, np.ones(D // 2 + 1)), vol, atol=1e-5)

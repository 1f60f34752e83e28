"""Map alignment: transform convention, pose transform equivalence, recovery of rotation + shift + hand."""
import time

import numpy as np
import pytest

from scipion_abinitrefine.engine import align, fourier, kernels_cpu, so3
from scipion_abinitrefine.engine.align import MapAlignment
from scipion_abinitrefine.tests.test_fsc import blob_map


def noisy(v, rng, level):
    return (v + rng.normal(scale=level * v.std(), size=v.shape)).astype(np.float32)


def test_transform_map_mirror_and_shift_conventions():
    D = 32
    v = blob_map(D, 1)
    # flip with identity rotation: V'(x, y, z) = V(x, y, -z) about the centre voxel
    m = align.transform_map(v, MapAlignment(np.eye(3), np.zeros(3), True, 0.0))
    assert np.allclose(m[1:], v[:0:-1], atol=1e-5)
    assert np.allclose(m[0], 0.0)
    # integer shift (x, y, z) moves the density by +t
    s = align.transform_map(v, MapAlignment(np.eye(3), np.array([2.0, -1.0, 3.0]), False, 0.0))
    inner = (slice(4, -4),) * 3  # away from what np.roll wraps around
    assert np.allclose(s[inner], np.roll(v, (3, -1, 2), axis=(0, 1, 2))[inner], atol=1e-4)
    # rotation by 90 deg about z: V'(r) = V(Q^T r) puts the density at +x onto +y
    Q = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    r = align.transform_map(v, MapAlignment(Q, np.zeros(3), False, 0.0))
    c = D // 2
    for (z, y, x) in [(c + 2, c + 3, c + 5), (c - 4, c + 1, c - 6)]:
        assert r[z, c + (x - c), c - (y - c)] == pytest.approx(v[z, y, x], abs=1e-4)


def _images(vol, A, origins_px, r):
    """Fourier-slice projections (half-plane values within radius r) shifted by -origin."""
    D = vol.shape[0]
    F = fourier.volume_to_fourier(vol, 2)
    kx, ky = fourier.half_plane_points(r)
    P = kernels_cpu.extract_slices(F, A, kx, ky, 2)
    return P * fourier.shift_phases(kx, ky, -origins_px, D)


@pytest.mark.parametrize("flip", [False, True])
def test_transform_poses_projection_equivalence(flip):
    D, apix = 48, 2.5
    v = blob_map(D, 2)
    rng = np.random.default_rng(7)
    aln = MapAlignment(so3.random_rotations(1, rng)[0], np.array([1.7, -2.2, 0.9]), flip, 1.0)
    A = so3.random_rotations(6, rng)
    o_A = rng.uniform(-6, 6, size=(6, 2))
    vt = align.transform_map(v, aln)
    An, on_A = align.transform_poses(A, o_A, aln, apix)
    assert An.shape == (6, 3, 3) and on_A.shape == (6, 2)
    assert np.allclose(np.linalg.det(An), 1.0) and np.allclose(An @ An.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    r = D / 4  # where cubic-spline resampling of the map is accurate
    old = _images(v, A, o_A / apix, r)
    new = _images(vt, An, on_A / apix, r)
    err = np.linalg.norm(new - old) / np.linalg.norm(old)
    assert err < 0.03, err
    # the test discriminates: ignoring the mirror or the origin update breaks the equivalence
    wrong_A = A @ aln.R.T
    bad = [_images(vt, wrong_A, on_A / apix, r)] if flip else []
    bad.append(_images(vt, An, o_A / apix, r))
    for b in bad:
        assert np.linalg.norm(b - old) / np.linalg.norm(old) > 0.15  # 10x the equivalence error


def test_transform_poses_identity():
    rng = np.random.default_rng(1)
    A = so3.random_rotations(4, rng)
    o = rng.normal(size=(4, 2))
    An, on = align.transform_poses(A, o, MapAlignment(np.eye(3), np.zeros(3), False, 1.0), 1.3)
    assert np.allclose(An, A) and np.allclose(on, o)


@pytest.mark.parametrize("flip", [False, True])
def test_align_maps_recovers_rotation_shift_and_hand(flip):
    D, apix = 64, 3.0
    v = blob_map(D, 3)
    rng = np.random.default_rng(11 + flip)
    truth = MapAlignment(so3.random_rotations(1, rng)[0], rng.uniform(-3, 3, size=3), flip, 0.0)
    ref = noisy(align.transform_map(v, truth), rng, 3.0)
    mov = noisy(v, rng, 3.0)
    t0 = time.perf_counter()
    aln = align.align_maps(ref, mov, apix, max_res_A=20.0, hands=True)
    dt = time.perf_counter() - t0
    assert aln.flip == flip
    assert so3.geodesic_deg(aln.R, truth.R) < 3.0
    assert np.abs(np.asarray(aln.shift) - truth.shift).max() < 0.5
    assert 0.5 < aln.score <= 1.0
    # a large rotation / hand change found with certainty: far better than leaving the map unmoved,
    # so the job applies it
    assert aln.identity_score < aln.score - 0.1
    from scipion_abinitrefine.engine.halves import alignment_is_significant
    assert alignment_is_significant(aln)
    assert dt < 45.0, dt  # ~3 s on one core; generous for a shared machine
    # the result maps mov onto ref
    back = align.transform_map(mov, aln)
    assert np.corrcoef(back.ravel(), ref.ravel())[0, 1] > np.corrcoef(mov.ravel(), ref.ravel())[0, 1] + 0.05


def test_align_maps_ignores_information_beyond_max_res():
    """Gold standard: content finer than max_res_A (here: independent noise) must not change the result."""
    D, apix = 48, 3.0
    v = blob_map(D, 4)
    rng = np.random.default_rng(2)
    truth = MapAlignment(so3.random_rotations(1, rng)[0], np.array([1.0, -2.0, 0.5]), False, 0.0)
    ref, mov = align.transform_map(v, truth), v
    a1 = align.align_maps(ref, mov, apix, max_res_A=20.0, hands=False)
    k = fourier.radial_index((D,) * 3)
    hf = k > D * apix / 20.0 + 0.5

    def high(seed):
        n = np.random.default_rng(seed).normal(size=(D,) * 3).astype(np.float32)
        return fourier.ift3c(fourier.ft3c(n) * hf).real.astype(np.float32) * 3 * v.std()

    a2 = align.align_maps(ref + high(1), mov + high(2), apix, max_res_A=20.0, hands=False)
    assert not a1.flip and not a2.flip
    # equal to the continuous polish's tolerance (0.01 deg): float rounding only, no information leak
    assert so3.geodesic_deg(a1.R, a2.R) < 0.02
    assert np.allclose(a1.shift, a2.shift, atol=1e-2)
    assert a1.score == pytest.approx(a2.score, abs=1e-4)
    assert so3.geodesic_deg(a1.R, truth.R) < 2.0


def test_identity_score_and_when_the_job_applies_an_alignment():
    """The job keeps half B where it is unless a hand change / large rotation is clearly better."""
    from scipion_abinitrefine.engine.halves import ALIGN_MARGIN, alignment_is_significant

    D, apix = 48, 3.0
    v = blob_map(D, 4)
    rng = np.random.default_rng(5)
    a = align.align_maps(noisy(v, rng, 3.0), noisy(v, rng, 3.0), apix, max_res_A=20.0, hands=True)
    assert a.identity_score == pytest.approx(a.score, abs=0.01)  # same frame: unmoved is as good
    flip = MapAlignment(np.eye(3), np.zeros(3), True, score=a.identity_score + 0.5 * ALIGN_MARGIN,
                        identity_score=a.identity_score)
    assert not alignment_is_significant(flip)  # a marginally better flip is not applied
    flip.score = a.identity_score + 2 * ALIGN_MARGIN
    assert alignment_is_significant(flip)
    small = MapAlignment(so3.axis_angle_to_matrix(np.array([0.0, 0.0, np.deg2rad(5.0)])), np.zeros(3), False,
                         score=a.identity_score, identity_score=a.identity_score)
    assert alignment_is_significant(small)  # small same-hand corrections always apply


def test_choose_alignment_breaks_low_resolution_ties_by_the_independent_band():
    """A flat particle fits both hands at 20 A (measured: NCC 0.961 flipped vs 0.959 unmoved); the halves'
    agreement past the alignment resolution decides. A clearly worse NCC is never chosen."""
    from scipion_abinitrefine.engine.halves import choose_alignment

    c = [("unmoved", 0.959, 0.02), ("best", 0.961, 0.05), ("other hand", 0.955, 0.60)]
    assert choose_alignment(c) == 2
    c = [("unmoved", 0.80, 0.70), ("best", 0.96, 0.10), ("other hand", 0.95, 0.05)]
    assert choose_alignment(c) == 1  # unmoved is implausible at low resolution, whatever its band FSC
    c = [("unmoved", 0.959, None), ("best", 0.961, None)]
    assert choose_alignment(c) == 1  # no band: the NCC decides


def _residual(known: MapAlignment, found: MapAlignment):
    """Rotation (deg) and shift (px) left after mapping a map by ``known`` and back by ``found``."""
    Bk = align._source_matrix(known.R, known.flip)
    Bf = align._source_matrix(np.asarray(found.R), found.flip)
    L = Bk @ Bf  # transform_map(transform_map(V, known), found)(r) = V(L r + off)
    off = -(Bk @ (Bf @ np.asarray(found.shift) + np.asarray(known.shift)))
    if np.linalg.det(L) < 0:
        return 180.0, np.inf
    return so3.geodesic_deg(L, np.eye(3)), float(np.linalg.norm(off))


def test_align_maps_is_exact_at_the_jobs_alignment_resolution():
    """Identity returns identity; known rotations (1-30 deg), shifts and hands come back to a small fraction
    of the ~15 deg step that 20 A implies for this box-64 phantom (the job's default alignment resolution)."""
    from scipion_abinitrefine.engine import simulate

    vol = simulate.make_phantom(64, 2.0)
    same = align.align_maps(vol, vol, 2.0, max_res_A=20.0)
    assert not same.flip
    assert so3.geodesic_deg(np.asarray(same.R), np.eye(3)) < 0.1
    assert np.linalg.norm(same.shift) < 0.05
    rng = np.random.default_rng(5)
    for deg, flip in ((1.0, False), (5.0, True), (15.0, False), (30.0, True)):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        from scipy.spatial.transform import Rotation

        known = MapAlignment(Rotation.from_rotvec(np.deg2rad(deg) * axis).as_matrix(), rng.uniform(-2, 2, 3), flip,
                             0.0)
        found = align.align_maps(vol, align.transform_map(vol, known), 2.0, max_res_A=20.0)
        assert found.flip == flip, deg
        ang, shift = _residual(known, found)
        assert ang < 0.3 and shift < 0.1, (deg, flip, ang, shift)

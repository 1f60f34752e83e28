"""Continuous pose refinement (engine/refine.py): from grid-like poses to the likelihood's optimum."""
import numpy as np
from scipy.spatial.transform import Rotation

from scipion_abinitrefine.engine import fourier, reconstruct, refine, sgd, simulate, so3
from scipion_abinitrefine.engine.backend import get_backend
from scipion_abinitrefine.engine.ctf import ctf_at
from scipion_abinitrefine.testing import sources

D, APIX = 64, 2.0


def _problem(snr, n=60, seed=5):
    vol = simulate.make_phantom(D, APIX)
    images, truth = simulate.simulate_particles(vol, n, APIX, snr=snr, seed=seed)
    data = sources.ArrayParticles(images, truth["ctf"], APIX)
    run = sgd.SGDRun(data, np.arange(n), sgd.SGDParams(max_res_A=6.0, init_minibatch=n // 2, final_minibatch=n // 2))
    run.set_working_radius(run.r_max)  # the model holds the map out to the search's radius
    run.set_model_volume((vol / truth["noise_sigma"]).astype(np.float32))  # the truth, at the images' scale
    kx, ky = fourier.half_plane_points(run.r_max)
    img = reconstruct.normalise_images(data.read_images(np.arange(n)), run.rp)
    X = fourier.gather_points(fourier.ft2c(img), kx, ky).astype(np.complex64)
    C = ctf_at(data.ctf, np.arange(n), kx / (D * APIX), ky / (D * APIX))
    s2 = np.full(len(kx), float(np.mean(np.abs(X[:, len(kx) // 2:]) ** 2)), np.float32)  # white noise
    R = so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"]).astype(np.float32)
    t = (np.stack([truth["origin_x"], truth["origin_y"]], 1) / APIX).astype(np.float32)
    return run, X, C, s2, kx, ky, R, t


def _perturb(R, t, deg, px, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(len(R), 3))
    w *= np.deg2rad(deg) / np.linalg.norm(w, axis=1, keepdims=True)
    d = rng.normal(size=(len(t), 2))
    d *= px / np.linalg.norm(d, axis=1, keepdims=True)
    return (R @ Rotation.from_rotvec(w).as_matrix()).astype(np.float32), (t + d).astype(np.float32)


def test_refinement_reaches_the_likelihood_optimum():
    """SNR 1: poses 2 deg / 0.5 px off converge to the optimum that refinement from the true pose finds
    (the likelihood's own maximum, ~0.5 deg from the truth here: interpolation and noise), within a small
    fraction of any search grid's step."""
    run, X, C, s2, kx, ky, R, t = _problem(snr=1.0)
    be = get_backend("cpu")
    R_ml, t_ml, _ = refine.refine_poses(be, run.G, X, C, s2, kx, ky, R, t, D, run.p.pad, iters=20)
    R0, t0 = _perturb(R, t, 2.0, 0.5)
    R1, t1, gain = refine.refine_poses(be, run.G, X, C, s2, kx, ky, R0, t0, D, run.p.pad)
    rot = so3.geodesic_deg(R1, R_ml)
    shift = np.linalg.norm(t1 - t_ml, axis=1)
    assert np.median(rot) < 0.1 and np.percentile(rot, 90) < 0.3, (np.median(rot), np.percentile(rot, 90))
    assert np.median(shift) < 0.05, np.median(shift)
    assert np.all(gain >= 0)  # a step is kept only where it lowers the residual
    # and the refined poses are closer to the truth than where they started
    assert np.median(so3.geodesic_deg(R1, R)) < 0.5 * np.median(so3.geodesic_deg(R0, R))


def test_refinement_never_worsens_the_likelihood_and_moves_off_the_grid():
    """Noisy images (SNR 0.05): every pose's residual goes down or stays, and the origins leave the grid."""
    run, X, C, s2, kx, ky, R, t = _problem(snr=0.05, n=40)
    t_grid = np.round(t * 2) / 2  # a 0.5 px shift grid, as the search leaves it
    R1, t1, gain = refine.refine_poses(get_backend("cpu"), run.G, X, C, s2, kx, ky, R, t_grid, D, run.p.pad)
    assert np.all(gain >= 0) and np.mean(gain > 0) > 0.9
    assert np.mean(np.abs(t1 * 2 - np.round(t1 * 2)) > 1e-3) > 0.9  # continuous origins
    # noise-limited, but closer to the truth than the grid on average
    assert np.median(np.linalg.norm(t1 - t, axis=1)) < np.median(np.linalg.norm(t_grid - t, axis=1))

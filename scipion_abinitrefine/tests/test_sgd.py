"""SGD ab-initio converges from a random start on simulated data (small, fast version of bench/accuracy)."""
import numpy as np
import pytest

from scipion_abinitrefine.engine import noise, sgd, simulate, so3
from scipion_abinitrefine.testing import metrics, sources


@pytest.fixture(scope="module")
def small_set():
    vol = simulate.make_phantom(32, 4.0)
    images, truth = simulate.simulate_particles(vol, 400, 4.0, snr=0.1, seed=5)
    return vol, sources.ArrayParticles(images, truth["ctf"], 4.0), truth


def small_params(**kw):
    p = dict(max_res_A=12.0, init_res_A=35.0, init_iters=40, final_iters=20, radius_step=0.2,
             init_minibatch=100, final_minibatch=100, minibatch_switch_iter=40, lr_duration=30, seed=1)
    p.update(kw)
    return sgd.SGDParams(**p)


def test_sgd_converges_from_random_start(small_set):
    """Most single random starts converge (the job runs several per half and keeps the most likely, because
    one start alone may not: here seed 1 of 0-2 stayed stuck at a median of 104 deg with numba 0.68 / numpy
    1.26, while 0 and 2 reached 5.9 and 5.5 deg)."""
    vol, data, truth = small_set
    R_true = so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"])
    good = 0
    for seed in (0, 1, 2):
        run = sgd.SGDRun(data, np.arange(len(data)), small_params(seed=seed))
        while not run.done:
            run.step()
        assert run.seen.all()
        err, _ = metrics.pose_errors(run.R.astype(np.float64), R_true)
        # at 12 A with a 32 px box, 400 particles at SNR 0.1 (measured: median 5.5-7.8 deg, 71-96% within
        # 20 deg); random poses give a median of ~120 deg and ~1% within 20 deg
        good += bool(np.median(err) < 12.0 and np.mean(err < 20) > 0.6)
        log = run.log
        assert log[-1]["resolution_A"] == pytest.approx(12.0, rel=0.02)
        assert all(e["ess"] > 0 for e in log)
    assert good >= 2, good


def test_sgd_is_deterministic(small_set):
    _, data, _ = small_set
    p = small_params(init_iters=3, final_iters=2, radius_step=5.0)
    runs = []
    for _ in range(2):
        r = sgd.SGDRun(data, np.arange(len(data)), p)
        while not r.done:
            r.step()
        runs.append(r)
    assert np.array_equal(runs[0].R, runs[1].R)
    assert np.allclose(runs[0].model_volume(), runs[1].model_volume())


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="Nyquist"):
        small_params(max_res_A=5.0).validate(32, 4.0, 1000)
    with pytest.raises(ValueError, match="minibatch"):
        small_params().validate(32, 4.0, 150)
    with pytest.raises(ValueError, match="odd"):
        small_params().validate(33, 4.0, 1000)


def test_final_pass_recovers_poses_from_the_true_map(small_set):
    """The final pose assignment (what users take downstream) against the true map, with the default
    beam and the wider final beam (``final_top_k``). Measured with the coarse level scored at its step's
    own radius: median 13.8 deg at K=8, 8.4 deg at K=32; scored at twice that radius (search.SCORE_REACH)
    the coarse level keeps the right poses: 7.2 deg at K=8, 7.1 deg at K=32."""
    vol, data, truth = small_set
    R_true = so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"])
    med = {}
    for k in (8, 32):
        run = sgd.SGDRun(data, np.arange(len(data)), small_params(final_top_k=k))
        run.set_working_radius(run.r_max)
        run.set_model_volume(vol.astype(np.float32))
        run.seen[:] = True
        X, _, m = run.batch_points(np.arange(len(data)), run.r_max)
        run.s2_shell = noise.initial_noise(run.shell, X, m)  # image power per shell: the estimate at the start
        run.final_pass()
        err, _ = metrics.pose_errors(run.R.astype(np.float64), R_true)
        med[k] = np.median(err)
    assert med[32] < 9.0 and med[8] < 9.0, med
    assert med[32] <= 1.05 * med[8], med  # the wider beam never costs accuracy

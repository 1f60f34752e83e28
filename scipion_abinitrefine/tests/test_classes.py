"""Junk classes (engine/classes.py): the class posteriors against a numpy reference, a junk class that takes
another object's images away from the particle, the choice of the particle's class, continuation, and the
unused particles a downstream program reads back."""
import subprocess
import sys

import numpy as np
import pytest

from scipion_abinitrefine.engine import classes, io, sgd, simulate, so3
from scipion_abinitrefine.engine.job import Job, JobParams, run_job
from scipion_abinitrefine.testing import metrics, sources
from scipion_abinitrefine.tests.test_job import TINY


def small_params(**kw):
    p = dict(max_res_A=12.0, init_res_A=35.0, init_iters=40, final_iters=20, radius_step=0.2,
             init_minibatch=100, final_minibatch=100, minibatch_switch_iter=40, lr_duration=30, seed=0)
    p.update(kw)
    return sgd.SGDParams(**p)


def test_posteriors_occupancy_and_assignment_against_numpy():
    rng = np.random.default_rng(0)
    ev = rng.normal(scale=5, size=(3, 50))
    prior = np.array([0.6, 0.3, 0.1])
    for T in (1.0, 7.5):
        ref = prior[:, None] * np.exp(ev / T)
        ref /= ref.sum(axis=0)
        assert np.allclose(classes.posterior(ev, prior, T), ref)
    p = classes.posterior(ev, prior)
    q = classes.updated_prior(prior, p, rate=0.5)
    assert np.allclose(q, 0.5 * prior + 0.5 * p.mean(axis=1)) and np.isclose(q.sum(), 1)
    floor = classes.updated_prior(np.array([0.98, 0.01, 0.01]), np.array([[1.0], [0.0], [0.0]]), rate=1.0)
    f = classes.PRIOR_FLOOR
    assert np.allclose(floor, np.array([1.0, f, f]) / (1 + 2 * f))  # a class left no image keeps the floor
    pc = np.array([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [np.nan, np.nan, np.nan]])
    k, prob = classes.assignment(pc)
    assert k.tolist() == [2, 1, 1] and np.allclose(prob[:2], [0.7, 0.9]) and np.isnan(prob[2])


@pytest.fixture(scope="module")
def other_objects():
    """1000 images at box 32, SNR 0.1, 30% of them another object of the same mass."""
    vol = simulate.make_phantom(32, 4.0)
    images, truth = simulate.simulate_particles(vol, 1000, 4.0, snr=0.1, seed=5, junk_fraction=0.3,
                                                junk_kinds=("other",))
    return vol, sources.ArrayParticles(images, truth["ctf"], 4.0), truth


def test_a_junk_class_takes_the_other_object(other_objects):
    """One random start per run, seeds 0-2 (measured): one class gave median pose errors of the particles
    of 44, 123 and 17 deg (the other object's images bend the map); with one junk class 5.1, 5.2 and 5.9
    deg, 99-100% of the other object's images in the junk class and 5-11% of the particles."""
    _, data, truth = other_objects
    run = sgd.SGDRun(data, np.arange(len(data)), small_params(junk_classes=1))
    while not run.done:
        run.step()
    share = classes.settle(run)
    run.final_pass()
    good = ~truth["junk"]
    R_true = so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"])
    err, _ = metrics.pose_errors(run.R[good].astype(np.float64), R_true[good])
    k, prob = classes.assignment(run.pclass)
    assert np.median(err) < 8.0, np.median(err)
    assert np.mean(k[~good] == 2) > 0.9 and np.mean(k[good] == 2) < 0.15, (np.mean(k[~good] == 2),
                                                                          np.mean(k[good] == 2))
    assert share[0] > share[1] and 0.5 < share[0] < 0.85, share  # 70% particles, 30% the other object
    assert np.all((prob >= 0.5) & (prob <= 1.0))


def test_settle_makes_the_class_that_explains_most_images_the_particle_class(other_objects):
    """Whatever the SGD's order of the classes, the class that explains most images becomes the first:
    the true map given to the junk class is moved to the run's own model."""
    vol, data, _ = other_objects
    run = sgd.SGDRun(data, np.arange(len(data)), small_params(junk_classes=1, init_iters=1, final_iters=0,
                                                                radius_step=20.0))
    while not run.done:
        run.step()
    run.seen[:] = True
    blob = simulate.make_phantom(32, 4.0, seed=99, shape="compact")
    run.set_model_volume(blob.astype(np.float32))
    run.junk[0].set_model_volume(vol.astype(np.float32))
    share = classes.settle(run)
    assert share[0] > 0.55, share
    assert np.corrcoef(run.model_volume().ravel(), vol.ravel())[0, 1] > 0.9
    assert np.corrcoef(run.junk[0].model_volume().ravel(), blob.ravel())[0, 1] > 0.9
    assert run.class_prior[0] > run.class_prior[1]


def _job_data(tmp_path, n=300, junk=0.3):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "scipion_abinitrefine.cli", "simulate", "--out", str(data), "--n", str(n),
                    "--box", "32", "--apix", "4", "--snr", "0.3", "--seed", "3", "--junk", str(junk)], check=True,
                   capture_output=True)
    return data


def test_junk_classes_continue_from_a_checkpoint_exactly(tmp_path):
    """A checkpoint holds every class of every start: a job continued from it steps on as the one that
    wrote it (the classes' models, their occupancy and the images' class posteriors)."""
    data = _job_data(tmp_path)
    ps = io.read_star(str(data / "particles.star"))
    p = JobParams(**{**TINY, "n_starts": 2}, junk_classes=1)
    a = Job(ps, str(tmp_path / "a"), p, log=None)
    for _ in range(4):
        a._step_halves()
    a.save()
    b = Job(ps, str(tmp_path / "a"), p, log=None)
    b.load()
    for _ in range(3):
        a._step_halves()
        b._step_halves()
    for name in "AB":
        for ra, rb in zip(a.candidates[name], b.candidates[name]):
            assert np.array_equal(ra.G, rb.G) and np.array_equal(ra.junk[0].G, rb.junk[0].G)
            assert np.array_equal(ra.class_prior, rb.class_prior)
            assert np.array_equal(ra.pclass, rb.pclass, equal_nan=True)


def test_job_sends_junk_class_particles_to_unused_with_their_class(tmp_path):
    """The whole job with 2 junk classes: every particle is in particles.star or unused.star; the particles
    of a junk class are in unused.star with rlnClassNumber >= 2 and the class's probability (read back by
    the STAR reader, as RELION would), and they are mostly junk."""
    data = _job_data(tmp_path)
    out = tmp_path / "out"
    res = run_job(str(data / "particles.star"), str(out), JobParams(**{**TINY, "n_starts": 1}, junk_classes=2),
                  log=lambda *a, **k: None)
    truth = np.genfromtxt(data / "truth.csv", delimiter=",", names=True, dtype=None, encoding=None)
    used = io.read_star(str(out / "particles.star"))
    unused = io.read_star(str(out / "unused.star"))
    assert len(used) + len(unused) == 300 and res["n_used"] == len(used)
    assert used.class_number is None and unused.class_number is not None
    moved = unused.class_number >= 2
    assert moved.any() and set(np.unique(unused.class_number)) <= {0, 2, 3}
    assert np.all((unused.maxprob[moved] >= 1 / 3) & (unused.maxprob[moved] <= 1))
    junk = truth["junk"].astype(bool)
    assert junk[unused.stack_index[moved]].mean() > 0.6, junk[unused.stack_index[moved]].mean()  # 30% by chance
    assert set(res["classes"]) == {"A", "B"} and all(abs(sum(s) - 1) < 1e-6 for s in res["classes"].values())

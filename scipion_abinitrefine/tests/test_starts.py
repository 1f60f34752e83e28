"""Several random starts per half (job.Job.choose_starts): the start whose model explains the half's images
best goes on, and a run stopped while the starts compete continues to the same choice."""
import numpy as np
import pytest

from scipion_abinitrefine.engine import job as jobmod
from scipion_abinitrefine.engine import simulate
from scipion_abinitrefine.testing import sources

PARAMS = dict(max_res_A=12.0, init_res_A=35.0, init_iters=6, final_iters=2, radius_step=2.0, init_minibatch=100,
              final_minibatch=100, minibatch_switch_iter=6, lr_duration=30, align_every=0, n_starts=3,
              backend="cpu", seed=2)


@pytest.fixture(scope="module")
def data():
    vol = simulate.make_phantom(32, 4.0)
    images, truth = simulate.simulate_particles(vol, 600, 4.0, snr=0.1, seed=5)
    return vol, sources.ArrayParticles(images, truth["ctf"], 4.0), truth


def explored(data, tmp_path, **kw):
    vol, ps, truth = data
    job = jobmod.Job(ps, str(tmp_path), jobmod.JobParams(**{**PARAMS, **kw}), log=None)
    for _ in range(2):  # noise models and temperatures set, models moved off their random starts
        for _, run in job._all_runs():
            run.step()
    return job


def test_the_true_map_wins_among_random_starts(data, tmp_path):
    vol, _, truth = data
    job = explored(data, tmp_path)
    assert len(job.candidates["A"]) == 3 and job.stage == "explore"
    # the same streams as separate seeds: start 0 is what a single-start job of this seed runs
    single = jobmod.Job(data[1], str(tmp_path / "one"), jobmod.JobParams(**{**PARAMS, "n_starts": 1}), log=None)
    assert np.array_equal(single.runs["A"].order, job.candidates["A"][0].order)
    assert not np.array_equal(job.candidates["A"][0].order, job.candidates["A"][1].order)
    # start 2 of half A gets the true map (images are normalised to unit background noise)
    job.candidates["A"][2].set_model_volume(vol / truth["noise_sigma"])
    runs = dict(A=list(job.candidates["A"]), B=list(job.candidates["B"]))
    job.choose_starts()
    sa = job.starts["A"]
    assert sa["kept"] == 2 and job.runs["A"] is runs["A"][2] and job.candidates["A"] == [runs["A"][2]]
    # per image, the true map explains the images better than a start after two iterations (measured: by 0.72)
    others = [s for j, s in enumerate(sa["scores"]) if j != 2]
    assert sa["scores"][2] > max(others) + 0.3, sa
    # half B: its own best score, its own choice
    sb = job.starts["B"]
    assert job.runs["B"] is runs["B"][sb["kept"]] and sb["scores"][sb["kept"]] == max(sb["scores"])
    assert sa["images"] == sb["images"] == 300


def test_scores_are_the_likelihood_of_the_same_images(data, tmp_path):
    """A start's score does not depend on which other starts compete (the same images, the same noise)."""
    job = explored(data, tmp_path)
    run = job.candidates["A"][1]
    sel = np.arange(50)
    s2 = run.s2_shell
    a = run.mean_evidence(sel, s2, batch=17)
    b = run.mean_evidence(sel, s2, batch=250)
    assert a == pytest.approx(b, rel=1e-5)
    # evidence of the first 25 images alone, averaged with the next 25: the mean over all 50
    c = 0.5 * (run.mean_evidence(sel[:25], s2) + run.mean_evidence(sel[25:], s2))
    assert a == pytest.approx(c, rel=1e-5)


def test_continue_while_the_starts_compete(data, tmp_path):
    """A checkpoint written while the starts compete holds all of them: the continued run keeps the same start
    and ends with the same model as an uninterrupted one."""
    ref = jobmod.Job(data[1], str(tmp_path / "ref"), jobmod.JobParams(**PARAMS), log=None)
    ref.run_sgd()
    job = explored(data, tmp_path / "cut")
    job.save()
    again = jobmod.Job(data[1], str(tmp_path / "cut"), jobmod.JobParams(**PARAMS), log=None)
    again.load()
    assert again.stage == "explore" and len(again.candidates["B"]) == 3
    again.run_sgd()
    assert again.starts == ref.starts
    for h in "AB":
        assert np.array_equal(again.runs[h].G, ref.runs[h].G), h
        assert np.array_equal(again.runs[h].R, ref.runs[h].R), h

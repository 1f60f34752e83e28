"""Several random starts per half (job.Job.choose_starts): the starts whose models explain the half's images
best go on (half of them, then those not clearly behind the best, then one), and a run stopped while the starts
compete continues to the same choice."""
import dataclasses
import signal

import numpy as np
import pytest

from scipion_abinitrefine.engine import job as jobmod
from scipion_abinitrefine.engine import simulate, starts
from scipion_abinitrefine.testing import sources

# radius 3.66 px at 35 A, +0.3 px per iteration after 6; the 54 A window (13.6 px radius) spans 5 resolution
# elements at 5.88 px, 6 at 7.06 px and 9 at 10.59 px (starts.start_radii): half the starts go on at iteration
# 14 (6.06 px), from iteration 18 (7.26 px) a start goes out when clearly behind the best (checked every 10
# iterations), at iteration 30 (10.86 px) one is kept whatever the margin
PARAMS = dict(max_res_A=12.0, init_res_A=35.0, init_iters=6, final_iters=2, radius_step=0.3, init_minibatch=100,
              final_minibatch=100, minibatch_switch_iter=6, lr_duration=30, align_every=0, n_starts=4,
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
    assert len(job.candidates["A"]) == 4 and job.stage == "explore" and job.starts_to_keep() is None
    # the same streams as separate seeds: start 0 is what a single-start job of this seed runs
    single = jobmod.Job(data[1], str(tmp_path / "one"), jobmod.JobParams(**{**PARAMS, "n_starts": 1}), log=None)
    assert np.array_equal(single.runs["A"].order, job.candidates["A"][0].order)
    assert not np.array_equal(job.candidates["A"][0].order, job.candidates["A"][1].order)
    # start 2 of half A gets the true map (images are normalised to unit background noise)
    job.candidates["A"][2].set_model_volume(vol / truth["noise_sigma"])
    runs = dict(A=list(job.candidates["A"]), B=list(job.candidates["B"]))
    job.choose_starts(keep=2)  # the better half goes on, best first
    sa = job.starts["A"]["rounds"][0]
    assert sa["kept"][0] == 2 and job.runs["A"] is runs["A"][2] and job.candidates["A"][0] is runs["A"][2]
    second = max((j for j in range(4) if j != 2), key=lambda j: sa["scores"][j])
    assert job.candidates["A"] == [runs["A"][2], runs["A"][second]] and sa["kept"] == [2, second]
    # per image, the true map explains the images better than a start after two iterations (measured: by 0.72)
    others = [s for j, s in enumerate(sa["scores"]) if j != 2]
    assert sa["scores"][2] > max(others) + 0.3, sa
    # half B: its own scores, its own choice
    sb = job.starts["B"]["rounds"][0]
    assert [r.start for r in job.candidates["B"]] == sb["kept"]
    assert sorted(sb["scores"], reverse=True)[:2] == [sb["scores"][j] for j in sb["kept"]]
    assert sa["images"] == sb["images"] == 300
    job.choose_starts(keep=1)  # the last round scores the survivors only
    assert job.starts["A"]["kept"] == 2 and job.candidates["A"] == [runs["A"][2]]
    assert job.starts["A"]["rounds"][1]["starts"] == [2, second]


def test_scores_are_the_likelihood_of_the_same_images(data, tmp_path):
    """A start's score does not depend on which other starts compete (the same images, the same noise)."""
    job = explored(data, tmp_path)
    run = job.candidates["A"][1]
    sel = np.arange(50)
    s2 = run.s2_shell
    a = starts.start_scores([run], sel, s2, batch=17)[0]
    b = starts.start_scores([run], sel, s2, batch=250)[0]
    assert a == pytest.approx(b, rel=1e-5)
    # evidence of the first 25 images alone, averaged with the next 25: the mean over all 50 (without the
    # outlier weights, which judge each image among those scored)
    plain = dataclasses.replace(run.p, outlier_weighting=False)
    run.p, kept = plain, run.p
    try:
        whole = starts.start_scores([run], sel, s2)[0]
        c = 0.5 * (starts.start_scores([run], sel[:25], s2)[0] + starts.start_scores([run], sel[25:], s2)[0])
    finally:
        run.p = kept
    assert whole == pytest.approx(c, rel=1e-5)
    # scored beside other starts on the same points: the same score (images read once for all of them)
    assert starts.start_scores(job.candidates["A"], sel, s2, batch=17)[1] == pytest.approx(a, rel=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    """The run the interrupted ones must reproduce: one for every cut (it is the same run)."""
    ref = jobmod.Job(data[1], str(tmp_path_factory.mktemp("ref")), jobmod.JobParams(**PARAMS), log=None)
    ref.run_sgd()
    return ref


@pytest.mark.parametrize("cut", ["all compete", "half left", "evidence rounds"])
def test_continue_while_the_starts_compete(data, uninterrupted, tmp_path, cut):
    """A checkpoint written while the starts compete holds the live ones: the continued run keeps the same
    starts and ends with the same models and poses as an uninterrupted one."""
    ref = uninterrupted
    rounds = ref.starts["A"]["rounds"]
    assert [(r["rule"], len(r["starts"])) for r in rounds[:2]] == [("rank", 4), ("evidence", 2)], rounds
    job = jobmod.Job(data[1], str(tmp_path / "cut"), jobmod.JobParams(**PARAMS), log=None)
    if cut == "all compete":
        job.stop_signal = signal.SIGTERM  # stop after the first iteration
    else:
        choose = job.choose_starts

        def stop_after(keep=1):
            choose(keep)
            if keep == (2 if cut == "half left" else 0):
                job.stop_signal = signal.SIGTERM

        job.choose_starts = stop_after
    with pytest.raises(jobmod.JobInterrupted):
        job.run_sgd()
    again = jobmod.Job(data[1], str(tmp_path / "cut"), jobmod.JobParams(**PARAMS), log=None)
    again.load()
    assert again.stage == "explore" and len(again.candidates["B"]) == (4 if cut == "all compete" else 2)
    again.run_sgd()
    assert again.starts == ref.starts
    for h in "AB":
        assert np.array_equal(again.runs[h].G, ref.runs[h].G), h
        assert np.array_equal(again.runs[h].R, ref.runs[h].R), h
        assert [e["iteration"] for e in again.runs[h].log] == [e["iteration"] for e in ref.runs[h].log]


def test_one_halving_then_out_by_evidence(data, tmp_path):
    """6 starts: 3 go on at the halving radius (by rank, once); from the selection radius, every 10 iterations,
    a start goes out exactly when its score lies 3 paired standard errors below the best's; at the last radius
    one is kept. Each round scores the survivors of the one before."""
    job = jobmod.Job(data[1], str(tmp_path), jobmod.JobParams(**{**PARAMS, "n_starts": 6}), log=None)
    job.run_sgd()
    for h in "AB":
        rounds = job.starts[h]["rounds"]
        assert (rounds[0]["iteration"], rounds[0]["rule"], len(rounds[0]["starts"]), len(rounds[0]["kept"])) == \
            (14, "rank", 6, 3), rounds
        for before, r in zip(rounds, rounds[1:]):
            assert sorted(r["starts"]) == sorted(before["kept"]), rounds
        for r in rounds[1:]:
            if r["rule"] == "evidence":
                assert r["iteration"] in (18, 28), rounds  # from iteration 18, every 10
                out = {s for s, z in zip(r["starts"], r["behind_se"]) if z >= starts.START_ELIMINATION_Z}
                assert set(r["kept"]) == set(r["starts"]) - out, r
                assert r["kept"][0] == r["starts"][int(np.argmax(r["scores"]))]  # the best first
            else:  # the last radius: the best by its mean, whatever the margin
                assert r["iteration"] == 30 and r["kept"] == [r["starts"][int(np.argmax(r["scores"]))]], rounds
        assert len(rounds[-1]["kept"]) == 1 and job.starts[h]["kept"] == rounds[-1]["kept"][0]
        assert job.runs[h].start == job.starts[h]["kept"] and job.stage == "final"
    # this case shows both ends: a half decided by evidence, one by the last radius (measured: A out by
    # evidence at iteration 28, 13.5 and 17.5 standard errors behind; B two starts 1 standard error apart)
    assert {job.starts[h]["rounds"][-1]["rule"] for h in "AB"} == {"evidence", "rank"}


def test_lead_z_is_the_paired_margin():
    """lead_z against a direct computation: per-image scores of three starts on the same images share the
    images' own spread (large), their differences carry a small noise: the margin is judged on the
    differences, not on the spread of the scores."""
    rng = np.random.default_rng(0)
    n = 1000
    base = rng.normal(5.0, 3.0, n)  # images differ a lot in how much they say
    ev = np.stack([base, base - 0.05 + rng.normal(0, 0.2, n), base - 0.002 + rng.normal(0, 0.2, n)])
    w = np.ones(n)
    z = starts.lead_z(ev, w)
    m = ev.mean(axis=1)
    best = int(np.argmax(m))
    assert best == 0 and z[0] == 0.0
    for j in (1, 2):
        d = ev[0] - ev[j]
        assert z[j] == pytest.approx(d.mean() / (d.std() / np.sqrt(n)), rel=1e-3)
    assert z[1] > starts.START_ELIMINATION_Z > z[2]  # 0.05 behind is clear (~7.9 SE), 0.002 is not
    # weights: an image of weight 0 does not count
    w2 = np.ones(n + 1)
    w2[-1] = 0.0
    ev2 = np.concatenate([ev, np.array([[0.0], [100.0], [100.0]])], axis=1)
    assert starts.lead_z(ev2, w2) == pytest.approx(z, rel=1e-9)


def test_start_radii():
    """The starts compete until the radius has grown 1.15 x / 1.3 x / 1.6 x past the initial one and the
    particle spans 5 / 6 / 9 resolution elements, whichever comes later, and not past the maximum radius."""
    box, rp = 64, 27.2  # the 2 A/px demo case: a 108.8 A window, 1.176 Fourier px per element
    el = box / (2 * rp)
    # from 20 A (6.4 px, 5.4 elements): the growth decides, as before the element rule
    assert starts.start_radii(6.4, 12.8, rp, box) == pytest.approx((1.15 * 6.4, 1.3 * 6.4, 9 * el))
    # from 35 A (3.66 px, 3.1 elements): 21.8 and 18.1 A, not 30 and 27 A; the last radius at 12.1 A
    h, s, last = starts.start_radii(3.657, 12.8, rp, box)
    assert last == pytest.approx(9 * el) and 64 * 2.0 / last == pytest.approx(12.09, abs=0.01)
    assert (h, s) == pytest.approx((5 * el, 6 * el)) and 2 * rp * h / box == pytest.approx(5.0)
    assert 64 * 2.0 / h == pytest.approx(21.76, abs=0.01) and 64 * 2.0 / s == pytest.approx(18.13, abs=0.01)
    # a maximum resolution coarser than both: the choice is made at the maximum radius
    assert starts.start_radii(3.657, 5.0, rp, box) == (5.0, 5.0, 5.0)

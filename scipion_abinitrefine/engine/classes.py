"""Junk classes: heterogeneous ab initio inside one half as a sink for junk (docs/design.rst, "Junk
classes").

A half with ``SGDParams.junk_classes`` = J > 0 runs K = J + 1 models on the same minibatches: the particle's
class and J junk classes, each from its own random start. Every image is searched against every class; its
class posterior

    p_k = pi_k exp(e_k / T) / sum_j pi_j exp(e_j / T)

(e_k: its log marginal likelihood ratio against noise under class k, ``search.SearchResult.evidence``; T:
the SGD's annealing temperature, so that the classes share the images while every posterior is broad;
pi: the classes' running occupancy) weighs its contribution to each class's update. The classes are
symmetric: whichever holds the most images is the particle's (:func:`leader`); the junk classes are free
to take ice, contaminants, other objects and aggregates. The output stays one pair of half-maps, the
particle class of each half; the images whose most probable class is a junk class go to the unused
particles with that class's number and probability.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# The occupancy pi follows each minibatch's mean posterior with this rate (about the last 1 / rate
# minibatches count), and never falls under this floor: a class that lost every image may still win
# the images only it explains.
PRIOR_RATE = 0.05
PRIOR_FLOOR = 0.01
JUNK_PRIOR = 0.1
SETTLE_IMAGES = 1000  # images of a half that decide, before the final pass, which class is the particle's
# Images whose posterior for a class is under this fraction add nothing to its update (they are not
# back-projected into it): with K classes most images belong to one, and inserting them everywhere was
# K times the work for nothing.
MIN_CLASS_WEIGHT = 1e-3


def initial_prior(n_classes: int) -> np.ndarray:
    """The starting occupancy: JUNK_PRIOR per junk class, the rest the particle's."""
    p = np.full(n_classes, JUNK_PRIOR)
    p[0] = 1.0 - JUNK_PRIOR * (n_classes - 1)
    return p


def posterior(evidence: np.ndarray, prior: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class posteriors (K, B) of B images from their evidence (K, B) under each class, the occupancy
    ``prior`` (K,) and the annealing temperature."""
    f = np.asarray(evidence, np.float64) / max(float(temperature), 1e-12) + np.log(prior)[:, None]
    f -= f.max(axis=0, keepdims=True)
    p = np.exp(f)
    return p / p.sum(axis=0, keepdims=True)


def updated_prior(prior: np.ndarray, p: np.ndarray, rate: float = PRIOR_RATE) -> np.ndarray:
    """The occupancy after one minibatch's posteriors ``p`` (K, B): a running mean, floored, summing to 1."""
    q = np.maximum((1.0 - rate) * prior + rate * p.mean(axis=1), PRIOR_FLOOR)
    return q / q.sum()


def leader(prior: np.ndarray) -> int:
    """The particle's class: the one that holds the most images (first on ties)."""
    return int(np.argmax(prior))


def subset(res, keep: np.ndarray):
    """The search result ``res`` (``search.SearchResult``) of the images ``keep`` only."""
    return dataclasses.replace(res, **{f.name: getattr(res, f.name)[keep] for f in dataclasses.fields(res)
                                       if getattr(res, f.name) is not None})


def assignment(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the most probable class (1 = the particle's, 2.. the junk classes: RELION's
    rlnClassNumber) and its probability, from posteriors ``p`` (n, K); NaN rows (images never scored)
    give class 1 and probability NaN."""
    p = np.asarray(p, np.float64)
    scored = ~np.isnan(p).any(axis=1)
    k = np.where(scored, np.argmax(np.where(np.isnan(p), -1.0, p), axis=1), 0)
    prob = np.where(scored, p[np.arange(len(p)), k], np.nan)
    return k + 1, prob


# what a class's model is: swapped between two runs when a junk class comes to hold the most images
MODEL_STATE = ("G", "H", "Dw", "window", "acc")


def junk_runs(run, particles, rng_seed) -> list:
    """The junk classes of SGD run ``run``: runs of the same images and parameters (without junk classes of
    their own), each from its own random start, independent of the run's own random stream."""
    n = run.p.junk_classes
    if n <= 0:
        return []
    seed = run.p.seed if rng_seed is None else rng_seed
    p = dataclasses.replace(run.p, junk_classes=0)
    return [type(run)(particles, run.idx, p, backend=run.be, name=run.name, start=run.start,
                      rng_seed=int(np.random.SeedSequence([seed, 0x7C1A55, j]).generate_state(1)[0]))
            for j in range(n)]


def search_junk(run, res, X, C, s2, kx, ky, r: float, temperature: float, final: bool = False):
    """Search a batch against the junk classes of ``run`` (``res``: its search against the particle's class)
    and the batch's class posteriors (K, B); in the SGD (not ``final``) the occupancy follows them. Returns
    (posteriors, the junk classes' search results), or (None, []) without junk classes."""
    if not run.junk:
        return None, []
    if final:  # the class probabilities only: the best poses, at T = 1
        rj = [j.searcher.search(j.be.asarray(j.G), X, C, s2, kx, ky, r, n_keep=1, n_samples=0) for j in run.junk]
    else:
        rj = []
        for j in run.junk:
            j.set_working_radius(r)
            rj.append(j.searcher.search(j.be.asarray(j.G), X, C, s2, kx, ky, r, temperature=temperature,
                                        n_keep=run.p.n_backproject, n_samples=run.p.n_samples, rng=j.rng))
    ev = np.stack([np.asarray(x.evidence, np.float64) for x in [res] + rj])
    pc = posterior(ev, run.class_prior, temperature)
    if not final:  # the occupancy: where the images would go at T = 1, not the annealed share
        run.class_prior = updated_prior(run.class_prior, posterior(ev, run.class_prior))
    return pc, rj


def update_junk(run, rj, pc, X, C, s2, kx, ky, lr: float, r: float):
    """The junk classes' SGD steps from the batch's searches ``rj`` and class posteriors ``pc``; then the
    class holding the most images becomes the particle's (:func:`relabel`)."""
    for k, (j, res) in enumerate(zip(run.junk, rj), start=1):
        _, Bv, Wv = j._backproject(res, X, C, s2, kx, ky, np.ones(len(X), np.float32), pc[k])
        j._apply_update(Bv, Wv, lr, r)
        j.iteration = run.iteration + 1  # its radius is the run's (last_radius, evidence)
    if run.junk:
        relabel(run)


def relabel(run):
    """Make the class that holds the most images the particle's: swap its model with the run's own."""
    k = leader(run.class_prior)
    if k == 0:
        return
    other = run.junk[k - 1]
    for name in MODEL_STATE:
        a, b = getattr(run, name), getattr(other, name)
        setattr(run, name, b)
        setattr(other, name, a)
    order = np.arange(len(run.class_prior))
    order[[0, k]] = [k, 0]
    run.class_prior = run.class_prior[order]
    run.pclass = run.pclass[:, order]


def settle(run, n_images: int = SETTLE_IMAGES, batch: int = 250) -> list[float] | None:
    """Before the final pass: the share of a fixed sample of the run's seen images that each class
    explains best now (at T = 1, with the occupancy as prior), which becomes the occupancy; the class
    with the largest share becomes the particle's (:func:`relabel`). Returns the shares (None without
    junk classes).

    Why: the occupancy followed the minibatches' posteriors, which lag the classes by many iterations;
    on a box-32 set with 30% other objects the class that held everything at first kept 54% by that
    account at the end while it explained 36% of the images (the other objects and a few particles), and
    the particles' class was the other one."""
    if not run.junk:
        return None
    seen = np.flatnonzero(run.seen)
    rng = np.random.default_rng(np.random.SeedSequence([run.p.seed, 0x5E771E]))
    sel = np.sort(rng.permutation(seen)[:n_images])
    share = np.zeros(len(run.class_prior))
    for a in range(0, len(sel), batch):
        X, C, m = run.batch_points(sel[a:a + batch], run.last_radius())
        ev = np.stack([r.evidence(X, C, m, run.s2_shell) for r in [run] + run.junk])
        share += posterior(ev, run.class_prior).sum(axis=1)
    share /= max(share.sum(), 1e-12)
    run.class_prior = np.maximum(share, PRIOR_FLOOR) / np.maximum(share, PRIOR_FLOOR).sum()
    relabel(run)
    return sorted((float(x) for x in share), reverse=True)


def state(run) -> dict:
    """The junk classes' part of the run's checkpoint (``SGDRun.state_dict``)."""
    if not run.junk:
        return {}
    out = dict(class_prior=run.class_prior, pclass=run.pclass)
    for i, j in enumerate(run.junk):
        out.update({f"junk{i}.{k}": v for k, v in j.state_dict().items()})
    return out


def load_state(run, st: dict):
    if not run.junk:
        return
    run.class_prior = np.asarray(st["class_prior"], np.float64)
    run.pclass = np.asarray(st["pclass"], np.float32)
    for i, j in enumerate(run.junk):
        pre = f"junk{i}."
        j.load_state({k[len(pre):]: v for k, v in st.items() if k.startswith(pre)})

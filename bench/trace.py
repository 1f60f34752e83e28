#!/usr/bin/env python
"""Follow one half's random starts along the SGD against the truth (issue 10: why a cell fails).

    .venv/bin/python bench/trace.py --shape demo --snr 0.01 --n 10000 --junk 0.2 --realistic --starts 4 \
        --iters 120 --params '{"init_iters": 60}'

Simulates the case exactly as ``bench/hard.py`` does, builds the job, and steps one half's starts (``--half``,
default A) for ``--iters`` iterations. Every ``--every`` iterations, per start: median 3D ESS, the fraction of the good
particles seen so far whose latest pose lies within 20 deg of the truth (after the best global rotation,
both hands), and the model's FSC to the truth (aligned, both hands) averaged over 40-20 A and 20-11 A; and,
where the job would compare starts, their scores (``starts.start_scores``). Prints one table row per check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np
from accuracy import band_fsc
from hard import JOB_PARAMS, add_case_arguments, good_pose_errors, simulate_case


def within20(run, t):
    g = run.idx[run.seen]
    if (~t["junk"][g]).sum() < 20:
        return float("nan")
    return float(np.mean(good_pose_errors(run.R[run.seen], g, t) < 20))


def true_noise(run, realistic: bool, apix: float, n: int = 1000) -> np.ndarray:
    """Per-shell noise model of ``run`` from ``n`` images of noise alone (the case's colour: ``hard.py``'s
    realistic cases have coloured noise), normalised and sampled as the job reads particles."""
    from scipion_abinitrefine.engine import fourier, simulate
    from scipion_abinitrefine.engine.noise import initial_noise
    from scipion_abinitrefine.engine.reconstruct import normalise_images

    D = run.box
    psd = np.sqrt(simulate.noise_psd(D, apix, "coloured")) if realistic else None
    img = simulate._coloured_noise(np.random.default_rng(123), (n, D, D), 1.0, psd)
    m = fourier.n_points_within(run.kx, run.ky, run.r_max)
    X = fourier.image_points(normalise_images(img, run.rp), run.kx[:m], run.ky[:m])
    return initial_noise(run.shell, X, m)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(ap)
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--half", default="A", choices=["A", "B"],
                    help="the half whose starts to follow (with --starts 8, the job's own starts of that half)")
    ap.add_argument("--iters", type=int, default=120)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--oracle", action="store_true", help="every start from the true map, no annealing")
    ap.add_argument("--truth-starts", type=int, default=0,
                    help="the first K starts from the true map, the others random; no annealing for any (a "
                         "start's basin: do random starts reach what the truth's low-passed map reaches?)")
    ap.add_argument("--fixed-noise", action="store_true",
                    help="score every check with the noise model of the first check (scores then compare "
                         "across checks; by default each check uses the runs' current noise model)")
    ap.add_argument("--noise", default="run", choices=["run", "frozen", "white", "true"],
                    help="the runs' noise model: run (the job's: updated from the residuals at the best poses), "
                         "frozen (its first estimate, the images' own power, kept), white (one level for every "
                         "shell: the images' power in the outer half of the points out to Nyquist, where noise "
                         "dominates; kept), true (the power of 1,000 images of noise alone, the case's colour: "
                         "true_noise below; kept)")
    ap.add_argument("--temperature-after", type=float, default=1.0,
                    help="the posterior's temperature after the annealing (the job's: 1; below 1 sharpens it)")
    ap.add_argument("--constraints", default="all", choices=["all", "lowpass"],
                    help="the model's real-space constraints after each update: all (the job's: background, "
                         "non-negativity, window, re-centring, low-pass) or lowpass (the low-pass alone)")
    ap.add_argument("--out", help="JSON lines of every check")
    a = ap.parse_args()
    if a.temperature_after != 1.0:
        from scipion_abinitrefine.engine import schedule

        anneal = schedule.temperature_at
        schedule.temperature_at = lambda p, T0, it: (anneal(p, T0, it) if it < p.init_iters
                                                     else a.temperature_after)

    from scipion_abinitrefine.engine import io
    if a.constraints == "lowpass":  # which of the constraints move a model that is right?
        from scipion_abinitrefine.engine import fourier, sgd

        def lowpass_only(run, r):
            run.set_model_volume(fourier.lowpass_volume(run._working_volume(), r + 1.0, width=2.0))

        sgd.SGDRun._constrain = lowpass_only
    from scipion_abinitrefine.engine.job import Job, JobParams
    from scipion_abinitrefine.engine.starts import start_scores

    d = tempfile.mkdtemp(prefix="trace_")
    truth, t = simulate_case(d, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix)
    params = json.loads(a.params)
    over = dict(target_ess_fraction=0.0) if a.oracle or a.truth_starts else {}
    p = JobParams(**{**JOB_PARAMS, **params, **over, "n_starts": a.starts}, backend="cpu", seed=a.seed)
    job = Job(io.read_star(os.path.join(d, "p.star")), os.path.join(d, "out"), p, log=None)
    if a.noise != "run":  # no update from the residuals
        from scipion_abinitrefine.engine import sgd

        sgd.updated_noise = lambda s2, count, *args: (s2, count)
    runs = job.candidates[a.half]
    for run in runs[:len(runs) if a.oracle else a.truth_starts]:
        run.set_model_volume(truth / t["noise_sigma"])
    if a.noise == "white":
        from scipion_abinitrefine.engine.noise import initial_noise

        for run in runs:
            X, _, m = run.batch_points(np.arange(500), run.box / 2 - 1)  # to Nyquist: noise dominates
            s2 = initial_noise(run.shell, X, m)
            run.s2_shell = np.full_like(s2, np.median((np.abs(X[:, m // 2:]) ** 2).mean(axis=0)))
            run.s2_count = run.p.noise_prior_images
    if a.noise == "true":
        s2 = true_noise(runs[0], a.realistic, a.apix)  # the starts share the half's images and points
        for run in runs:
            run.s2_shell = s2.copy()
            run.s2_count = run.p.noise_prior_images
    rng = np.random.default_rng(0)
    sel = np.sort(rng.permutation(len(runs[0].idx))[:1000])
    t0 = time.time()
    s2_fixed = None
    print(f"# {vars(a)}", flush=True)
    for it in range(1, a.iters + 1):
        for run in runs:
            e = run.step()
        if it % a.every:
            continue
        s2 = np.mean([r.s2_shell for r in runs], axis=0)
        if a.fixed_noise:
            s2_fixed = s2 if s2_fixed is None else s2_fixed
            s2 = s2_fixed
        sc = start_scores(runs, sel, s2)
        cells = []
        for j, run in enumerate(runs):
            low, mid = band_fsc(run.model_volume(), truth, a.apix)
            row = dict(iteration=it, resolution_A=e["resolution_A"], start=j, score=float(sc[j]),
                       ess=run.log[-1]["ess"], w20=within20(run, t), fsc_low=low, fsc_mid=mid)
            cells.append(f"{sc[j]:7.3f} {row['ess']:6.0f} {row['w20']:.2f} {low:.2f} {mid:.2f}")
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps({**row, "case": vars(a)}) + "\n")
        print(f"{it:4d} ({e['resolution_A']:4.1f} A) " + " | ".join(cells) + f"   {time.time() - t0:6.0f} s",
              flush=True)


if __name__ == "__main__":
    main()

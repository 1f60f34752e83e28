#!/usr/bin/env python
"""Does full-data EM at a low resolution tell the right shape from random ones? (issue 10: the start)

    .venv/bin/python bench/shape_search.py DIR --shape demo --snr 0.01 --n 10000 --junk 0.2 --realistic \\
        --seed 0 --res 25 --starts 6 --passes 4

On a ``bench/hard.py`` case (simulated into DIR if empty), half A's images (``--images``, default all) go
through ``--passes`` EM passes (the job's final pass: global search at ``--res``, T = 1, reconstruction from
the posteriors) from each of: the true map low-passed at ``--res``, and ``--starts`` random starts (the
SGD's random blobs at that radius, scaled to the true start's power). After each pass it prints, per start,
the images' mean log marginal likelihood ratio (one noise model for all: the images' power per shell) and the
map's FSC to the truth over 40-20 A. A search over low-resolution shapes can only work where the right
shape scores clearly above the random ones' EM fixed points, and where some random starts reach it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np
from accuracy import band_fsc
from hard import JOB_PARAMS, add_case_arguments, case_truth, model_from_map


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    add_case_arguments(ap)
    ap.add_argument("--res", type=float, default=25.0, help="the passes' search resolution (A)")
    ap.add_argument("--starts", type=int, default=6)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--images", type=int, default=None, help="only half A's first N images")
    ap.add_argument("--score-images", type=int, default=1000)
    ap.add_argument("--job", action="store_true",
                    help="also start from the case's half-map A (DIR/out, a finished bench/hard.py job) low-passed "
                         "at --res: does the likelihood there prefer the truth to what the SGD found?")
    a = ap.parse_args()
    from scipion_abinitrefine.engine import fourier, io
    from scipion_abinitrefine.engine.job import Job, JobParams
    from scipion_abinitrefine.engine.noise import initial_noise
    from scipion_abinitrefine.engine.starts import random_initial_model

    truth, t = case_truth(a.dir, a)
    p = JobParams(**{**JOB_PARAMS, "max_res_A": a.res, "init_res_A": max(a.res, JOB_PARAMS["init_res_A"]),
                     "align_res_A": a.res + 5}, n_starts=1, backend="cpu", seed=a.seed)
    job = Job(io.read_star(os.path.join(a.dir, "p.star")), tempfile.mkdtemp(prefix="shape_"), p, log=None)
    run = job.runs["A"]
    run.seen[:] = True
    if a.images:
        run.seen[a.images:] = False
    D = truth.shape[0]
    r = D * a.apix / a.res
    start = fourier.lowpass_volume(truth / t["noise_sigma"], r, width=2.0)
    rng = np.random.default_rng(1000 + a.seed)
    starts = [("truth", start)]
    if a.job:
        v = fourier.lowpass_volume(io.read_mrc(os.path.join(a.dir, "out", "half_map_A.mrc"))[0], r, width=2.0)
        starts.append(("job", scaled_like(v, start)))
    for k in range(a.starts):
        v = random_initial_model(D, run.rp, r, rng)
        starts.append((f"random {k + 1}", scaled_like(v, start)))
    sel = np.sort(np.random.default_rng(7).permutation(len(run.idx))[:a.score_images])
    X, C, m = run.batch_points(sel, run.r_max)
    s2 = initial_noise(run.shell, X, m)  # one noise model for every score
    print(f"# {vars(a)}", flush=True)
    maps = [v for _, v in starts]
    for it in range(a.passes + 1):
        t0 = time.time()
        cells = []
        for j, (name, _) in enumerate(starts):
            model_from_map(run, maps[j])
            score = float(np.mean(run.evidence(X, C, m, s2)))
            low, _ = band_fsc(maps[j], truth, a.apix)
            cells.append(f"{name} {score:.4f} {low:.2f}")
            if it < a.passes:
                maps[j] = fourier.lowpass_volume(run.final_pass(), r + 1.0, width=2.0)
        print(f"pass {it}: " + " | ".join(cells) + f"  ({time.time() - t0:.0f} s)", flush=True)


def scaled_like(v, ref):
    """``v`` scaled to ``ref``'s power (the starts compete at one power, not at their draws')."""
    return v * np.linalg.norm(ref) / max(np.linalg.norm(v), 1e-30)


if __name__ == "__main__":
    main()

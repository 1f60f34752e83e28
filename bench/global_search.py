#!/usr/bin/env python
"""How much pose information do the data hold? A global search of each image against the *true* map.

    .venv/bin/python bench/global_search.py --realistic --junk 0.2 --n 4000 --max-res 10

Simulates the case exactly as ``bench/hard.py`` does (same seeds), takes the first 1,500 particles of half A,
and runs the job's final pass (global search at the maximum resolution, T = 1, pose polish) against the true
map, with the per-shell noise model of 300 of the images. Prints the median angular error of the good
particles (after the best global rotation, both hands) and the fractions within 10 and 20 deg, overall and
by defocus. The bound any ab-initio job on these images can hope to reach.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np
from hard import JOB_PARAMS, add_case_arguments, good_pose_errors, model_from_map, simulate_case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(ap, n=4000)
    ap.add_argument("--max-res", type=float, default=10.0)
    a = ap.parse_args()

    from scipion_abinitrefine.engine import io
    from scipion_abinitrefine.engine.job import Job, JobParams

    d = tempfile.mkdtemp(prefix="gsearch_")
    truth, t = simulate_case(d, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix)
    p = JobParams(**{**JOB_PARAMS, "max_res_A": a.max_res}, n_starts=1, target_ess_fraction=0.0, backend="cpu",
                  seed=a.seed)
    run = Job(io.read_star(os.path.join(d, "p.star")), os.path.join(d, "out"), p, log=None).runs["A"]
    model_from_map(run, truth / t["noise_sigma"])
    k = min(1500, len(run.idx))
    run.seen[:k] = True
    run.final_pass()
    g = run.idx[:k]
    good = ~t["junk"][g]
    err = good_pose_errors(run.R[:k], g, t)
    print(f"{vars(a)}: {good.sum()} good particles, median error {np.median(err):.1f} deg, within 10 deg "
          f"{np.mean(err < 10):.2f}, within 20 deg {np.mean(err < 20):.2f}")
    df = t["ctf"].defocus_u[g][good]
    for lo, hi in ((0, 10000), (10000, 20000), (20000, 40000)):
        s = (df >= lo) & (df < hi)
        if s.any():
            print(f"  defocus {lo / 1e4:g}-{hi / 1e4:g} um: {s.sum()} particles, within 10 deg "
                  f"{np.mean(err[s] < 10):.2f}")


if __name__ == "__main__":
    main()

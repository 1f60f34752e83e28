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
from hard import JOB_PARAMS, simulate_case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="demo")
    ap.add_argument("--snr", type=float, default=0.01)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--junk", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--realistic", action="store_true")
    ap.add_argument("--max-res", type=float, default=10.0)
    a = ap.parse_args()

    from scipion_abinitrefine.engine import io, so3
    from scipion_abinitrefine.engine.job import Job, JobParams
    from scipion_abinitrefine.engine.noise import initial_noise
    from scipion_abinitrefine.testing import metrics

    d = tempfile.mkdtemp(prefix="gsearch_")
    truth, t = simulate_case(d, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic)
    p = JobParams(**{**JOB_PARAMS, "max_res_A": a.max_res}, n_starts=1, target_ess_fraction=0.0, backend="cpu",
                  seed=a.seed)
    run = Job(io.read_star(os.path.join(d, "p.star")), os.path.join(d, "out"), p, log=None).runs["A"]
    run.set_working_radius(run.r_max)
    run.set_model_volume(truth / t["noise_sigma"])
    X, C, m = run.batch_points(np.arange(300), run.r_max)
    run.s2_shell = initial_noise(run.shell, X, m)
    k = min(1500, len(run.idx))
    run.seen[:k] = True
    run.final_pass()
    g = run.idx[:k]
    good = ~t["junk"][g]
    R_true = so3.euler_to_matrix(t["rot"][g], t["tilt"][g], t["psi"][g])
    err, _ = metrics.pose_errors(run.R[:k][good].astype(np.float64), R_true[good])
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

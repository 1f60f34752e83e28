#!/usr/bin/env python
"""How the SGD's per-shell noise model compares with the images' own power along the resolution ramp.

    .venv/bin/python bench/noise_shells.py DIR --params "$P" --at 0 199 230 260 300 340

``DIR`` is a case directory of ``bench/hard.py`` (its ``p.star`` / ``p.mrcs``). Steps one random start of
half A (the even particles) and, at the given iterations, prints for every shell up to one past the current
Fourier radius the noise model's variance over the mean power of 1,000 of the half's images at that shell
(normalised as the search sees them). At low SNR the images' power is mostly noise, so ~1 is a right
estimate and >1 an over-estimate; inside the radius a value below 1 is the signal the model explains.
Session 26 used it to see that, on coloured noise, the shells the ramp reaches late start 1.5-2.5x too
noisy (bench/RESULTS.rst).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="a bench/hard.py case directory (p.star, p.mrcs)")
    ap.add_argument("--params", default="{}", help="JSON overrides of the job parameters (as bench/hard.py takes)")
    ap.add_argument("--at", type=int, nargs="+", default=[0, 199, 230, 260, 300, 340],
                    help="iterations at which to print the ratios")
    ap.add_argument("--seed", type=int, default=1, help="the random start's seed")
    a = ap.parse_args()
    from scipion_abinitrefine.engine import io, sgd
    from scipion_abinitrefine.engine.noise import initial_noise
    from scipion_abinitrefine.engine.params import JobParams
    from scipion_abinitrefine.engine.reconstruct import image_points

    parts = io.read_star(os.path.join(a.dir, "p.star"))
    p = JobParams(**json.loads(a.params)).sgd_params()  # a job's --params (unknown names refused)
    idx = np.arange(0, len(parts), 2)
    run = sgd.SGDRun(parts, idx, p, name="A", rng_seed=a.seed)
    X, _ = image_points(parts, idx[:1000], run.rp, run.kx, run.ky)
    power = initial_noise(run.shell, X, len(run.kx))  # the images' mean power per shell, at every shell
    for it in range(max(a.at) + 1):
        entry = run.step()
        if it in a.at:
            r = entry["radius"]
            shells = range(1, min(len(power), int(r) + 2))
            ratios = " ".join(f"{k}:{run.s2_shell[k] / power[k]:.2f}" for k in shells)
            print(f"iteration {it:4d}  radius {r:5.2f} px ({entry['resolution_A']:5.1f} A)  {ratios}", flush=True)


if __name__ == "__main__":
    main()

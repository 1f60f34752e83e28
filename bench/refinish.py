#!/usr/bin/env python
"""Redo a kept ``bench/hard.py`` case's final stage (final pass, half-maps, verdict) with today's code.

    .venv/bin/python bench/refinish.py DIR [case options of hard.py] --out bench/results/refinish.jsonl

``DIR/out`` must hold the job's checkpoint at stage "final" (``hard.py`` keeps it); the row holds both of
the verdict's pose tests (``pose_agreement``: the SGD's models; ``map_pose_agreement``: the half-maps),
and, with the case's options, the maps and poses scored against the truth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchutil import git_rev
from hard import add_case_arguments, evaluate, simulate_case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    add_case_arguments(ap)
    ap.add_argument("--raw-maps", action="store_true",
                    help="the half-maps' pose test on the maps as they are, not shrunk by the FSC (a comparison)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "refinish.jsonl"))
    a = ap.parse_args()

    from scipion_abinitrefine.engine import io, outdir, threads, verdict
    from scipion_abinitrefine.engine.job import Job, JobParams

    threads.limit(0)
    if a.raw_maps:
        from scipion_abinitrefine.engine import fsc

        fsc.filter_by_shell = lambda vol, w: vol
    out_dir = os.path.join(a.dir, "out")
    ps = io.read_star(os.path.join(a.dir, "p.star"))
    with np.load(os.path.join(out_dir, outdir.CHECKPOINT)) as z:
        job = Job(ps, out_dir, JobParams(**json.loads(z["params"].tobytes().decode())), log=lambda *x, **k: None)
    job.load()
    if job.stage != "final":
        sys.exit(f"{out_dir}: the checkpoint is at stage {job.stage!r}, not 'final'")
    t0 = time.time()
    res = job.finish()
    c = res["convergence"]
    row = dict(dir=a.dir, shape=a.shape, snr=a.snr, n=a.n, junk=a.junk, seed=a.seed, realistic=a.realistic,
               verdict=res["verdict"], message=c["message"], pose_agreement=c["pose_agreement"],
               map_pose_agreement=c["map_pose_agreement"], worse_half=c.get("worse_half"),
               gold_standard_A=res["resolution_A"], seconds_finish=time.time() - t0, rev=git_rev(), raw_maps=a.raw_maps)
    truth, t = simulate_case(a.dir, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix, write=False)
    row.update(evaluate(out_dir, truth, t, a.apix))
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    spread = c["pose_agreement"]["ess_fraction"]
    for name, p, sp in (("SGD models", c["pose_agreement"], None), ("half-maps", c["map_pose_agreement"], spread)):
        ax = verdict.particle_axis(p, sp)
        mp = p.get("map_preference")
        print(f"{name:10s}: same pose {100 * p['fraction']:.1f}%, agreeing "
              f"{100 * verdict.agreeing_fraction(p, sp):.1f}% (axis "
              f"{'%.1fx' % (p['axis']['off_fraction'] / p['axis']['chance']) if p['axis'] else '-'}"
              f"{', counted' if ax else ''}), ESS {100 * p['ess_fraction']:.2f}%"
              + (f", map preference z {mp['a_minus_b'] / mp['se']:+.1f} "
                 f"({100 * mp['a_minus_b'] / mp['evidence']:+.2f}%)" if mp else ""))
    print(f"verdict: {res['verdict']}; FSC(truth) 0.5 {row['fsc05_A']:.1f} A, median error "
          f"{row['median_err_deg']:.0f} deg; {res['convergence']['message']}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The verdict's pose test (``halves.cross_pose_agreement``) on a finished ``bench/hard.py`` case, after the fact.

    .venv/bin/python bench/pose_agreement.py /tmp/hard_XXXX --seed 0

``DIR`` holds the case's ``p.star`` / ``p.mrcs`` and the job's ``out/``. Each half's final half-map becomes
its model, the per-shell noise model comes from 300 of its images, and the final poses from
``out/particles.star``; then 1,000 images per half (the job's count) are searched against the other half's
map, and against their own (which map the images prefer: ``halves.map_preference``). The job itself uses
its own noise models, and the SGD's models as well as its half-maps shrunk by the halves' FSC
(``Job.pose_tests``): the pose numbers differ by a few per cent, the evidence is on another scale. For the
job's own numbers on a kept case, ``bench/refinish.py``. ``--truth`` with the case's options (those of
``hard.py``): each half-map and its particles' poses scored against the truth as well.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np
from hard import add_case_arguments, half_truth_scores, halves_from_case, simulate_case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    add_case_arguments(ap)
    ap.add_argument("--truth", action="store_true", help="score each half against the case's truth")
    ap.add_argument("--images", type=int, default=None, help="images per half (default: the job's)")
    ap.add_argument("--save", help="write the per-image relative rotations and angles here (.npz)")
    a = ap.parse_args()

    from scipion_abinitrefine.engine import halves, io, so3, verdict

    out = io.read_star(os.path.join(a.dir, "out", "particles.star"))
    A, B = halves_from_case(a.dir, a.seed)
    t0 = time.time()
    res = halves.cross_pose_agreement(A, B, seed=a.seed, details=True,
                                      **({"n_images": a.images} if a.images else {}))
    print(f"  cross_pose_agreement: {time.time() - t0:.1f} s")
    Q, ang = res.pop("Q"), res.pop("angles_deg")
    ax = res.pop("axis")
    print(a.dir, res, "agreeing (with the particle's axis):", verdict.agreeing_fraction({**res, "axis": ax}))
    if ax:
        print(f"  pose axis {np.round(ax['axis'], 2)}: {100 * ax['fraction']:.1f}% of images, "
              f"{100 * ax['off_fraction']:.1f}% of the disagreeing (chance {100 * ax['chance']:.1f}%)")
    off = ang >= halves.CROSS_TOLERANCE_DEG
    qa = so3.geodesic_deg(Q[off], np.eye(3)[None])
    print("  disagreeing images' relative rotation angles (deg, histogram by 20):",
          np.histogram(qa, bins=np.arange(0, 200, 20))[0].tolist())
    for name, h in sorted(res.pop("per_half").items()):
        print(f"  half {name}'s images: {100 * h['fraction']:.0f}% same pose; mean evidence against their own map "
              f"{h['evidence_own']:.3f}, against the other half's {h['evidence_other']:.3f} nat")
    mp = res["map_preference"]
    print(f"  A's map - B's map, evidence over both halves' images: {mp['a_minus_b']:+.3f} +- {mp['se']:.3f} nat "
          f"per image (z {mp['a_minus_b'] / mp['se']:+.1f}; mean evidence {mp['evidence']:.2f})")
    if a.truth:
        truth, t = simulate_case(a.dir, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix, write=False)
        A, _ = io.read_mrc(os.path.join(a.dir, "out", "half_map_A.mrc"))
        B, _ = io.read_mrc(os.path.join(a.dir, "out", "half_map_B.mrc"))
        for name, sc in half_truth_scores(A, B, out, truth, t, a.apix).items():
            print(f"  half {name} against the truth: FSC 0.5 {sc['fsc05_A']:.1f} A, median error "
                  f"{sc['median_err_deg']:.1f} deg, {100 * sc['within10']:.0f}% within 10 deg")
    if a.save:
        np.savez(a.save, Q=Q, angles=ang)


if __name__ == "__main__":
    main()

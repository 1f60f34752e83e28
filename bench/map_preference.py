#!/usr/bin/env python
"""The verdict's map preference (``halves.map_preference``) when half B's map is spoiled in known ways.

    .venv/bin/python bench/map_preference.py /tmp/hard_XXXX --seed 2

``DIR`` is a finished ``bench/hard.py`` case whose two halves are right. Half A keeps its final half-map; half
B's is replaced by a low-passed copy (a half that is merely less resolved), by a mix with a copy of itself
turned 60 deg about a fixed axis (a half partly wrong), or by its average over turns of -30..30 deg about
that axis (a smeared half). Each variant is scored as ``bench/pose_agreement.py`` scores a case: the images
of both halves (1,000 each) against both maps, the mean difference of their log evidence A - B, its standard
error and its share of the mean evidence, and whether the verdict's rule (``verdict.worse_half``) flags it.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np
from hard import halves_from_case

AXIS = np.array([0.3, 0.5, 0.81])


def turned(vol, deg):
    from scipion_abinitrefine.engine import align, so3

    R = so3.axis_angle_to_matrix(np.radians(deg) * AXIS / np.linalg.norm(AXIS))
    return align.transform_map(vol, align.MapAlignment(R=R, shift=np.zeros(3), flip=False, score=0.0))


def variants(B, box, apix):
    from scipion_abinitrefine.engine import fourier

    out = {"as is": B}
    for res in (16.0, 22.0):
        out[f"low-passed to {res:g} A"] = fourier.lowpass_volume(B, box * apix / res)
    for w in (0.3, 0.4, 0.5):
        out[f"{100 - 100 * w:.0f}:{100 * w:.0f} with itself turned 60 deg"] = (1 - w) * B + w * turned(B, 60.0)
    out["smeared over -30..30 deg"] = np.mean([turned(B, x) for x in (-30, -15, 0, 15, 30)], 0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from scipion_abinitrefine.engine import halves, io, verdict

    ps = io.read_star(os.path.join(a.dir, "p.star"))
    A, _ = io.read_mrc(os.path.join(a.dir, "out", "half_map_A.mrc"))
    B, _ = io.read_mrc(os.path.join(a.dir, "out", "half_map_B.mrc"))
    print(f"{'half B':36s} {'A - B (nat/image)':>20s} {'z':>6s} {'of evidence':>12s} {'same pose':>10s}  flagged")
    for name, Bv in variants(B, ps.box, ps.apix).items():
        runs = halves_from_case(a.dir, a.seed, maps=(A, Bv))
        res = halves.cross_pose_agreement(*runs, seed=a.seed)
        mp = res["map_preference"]
        w = verdict.worse_half(res)
        print(f"{name:36s} {mp['a_minus_b']:+11.3f} +- {mp['se']:.3f} {mp['a_minus_b'] / mp['se']:+6.1f} "
              f"{100 * mp['a_minus_b'] / mp['evidence']:+11.1f}% {100 * res['fraction']:9.0f}%  "
              f"{'half ' + w['worse'] if w else '-'}", flush=True)


if __name__ == "__main__":
    main()

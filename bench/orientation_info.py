#!/usr/bin/env python
"""How much a turn of the particle changes its image, against the noise of a given SNR (per image, in nats).

    .venv/bin/python bench/orientation_info.py --snr 0.01 --models bench/structures/1tii.pdb:2.5 ...

For random poses R and R' = R turned by 10 or 30 deg about a random axis: the mean of
||P_R x - P_R' x||^2 / (2 sigma^2), projections of the map low-passed at each resolution, sigma^2 the noise
variance that gives the SNR (signal variance over the box of the full-resolution projections, the
simulator's definition; no CTF). It is the log-likelihood gap between the two poses of a noisy image: how
well one image tells them apart at that resolution. Phantoms (demo, compact, elongated, flat; box 64,
2 A/px) and atomic models (``PATH:APIX``, see bench/structures.sh) side by side.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import numpy as np


def info_row(vol, apix, snr, resolutions, degrees, n=150, seed=0):
    from scipion_abinitrefine.engine import fourier, simulate, so3

    rng = np.random.default_rng(seed)
    R = so3.random_rotations(n, rng)
    ax = rng.normal(size=(n, 3))
    ax /= np.linalg.norm(ax, axis=1, keepdims=True)
    s2 = simulate.project(vol, R).var(axis=(1, 2)).mean() / snr
    F = fourier.ft3c(vol.astype(np.float64))
    k = fourier.radial_index(vol.shape) / (vol.shape[0] * apix)
    out = []
    for res in resolutions:
        low = fourier.ift3c(F * (k <= 1.0 / res)).real.astype(np.float32)
        P0 = simulate.project(low, R)
        for deg in degrees:
            R2 = np.einsum("nij,njk->nik", R, so3.axis_angle_to_matrix(ax * np.radians(deg)))
            out.append(float(((P0 - simulate.project(low, R2)) ** 2).sum(axis=(1, 2)).mean() / (2 * s2)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snr", type=float, default=0.01)
    ap.add_argument("--res", type=float, nargs="+", default=[35.0, 25.0, 20.0, 15.0, 10.0])
    ap.add_argument("--deg", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--phantoms", nargs="*", default=["demo:7", "compact:101", "elongated:102", "flat:101"],
                    help="SHAPE:SEED, box 64 at 2 A/px")
    ap.add_argument("--models", nargs="*", default=[], help="PDB:APIX, box 64")
    a = ap.parse_args()
    from scipion_abinitrefine.engine import simulate

    cases = [(f"{s} (phantom {sd})", simulate.make_phantom(64, 2.0, seed=int(sd), shape=s), 2.0)
             for s, sd in (p.split(":") for p in a.phantoms)]
    cases += [(f"{os.path.basename(m)} at {ap_} A/px", simulate.map_from_pdb(m, 64, float(ap_)), float(ap_))
              for m, ap_ in (x.rsplit(":", 1) for x in a.models)]
    head = "  ".join(f"{r:g} A {d:g} deg" for r in a.res for d in a.deg)
    print(f"SNR {a.snr}: nats per image\n{'structure':28s}  {head}")
    for name, vol, apix in cases:
        vals = info_row(vol, apix, a.snr, a.res, a.deg)
        print(f"{name:28s}  " + "  ".join(f"{v:{len(f'{r:g} A {d:g} deg')}.2f}" for v, (r, d) in
                                          zip(vals, [(r, d) for r in a.res for d in a.deg])))


if __name__ == "__main__":
    main()

"""Cost model of one SGD iteration (issue 17), fitted to bench/scale.py's rows.

    .venv/bin/python bench/cost_model.py bench/results/scale.jsonl

Time per iteration = sum of coefficients x work counts, the counts computed from the box, the Fourier
radius, the minibatch and the search's own schedule (levels, shifts, beam):

- ``gemm``   level 0's likelihoods: 2 B S nR 2 m0 flops (one real matrix product)
- ``pairs``  level 0's per-pair work (exponentials, maxima, beam selection): B S nR
- ``fine``   the finer levels and the samples: B K 32 m per level (slices, phases, products) + B (K + M) m
- ``volume`` the working box's update and constraints: (2 Dw)^3 log2 (2 Dw)^3
- ``images`` the minibatch's preparation at the full box: B D^2 log2 D^2

A non-negative least-squares fit over the rows, then measured vs predicted per row, then a projection to
100k particles at box 256 to 3 A on one H200 from the same counts at stated device rates (an estimate, not
a measurement: no GPU has been lent to this project yet).
"""
from __future__ import annotations

import json
import sys

import numpy as np
from scipy.optimize import nnls

NAMES = ["gemm", "pairs", "fine", "volume", "images"]


def counts(box, r, Dw, B=300, K=8, M=32, pad=2):
    from scipion_abinitrefine.engine import fourier, search, so3

    rp = 0.5 * 0.85 * box
    ps = search.PoseSearch(box, rp, 0.1 * box, K)
    radii = ps.levels(r)
    kx, ky = fourier.half_plane_points(r)
    m = [fourier.n_points_within(kx, ky, x) for x in radii]
    S = len(ps.base_shifts(radii[0])[0])
    nR = len(so3.base_grid())
    n = (pad * Dw) ** 3
    return np.array([2.0 * B * S * nR * 2 * m[0], float(B * S * nR),
                     float(sum(B * K * 32 * mm for mm in m[1:]) + B * (K + M) * m[-1]),
                     n * np.log2(n), B * box**2 * np.log2(box**2)])


def main(path):
    rows = [json.loads(ln) for ln in open(path) if ln.strip()]
    A = np.array([counts(r["box"], r["radius"], r["box"] if r["full_box"] else r["working_box"]) for r in rows])
    t = np.array([r["s_per_iter"] for r in rows])
    scale = A.max(axis=0)
    coef, _ = nnls(A / scale, t)
    coef /= scale
    pred = A @ coef
    print("coefficients (s per unit): " + ", ".join(f"{n} {c:.3g}" for n, c in zip(NAMES, coef)))
    print(f"{'box':>4} {'res':>5} {'Dw':>5} {'measured':>9} {'predicted':>9}")
    for r, p in zip(rows, pred):
        dw = "full" if r["full_box"] else r["working_box"]
        print(f"{r['box']:4d} {r['res_A']:5.1f} {dw!s:>5} {r['s_per_iter']:9.2f} {p:9.2f}")
    err = np.abs(pred - t) / t
    print(f"median |error| {np.median(err):.0%}, max {err.max():.0%}")
    return coef


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/scale.jsonl")

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


# Assumed H200 rates relative to this 2-core machine (not measured: no GPU lent yet): the level-0 product
# at 25 TFLOP/s (cuBLAS SGEMM, ~40% of the fp32 peak); every other term memory- or latency-bound, at 100x
# the 2-core rate (4.8 TB/s HBM against ~40 GB/s effective here, less for the small launches).
GPU_GEMM_FLOPS = 25e12
GPU_OTHER_SPEEDUP = 100.0


def project(coef, box=256, res=3.0, n_particles=100_000, n_iters=600, final_batch=128):
    """Predicted time of a job: n_iters SGD iterations per half (the schedule's ramp to res) + the final pass
    (every particle searched once at the maximum resolution with the final beam of 32)."""
    from scipion_abinitrefine.engine import fourier

    r = min(box / res, box / 2 - 1)  # box 256 at 1 A/px: 3 A is radius 85
    Dw = fourier.working_box(r, box)
    it = counts(box, r, Dw)
    fin = counts(box, r, Dw, B=final_batch, K=32, M=0) * (n_particles / 2 / final_batch)
    cpu = lambda c: float(c @ coef)  # noqa: E731
    gpu = lambda c: c[0] / GPU_GEMM_FLOPS + float(c[1:] @ coef[1:]) / GPU_OTHER_SPEEDUP  # noqa: E731
    for name, f in (("2 CPU cores (fitted)", cpu), ("one H200 (assumed rates)", gpu)):
        t_it, t_fin = f(it), f(fin)
        total = 2 * (n_iters * t_it + t_fin)
        print(f"{name}: {t_it:.2f} s per iteration at {res:g} A (working box {Dw}), final pass {t_fin / 3600:.2f} h "
              f"per half; {n_iters} iterations x 2 halves + final passes = {total / 3600:.1f} h")


if __name__ == "__main__":
    project(main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/scale.jsonl"))

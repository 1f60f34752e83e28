"""Do reference-free 2D class averages of one half hold the views the 3D SGD cannot find? (issue 10)

    .venv/bin/python bench/classes2d.py --shape bench/structures/1tii.pdb --apix 2.5 --snr 0.02 --realistic \
        --junk 0.2 --classes 30 --iters 30

An experiment toward a start that is right to ~22-25 A (bench/RESULTS.rst, sessions 16-21): the SGD's random
starts settle on a smeared optimum. The classic way round it averages 2D images first. This is a plain
expectation-maximisation 2D classifier, restricted to the Fourier disc within ``--res`` A. The images are
whitened by their mean power per shell, which is mostly noise at these SNRs, and carry their CTF. The
search spans the in-plane rotation (``--psi-step``) and a 5 x 5 shift grid. Each class average is a
Wiener sum over its members.

Scored on the truth: the members' true viewing directions (the third row of the rotation) should cluster
about one direction per class. Reported: the posterior-weighted median angle of a class's members to the
direction they share (random classes of the same sizes, also reported: 82-88 deg), and each class's share of
the images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hard import add_case_arguments, simulate_images  # noqa: E402

from scipion_abinitrefine.engine import ctf as ctfmod  # noqa: E402
from scipion_abinitrefine.engine import fourier, so3  # noqa: E402


def disc_points(radius: float):
    """Integer frequency points (kx, ky) of the full disc 0 < |k| <= radius."""
    r = int(np.ceil(radius))
    ky, kx = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    kx, ky = kx.ravel(), ky.ravel()
    rr = np.hypot(kx, ky)
    keep = (rr <= radius) & (rr > 0.5)
    return kx[keep], ky[keep]


def rotation_matrix(kx, ky, psi_deg: float) -> sp.csr_matrix:
    """Sparse bilinear interpolation M with (M @ a)[p] = a at point p turned by -psi (a on the points)."""
    idx = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(kx, ky))}
    c, s = np.cos(np.radians(psi_deg)), np.sin(np.radians(psi_deg))
    rows, cols, vals = [], [], []
    for p, (x, y) in enumerate(zip(kx, ky)):
        u, v = c * x + s * y, -s * x + c * y
        x0, y0 = int(np.floor(u)), int(np.floor(v))
        fx, fy = u - x0, v - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            j = idx.get((x0 + dx, y0 + dy))
            if j is not None and w > 1e-6:
                rows.append(p)
                cols.append(j)
                vals.append(w)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(kx), len(kx)), dtype=np.float32)


def classify(X, C, kx, ky, box, K, n_psi, iters, rng, shifts_px=1.5, chunk=500, log=print):
    """EM 2D classification. X: whitened image points (n, m) complex64; C: CTF at the points (n, m).
    Returns class averages A (K, m) and the posterior class weights P (n, K)."""
    n, m = X.shape
    psis = np.arange(n_psi) * 360.0 / n_psi
    Ms = [rotation_matrix(kx, ky, p) for p in psis]  # ref_psi = M_psi @ A
    MTs = [M.T.tocsr() for M in Ms]  # the adjoint: a reference's frame back to its class's
    g = np.arange(-2, 3) * shifts_px
    tx, ty = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    S = np.exp(-2j * np.pi * (np.outer(tx, kx) + np.outer(ty, ky)) / box).astype(np.complex64)  # (T, m)
    T = len(tx)
    C2 = (C * C).astype(np.float32)
    # start: Wiener averages of random subsets, each image turned by a random psi
    lab = rng.integers(0, K, n)
    ps0 = rng.integers(0, n_psi, n)
    num = np.zeros((K, m), np.complex64)
    den = np.zeros((K, m), np.float32)
    for i in range(n):
        num[lab[i]] += MTs[ps0[i]] @ (C[i] * X[i])
        den[lab[i]] += MTs[ps0[i]] @ C2[i]
    A = num / (den + 1.0)
    P = None
    for it in range(iters):
        refs = np.stack([np.stack([M @ A[k] for M in Ms]) for k in range(K)])  # (K, Ps, m)
        refs = refs.reshape(K * n_psi, m)
        Rr = np.concatenate([refs.real, refs.imag], axis=1).T.astype(np.float32)  # (2m, KP)
        R2 = (np.abs(refs) ** 2).T.astype(np.float32)  # (m, KP)
        num = np.zeros((K * n_psi, m), np.complex64)
        den = np.zeros((K * n_psi, m), np.float32)
        P = np.zeros((n, K), np.float32)
        ll_sum = 0.0
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            Y = (X[a:b] * C[a:b])[:, None, :] * np.conj(S)[None]  # (c, T, m): the image shifted back
            Yr = np.concatenate([Y.real, Y.imag], axis=2).reshape(-1, 2 * m)
            cross = (Yr @ Rr).reshape(b - a, T, K * n_psi)  # Re(Y conj(R)) = Re(conj(X) C S R)
            quad = 0.5 * (C2[a:b] @ R2)  # (c, KP)
            ll = cross - quad[:, None, :]
            mx = ll.max(axis=(1, 2), keepdims=True)
            w = np.exp(ll - mx)
            z = w.sum(axis=(1, 2), keepdims=True)
            w /= z
            ll_sum += float((mx[:, 0, 0] + np.log(z[:, 0, 0])).sum())
            wr = w.sum(axis=1)  # (c, KP)
            P[a:b] = wr.reshape(b - a, K, n_psi).sum(axis=2)
            # M-step sums in each reference's frame: num = sum_i,t w Y, den = sum_i,t w C^2
            Yc = Y.reshape(-1, m)
            num += (w.reshape(-1, K * n_psi).T.astype(np.complex64) @ Yc)
            den += wr.T @ C2[a:b]
        # back to each class's frame (the adjoint of the turn) and a Wiener average
        num = num.reshape(K, n_psi, m)
        den = den.reshape(K, n_psi, m)
        numk = np.zeros((K, m), np.complex64)
        denk = np.zeros((K, m), np.float32)
        for j, MT in enumerate(MTs):
            numk += (MT @ num[:, j].T).T
            denk += (MT @ den[:, j].T).T
        A = numk / (denk + 1.0)
        log(f"iter {it + 1}: mean log evidence {ll_sum / n:.3f}, class sizes {np.sort(P.sum(0))[::-1][:6].round(0)}")
    return A, P


def view_spread(P, R_true, good):
    """Per class: (share of the images, posterior-weighted median angle of its good members' viewing
    directions to the direction they share)."""
    d = R_true[:, 2, :]
    out = []
    for k in range(P.shape[1]):
        w = P[:, k] * good
        if w.sum() < 1:
            out.append((float(P[:, k].mean()), float("nan")))
            continue
        # the shared direction: the members' weighted mean
        c = (w[:, None] * d).sum(0)
        c /= np.linalg.norm(c) + 1e-12
        ang = np.degrees(np.arccos(np.clip(d @ c, -1, 1)))
        order = np.argsort(ang)
        cw = np.cumsum(w[order])
        med = float(ang[order][np.searchsorted(cw, 0.5 * cw[-1])])
        out.append((float(P[:, k].mean()), med))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(ap)  # --n particles are simulated; half A (every other one) is classified
    ap.add_argument("--classes", type=int, default=30)
    ap.add_argument("--iters", type=int, default=25)
    ap.add_argument("--res", type=float, default=20.0, help="resolution limit of the classification (A)")
    ap.add_argument("--psi-step", type=float, default=10.0)
    ap.add_argument("--out", default=None, help="append a JSON row here")
    a = ap.parse_args()
    box = 64
    t0 = time.time()
    _, images, t = simulate_images(a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, box, a.apix)
    idx = np.arange(0, a.n, 2)
    radius = box * a.apix / a.res
    kx, ky = disc_points(radius)
    F = fourier.ft2c(images[idx])
    X = F[:, ky + box // 2, kx + box // 2].astype(np.complex64)
    C = ctfmod.ctf_at(t["ctf"], idx, kx / (box * a.apix), ky / (box * a.apix))
    shell = np.rint(np.hypot(kx, ky)).astype(int)
    pw = np.bincount(shell, weights=(np.abs(X) ** 2).mean(0)) / np.maximum(np.bincount(shell), 1)
    X = (X / np.sqrt(pw[shell])).astype(np.complex64)
    rng = np.random.default_rng(a.seed)
    _, P = classify(X, C, kx, ky, box, a.classes, int(round(360 / a.psi_step)), a.iters, rng)
    R_true = so3.euler_to_matrix(t["rot"], t["tilt"], t["psi"])[idx]
    good = ~t["junk"][idx]
    vs = view_spread(P, R_true, good)
    # chance: the same for a random assignment of the same sizes
    Pr = P[rng.permutation(len(idx))]
    vr = view_spread(Pr, R_true, good)
    share = np.array([s for s, _ in vs])
    med = np.array([m for _, m in vs])
    medr = np.array([m for _, m in vr])
    order = np.argsort(-share)
    print("class share / median angle to the shared view (random members of the same size):")
    for k in order:
        print(f"  {100 * share[k]:5.1f}%  {med[k]:5.1f} deg  ({medr[k]:5.1f})")
    wmed = float(np.nansum(share * med) / np.nansum(share))
    wmedr = float(np.nansum(share * medr) / np.nansum(share))
    junk_share = float((P * t["junk"][idx][:, None]).sum(0).max() / max(t["junk"][idx].sum(), 1))
    print(f"share-weighted median view spread {wmed:.1f} deg (random {wmedr:.1f}); {time.time() - t0:.0f} s")
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(dict(shape=a.shape, snr=a.snr, n=a.n, junk=a.junk, realistic=a.realistic,
                                    seed=a.seed, classes=a.classes, iters=a.iters, res=a.res,
                                    spread=wmed, spread_random=wmedr, shares=share.tolist(),
                                    medians=med.tolist(), junk_max_share=junk_share,
                                    seconds=time.time() - t0)) + "\n")


if __name__ == "__main__":
    main()

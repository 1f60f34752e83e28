"""The job's particle outputs: particles.star (the used particles with their poses, half-set and scores) and
unused.star (the others; with junk classes, each with its class and its probability)."""
from __future__ import annotations

import os

import numpy as np

from . import classes, io, names, outliers, so3


def write_particles(ps, runs, half: np.ndarray, p, out_dir: str, say) -> tuple:
    """Write particles.star and unused.star from the final pass of both halves' SGD runs ``runs`` (RELION's
    conventions: ZYZ angles, origins in A); returns (the used particles' set, used rows, unused rows).
    Used = seen by the SGD, less the particles most probable in a junk class and, with
    ``p.exclude_junk``, those explained no better than by noise and the outliers."""
    apix = ps.apix
    n = len(ps)
    rot = np.zeros(n)
    tilt = np.zeros(n)
    psi = np.zeros(n)
    ox = np.zeros(n)
    oy = np.zeros(n)
    seen = np.zeros(n, bool)
    loglik = np.full(n, np.nan)
    maxprob = np.full(n, np.nan)
    outlier_w = np.ones(n)
    select_z = np.full(n, np.nan)
    pclass = np.full((n, 1 + p.junk_classes), np.nan)
    for run in runs:
        g = run.idx[run.seen]
        r_, t_, p_ = so3.matrix_to_euler(run.R[run.seen].astype(np.float64))
        rot[g], tilt[g], psi[g] = r_, t_, p_
        ox[g] = run.t[run.seen, 0] * apix
        oy[g] = run.t[run.seen, 1] * apix
        loglik[g] = run.loglik[run.seen]
        maxprob[g] = run.maxprob[run.seen]
        outlier_w[g] = run.outlier_w[run.seen]
        select_z[g] = run.outlier_z[run.seen]
        pclass[g] = run.pclass[run.seen]
        seen[g] = True
    klass, kprob = classes.assignment(pclass)
    if p.junk_classes:
        in_junk = seen & (klass > 1)
        say(f"{int(in_junk.sum())} particles most probably in a junk class go to unused.star")
        seen &= ~in_junk
    if p.exclude_junk:
        junk = seen & (loglik < 0)
        outlier = seen & ~junk & (outlier_w < outliers.OUTLIER_BELOW)
        say(f"{int(junk.sum())} particles explained no better than by noise and {int(outlier.sum())} "
            "outliers (far more power left unexplained than the rest) go to unused.star")
        seen &= ~(junk | outlier)
    used = np.flatnonzero(seen)
    unused = np.flatnonzero(~seen)
    out_ps = ps.with_poses(rot, tilt, psi, ox, oy, half=half)
    out_ps = out_ps._derive(loglik=loglik, maxprob=maxprob, select_z=select_z, class_number=None)
    out_ps = out_ps.subset(used)
    io.write_star(os.path.join(out_dir, names.OUT_PARTICLES), out_ps)
    un = ps.subset(unused)
    if p.junk_classes:  # 0 for particles never scored (not seen by the SGD)
        un.class_number = np.where(np.isnan(kprob[unused]), 0, klass[unused])
        un.maxprob = np.nan_to_num(kprob[unused])
    un.half = None
    un.rot = un.tilt = un.psi = un.origin_x = un.origin_y = None
    io.write_star(os.path.join(out_dir, names.OUT_UNUSED), un)
    return out_ps, used, unused

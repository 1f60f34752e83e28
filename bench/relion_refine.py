"""What a standard refinement reaches from a right low-resolution model: RELION's global 3D auto-refine.

    .venv/bin/python bench/relion_refine.py --shape bench/structures/1tii.pdb --apix 2.5 --n 10000 --ini-high 30

One simulated case (the same seeds give the same images as ``bench/hard.py``'s cell) is refined by Debian's
RELION 3.1 ``relion_refine_mpi --auto_refine`` (3 MPI ranks, gold-standard half-sets, global search from healpix
order 2, local from order 4, to its own convergence) from the *true* map low-passed to ``--ini-high``: the start
a user has after any ab-initio job that found the right structure. Its final map and poses are scored against
the truth with the metrics of ``bench/hard.py`` (FSC to the truth at 0.5 / 0.143, median pose error, share
within 10 deg, also up to a pseudo-symmetric mate). Set beside this engine's EM passes from the same low-pass
start it says whether a fixed point below the data's limit is this
project's or any refinement's. Writes one JSON line to ``--out``; CPU time of RELION's ranks included.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from benchutil import git_rev  # noqa: E402

from scipion_abinitrefine.engine import io  # noqa: E402
from scipion_abinitrefine.testing import relion  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    hard.add_case_arguments(ap)
    ap.add_argument("--ini-high", type=float, default=30.0, help="low-pass of the true map RELION starts from (A)")
    ap.add_argument("--diameter", type=float, default=None, help="RELION's mask diameter (A); default 0.85 box")
    ap.add_argument("--ranks", type=int, default=3, help="MPI ranks (auto-refine needs >= 3)")
    ap.add_argument("--offset-range", type=float, default=5,
                    help="global search offsets (px): the simulator's shifts are within 0.04 box (2.6 px at box 64)")
    ap.add_argument("--max-iter", type=int, default=None, help="stop RELION after this many iterations")
    ap.add_argument("--dir", default=None, help="a case directory simulated before (p.star, p.mrcs) to reuse")
    ap.add_argument("--score-iteration", type=int, default=None,
                    help="only score iteration N of a RELION run already in --dir (one still running or stopped)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "relion_refine.jsonl"))
    a = ap.parse_args()
    d = a.dir or tempfile.mkdtemp(prefix="relion_refine_")
    write = not os.path.exists(os.path.join(d, "p.star"))
    truth, t = hard.simulate_case(d, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix, write=write)
    if a.score_iteration is not None:  # reads a run's files: needs no RELION
        print(json.dumps(score_iteration(d, a.score_iteration, truth, t, a.apix)))
        return
    if not relion.available():
        sys.exit(relion.MISSING)
    io.write_mrc(os.path.join(d, "truth.mrc"), truth.astype(np.float32), a.apix)
    diameter = a.diameter or 0.85 * truth.shape[0] * a.apix
    run = relion.run_auto_refine(d, "p.star", "truth.mrc", diameter, a.ini_high, a.ranks, local=False,
                                 offset_range=a.offset_range, max_iter=a.max_iter)
    row = dict(rev=git_rev(), shape=a.shape, apix=a.apix, snr=a.snr, n=a.n, seed=a.seed, junk=a.junk,
               realistic=a.realistic, ini_high_A=a.ini_high, dir=d, **run)
    converged = os.path.exists(os.path.join(d, "relion", "run_data.star"))  # else stopped by --max-iter
    if converged:
        rel = relion.read_relative(os.path.join(d, "relion", "run_data.star"), d)
        vol, _ = io.read_mrc(os.path.join(d, "relion", "run_class001.mrc"))
        h1, _ = io.read_mrc(os.path.join(d, "relion", "run_half1_class001_unfil.mrc"))
        h2, _ = io.read_mrc(os.path.join(d, "relion", "run_half2_class001_unfil.mrc"))
        row["final_map"] = hard.truth_scores(vol, rel, truth, t, a.apix)
        row["unfiltered_halves"] = hard.truth_scores(0.5 * (h1 + h2), rel, truth, t, a.apix)
        row["relion_own_resolution_A"] = relion.own_resolution(os.path.join(d, "relion", "run_model.star"))
    else:
        last = max(int(f[6:9]) for f in os.listdir(os.path.join(d, "relion")) if f.endswith("_data.star")
                   and f.startswith("run_it"))
        row.update(converged=False, **score_iteration(d, last, truth, t, a.apix))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    if not converged:
        print(json.dumps(row))
        return
    s = row["unfiltered_halves"]
    print(f"RELION auto-refine from the truth at {a.ini_high:g} A: FSC(truth) 0.5 {s['fsc05_A']:.1f} A, 0.143 "
          f"{s['fsc0143_A']:.1f} A, median error {s['median_err_deg']:.1f} deg, within 10 deg "
          f"{100 * s['within10']:.1f}% ({100 * s['within10_mate']:.1f}% with mates); its own resolution "
          f"{row['relion_own_resolution_A']:.2f} A; {row['cpu_s']:.0f} CPU-s ({row['wall_s']:.0f} s wall)")


def score_iteration(d, it, truth, t, apix) -> dict:
    """Scores of RELION's iteration ``it`` (its two half-maps averaged, its poses) against the truth."""
    rel = relion.read_relative(os.path.join(d, "relion", f"run_it{it:03d}_data.star"), d)
    h = [io.read_mrc(os.path.join(d, "relion", f"run_it{it:03d}_half{k}_class001.mrc"))[0] for k in (1, 2)]
    own = relion.own_resolution(os.path.join(d, "relion", f"run_it{it:03d}_half1_model.star"))
    return dict(iteration=it, relion_own_resolution_A=own, **hard.truth_scores(0.5 * (h[0] + h[1]), rel, truth, t,
                                                                               apix))


if __name__ == "__main__":
    main()

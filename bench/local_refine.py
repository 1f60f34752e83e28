"""Poses that need no repair (issue 11): RELION's local auto-refine started from this job's outputs.

    .venv/bin/python bench/local_refine.py --n 2000 --snr 0.05 --seed 0

One simulated case (demo phantom, box 64, 2 A/px): this job runs on it with the demo's schedule
(``abinitrefine demo``'s parameters), and the same job from the true map (the oracle: the best the search
can do on these images). Debian's RELION 3.1 then runs ``relion_refine_mpi --auto_refine`` with local searches
from the first iteration (healpix order 4 = 3.7 deg, --sigma_ang 2: +-6 deg; offsets +-3 px) from our
particles.star (poses, half-sets) and map.mrc, as a user chaining into local refinement would.

A control: the same RELION run started from the *true* poses and the true map (same half-sets as ours). It
says how far RELION moves poses that need no repair at all on these images (the width of their posterior and
RELION's sampling), the floor under "how far RELION moves ours".

Measured: the median change RELION makes to our poses (rotation, origin), the median angular error against the
truth of our poses, the oracle's and RELION's (one global rotation fitted, both hands), and the gold-standard
resolution of our half-maps and of RELION's (the same FSC code: masked, phase-randomisation corrected).
Target (issue 11): RELION moves our poses by a median < 1 deg and improves neither their error nor the
resolution by more than 5%. Writes one JSON line to ``--out``; CPU time of RELION's ranks included.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from benchutil import git_rev  # noqa: E402

from scipion_abinitrefine.testing import relion  # noqa: E402


def run_ours(d, truth, t, seed, oracle):
    from scipion_abinitrefine.cli import DEMO_PARAMS
    from scipion_abinitrefine.engine import io
    from scipion_abinitrefine.engine.job import Job, JobParams

    out = os.path.join(d, "oracle" if oracle else "ours")
    over = dict(target_ess_fraction=0.0, n_starts=1) if oracle else {}  # one start: the true map
    p = JobParams(**{**DEMO_PARAMS, **over}, backend="cpu", seed=seed)
    t0, c0 = time.time(), time.process_time()
    job = Job(io.read_star(os.path.join(d, "p.star")), out, p, log=lambda *a, **k: None)
    if oracle:
        for run in job.runs.values():
            run.set_model_volume(truth / t["noise_sigma"])
    job.run_sgd()
    res = job.finish()
    return out, dict(gold_standard_A=res["resolution_A"], verdict=res["verdict"], wall_s=time.time() - t0,
                     cpu_s=time.process_time() - c0)


def truth_dir(d, job_dir, truth, t, apix):
    """A job directory holding the true poses (our half-sets) and the true map, for the control run."""
    from scipion_abinitrefine.engine import io

    out = os.path.join(d, "truth")
    os.makedirs(out, exist_ok=True)
    ps = io.read_star(os.path.join(job_dir, "particles.star"))
    k = ps.stack_index
    ps.rot, ps.tilt, ps.psi = t["rot"][k], t["tilt"][k], t["psi"][k]
    ps.origin_x, ps.origin_y = t["origin_x"][k], t["origin_y"][k]
    ps.loglik = ps.maxprob = None
    io.write_star(os.path.join(out, "particles.star"), ps)
    io.write_mrc(os.path.join(out, "map.mrc"), truth.astype(np.float32), apix)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--snr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ranks", type=int, default=3, help="MPI ranks (auto-refine needs >= 3)")
    ap.add_argument("--ini-high", type=float, default=10.0, help="RELION's initial low-pass (A)")
    ap.add_argument("--no-control", action="store_true", help="skip RELION's run from the true poses and map")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "local_refine.jsonl"))
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="local_refine_")
    truth, t = hard.simulate_case(d, "demo", a.n, a.snr, 0.0, a.seed, False)
    apix = 2.0
    row = dict(rev=git_rev(), n=a.n, snr=a.snr, seed=a.seed, dir=d)
    oracle_dir, oracle = run_ours(d, truth, t, a.seed, oracle=True)
    row["oracle"] = {**oracle, **hard.evaluate(oracle_dir, truth, t, apix)}
    job_dir, ours = run_ours(d, truth, t, a.seed, oracle=False)
    row["ours"] = {**ours, **hard.evaluate(job_dir, truth, t, apix)}
    row["relion"] = relion.run_local_refine(job_dir, diameter_A=110, ini_high_A=a.ini_high, ranks=a.ranks)
    row["relion"].update(relion.compare(job_dir, apix, truth=t))
    if not a.no_control:
        tdir = truth_dir(d, job_dir, truth, t, apix)
        row["relion_from_truth"] = relion.run_local_refine(tdir, diameter_A=110, ini_high_A=a.ini_high,
                                                           ranks=a.ranks)
        row["relion_from_truth"].update(relion.compare(tdir, apix, truth=t))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    o, r, q = row["ours"], row["relion"], row["oracle"]
    print(f"ours: {o['median_err_deg']:.2f} deg, gold-std {o['gold_standard_A']:.2f} A, {o['cpu_s']:.0f} CPU-s | "
          f"oracle: {q['median_err_deg']:.2f} deg, {q['gold_standard_A']:.2f} A | RELION local: moved "
          f"{r['pose_change_median_deg']:.2f} deg (p90 {r['pose_change_p90_deg']:.2f}), "
          f"{r['shift_change_median_A']:.2f} A; error {r['err_ours_deg']:.2f} -> {r['err_relion_deg']:.2f} deg; "
          f"gold-std {r['relion_gold_standard_A']:.2f} A; {r['cpu_s']:.0f} CPU-s ({r['wall_s']:.0f} s wall)")
    if "relion_from_truth" in row:
        c = row["relion_from_truth"]
        print(f"control, RELION from the true poses and map: moved {c['pose_change_median_deg']:.2f} deg (p90 "
              f"{c['pose_change_p90_deg']:.2f}), {c['shift_change_median_A']:.2f} A; its error "
              f"{c['err_relion_deg']:.2f} deg; gold-std {c['relion_gold_standard_A']:.2f} A")


if __name__ == "__main__":
    main()

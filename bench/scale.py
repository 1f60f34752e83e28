"""Scale (issue 17): time per iteration and peak memory against box and resolution, working box on/off.

    .venv/bin/python bench/scale.py --boxes 64 128 256 --res 35 20 12 8.5 --out bench/results/scale.jsonl
    .venv/bin/python bench/scale.py --boxes 64 128 256 --res 35 --full-box --out bench/results/scale.jsonl

The same physical particle in every box (a 154 A phantom in a 256 A box: 64 px at 4 A/px, 128 at 2,
256 at 1), 600 particles at SNR 0.05, minibatch 300. Each (box, resolution, mode) runs in its own process
(its peak RSS is the row's memory): one warm-up iteration (annealing temperature, compilation), then
``--iters`` timed iterations held at that resolution. ``--full-box`` keeps the model at the full box
(the engine before the working box) for the before/after comparison. Rows are JSON lines; ``--table``
prints them as the RST table in bench/RESULTS.rst.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from benchutil import git_rev

EXTENT_A = 256.0


def data_path(box):
    return f"/tmp/scale_data_{box}.npz"


def make_data(box, n, seed=0):
    from scipion_abinitrefine.engine import simulate

    p = data_path(box)
    if not os.path.exists(p):
        apix = EXTENT_A / box
        vol = simulate.make_phantom(box, apix, seed=7, diameter_A=0.6 * EXTENT_A)
        images, truth = simulate.simulate_particles(vol, n, apix, snr=0.05, seed=seed)
        c = truth["ctf"]
        np.savez(p, images=images.astype(np.float32), apix=apix,
                 **{f"ctf_{k}": np.asarray(getattr(c, k)) for k in c.__dataclass_fields__})
    return p


def one(box, res, iters, full_box):
    from scipion_abinitrefine.engine import fourier, sgd, threads
    from scipion_abinitrefine.engine.ctf import CTFParams
    from scipion_abinitrefine.testing import sources

    threads.limit(0)
    if full_box:
        sgd.fourier.working_box = lambda r, box, **kw: box
    z = np.load(data_path(box))
    ctf = CTFParams(**{k[4:]: z[k] for k in z.files if k.startswith("ctf_")})
    data = sources.ArrayParticles(z["images"], ctf, float(z["apix"]))
    p = sgd.SGDParams(max_res_A=res, init_res_A=res, init_iters=10_000, init_minibatch=300, final_minibatch=300,
                      minibatch_switch_iter=10_000)
    run = sgd.SGDRun(data, np.arange(len(data)), p)
    run.step()  # warm-up: the annealing temperature, numba compilation
    t0, c0 = time.time(), os.times()
    for _ in range(iters):
        run.step()
    c1 = os.times()
    wall = (time.time() - t0) / iters
    log = run.log[1:]
    return dict(box=box, apix=float(z["apix"]), res_A=res, radius=float(run.r_init), working_box=int(run.Dw),
                full_box=bool(full_box), s_per_iter=wall,
                search_s=float(np.mean([e["t_search"] for e in log])),
                update_s=float(np.mean([e["t_update"] for e in log])),
                user_s=(c1.user - c0.user) / iters, sys_s=(c1.system - c0.system) / iters,
                peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                fourier_points=int(fourier.n_points_within(run.kx, run.ky, run.r_init)))


def table(rows):
    rule = "=====  ======  =====  ======  ===========  ==========  ========  ========  =======  ========"
    print(rule)
    print(" box   A/px   res A  radius  working box  s / iter    search s  update s  peak GB  revision")
    print(rule)
    for r in rows:
        wb = "full" if r["full_box"] else str(r["working_box"])
        print(f"{r['box']:5d}  {r['apix']:6.2f}  {r['res_A']:5.1f}  {r['radius']:6.1f}  {wb:>11s}  "
              f"{r['s_per_iter']:10.2f}  {r['search_s']:8.2f}  {r['update_s']:8.2f}  {r['peak_gb']:7.2f}  "
              f"{r.get('rev', '3e1336d'):8s}")
    print(rule)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--res", type=float, nargs="+", default=[35.0, 20.0, 12.0, 8.5])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--full-box", action="store_true")
    ap.add_argument("--out", default="bench/results/scale.jsonl")
    ap.add_argument("--table", action="store_true", help="print the rows of --out as a table and stop")
    ap.add_argument("--one", nargs=3, metavar=("BOX", "RES", "FULL"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.table:
        with open(a.out) as f:
            table([json.loads(ln) for ln in f if ln.strip()])
        return
    if a.one:
        print(json.dumps(one(int(a.one[0]), float(a.one[1]), a.iters, a.one[2] == "1")))
        return
    for box in a.boxes:
        make_data(box, a.n)
        for res in a.res:
            if res < 2 * EXTENT_A / box:
                continue
            cmd = [sys.executable, __file__, "--iters", str(a.iters), "--one", str(box), str(res),
                   "1" if a.full_box else "0"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(r.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(r.stdout.strip().splitlines()[-1])
            row["rev"] = git_rev()
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            table([row])


if __name__ == "__main__":
    main()

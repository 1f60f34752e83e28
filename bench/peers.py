"""RELION's SGD initial model beside ours, on the same simulated data and scored by the same metrics.

    apt-get install -y relion           # Debian's RELION 3.1 (the benchmark's own set-up, not the tests')
    .venv/bin/python bench/peers.py --shape demo --snr 0.01 --n 10000 --seeds 0

RELION runs ``relion_refine --sgd --denovo_3dref`` (one class, C1, its SGD defaults except the iteration
counts, which ``--relion-iters`` scales down for a 2-core machine) on the whole set: it makes one map,
not two half-maps, so it is scored by the FSC of its map to the truth and the median angular error of its
poses. Our job is run on the same data by bench/hard.py's case runner. CPU time is reported for both.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import hard  # noqa: E402


def run_relion(d, n_threads, iters, particle_diameter):
    ini, mid, fin = iters
    out = os.path.join(d, "relion")
    os.makedirs(out, exist_ok=True)
    cmd = ["relion_refine", "--sgd", "--denovo_3dref", "--i", "p.star", "--o", "relion/run", "--K", "1",
           "--sym", "C1", "--ctf", "--zero_mask", "--particle_diameter", str(particle_diameter),
           "--sgd_ini_iter", str(ini), "--sgd_inbetween_iter", str(mid), "--sgd_fin_iter", str(fin),
           "--sgd_write_iter", str(ini + mid + fin), "--sgd_ini_resol", "35", "--sgd_fin_resol", "15",
           "--sgd_ini_subset", "100", "--sgd_fin_subset", "500", "--healpix_order", "1", "--offset_range", "6",
           "--offset_step", "2", "--oversampling", "1", "--pad", "1", "--j", str(n_threads), "--pool", "30",
           "--dont_combine_weights_via_disc"]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise RuntimeError(f"relion_refine failed: {p.stderr[-2000:]}")
    it = ini + mid + fin
    return dict(wall_s=time.time() - t0, cpu_s=(c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
                map=sorted(glob.glob(os.path.join(out, f"run_it{it:03d}_class001.mrc")))[-1],
                data=os.path.join(out, f"run_it{it:03d}_data.star"))


def score_relion(res, truth_vol, t, apix):
    from scipion_abinitrefine.engine import io
    from scipion_abinitrefine.testing import relion

    vol, _ = io.read_mrc(res["map"])
    # RELION ran in the case directory (its image names are relative to it)
    ps = relion.read_relative(res["data"], os.path.dirname(os.path.dirname(res["data"])))
    return hard.truth_scores(vol, ps, truth_vol, t, apix)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs="+", default=["demo"],
                    help="phantom families or atomic models (.pdb, .pdb.gz), as bench/hard.py")
    ap.add_argument("--apix", type=float, default=2.0, help="pixel size (A) of the box-64 images")
    ap.add_argument("--snr", type=float, nargs="+", default=[0.01])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--junk", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--realistic", action="store_true")
    ap.add_argument("--relion-iters", type=int, nargs=3, default=[50, 200, 50], metavar=("INI", "MID", "FIN"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "peers.jsonl"))
    a = ap.parse_args()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    for shape in a.shape:
        for snr in a.snr:
            for seed in a.seeds:
                d = tempfile.mkdtemp(prefix="peer_")
                truth, t = hard.simulate_case(d, shape, a.n, snr, a.junk, seed, a.realistic, apix=a.apix)
                res = run_relion(d, a.threads, a.relion_iters, particle_diameter=int(0.85 * 64 * a.apix))
                r = dict(peer="relion_sgd", shape=shape, apix=a.apix, n=a.n, snr=snr, junk=a.junk, seed=seed,
                         iters=a.relion_iters, wall_s=res["wall_s"], cpu_s=res["cpu_s"])
                r.update(score_relion(res, truth, t, a.apix))
                with open(a.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
                print(f"RELION SGD {os.path.basename(shape):9s} SNR {snr:<6g} n {a.n} junk {a.junk:.2f} seed {seed}: "
                      f"FSC(truth) 0.5 "
                      f"{r['fsc05_A']:.1f} A, 0.143 {r['fsc0143_A']:.1f} A, median err {r['median_err_deg']:.1f} deg, "
                      f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU", flush=True)


if __name__ == "__main__":
    main()

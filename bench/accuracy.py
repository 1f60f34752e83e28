"""Accuracy and speed of SGD ab-initio (issue 3) and of the whole job (issue 4) on simulated data.

    .venv/bin/python bench/accuracy.py                 # box 64, 2,000 particles, SNR 0.05 and 0.01
    .venv/bin/python bench/accuracy.py --snr 0.05 --n 1000 --mode sgd

Each case runs in its own process (peak memory = that process's max RSS). Prints a table and writes
bench/results/accuracy.json. Metrics: FSC of the result to the ground truth after aligning it to the truth
(rotation, shift, both hands) at 0.5 and 0.143, median angular error of the aligned particles (after the
best global rotation, both hands), wall time split into search/update, peak memory; for the job also the
gold-standard resolution and its ratio to the truth-FSC 0.5 resolution of the averaged map.
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

SGD_PARAMS = dict(max_res_A=5.0, init_iters=60, final_iters=80, radius_step=0.15, init_minibatch=90,
                  final_minibatch=300, minibatch_switch_iter=100, lr_duration=40, seed=0)


def truth_metrics(vol, truth_vol, apix):
    from scipion_abinitrefine.engine import align, fsc

    aln = align.align_maps(truth_vol, vol, apix, max_res_A=15.0, hands=True)
    v = align.transform_map(vol, aln)
    curve = fsc.fsc_curve(v, truth_vol, fsc.soft_auto_mask(truth_vol, apix))
    D = vol.shape[0]
    return dict(fsc05_A=fsc.resolution_at(curve, D, apix, 0.5), fsc0143_A=fsc.resolution_at(curve, D, apix, 0.143),
                hand_flipped=bool(aln.flip), fsc_truth=[round(float(x), 4) for x in curve])


def band_fsc(vol, truth, apix):
    """FSC of ``vol`` to the truth (aligned at 20 A, both hands, masked), averaged over 40-20 A and 20-11 A."""
    from scipion_abinitrefine.engine import align, fsc

    aln = align.align_maps(truth, vol, apix, max_res_A=20.0, hands=True)
    curve = fsc.fsc_curve(align.transform_map(vol, aln), truth, fsc.soft_auto_mask(truth, apix))
    D = truth.shape[0]
    res = D * apix / np.maximum(np.arange(len(curve)), 1e-9)
    low = curve[(res <= 40) & (res > 20)].mean()
    mid = curve[(res <= 20) & (res >= 11)].mean()
    return float(low), float(mid)


def run_case(mode, n, box, snr, apix=2.0):
    from scipion_abinitrefine.engine import sgd, simulate, so3
    from scipion_abinitrefine.testing import metrics, sources

    truth_vol = simulate.make_phantom(box, apix)
    images, truth = simulate.simulate_particles(truth_vol, n, apix, snr=snr, seed=11)
    R_true = so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"])
    out = dict(mode=mode, n=n, box=box, apix=apix, snr=snr)
    t0 = time.time()
    if mode == "sgd":
        data = sources.ArrayParticles(images, truth["ctf"], apix)
        run = sgd.SGDRun(data, np.arange(n), sgd.SGDParams(**SGD_PARAMS))
        while not run.done:
            run.step()
        out["t_sgd_s"] = time.time() - t0
        out["t_search_s"] = sum(e["t_search"] for e in run.log)
        out["t_update_s"] = sum(e["t_update"] for e in run.log)
        out["iterations"] = run.iteration
        out["convergence"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in e.items()
                               if k in ("iteration", "resolution_A", "ess", "temperature", "lr", "seen")}
                              for e in run.log[::10]]
        out["s_per_iter"] = out["t_sgd_s"] / run.iteration
        t1 = time.time()
        vol = run.final_pass()  # poses of every particle against the final model + reconstruction
        out["t_final_pass_s"] = time.time() - t1
        err, mirrored = metrics.pose_errors(run.R[run.seen].astype(np.float64), R_true[run.idx[run.seen]])
        out.update(truth_metrics(vol, truth_vol, apix))
    else:
        import tempfile

        from scipion_abinitrefine.engine import fsc, io
        from scipion_abinitrefine.engine.job import JobParams, run_job

        d = tempfile.mkdtemp()
        io.write_stack(os.path.join(d, "p.mrcs"), images, apix)
        ps = io.ParticleSet(image_names=np.array([f"{i + 1}@p.mrcs" for i in range(n)], dtype=object),
                            stack_paths=np.array([os.path.join(d, "p.mrcs")] * n, dtype=object),
                            stack_index=np.arange(n), apix=apix, box=box, ctf=truth["ctf"])
        io.write_star(os.path.join(d, "p.star"), ps)
        res = run_job(os.path.join(d, "p.star"), os.path.join(d, "out"), JobParams(**SGD_PARAMS, backend="cpu"),
                      log=lambda *a, **k: None)
        out["t_job_s"] = time.time() - t0
        outp = io.read_star(os.path.join(d, "out", "particles.star"))
        R_est = so3.euler_to_matrix(outp.rot, outp.tilt, outp.psi)
        err, mirrored = metrics.pose_errors(R_est, R_true[outp.stack_index])
        a, _ = io.read_mrc(os.path.join(d, "out", "half_map_A.mrc"))
        b, _ = io.read_mrc(os.path.join(d, "out", "half_map_B.mrc"))
        out.update(truth_metrics(0.5 * (a + b), truth_vol, apix))
        out["gold_standard_A"] = res["resolution_A"]
        out["gs_over_truth05"] = res["resolution_A"] / out["fsc05_A"]
        out["fsc_halves_low"] = float(fsc.fsc_curve(a, b)[1:4].min())
        out["n_used"] = res["n_used"]
    out["median_ang_err_deg"] = float(np.median(err))
    out["frac_within_5deg"] = float(np.mean(err < 5))
    out["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["sgd", "job", "both"], default="both")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--snr", type=float, nargs="+", default=[0.05, 0.01])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "accuracy.json"))
    ap.add_argument("--max-res", type=float, help="override max_res_A (default 5 A = 2.5 px)")
    ap.add_argument("--init-res", type=float, help="override init_res_A (default 35 A)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.max_res:
        SGD_PARAMS["max_res_A"] = a.max_res
    if a.init_res:
        SGD_PARAMS["init_res_A"] = a.init_res
    extra = (["--max-res", str(a.max_res)] if a.max_res else []) + \
        (["--init-res", str(a.init_res)] if a.init_res else [])
    if a.case:  # child process: one case, JSON on the last stdout line
        mode, snr = a.case.split(":")
        print(json.dumps(run_case(mode, a.n, a.box, float(snr))))
        return
    rows = []
    modes = ["sgd", "job"] if a.mode == "both" else [a.mode]
    for snr in a.snr:
        for mode in modes:
            p = subprocess.run([sys.executable, __file__, "--case", f"{mode}:{snr}", "--n", str(a.n), "--box",
                                str(a.box), *extra], capture_output=True, text=True)
            if p.returncode:
                print(p.stdout[-2000:], p.stderr[-4000:], file=sys.stderr)
                sys.exit(p.returncode)
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{mode:4s} SNR {snr:5.3f} n {a.n}: FSC(truth)=0.5 at {r['fsc05_A']:.2f} A, "
                  f"0.143 at {r['fsc0143_A']:.2f} A, median angle err {r['median_ang_err_deg']:.2f} deg, "
                  + (f"gold-standard {r['gold_standard_A']:.2f} A (ratio {r['gs_over_truth05']:.2f}), "
                     if mode == "job" else f"{r['s_per_iter']:.2f} s/iter (search {r['t_search_s']:.0f} s, "
                                           f"update {r['t_update_s']:.0f} s), ")
                  + f"time {r.get('t_job_s', r.get('t_sgd_s', 0)):.0f} s, peak {r['peak_rss_MiB']:.0f} MiB",
                  flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(dict(params=SGD_PARAMS, cases=rows, cores=os.cpu_count()), f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

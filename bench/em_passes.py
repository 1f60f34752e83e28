#!/usr/bin/env python
"""Where do full EM passes lead from a given start? (after a ``bench/hard.py`` case, on its images)

    .venv/bin/python bench/em_passes.py /tmp/hard_XXXX --shape bench/structures/1tii.pdb --apix 2.5 --seed 0 \\
        --start truth --passes 2

Each pass is the job's final pass (``SGDRun.final_pass``: a global search of every image of the half at the
maximum resolution, T = 1, pose polish, and the reconstruction from the posteriors), run on each half
separately from a start: ``truth`` (the true map, scaled to the images), ``lowpass:RES`` (the true map
low-passed at RES A: a right low-resolution model, as a refinement from an ab-initio map gets), ``job`` (the
case's own half-maps) or ``job:RES`` (those low-passed at RES A: is the job's map right enough at low
resolution for EM to climb from it?). ``--ramp`` sets the search's resolution pass by pass (EM through a
resolution ramp, as the SGD climbs) instead of --max-res for every pass. Prints, after each pass, the averaged
map's FSC to the truth (0.5 / 0.143) and each half's median pose error and fraction within 10 deg. Passes that
no longer change the map have found a fixed point of EM: the truth's tells what the data can give, the job's
whether more passes would help.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np
from hard import JOB_PARAMS, add_case_arguments, case_truth, good_pose_errors, mark_used, model_from_map


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="a finished bench/hard.py case (p.star, out/); a case without a job (no "
                    "out/particles.star: every particle of each half is used) is simulated into it if empty")
    add_case_arguments(ap)
    ap.add_argument("--start", default="truth", help="truth | lowpass:RES | job | job:RES (the job's half-maps "
                    "low-passed at RES A)")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--first", type=int, default=None,
                    help="only the case's first N images (rows of p.star), each in its job half: beside a peer "
                         "run on the same subset (bench/relion_refine.py --dir with a p.star of those rows)")
    ap.add_argument("--max-res", type=float, default=10.0)
    ap.add_argument("--ramp", type=float, nargs="+", default=None,
                    help="the search's resolution (A) pass by pass, e.g. 25 25 20 16 12 (the last one for any "
                         "further pass; none finer than --max-res): EM through a resolution ramp; by default "
                         "every pass searches at --max-res")
    ap.add_argument("--filter", default="none", choices=["none", "fsc", "sharpen-truth"],
                    help="between passes: none (each half's reconstruction as it is) or fsc (each half-map's "
                    "shells multiplied by the two halves' FSC there, clipped to [0, 1]: the Wiener filter of a "
                    "half whose SSNR the FSC gives, as a gold-standard refinement's reference is filtered)")
    ap.add_argument("--noise", default="images", choices=["images", "true"],
                    help="each pass's noise model: images (the job's after-the-fact one: the images' own power "
                         "per shell, signal included) or true (the power of 1,000 pure-noise images of the case's "
                         "colour, normalised as the job normalises images)")
    ap.add_argument("--samples", type=int, default=0,
                    help="poses drawn per image from the coarse posterior outside the beam in each pass, as the "
                         "SGD's update draws them (the job's final pass: none, the beam alone)")
    ap.add_argument("--params", default="{}", help="JSON of JobParams fields for the passes, e.g. "
                    "'{\"n_backproject\": 1}'")
    a = ap.parse_args()
    from accuracy import truth_metrics

    from scipion_abinitrefine.engine import fourier, io, threads
    from scipion_abinitrefine.engine.job import Job, JobParams

    threads.limit(0)
    truth, t = case_truth(a.dir, a)
    ps = io.read_star(os.path.join(a.dir, "p.star"))
    has_job = os.path.exists(os.path.join(a.dir, "out", "particles.star"))
    out = io.read_star(os.path.join(a.dir, "out", "particles.star")) if has_job else None
    p = JobParams(**{**JOB_PARAMS, "max_res_A": a.max_res, **json.loads(a.params)}, n_starts=1, backend="cpu",
                  seed=a.seed)
    job = Job(ps, tempfile.mkdtemp(prefix="empass_"), p, log=None)
    kind, _, res = a.start.partition(":")
    if kind == "job":
        maps = {name: io.read_mrc(os.path.join(a.dir, "out", f"half_map_{name}.mrc"))[0] for name in "AB"}
        if res:  # the job's half-maps low-passed: is the job right at low resolution?
            maps = {k: fourier.lowpass_volume(v, v.shape[0] * a.apix / float(res), width=2.0)
                    for k, v in maps.items()}
    else:
        start = truth / t["noise_sigma"]  # the true map in the units of the normalised images
        if kind == "lowpass":
            start = fourier.lowpass_volume(start, truth.shape[0] * a.apix / float(res), width=2.0)
        maps = dict.fromkeys("AB", start)
    if a.samples:
        from scipion_abinitrefine.engine.search import PoseSearch

        search = PoseSearch.search
        draws = np.random.default_rng(a.seed)

        def with_samples(self, *args, **kw):
            kw.setdefault("n_samples", a.samples)
            kw.setdefault("rng", draws)
            return search(self, *args, **kw)

        PoseSearch.search = with_samples
    for name, h in (("A", 1), ("B", 2)):
        if has_job:
            mark_used(job.runs[name], out, h)
        else:
            job.runs[name].seen[:] = True
        if a.first is not None:
            job.runs[name].seen &= job.runs[name].idx < a.first
    for it in range(a.passes + 1):
        m = truth_metrics(0.5 * (maps["A"] + maps["B"]), truth, a.apix)
        line = ["start" if it == 0 else f"pass {it}",
                f"FSC(truth) 0.5 / 0.143: {m['fsc05_A']:.1f} / {m['fsc0143_A']:.1f} A"]
        if it < a.passes:
            t0 = time.time()
            if a.ramp:
                res = max(a.ramp[min(it, len(a.ramp) - 1)], a.max_res)
                for run in job.runs.values():
                    run.r_max = min(run.box * a.apix / res, run.box / 2 - 1)
                line.append(f"search at {res:g} A")
            for name in "AB":
                run = job.runs[name]
                model_from_map(run, maps[name])
                if a.noise == "true":
                    run.s2_shell = true_noise(run, a.realistic, a.apix)
                maps[name] = run.final_pass()
                sel = np.flatnonzero(run.seen)
                err = good_pose_errors(run.R[sel], run.idx[sel], t)
                line.append(f"then {name}: median error {np.median(err):.0f} deg, "
                            f"within 10 / 20 deg {np.mean(err < 10):.2f} / {np.mean(err < 20):.2f}")
            line.append(f"({time.time() - t0:.0f} s)")
        if a.filter == "fsc" and it < a.passes:
            maps = fsc_filtered(maps)
            line.append("(FSC-filtered)")
        if a.filter == "sharpen-truth" and it < a.passes:
            maps = {k: amplitude_matched(v, truth / t["noise_sigma"], a.apix, a.max_res) for k, v in maps.items()}
            line.append("(amplitudes matched to the truth's)")
        print(", ".join(line), flush=True)


def true_noise(run, realistic: bool, apix: float, n: int = 1000) -> np.ndarray:
    """Per-shell noise model of ``run`` from ``n`` images of noise alone (the case's colour: ``hard.py``'s
    realistic cases have coloured noise), normalised and sampled as the job reads particles."""
    from scipion_abinitrefine.engine import fourier, simulate
    from scipion_abinitrefine.engine.noise import initial_noise
    from scipion_abinitrefine.engine.reconstruct import normalise_images

    D = run.box
    psd = np.sqrt(simulate.noise_psd(D, apix, "coloured")) if realistic else None
    img = simulate._coloured_noise(np.random.default_rng(123), (n, D, D), 1.0, psd)
    m = fourier.n_points_within(run.kx, run.ky, run.r_max)
    X = fourier.image_points(normalise_images(img, run.rp), run.kx[:m], run.ky[:m])
    return initial_noise(run.shell, X, m)


def amplitude_matched(vol, ref, apix, max_res):
    """``vol`` with each Fourier shell scaled so its mean amplitude is ``ref``'s, out to ``max_res``
    (gains clipped to [1, 10]; beyond max_res unchanged)."""
    from scipion_abinitrefine.engine import fourier

    F, Fr = fourier.ft3c(vol), fourier.ft3c(ref)
    sh = np.rint(fourier.radial_index(vol.shape)).astype(np.int64)
    n = sh.max() + 1
    cnt = np.maximum(np.bincount(sh.ravel(), minlength=n), 1)
    a = np.sqrt(np.bincount(sh.ravel(), (np.abs(F) ** 2).ravel(), n) / cnt)
    b = np.sqrt(np.bincount(sh.ravel(), (np.abs(Fr) ** 2).ravel(), n) / cnt)
    g = np.clip(b / np.maximum(a, 1e-30), 1.0, 10.0)
    g[np.arange(n) > vol.shape[0] * apix / max_res + 1] = 1.0
    return fourier.ift3c(F * g[sh]).real.astype(np.float32)


def fsc_filtered(maps: dict) -> dict:
    """Each half-map with its Fourier shells multiplied by clip(FSC(A, B), 0, 1)."""
    from scipion_abinitrefine.engine import fourier, fsc

    f = np.clip(fsc.fsc_curve(maps["A"], maps["B"]), 0.0, 1.0)
    sh = np.rint(fourier.radial_index(maps["A"].shape)).astype(np.int64)
    w = np.where(sh < len(f), f[np.minimum(sh, len(f) - 1)], 0.0)  # corners beyond Nyquist: 0
    return {k: fourier.ift3c(fourier.ft3c(v) * w).real.astype(np.float32) for k, v in maps.items()}


if __name__ == "__main__":
    main()

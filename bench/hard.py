"""Hard data (issue 10): the whole job on low-SNR, junk-contaminated, realistic simulated particles.

    .venv/bin/python bench/hard.py --shape demo compact --snr 0.01 --n 10000 --seeds 0 1 --oracle
    .venv/bin/python bench/hard.py --shape flat --snr 0.01 --n 10000 --junk 0.2 --realistic

Each case (shape, SNR, n, junk, seed) simulates its own structure (the phantom family ``shape`` drawn
with the case's seed: tune on many shapes, never on one), runs the job from random starts, and, with
``--oracle``, the same job started from the true map in both halves. One process per case (peak memory).
Metrics: FSC of the averaged half-maps to the truth at 0.5 / 0.143 (aligned, both hands, masked),
median angular error of the good particles (after the best global rotation, both hands), gold-standard
resolution, the convergence verdict, junk precision/recall of the lowest 20% of rlnLogLikeliContribution,
wall/CPU time and peak memory. Writes JSON lines to ``--out`` and prints a table row per case.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from benchutil import git_rev

# the schedule every case runs (box 64 at 2 A/px, a ~77 A particle: 60 iterations at 20 A, where its
# orientations first carry information, then a 0.05 px/iteration ramp to 10 A; minibatch 300 throughout)
JOB_PARAMS = dict(max_res_A=10.0, init_res_A=20.0, init_iters=60, final_iters=30, radius_step=0.05,
                  init_minibatch=300, final_minibatch=300, minibatch_switch_iter=100, lr_duration=40,
                  align_every=40)


def simulate_images(shape, n, snr, junk, seed, realistic, box=64, apix=2.0, symmetry="C1"):
    """One case's true map, images (n, box, box) and per-particle truth, in memory."""
    from scipion_abinitrefine.engine import simulate

    if shape.endswith((".pdb", ".pdb.gz")):  # a real structure: the atomic model rendered at box/apix
        truth = simulate.map_from_pdb(shape, box, apix)
    else:
        truth = simulate.make_phantom(box, apix, seed=7 if shape == "demo" else 100 + seed, shape=shape,
                                      symmetry=symmetry)
    kw = dict(bfactor=80.0, noise="coloured", scale_spread=0.2, defocus_range_um=(0.5, 3.0)) if realistic else {}
    images, t = simulate.simulate_particles(truth, n, apix, snr=snr, seed=11 + seed, junk_fraction=junk, **kw)
    return truth, images, t


def simulate_case(d, shape, n, snr, junk, seed, realistic, box=64, apix=2.0, symmetry="C1", write=True):
    """Simulate one case into ``d`` (p.mrcs, p.star); returns the true map and the per-particle truth.
    ``write=False``: the truth of a case simulated before (the same seeds give the same data), nothing written."""
    from scipion_abinitrefine.engine import io

    truth, images, t = simulate_images(shape, n, snr, junk, seed, realistic, box, apix, symmetry)
    if not write:
        return truth, t
    io.write_stack(os.path.join(d, "p.mrcs"), images, apix)
    ps = io.ParticleSet(image_names=np.array([f"{i + 1}@p.mrcs" for i in range(n)], dtype=object),
                        stack_paths=np.array([os.path.join(d, "p.mrcs")] * n, dtype=object),
                        stack_index=np.arange(n), apix=apix, box=box, ctf=t["ctf"])
    io.write_star(os.path.join(d, "p.star"), ps)
    return truth, t


def case_truth(d, a):
    """The true map and per-particle truth of the case that ``add_case_arguments``' options ``a`` name, in
    directory ``d``: simulated into it (one simulation) when it holds no p.star yet, else recomputed from
    the seeds without writing."""
    if os.path.exists(os.path.join(d, "p.star")):
        return simulate_case(None, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix, write=False)
    os.makedirs(d, exist_ok=True)
    return simulate_case(d, a.shape, a.n, a.snr, a.junk, a.seed, a.realistic, apix=a.apix)


def add_case_arguments(ap, n: int = 10000):
    """The options that name one case (the single-case scripts: ``trace.py``, ``global_search.py``)."""
    ap.add_argument("--shape", default="demo", help="a phantom family or an atomic model (.pdb, .pdb.gz)")
    ap.add_argument("--apix", type=float, default=2.0, help="pixel size (A) of the box-64 images")
    ap.add_argument("--snr", type=float, default=0.01)
    ap.add_argument("--n", type=int, default=n)
    ap.add_argument("--junk", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--realistic", action="store_true", help="B 80 A^2, coloured noise, +-20%% scale, 0.5-3 um")


def good_pose_errors(R_est, gidx, t, mate=False):
    """Angular errors (deg) of the good (not junk) particles among ``gidx`` (indices into the simulated set,
    ``R_est`` their estimated matrices) against the truth, after the best global rotation (both hands).
    ``mate``: also the errors up to a pseudo-symmetric mate frame (``metrics.pose_errors_with_mate``)."""
    from scipion_abinitrefine.engine import so3
    from scipion_abinitrefine.testing import metrics

    good = ~t["junk"][gidx]
    R_true = so3.euler_to_matrix(t["rot"][gidx], t["tilt"][gidx], t["psi"][gidx])
    R_est = np.asarray(R_est, np.float64)[good]
    if mate:
        return metrics.pose_errors_with_mate(R_est, R_true[good])
    return metrics.pose_errors(R_est, R_true[good])[0]


def model_from_map(run, vol, n_noise: int = 300):
    """Give SGD run ``run`` the map ``vol`` as its model at the maximum radius, and a per-shell noise model
    from its first ``n_noise`` images (the after-the-fact script ``global_search.py``)."""
    from scipion_abinitrefine.engine.noise import initial_noise

    run.set_working_radius(run.r_max)
    run.set_model_volume(vol)
    X, _, m = run.batch_points(np.arange(min(n_noise, len(run.idx))), run.r_max)
    run.s2_shell = initial_noise(run.shell, X, m)


def truth_scores(vol, ps, truth_vol, t, apix):
    """FSC of ``vol`` to the truth (aligned, both hands, masked) and the good particles' pose errors."""
    from accuracy import truth_metrics

    from scipion_abinitrefine.engine import so3

    m = truth_metrics(vol, truth_vol, apix)
    err, err2 = good_pose_errors(so3.euler_to_matrix(ps.rot, ps.tilt, ps.psi), ps.stack_index, t, mate=True)
    return dict(fsc05_A=m["fsc05_A"], fsc0143_A=m["fsc0143_A"], median_err_deg=float(np.median(err)),
                within10=float(np.mean(err < 10)), within10_mate=float(np.mean(err2 < 10)))


def half_truth_scores(a, b, ps, truth_vol, t, apix) -> dict:
    """Each half-map and its own particles' poses against the truth: a half can be wrong where the
    average of the two, and the poses over both halves, still look right."""
    return {name: truth_scores(vol, ps.subset(np.flatnonzero(ps.half == h)), truth_vol, t, apix)
            for name, h, vol in (("A", 1, a), ("B", 2, b))}


def halves_from_case(d, seed: int, maps=None):
    """A finished case's two halves as SGD runs (the after-the-fact scripts): each with a half-map as its model
    (``maps`` = (A, B) volumes, default the job's half-maps), its noise model from its images, its seen
    particles and their final poses from ``out/particles.star``. Returns (run A, run B)."""
    import tempfile

    from scipion_abinitrefine.engine import io, so3
    from scipion_abinitrefine.engine.job import Job, JobParams

    ps = io.read_star(os.path.join(d, "p.star"))
    out = io.read_star(os.path.join(d, "out", "particles.star"))
    if maps is None:
        maps = [io.read_mrc(os.path.join(d, "out", f"half_map_{n}.mrc"))[0] for n in "AB"]
    job = Job(ps, tempfile.mkdtemp(prefix="case_"), JobParams(**JOB_PARAMS, n_starts=1, backend="cpu", seed=seed),
              log=None)
    R_all = so3.euler_to_matrix(out.rot, out.tilt, out.psi).astype(np.float32)
    for name, h, vol in (("A", 1, maps[0]), ("B", 2, maps[1])):
        run = job.runs[name]
        model_from_map(run, vol)
        pos = mark_used(run, out, h)
        run.R[pos] = R_all[out.half == h]
    return job.runs["A"], job.runs["B"]


def mark_used(run, out, half: int) -> np.ndarray:
    """Mark as seen, in SGD run ``run``, exactly the particles of half-set ``half`` (1 = A, 2 = B) in the
    job's output particle set ``out``; returns their positions in the run (the after-the-fact scripts)."""
    pos = np.searchsorted(run.idx, out.stack_index[out.half == half])
    run.seen[:] = False
    run.seen[pos] = True
    return pos


def evaluate(out_dir, truth_vol, t, apix):
    from scipion_abinitrefine.engine import io

    a, _ = io.read_mrc(os.path.join(out_dir, "half_map_A.mrc"))
    b, _ = io.read_mrc(os.path.join(out_dir, "half_map_B.mrc"))
    ps = io.read_star(os.path.join(out_dir, "particles.star"))
    o = truth_scores(0.5 * (a + b), ps, truth_vol, t, apix)
    o["halves"] = half_truth_scores(a, b, ps, truth_vol, t, apix)
    if t["junk"].any() and ps.loglik is not None:
        o.update(junk_scores(ps, t))
    un = io.read_star(os.path.join(out_dir, "unused.star"))
    if t["junk"].any() and un.class_number is not None:
        o.update(junk_class_scores(ps, un, t))
    return o


def junk_class_scores(ps, un, t) -> dict:
    """Junk classes (--junk-classes): precision and recall, over every particle the SGD saw, of the
    particles whose most probable class is a junk class (unused.star, rlnClassNumber >= 2), per junk kind
    too; and the good particles they lost."""
    moved = un.stack_index[un.class_number >= 2]
    seen = np.concatenate([ps.stack_index, moved])
    isj = t["junk"][seen]
    kind = np.asarray(t["junk_kind"], dtype=object)[seen]
    out = np.zeros(len(seen), bool)
    out[len(ps):] = True
    return dict(class_junk_precision=float(isj[out].mean()) if out.any() else float("nan"),
                class_junk_recall=float(out[isj].mean()), class_good_lost=float(out[~isj].mean()),
                class_junk_recall_kind={str(k): float(out[kind == k].mean()) for k in sorted(set(kind[isj]))})


def junk_scores(ps, t) -> dict:
    """Junk detection: precision / recall of the lowest 20% of each of two per-particle scores, with each
    junk kind's recall. The scores: the log of the weight the model gives an image
    (``outliers.particle_log_weight``: sigmoid of rlnLogLikeliContribution times the outlier weight of
    rlnParticleSelectZScore; a probability, ranked as it is) and, as ``*_ll``, the log-likelihood ratio alone
    (as z scores within each half-set)."""
    from scipion_abinitrefine.engine import outliers

    isj = t["junk"][ps.stack_index]
    kind = np.asarray(t["junk_kind"], dtype=object)[ps.stack_index]
    o = {}
    scores = {"": outliers.particle_log_weight(ps.loglik, ps.select_z) if ps.select_z is not None else None,
              "_ll": ps.loglik}
    for tag, raw in scores.items():
        if raw is None:
            continue
        score = np.asarray(raw, np.float64).copy()
        if tag == "_ll":  # the ratio's scale differs between the halves' models
            for h in (1, 2):
                s = ps.half == h
                score[s] = (score[s] - np.median(score[s])) / (np.std(score[s]) + 1e-9)
        low = score <= np.percentile(score, 20)
        o[f"junk_precision{tag}"] = float(isj[low].mean())
        o[f"junk_recall{tag}"] = float(low[isj].mean())
        o[f"junk_recall_kind{tag}"] = {str(k): float(low[kind == k].mean()) for k in sorted(set(kind[isj]))}
    return o


def run_case(shape, n, snr, junk, seed, oracle, realistic, params, phantom_symmetry="C1", apix=2.0, d=None):
    """One job on one case; ``d``: its directory (default: a new one), whose data are reused when there (its
    old ``out/`` is moved to ``out.prev/``). The job keeps its checkpoint, so that its final stage can be
    run again (``Job.finish`` after ``Job.load``)."""
    from scipion_abinitrefine.engine import io
    from scipion_abinitrefine.engine.job import Job, JobParams

    d = d or tempfile.mkdtemp(prefix="hard_")
    os.makedirs(d, exist_ok=True)  # --dir may name a directory not made yet
    reuse = os.path.exists(os.path.join(d, "p.star"))
    truth, t = simulate_case(d, shape, n, snr, junk, seed, realistic, symmetry=phantom_symmetry, apix=apix,
                             write=not reuse)
    if reuse and os.path.isdir(os.path.join(d, "out")):
        shutil.rmtree(os.path.join(d, "out.prev"), ignore_errors=True)
        os.rename(os.path.join(d, "out"), os.path.join(d, "out.prev"))
    # the oracle starts from the true map, scaled to the normalised images (background std 1 = noise sigma),
    # without annealing (a temperature chosen to flatten the true map's sharp posteriors would blur it)
    over = dict(target_ess_fraction=0.0, n_starts=1) if oracle else {}  # one start: the true map
    p = JobParams(**{**JOB_PARAMS, "keep_checkpoint": True, **params, **over}, backend="cpu", seed=seed)
    t0, c0 = time.time(), time.process_time()
    job = Job(io.read_star(os.path.join(d, "p.star")), os.path.join(d, "out"), p, log=lambda *a, **k: None)
    if oracle:  # the same job started from the true map in both halves
        for run in job.runs.values():
            run.set_model_volume(truth / t["noise_sigma"])
    job.run_sgd()
    res = job.finish()
    out = dict(shape=shape, apix=apix, n=n, snr=snr, junk=junk, seed=seed, oracle=oracle, realistic=realistic,
               phantom_symmetry=phantom_symmetry, symmetry=p.symmetry,
               gold_standard_A=res["resolution_A"], verdict=res["verdict"],
               agreement=res["convergence"].get("agreement_beyond_alignment"), n_used=res["n_used"],
               pose_agreement=res["convergence"].get("pose_agreement"),
               map_pose_agreement=res["convergence"].get("map_pose_agreement"),
               wall_s=time.time() - t0, cpu_s=time.process_time() - c0, dir=d)  # kept: after-the-fact analyses
    out.update(evaluate(os.path.join(d, "out"), truth, t, apix))
    out["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def row(r) -> str:
    junk = f"junk P/R {r['junk_precision']:.2f}/{r['junk_recall']:.2f}, " if "junk_recall" in r else ""
    if "junk_recall_ll" in r:
        junk += f"(ratio alone {r['junk_precision_ll']:.2f}), "
    if "class_junk_recall" in r:
        junk += (f"junk classes P/R {r['class_junk_precision']:.2f}/{r['class_junk_recall']:.2f} (good lost "
                 f"{100 * r['class_good_lost']:.1f}%), ")
    return (f"{os.path.basename(r['shape']):9s} SNR {r['snr']:<6g} n {r['n']:6d} junk {r['junk']:.2f} seed {r['seed']} "
            f"{'oracle' if r['oracle'] else 'random'}: FSC(truth) 0.5 {r['fsc05_A']:.1f} A, 0.143 "
            f"{r['fsc0143_A']:.1f} A, median err {r['median_err_deg']:.1f} deg, within 10 deg "
            f"{100 * r['within10']:.1f}% ({100 * r.get('within10_mate', np.nan):.1f}% up to a mate), gold-std "
            f"{r['gold_standard_A']:.1f} A, {r['verdict']}, {junk}"
            f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU, {r['peak_rss_MiB']:.0f} MiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs="+", default=["demo"],
                    help="phantom families (demo compact elongated flat) or atomic models (.pdb, .pdb.gz)")
    ap.add_argument("--apix", type=float, default=2.0, help="pixel size (A) of the box-64 images")
    ap.add_argument("--snr", type=float, nargs="+", default=[0.01])
    ap.add_argument("--n", type=int, nargs="+", default=[10000])
    ap.add_argument("--junk", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--oracle", action="store_true", help="also run each case from the true map")
    ap.add_argument("--oracle-only", action="store_true", help="run each case from the true map only")
    ap.add_argument("--realistic", action="store_true", help="B 80 A^2, coloured noise, +-20%% scale, 0.5-3 um")
    ap.add_argument("--params", default="{}", help="JSON overrides of the job parameters")
    ap.add_argument("--sym", default="C1", help="the phantom's point group (the job's: --params '{\"symmetry\": ...}');"
                                                " the median pose error then counts symmetry mates as errors")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "hard.jsonl"))
    ap.add_argument("--dir", help="the case's directory; a kept case's data are reused (one case: the options "
                                  "that made it)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    a = ap.parse_args()
    params = json.loads(a.params)
    if a.case:
        from scipion_abinitrefine.engine import threads

        threads.limit(0)  # what the command line sets up (engine/threads.py)
        shape, n, snr, seed, oracle = a.case.split(":")
        print(json.dumps(run_case(shape, int(n), float(snr), a.junk, int(seed), oracle == "1", a.realistic, params,
                                  a.sym, a.apix, a.dir)))
        return
    if a.dir and len(a.shape) * len(a.snr) * len(a.n) * len(a.seeds) * (2 if a.oracle else 1) > 1:
        ap.error("--dir reuses one case's data: give one shape, SNR, size and seed (and no --oracle)")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    for shape in a.shape:
        for snr in a.snr:
            for n in a.n:
                for seed in a.seeds:
                    for oracle in ([1] if a.oracle_only else [0, 1] if a.oracle else [0]):
                        cmd = [sys.executable, __file__, "--case", f"{shape}:{n}:{snr}:{seed}:{oracle}",
                               "--junk", str(a.junk), "--params", a.params, "--sym", a.sym, "--apix", str(a.apix)] + \
                            (["--realistic"] if a.realistic else []) + (["--dir", a.dir] if a.dir else [])
                        p = subprocess.run(cmd, capture_output=True, text=True)
                        if p.returncode:
                            print(p.stderr[-3000:], file=sys.stderr)
                            continue
                        r = json.loads(p.stdout.strip().splitlines()[-1])
                        r["params"] = {**JOB_PARAMS, **params}
                        r["rev"] = git_rev()
                        with open(a.out, "a") as f:
                            f.write(json.dumps(r) + "\n")
                        print(row(r), flush=True)


if __name__ == "__main__":
    main()

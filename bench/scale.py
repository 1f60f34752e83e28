"""Scale (issue 17): time per iteration and peak memory against box and resolution, working box on/off.

    .venv/bin/python bench/scale.py --boxes 64 128 256 --res 35 20 12 8.5 --out bench/results/scale.jsonl
    .venv/bin/python bench/scale.py --boxes 64 128 256 --res 35 --full-box --out bench/results/scale.jsonl

The same physical particle in every box (a 154 A phantom in a 256 A box: 64 px at 4 A/px, 128 at 2,
256 at 1), 600 particles at SNR 0.05, minibatch 300. Each (box, resolution, mode) runs in its own process
(its peak RSS is the row's memory): one warm-up iteration (annealing temperature, compilation), then
``--iters`` timed iterations held at that resolution. ``--full-box`` keeps the model at the full box
(the engine before the working box) for the before/after comparison. Rows are JSON lines; ``--table``
prints them as the RST table in docs/results.rst.

With ``--big`` (the options after it are its own, ``--big --help`` lists them): a real-size data set
through the whole job, below.
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


# ---- --big

BIG_DOC = """A real-size data set through the job: box 256 at 1 A/px, 100,000 particles, low-resolution phase.

    .venv/bin/python bench/scale.py --big --dir /tmp/big256 --n 100000 --out bench/results/big.jsonl

The stack (26 GB of float32 at box 256) is written to disk chunk by chunk through a memory map, never held in
memory: ``--unique`` projections of a 154 A phantom (CTF, random poses and shifts) are simulated once and each
particle is one of them with its own white noise at ``--snr`` (projecting 100,000 images at box 256 would
take an hour here; the job's cost and memory do not depend on the signals being distinct). Then the job runs
as a user runs it (``abinitrefine run`` in a child process, default parameters but for ``--job-args``: by
default the low-resolution phase only, 35 -> 20 A) and the row records its wall and CPU time, its peak
resident memory (the child's maximum RSS) and the resolution it reports.
"""
JOB_ARGS = "--init-res 35 --max-res 15 --init-iters 40 --fourier-radius-step 0.2 --final-iters 10"


def make_stack(d, box, apix, n, unique, snr, seed=0, chunk=1000):
    """Write ``d``/particles.mrcs and particles.star (skipped when they exist)."""
    import mrcfile

    from scipion_abinitrefine.engine import io, simulate
    from scipion_abinitrefine.engine.ctf import CTFParams

    star = os.path.join(d, "particles.star")
    if os.path.exists(star):
        return star
    os.makedirs(d, exist_ok=True)
    vol = simulate.make_phantom(box, apix, seed=7, diameter_A=0.6 * box * apix)
    sig, t = simulate.simulate_particles(vol, unique, apix, snr=snr, seed=seed)
    rng = np.random.default_rng(seed + 1)
    pick = rng.integers(0, unique, n)
    stack = os.path.join(d, "particles.mrcs")
    with mrcfile.new_mmap(stack, shape=(n, box, box), mrc_mode=2, overwrite=True) as m:
        m.voxel_size = apix
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            m.data[a:b] = sig[pick[a:b]] + rng.normal(scale=t["noise_sigma"], size=(b - a, box, box)).astype(
                np.float32)
            m.flush()
    c = t["ctf"]
    ctf = CTFParams(**{k: np.asarray(getattr(c, k))[pick] if np.ndim(getattr(c, k)) else getattr(c, k)
                       for k in c.__dataclass_fields__})
    ps = io.ParticleSet(image_names=np.array([f"{i + 1:06d}@particles.mrcs" for i in range(n)]),
                        stack_paths=np.array([os.path.abspath(stack)] * n), stack_index=np.arange(n, dtype=np.int64),
                        apix=apix, box=box, ctf=ctf, rot=t["rot"][pick], tilt=t["tilt"][pick], psi=t["psi"][pick],
                        origin_x=t["origin_x"][pick], origin_y=t["origin_y"][pick])
    io.write_star(star, ps)
    io.write_mrc(os.path.join(d, "truth.mrc"), vol, apix)
    return star


def score_against_truth(d, out, star) -> dict:
    """FSC of the job's map to the simulated truth (0.5 / 0.143, after alignment, both hands) and the final
    poses' angular error against the true poses (one global frame, ``testing.metrics.pose_errors``)."""
    from accuracy import truth_metrics

    from scipion_abinitrefine.engine import io, so3
    from scipion_abinitrefine.testing import metrics

    truth = io.read_mrc(os.path.join(d, "truth.mrc"))[0]
    vol, apix = io.read_mrc(os.path.join(out, "map.mrc"))
    m = truth_metrics(vol, truth, apix)
    ps_in, ps_out = io.read_star(star), io.read_star(os.path.join(out, "particles.star"))
    k = ps_out.stack_index  # make_stack writes particle i at stack index i
    err = metrics.pose_errors(so3.euler_to_matrix(ps_out.rot, ps_out.tilt, ps_out.psi),
                              so3.euler_to_matrix(ps_in.rot[k], ps_in.tilt[k], ps_in.psi[k]))[0]
    return dict(fsc05_A=m["fsc05_A"], fsc0143_A=m["fsc0143_A"], median_err_deg=float(np.median(err)),
                within10=float(np.mean(err < 10)))


def watch_memory(child, every=0.5) -> dict:
    """Wait for ``child``, sampling its resident memory: the peak of anonymous memory (the job's own arrays)
    and of file pages (the memory-mapped stack's pages, which the kernel can take back at any time), in GB.
    ru_maxrss counts both together."""
    peak = dict(peak_anon_gb=0.0, peak_file_gb=0.0)
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as f:
                st = {k: v for k, _, v in (ln.partition(":") for ln in f)}
            for key, name in (("RssAnon", "peak_anon_gb"), ("RssFile", "peak_file_gb")):
                peak[name] = max(peak[name], int(st[key].split()[0]) / 2**20)
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(every)
    return peak


def main_big(argv=None):
    ap = argparse.ArgumentParser(prog="bench/scale.py --big", description=BIG_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/big256")
    ap.add_argument("--box", type=int, default=256)
    ap.add_argument("--apix", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--unique", type=int, default=2000)
    ap.add_argument("--snr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--job-args", default=JOB_ARGS)
    ap.add_argument("--out", default="bench/results/big.jsonl")
    a = ap.parse_args(argv)
    t0 = time.time()
    star = make_stack(a.dir, a.box, a.apix, a.n, a.unique, a.snr)
    t_sim = time.time() - t0
    out = os.path.join(a.dir, "job")
    cmd = [sys.executable, "-m", "scipion_abinitrefine.cli", "run", "--particles", star, "--out", out, "--threads",
           str(a.threads), *a.job_args.split()]
    print(" ".join(cmd), flush=True)
    t0, c0 = time.time(), os.times()
    child = subprocess.Popen(cmd)
    peaks = watch_memory(child)
    c1 = os.times()
    if child.returncode:
        sys.exit(f"the job failed (exit {child.returncode})")
    with open(os.path.join(out, "result.json")) as f:
        res = json.load(f)
    row = dict(box=a.box, apix=a.apix, n=a.n, job_args=a.job_args, threads=a.threads, simulate_s=t_sim,
               wall_s=time.time() - t0, user_s=c1.children_user - c0.children_user,
               sys_s=c1.children_system - c0.children_system,
               peak_gb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, **peaks,
               resolution_A=res["resolution_A"], verdict=res["verdict"], n_used=res["n_used"],
               iterations=res["iterations"], stack_gb=os.path.getsize(os.path.join(a.dir, "particles.mrcs")) / 2**30,
               rev=git_rev())
    row.update(score_against_truth(a.dir, out, star))
    print(json.dumps(row))
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    if "--big" in sys.argv[1:]:
        main_big([a for a in sys.argv[1:] if a != "--big"])
    else:
        main()
